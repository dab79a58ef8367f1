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
  ).action(async (name: string, rawIndex: string, flags: GridFlags) => {
    const index = Number(rawIndex);
    if (!Number.isInteger(index) || index < 0) throw new UsageError(`cell index '${rawIndex}' must be a non-negative integer`);
    const threads = flags.threads === undefined ? undefined : positiveInt('--threads', flags.threads);
    const r = await asUsage(() => runOneCell({
      name, index, preset: flags.preset, only: flags.only, set: flags.set, dataDir: flags.data, resultsDir: flags.results,
      threads, tracker: flags.tracking ? undefined : null,
    }));
    process.stdout.write(`${r.cell.key} ${r.cell.label}: ${r.ran ? `done in ${r.seconds.toFixed(1)} s` : 'already finished'}\n`);
  });
}
