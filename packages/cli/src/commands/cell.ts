import { Command } from 'commander';
import { runOneCell } from '@harmoq/experiments';
import { positiveInt, UsageError } from '../errors';
import { asUsage, gridOptions, type GridFlags } from './exp';

export function cellCommand(): Command {
  return gridOptions(
    new Command('cell')
      .description('run exactly one cell of a grid (for Slurm array tasks); the index is the one `harmoq exp <grid> --dry-run` lists')
      .argument('<grid>', 'experiment name')
      .argument('<index>', 'cell index, from 0'),
  )
    .option('--expect-key <key>', 'refuse unless the index names this cell (the Slurm setup passes the key it was written for)')
    .action(async (name: string, rawIndex: string, flags: GridFlags & { expectKey?: string }) => {
      const index = Number(rawIndex);
      if (!Number.isInteger(index) || index < 0) throw new UsageError(`cell index '${rawIndex}' must be a non-negative integer`);
      const threads = flags.threads === undefined ? undefined : positiveInt('--threads', flags.threads);
      const r = await asUsage(() => runOneCell({
        name, index, preset: flags.preset, only: flags.only, set: flags.set, dataDir: flags.data, resultsDir: flags.results,
        threads, tracker: flags.tracking ? undefined : null, expectKey: flags.expectKey,
        claim: { onWait: (h) => process.stderr.write(`waiting: ${h.host} pid ${h.pid} is running this cell\n`) },
      }));
      process.stdout.write(`${r.cell.key} ${r.cell.label}: ${r.ran ? `done in ${r.seconds.toFixed(1)} s` : 'already finished'}\n`);
    });
}
