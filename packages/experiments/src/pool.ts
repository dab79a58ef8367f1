/**
 * The worker pool: runs a grid's unfinished cells, at most `jobs` at a time, each once its dependencies are
 * finished, taking the first ready cell in grid order (cheapest first). A failed cell fails its dependents;
 * the rest of the grid goes on.
 */
import { kindOfKey, type Cell } from './cells';

export type CellEvent =
  | { type: 'start'; cell: Cell }
  | { type: 'progress'; cell: Cell; info: string }
  | { type: 'done'; cell: Cell; seconds: number }
  | { type: 'failed'; cell: Cell; seconds: number; error: string };

export interface PoolOptions {
  jobs: number;
  /** Finished before this run (their dependents may start at once). */
  isDone: (cell: Pick<Cell, 'key' | 'kind'>) => boolean;
  /** Runs one cell; resolves when its result is stored. */
  run: (cell: Cell, onProgress: (info: string) => void) => Promise<void>;
  /** Called after a cell finishes and before its dependents start (e.g. to log it to MLflow). */
  afterDone?: (cell: Cell, seconds: number) => Promise<void>;
  onEvent?: (event: CellEvent) => void;
}

export interface PoolReport {
  ran: string[];
  failed: { key: string; error: string }[];
  skipped: string[];
}

export async function runPool(cells: readonly Cell[], options: PoolOptions): Promise<PoolReport> {
  const jobs = Math.max(1, Math.floor(options.jobs));
  const state = new Map<string, 'done' | 'failed' | 'running' | 'pending'>();
  for (const cell of cells) state.set(cell.key, options.isDone(cell) ? 'done' : 'pending');
  const report: PoolReport = { ran: [], failed: [], skipped: cells.filter((c) => state.get(c.key) === 'done').map((c) => c.key) };
  const emit = options.onEvent ?? (() => {});
  const running = new Set<Promise<void>>();

  // A dependency outside this selection counts if it finished earlier.
  const depState = (dep: string) => state.get(dep) ?? (options.isDone({ key: dep, kind: kindOfKey(dep) }) ? 'done' : 'missing');

  const launch = (cell: Cell) => {
    state.set(cell.key, 'running');
    emit({ type: 'start', cell });
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    const task = (async () => {
      try {
        await options.run(cell, (info) => emit({ type: 'progress', cell, info }));
        await options.afterDone?.(cell, seconds());
        state.set(cell.key, 'done');
        report.ran.push(cell.key);
        emit({ type: 'done', cell, seconds: seconds() });
      } catch (err) {
        state.set(cell.key, 'failed');
        const error = err instanceof Error ? err.message : String(err);
        report.failed.push({ key: cell.key, error });
        emit({ type: 'failed', cell, seconds: seconds(), error });
      }
    })();
    running.add(task);
    void task.finally(() => running.delete(task));
  };

  for (;;) {
    let progressed = true;
    while (progressed && running.size < jobs) {
      progressed = false;
      for (const cell of cells) {
        if (state.get(cell.key) !== 'pending') continue;
        const deps = cell.deps.map(depState);
        if (deps.some((s) => s === 'failed' || s === 'missing')) {
          const bad = cell.deps.filter((_d, i) => deps[i] === 'failed' || deps[i] === 'missing');
          state.set(cell.key, 'failed');
          const error = `dependency ${bad.join(', ')} ${deps.includes('failed') ? 'failed' : 'is not in this grid and not finished'}`;
          report.failed.push({ key: cell.key, error });
          emit({ type: 'failed', cell, seconds: 0, error });
          progressed = true;
          continue;
        }
        if (deps.every((s) => s === 'done')) {
          launch(cell);
          progressed = true;
          break;
        }
      }
    }
    if (running.size === 0) break;
    await Promise.race(running);
  }
  return report;
}
