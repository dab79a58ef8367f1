/**
 * A worker process for `--jobs N`: receives one cell over IPC, runs it with executeCell and reports back.
 * Processes rather than in-process concurrency because calibration spends much of its time in JavaScript
 * (histograms, tfjs gradients) that one event loop would serialize, and tfjs keeps global state per process.
 */
import type { Cell } from './cells';
import { executeCell } from './execute';
import { CellStore } from './store';

export interface WorkerRequest {
  cell: Cell;
  resultsDir: string;
  threads: number;
}

export type WorkerMessage = { type: 'progress'; info: string } | { type: 'done' } | { type: 'error'; message: string };

// A parent killed without its workers (kill PID, a scheduler's timeout) closes the IPC channel: stop with it, like a
// killed cell, rather than compute on unseen: its running.lock names a dead pid, so the next run takes the cell over.
process.on('disconnect', () => process.exit(130));

process.once('message', (request: WorkerRequest) => {
  const send = (m: WorkerMessage, exitCode?: number) =>
    process.send!(m, undefined, {}, () => {
      if (exitCode !== undefined) process.exit(exitCode);
    });
  executeCell(request.cell, new CellStore(request.resultsDir), {
    threads: request.threads,
    onProgress: (info) => send({ type: 'progress', info }),
  }).then(
    () => send({ type: 'done' }, 0),
    (err: unknown) => send({ type: 'error', message: err instanceof Error ? err.message : String(err) }, 1),
  );
});
