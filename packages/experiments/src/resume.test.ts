import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readQParams } from '@harmoq/quant';
import { resolveGrid, runExperiment } from './run';
import { CellStore, RESULT_FILES } from './store';
import { tinyGrid } from './testing/tiny-grid';

const tiny = tinyGrid('harmoq-kill-');
afterAll(() => tiny.cleanup());

function finishedKeys(store: CellStore): string[] {
  if (!fs.existsSync(store.root)) return [];
  return fs.readdirSync(store.root).filter((key) => Object.values(RESULT_FILES).some((f) => fs.existsSync(path.join(store.root, key, f))));
}

test('kill -9 mid-grid: no finished cell is lost, no result is half-written, the rerun does only the rest', async () => {
  const opts = { name: 'baselines', set: tiny.set('W3A3'), dataDir: tiny.dataDir, resultsDir: tiny.resultsDir };
  const grid = resolveGrid(opts);
  const store = new CellStore(tiny.resultsDir);
  const child = spawn(process.execPath, [
    '--require', require.resolve('tsx/cjs'), path.join(__dirname, 'testing/run-grid.ts'), tiny.dataDir, tiny.resultsDir, 'W3A3',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  // Kill it as soon as the first cell is stored, while the next one is running.
  const deadline = Date.now() + 90000;
  while (finishedKeys(store).length === 0 && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGKILL');
  await exited;
  const atKill = finishedKeys(store);
  expect(stderr).not.toMatch(/Error|FAILED/);
  expect(atKill.length).toBeGreaterThanOrEqual(1);
  expect(atKill.length).toBeLessThan(grid.cells.length);

  // Every result that exists is whole; a cell folder without a result holds config.json at most (and maybe temp files).
  for (const key of fs.readdirSync(store.root)) {
    const cell = grid.cells.find((c) => c.key === key)!;
    expect(cell).toBeDefined();
    const result = store.resultPath(cell);
    if (fs.existsSync(result)) {
      if (cell.kind === 'calibrate') expect(readQParams(result).method).toBe('minmax');
      else expect(JSON.parse(fs.readFileSync(result, 'utf8')).cell).toBe(key);
    }
    const config = path.join(store.dir(key), 'config.json');
    if (fs.existsSync(config)) expect(JSON.parse(fs.readFileSync(config, 'utf8')).key).toBe(key);
  }

  const report = await runExperiment({ ...opts, tracker: null, log: () => {}, progressStream: { write: () => true } as unknown as NodeJS.WriteStream });
  expect(report.failed).toEqual([]);
  expect(report.skipped.sort()).toEqual([...atKill].sort());
  expect(report.ran.length + report.skipped.length).toBe(grid.cells.length);
  expect(finishedKeys(store).sort()).toEqual(grid.cells.map((c) => c.key).sort());
}, 150000);
