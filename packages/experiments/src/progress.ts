/**
 * The grid's progress display on stderr: cells done / running / failed and the time left. A cli-progress bar
 * when stderr is a terminal, otherwise one plain line per event (logs, CI, `> file 2>&1`).
 */
import { SingleBar } from 'cli-progress';
import type { Cell } from './cells';
import type { CellEvent } from './pool';

/**
 * Cells of one class cost about the same per unit of `work` (an eval's output pixels, one calibration):
 * float evals, quantized evals (slower: fake-quant nodes), and calibrations per method.
 */
export function costClass(cell: Cell): string {
  if (cell.kind === 'eval') return `eval|${cell.axes.method === 'fp' ? 'fp' : 'quant'}`;
  return `calibrate|${cell.axes.method ?? ''}`;
}

/** Seconds per unit of work of finished cells, by cost class. */
export type Rates = ReadonlyMap<string, number[]>;

/**
 * Seconds left for `remaining` cells on `jobs` workers: each cell's work times the mean rate of its cost class,
 * else of its kind; undefined until some cell of each kind left has finished.
 */
export function estimateSeconds(remaining: readonly Cell[], rates: Rates, jobs: number): number | undefined {
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const byKind = new Map<string, number[]>();
  for (const [cls, xs] of rates) {
    const kind = cls.split('|')[0];
    byKind.set(kind, [...(byKind.get(kind) ?? []), ...xs]);
  }
  let total = 0;
  for (const cell of remaining) {
    const same = rates.get(costClass(cell)) ?? byKind.get(cell.kind);
    if (!same?.length) return undefined;
    total += mean(same) * cell.work;
  }
  return total / Math.max(1, jobs);
}

export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export interface GridProgress {
  onEvent(event: CellEvent): void;
  stop(): void;
}

export function gridProgress(
  toRun: readonly Cell[], alreadyDone: number, total: number, jobs: number,
  stream: NodeJS.WriteStream = process.stderr,
): GridProgress {
  const pending = new Map(toRun.map((c) => [c.key, c]));
  const running = new Map<string, { cell: Cell; info: string }>();
  const rates = new Map<string, number[]>();
  let done = alreadyDone;
  let failed = 0;
  const eta = () => formatDuration(estimateSeconds([...pending.values(), ...[...running.values()].map((r) => r.cell)], rates, jobs));
  const status = () => `${done}/${total} done | ${running.size} running | ${failed} failed | ETA ${eta()}`;
  const tty = Boolean(stream.isTTY);
  const bar = tty
    ? new SingleBar({ stream, format: 'cells [{bar}] {status} | {info}', hideCursor: true, clearOnComplete: false, barsize: 24 })
    : undefined;
  bar?.start(total, done, { status: status(), info: '' });
  const line = (text: string) => {
    if (!tty) stream.write(`${text}\n`);
  };
  const runningInfo = () => [...running.values()].map((r) => `${r.cell.label}${r.info ? ` ${r.info}` : ''}`).join('; ');
  const refresh = () => bar?.update(done, { status: status(), info: runningInfo() });
  let lastPlainProgress = 0;
  return {
    onEvent(event) {
      const { cell } = event;
      switch (event.type) {
        case 'start':
          pending.delete(cell.key);
          running.set(cell.key, { cell, info: '' });
          line(`start  ${cell.label} (${cell.key}) | ${status()}`);
          break;
        case 'progress': {
          const r = running.get(cell.key);
          if (r) r.info = event.info;
          // Plain output: a progress line at most every 30 s, so a log stays readable.
          const now = Date.now();
          if (!tty && now - lastPlainProgress > 30000) {
            lastPlainProgress = now;
            line(`       ${cell.label}: ${event.info}`);
          }
          break;
        }
        case 'done':
          running.delete(cell.key);
          done++;
          rates.set(costClass(cell), [...(rates.get(costClass(cell)) ?? []), event.seconds / cell.work]);
          line(`done   ${cell.label} in ${event.seconds.toFixed(1)} s | ${status()}`);
          break;
        case 'failed':
          running.delete(cell.key);
          pending.delete(cell.key);
          failed++;
          line(`FAILED ${cell.label} (${cell.key}): ${event.error} | ${status()}`);
          if (tty) stream.write(`\nFAILED ${cell.label}: ${event.error}\n`);
          break;
      }
      refresh();
    },
    stop() {
      bar?.stop();
    },
  };
}
