import { fork } from 'node:child_process';
import * as path from 'node:path';

test('a worker whose parent goes away (IPC closed) exits with 130 instead of computing on', async () => {
  const child = fork(path.join(__dirname, 'worker.ts'), [], {
    execArgv: ['--require', require.resolve('tsx/cjs')],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  await new Promise((resolve) => child.once('spawn', resolve));
  // No wait for the worker to load: its modules load synchronously, so it reads the closed channel only after
  // registering its handlers.
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.disconnect();
  await expect(exited).resolves.toBe(130);
}, 60_000);
