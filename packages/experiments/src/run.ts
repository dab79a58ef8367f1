/**
 * `harmoq exp` and `harmoq cell` as functions: resolve a grid, run its unfinished cells (in this process with
 * --jobs 1, in worker processes otherwise), log each finished cell to MLflow, and write the tables and
 * env.json from the stored cells.
 */
import { fork, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from '@harmoq/atomic-fs';
import { dataDir as defaultDataDir, repoRoot } from '@harmoq/data';
import { defaultThreads } from '@harmoq/engine';
import { Tracker } from '@harmoq/tracking';
import type { Cell } from './cells';
import { runtimeVersions } from './code-version';
import { ExperimentError } from './errors';
import { executeCell } from './execute';
import { applySet, GRID_PRESETS, parseOnly, selectCells, type AnyExperiment, type GridPreset } from './grid';
import { runPool, type CellEvent, type PoolReport } from './pool';
import { gridProgress } from './progress';
import { experimentByName } from './registry';
import { CellStore, type ClaimOptions } from './store';
import { buildTables, TABLE_EXPERIMENTS } from './tables/build';
import { logCellRun, trackedCellKeys } from './tracking';
import type { WorkerMessage, WorkerRequest } from './worker';

export interface GridOptions {
  /** Experiment name or alias. */
  name: string;
  preset?: string;
  /** `a.b=c` overrides of the experiment's config. */
  set?: readonly string[];
  /** `axis=value[,value]` filters on the cells. */
  only?: readonly string[];
  /** Data folder (default: HARMOQ_DATA, else ../shared/data). */
  dataDir?: string;
}

export interface ResolvedGrid {
  module: AnyExperiment;
  config: Record<string, unknown>;
  /** Every cell of the grid (the tables cover these). */
  cells: Cell[];
  /** The cells `--only` selects, with their dependencies, in run order. */
  selected: Cell[];
  dataDir: string;
}

export function resolveGrid(options: GridOptions): ResolvedGrid {
  const module = experimentByName(options.name);
  const preset = options.preset ?? 'quick';
  if (!(GRID_PRESETS as readonly string[]).includes(preset)) {
    throw new ExperimentError(`unknown preset '${preset}' (choices: ${GRID_PRESETS.join(', ')})`, { value: preset, choices: GRID_PRESETS });
  }
  let config = module.schema.parse(module.defaults(preset as GridPreset));
  for (const setting of options.set ?? []) config = applySet(module.schema, config, setting);
  const dataDir = defaultDataDir(options.dataDir);
  if (!fs.existsSync(dataDir)) throw new ExperimentError(`no data folder: pass --data <dir> or set HARMOQ_DATA (looked in ${dataDir})`, { value: dataDir });
  const cells = module.cells(config, { dataDir });
  const selected = selectCells(cells, parseOnly(options.only ?? [], cells));
  return { module, config, cells, selected, dataDir };
}

export interface RunOptions extends GridOptions {
  jobs?: number;
  /** onnxruntime threads per cell (default: cores / jobs). */
  threads?: number;
  /** Results folder holding cells/ and the tables (default: <repo>/results). */
  resultsDir?: string;
  /** Where runs are logged; null: no tracking. Default: a Tracker for MLFLOW_TRACKING_URI / ./mlruns. */
  tracker?: Tracker | null;
  /** 'inline' runs cells in this process; 'process' in worker processes. Default: inline for one job. */
  executor?: 'inline' | 'process';
  /** Progress display stream (default stderr). */
  progressStream?: NodeJS.WriteStream;
  /** Lines for stdout. */
  log?: (line: string) => void;
}

const TABLES_EVERY_MS = 60000;

export interface ExperimentReport extends PoolReport {
  experiment: string;
  total: number;
  selected: number;
  files: string[];
  seconds: Record<string, number>;
}

/** Relative to the working folder when inside it, else absolute. */
function shortPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') ? rel : file;
}

export function defaultResultsDir(): string {
  return path.join(repoRoot(), 'results');
}

function gitCommit(): { sha: string | null; dirty: boolean | null } {
  const git = (args: string[]) => spawnSync('git', args, { cwd: repoRoot(), encoding: 'utf8', timeout: 5000 });
  try {
    const head = git(['rev-parse', 'HEAD']);
    if (head.status !== 0) return { sha: null, dirty: null };
    // Dirty means the code differs from the commit: results/ and the README table that `harmoq tables` refills
    // change while a grid runs and say nothing about the code that computed it.
    const status = git(['status', '--porcelain', '--untracked-files=no', '--', '.', ':(exclude)results', ':(exclude)README.md']);
    return { sha: head.stdout.trim(), dirty: status.status === 0 ? status.stdout.trim() !== '' : null };
  } catch {
    return { sha: null, dirty: null };
  }
}

/** Where the results came from: machine, cores, node, runtime versions, commit. No timestamps, so reruns match. */
export function environment(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    machine: { platform: os.platform(), release: os.release(), arch: os.arch(), cpu: cpus[0]?.model ?? 'unknown', memoryGiB: Math.round(os.totalmem() / 2 ** 30) },
    cores: defaultThreads(),
    node: process.version,
    onnxruntime: runtimeVersions()['onnxruntime-node'],
    runtimes: runtimeVersions(),
    commit: gitCommit(),
  };
}

function runInWorker(cell: Cell, resultsDir: string, threads: number, onProgress: (info: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(__dirname, 'worker.ts'), [], {
      execArgv: ['--require', require.resolve('tsx/cjs')],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-4000);
    });
    let outcome: WorkerMessage | undefined;
    child.on('message', (m: WorkerMessage) => {
      if (m.type === 'progress') onProgress(m.info);
      else outcome = m;
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (outcome?.type === 'done' && code === 0) resolve();
      else if (outcome?.type === 'error') reject(new Error(outcome.message));
      else reject(new Error(`worker for ${cell.key} exited with ${signal ?? `code ${code}`}${stderr ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}`));
    });
    child.send({ cell, resultsDir, threads } satisfies WorkerRequest);
  });
}

/** Logs a finished cell unless `tracked` says its run exists (a redone cell keeps its first run). */
async function trackCell(
  tracker: Tracker | null, tracked: Set<string>, cell: Cell, store: CellStore, experiment: string, preset: string, commit: string | null,
): Promise<void> {
  if (!tracker || tracked.has(cell.key)) return;
  try {
    await logCellRun(tracker, cell, store, { experiment, preset, commit });
    tracked.add(cell.key);
  } catch (err) {
    // The result is stored; a tracking failure must not undo it. The next run logs the cell again.
    process.stderr.write(`tracking: could not log cell ${cell.key}: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}

/** Writes the experiment's rows, env.json, and the paper tables and figures from the stored cells of the whole grid. */
export async function writeTables(grid: ResolvedGrid, resultsDir: string): Promise<string[]> {
  const outDir = path.join(resultsDir, grid.module.name);
  fs.mkdirSync(outDir, { recursive: true });
  const store = new CellStore(resultsDir);
  const files = (await grid.module.aggregate?.(grid.config, grid.cells, { store, outDir })) ?? [];
  const envFile = path.join(outDir, 'env.json');
  writeFileAtomic(envFile, JSON.stringify(environment(), null, 2) + '\n');
  // The paper tables and figures from the rows just written (`harmoq tables` rebuilds them, plus the crops).
  const name = grid.module.name;
  const report = (TABLE_EXPERIMENTS as readonly string[]).includes(name) ? await buildTables({ resultsDir, only: name, crops: null }) : [];
  return [...files, envFile, ...report.flatMap((r) => r.files)];
}

export async function runExperiment(options: RunOptions): Promise<ExperimentReport> {
  const grid = resolveGrid(options);
  const resultsDir = path.resolve(options.resultsDir ?? defaultResultsDir());
  const store = new CellStore(resultsDir);
  const jobs = Math.max(1, Math.floor(options.jobs ?? 1));
  const threads = options.threads ?? Math.max(1, Math.floor(defaultThreads() / jobs));
  const executor = options.executor ?? (jobs === 1 ? 'inline' : 'process');
  const tracker = options.tracker === undefined ? new Tracker() : options.tracker;
  const experiment = grid.module.name;
  const preset = String(grid.config.preset ?? options.preset ?? 'quick');
  const commit = gitCommit().sha;
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));

  // Cells finished earlier whose MLflow run is missing (a kill between result and run) are logged now.
  const tracked = tracker ? await trackedCellKeys(tracker, experiment) : new Set<string>();
  for (const cell of grid.selected) {
    if (store.isDone(cell)) await trackCell(tracker, tracked, cell, store, experiment, preset, commit);
  }

  const toRun = grid.selected.filter((c) => !store.isDone(c));
  log(`${experiment}: ${grid.selected.length} cells (${grid.selected.length - toRun.length} done, ${toRun.length} to run), ` +
    `${jobs} job${jobs > 1 ? 's' : ''} x ${threads} thread${threads > 1 ? 's' : ''}, results in ${resultsDir}`);
  fs.mkdirSync(store.root, { recursive: true });
  const progress = gridProgress(toRun, grid.selected.length - toRun.length, grid.selected.length, jobs, options.progressStream);
  const seconds: Record<string, number> = {};
  let tablesWritten = Date.now();
  let report: PoolReport;
  try {
    report = await runPool(grid.selected, {
      jobs,
      isDone: (cell) => store.isDone(cell),
      run: async (cell, onProgress) => {
        const ranHere = await store.withClaim(cell, async () => {
          if (store.isDone(cell)) return false;
          await (executor === 'inline' ? executeCell(cell, store, { threads, onProgress }) : runInWorker(cell, resultsDir, threads, onProgress));
          return true;
        }, { onWait: (h) => onProgress(`waiting for ${h.host}:${h.pid}, which runs it`) });
        // Another process ran it (and logged it): refresh the runs that exist so it is not logged twice.
        if (!ranHere && tracker) for (const key of await trackedCellKeys(tracker, experiment)) tracked.add(key);
      },
      afterDone: async (cell) => {
        await trackCell(tracker, tracked, cell, store, experiment, preset, commit);
        // Tables as the grid goes (at most once a minute), so a long run has a current table before it ends.
        if (Date.now() - tablesWritten > TABLES_EVERY_MS) {
          tablesWritten = Date.now();
          await writeTables(grid, resultsDir);
        }
      },
      onEvent: (event: CellEvent) => {
        if (event.type === 'done') seconds[event.cell.key] = event.seconds;
        progress.onEvent(event);
      },
    });
  } finally {
    progress.stop();
  }
  const files = await writeTables(grid, resultsDir);
  log(`${experiment}: ran ${report.ran.length}, skipped ${report.skipped.length} finished, failed ${report.failed.length}; wrote ${files.map(shortPath).join(', ')}`);
  for (const f of report.failed) log(`  failed ${f.key}: ${f.error}`);
  return { experiment, total: grid.cells.length, selected: grid.selected.length, files, seconds, ...report };
}

/** `--dry-run`: the cells in run order, with their index (for `harmoq cell`) and whether each is finished. */
export function describeGrid(grid: ResolvedGrid, resultsDir: string = defaultResultsDir()): string[] {
  const store = new CellStore(resultsDir);
  const lines = grid.selected.map((cell, i) => `${String(i).padStart(4)}  ${store.isDone(cell) ? 'done' : 'todo'}  ${cell.key}  ${cell.label}`);
  const done = grid.selected.filter((c) => store.isDone(c)).length;
  lines.push(`${grid.module.name}: ${grid.selected.length} cells selected of ${grid.cells.length}, ${done} done, ${grid.selected.length - done} to run`);
  return lines;
}

export interface CellOptions extends GridOptions {
  /** Index into the selected cells, as `--dry-run` lists them. */
  index: number;
  threads?: number;
  resultsDir?: string;
  tracker?: Tracker | null;
  /** Refuse to run unless the index names this cell (a batch setup records the keys it was emitted for). */
  expectKey?: string;
  /** How a cell another process is running is waited for. */
  claim?: ClaimOptions;
}

/** Runs exactly one cell of a grid (for Slurm array tasks); returns whether it ran or was already finished. */
export async function runOneCell(options: CellOptions): Promise<{ cell: Cell; ran: boolean; seconds: number }> {
  const grid = resolveGrid(options);
  const { index } = options;
  if (!Number.isInteger(index) || index < 0 || index >= grid.selected.length) {
    throw new ExperimentError(`cell index ${index} is out of range (0..${grid.selected.length - 1} for ${grid.module.name})`, { value: String(index) });
  }
  const cell = grid.selected[index];
  if (options.expectKey !== undefined && options.expectKey !== cell.key) {
    throw new ExperimentError(
      `cell index ${index} of ${grid.module.name} is now ${cell.key} (${cell.label}), not ${options.expectKey}: ` +
        'the code, data or options changed since the batch setup was written; emit it again',
      { value: options.expectKey, choices: [cell.key] },
    );
  }
  const resultsDir = path.resolve(options.resultsDir ?? defaultResultsDir());
  const store = new CellStore(resultsDir);
  const tracker = options.tracker === undefined ? new Tracker() : options.tracker;
  const preset = String(grid.config.preset);
  const started = process.hrtime.bigint();
  // The claim covers the tracking too (the runs are listed under it), so two tasks given the same cell
  // neither compute it twice nor log it twice.
  const ran = await store.withClaim(cell, async () => {
    const todo = !store.isDone(cell);
    if (todo) await executeCell(cell, store, { threads: options.threads ?? defaultThreads() });
    const tracked = tracker ? await trackedCellKeys(tracker, grid.module.name) : new Set<string>();
    await trackCell(tracker, tracked, cell, store, grid.module.name, preset, gitCommit().sha);
    return todo;
  }, options.claim);
  return { cell, ran, seconds: ran ? Number(process.hrtime.bigint() - started) / 1e9 : 0 };
}
