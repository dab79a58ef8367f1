import * as path from 'node:path';
import { Command } from 'commander';
import {
  CellStore, describeGrid, defaultResultsDir, emitSlurm, experimentNames, ExperimentError, GRID_PRESETS, jobTrackingUri,
  resolveGrid, runExperiment, SCHEDULERS, writeTables, EXPERIMENTS, type ResolvedGrid,
} from '@harmoq/experiments';
import { choice, positiveInt, UsageError } from '../errors';

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
  tablesOnly?: boolean;
  emit?: string;
  out?: string;
  slurmPartition?: string;
  slurmTime?: string;
  slurmCpus?: string;
  slurmMem?: string;
  slurm: string[];
}

const shortPath = (file: string) => {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') ? rel : file;
};

/** Options that only mean something with --emit, and the modes --emit cannot be combined with. */
const EMIT_ONLY = ['out', 'slurmPartition', 'slurmTime', 'slurmCpus', 'slurmMem', 'slurm'] as const;
const NOT_WITH_EMIT = ['jobs', 'dryRun', 'tablesOnly'] as const;
const flagName = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

function checkModes(cmd: Command, flags: ExpFlags): void {
  const given = (key: string) => cmd.getOptionValueSource(key) === 'cli';
  if (flags.emit === undefined) {
    const stray = EMIT_ONLY.find(given);
    if (stray) throw new UsageError(`${flagName(stray)} needs --emit (choices: ${SCHEDULERS.join(', ')})`);
  } else {
    choice('--emit', flags.emit, SCHEDULERS);
    const clash = NOT_WITH_EMIT.find(given);
    if (clash) throw new UsageError(`${flagName(clash)} cannot be combined with --emit (the batch setup runs the cells and builds the tables)`);
  }
  if (flags.dryRun && flags.tablesOnly) throw new UsageError('--dry-run cannot be combined with --tables-only');
}

/** `--tables-only`: the rows, env.json and tables from the stored cells; fails when a selected cell has no result. */
async function tablesOnly(grid: ResolvedGrid, resultsDir: string): Promise<void> {
  const files = await writeTables(grid, resultsDir);
  const store = new CellStore(resultsDir);
  const missing = grid.selected.filter((c) => !store.isDone(c));
  process.stdout.write(`${grid.module.name}: ${grid.selected.length - missing.length} of ${grid.selected.length} selected cells finished; wrote ${files.map(shortPath).join(', ')}\n`);
  if (missing.length > 0) {
    const names = missing.slice(0, 5).map((c) => `${c.key} (${c.label})`).join(', ');
    throw new Error(`${missing.length} of ${grid.selected.length} selected cells have no result: ${names}${missing.length > 5 ? ', ...' : ''}`);
  }
}

/** `--emit slurm`: writes the batch setup and says how to submit it. */
async function emitSetup(grid: ResolvedGrid, flags: ExpFlags, threads: number | undefined): Promise<void> {
  const setup = await asUsage(() => emitSlurm({
    grid,
    flags: {
      preset: flags.preset, only: flags.only, set: flags.set,
      // The data folder goes into the jobs only when it was chosen (--data or HARMOQ_DATA); else they use ../shared/data.
      dataDir: flags.data !== undefined || process.env.HARMOQ_DATA ? grid.dataDir : undefined,
      resultsDir: flags.results ?? defaultResultsDir(), threads, tracking: flags.tracking,
      trackingUri: jobTrackingUri(process.env.MLFLOW_TRACKING_URI),
    },
    slurm: {
      partition: flags.slurmPartition, time: flags.slurmTime, mem: flags.slurmMem, extra: flags.slurm,
      cpus: flags.slurmCpus === undefined ? undefined : positiveInt('--slurm-cpus', flags.slurmCpus),
    },
    outDir: flags.out,
  }));
  const { plan } = setup;
  const out = shortPath(setup.outDir);
  process.stdout.write(
    `${grid.module.name}: wrote ${out}/{${setup.files.map((f) => path.basename(f)).join(',')}}: ` +
    `${plan.cells.size} cells to run (${plan.done} of ${plan.selected} finished) in ${plan.groups.length} array job${plan.groups.length === 1 ? '' : 's'}, then the tables\n` +
    `submit with: bash ${out}/submit.sh   (logs in ${out}/logs/)\n`,
  );
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
    .option('--tables-only', 'run no cell: write the rows, env.json and tables from the stored cells (exit 1 when a selected cell has no result)')
    .option('--emit <scheduler>', `write a batch setup that runs the grid on a cluster instead of running it here (${SCHEDULERS.join('|')}); see docs/slurm.md`)
    .option('--out <dir>', 'with --emit: where the setup goes (default: out/slurm/<experiment>)')
    .option('--slurm-partition <name>', 'with --emit slurm: sbatch --partition')
    .option('--slurm-time <limit>', 'with --emit slurm: time limit per cell, e.g. 2:00:00 (sbatch --time)')
    .option('--slurm-cpus <n>', 'with --emit slurm: CPUs per cell, also its onnxruntime threads unless --threads (default 4)')
    .option('--slurm-mem <size>', 'with --emit slurm: memory per cell, e.g. 8G (sbatch --mem)')
    .option('--slurm <key=value>', 'with --emit slurm: any other sbatch option, e.g. account=proj, qos=long, exclusive (repeatable)', collect, [] as string[])
    .action(async (name: string, flags: ExpFlags, cmd: Command) => {
      checkModes(cmd, flags);
      const jobs = positiveInt('--jobs', flags.jobs);
      const threads = flags.threads === undefined ? undefined : positiveInt('--threads', flags.threads);
      const gridOpts = { name, preset: flags.preset, only: flags.only, set: flags.set, dataDir: flags.data };
      if (flags.emit !== undefined) {
        await emitSetup(await asUsage(() => resolveGrid(gridOpts)), flags, threads);
        return;
      }
      if (flags.tablesOnly) {
        await tablesOnly(await asUsage(() => resolveGrid(gridOpts)), path.resolve(flags.results ?? defaultResultsDir()));
        return;
      }
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
