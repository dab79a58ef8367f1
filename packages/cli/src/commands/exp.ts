import { Command } from 'commander';
import {
  describeGrid, defaultResultsDir, experimentNames, ExperimentError, GRID_PRESETS, resolveGrid, runExperiment, EXPERIMENTS,
} from '@harmoq/experiments';
import { positiveInt, UsageError } from '../errors';

const collect = (value: string, previous: string[]) => [...previous, value];

/** The options `exp` and `cell` share: which grid, and where its inputs and results live. */
export function gridOptions(cmd: Command): Command {
  return cmd
    .option('--preset <name>', `calibration budget (${GRID_PRESETS.join('|')})`, 'quick')
    .option('--only <key=value>', 'run only the cells with this axis value, e.g. method=minmax, scale=4, dataset=Set5 (repeatable; value may be a,b)', collect, [] as string[])
    .option('--set <a.b=c>', 'override the experiment config, checked against its schema, e.g. datasets=Set5,Set14 or quant.calibration.count=8 (repeatable)', collect, [] as string[])
    .option('--data <dir>', 'data folder with benchmarks/, calibration/, weights/ (default: $HARMOQ_DATA)')
    .option('--results <dir>', `results folder holding cells/ and the tables (default: ${defaultResultsDir()})`)
    .option('--threads <n>', 'onnxruntime threads per cell (default: cores / jobs)')
    .option('--no-tracking', 'do not log cells to MLflow');
}

export interface GridFlags {
  preset: string;
  only: string[];
  set: string[];
  data?: string;
  results?: string;
  threads?: string;
  tracking: boolean;
}

/** Bad grid input (unknown experiment, --only, --set) is a usage error: one line, exit 2. */
export async function asUsage<T>(work: () => Promise<T> | T): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof ExperimentError && err.badInput) throw new UsageError(err.message);
    throw err;
  }
}

interface ExpFlags extends GridFlags {
  jobs: string;
  dryRun?: boolean;
}

export function expCommand(): Command {
  const list = Object.values(EXPERIMENTS).map((m) => `${m.name}${m.aliases.length ? ` (alias ${m.aliases.join(', ')})` : ''}: ${m.description}`).join('; ');
  return gridOptions(
    new Command('exp')
      .description(`run an experiment grid, resumably: finished cells are reused, the tables are rebuilt from stored cells (${list})`)
      .argument('<name>', `experiment (${experimentNames().join('|')})`),
  )
    .option('--jobs <n>', 'cells run at once, each in its own worker process when more than 1', '1')
    .option('--dry-run', 'list the cells (index, done/todo, key) without running anything')
    .action(async (name: string, flags: ExpFlags) => {
      const jobs = positiveInt('--jobs', flags.jobs);
      const threads = flags.threads === undefined ? undefined : positiveInt('--threads', flags.threads);
      const gridOpts = { name, preset: flags.preset, only: flags.only, set: flags.set, dataDir: flags.data };
      if (flags.dryRun) {
        const grid = await asUsage(() => resolveGrid(gridOpts));
        process.stdout.write(describeGrid(grid, flags.results ?? defaultResultsDir()).join('\n') + '\n');
        return;
      }
      const report = await asUsage(() => runExperiment({
        ...gridOpts, jobs, threads, resultsDir: flags.results, tracker: flags.tracking ? undefined : null,
      }));
      if (report.failed.length > 0) throw new Error(`${report.failed.length} of ${report.selected} cells failed (rerun to retry them)`);
    });
}
