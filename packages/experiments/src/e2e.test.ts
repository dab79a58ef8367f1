import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileStore, TAGS, Tracker } from '@harmoq/tracking';
import { resolveGrid, runExperiment, writeTables } from './run';
import { CellStore } from './store';
import { tinyGrid } from './testing/tiny-grid';

const tiny = tinyGrid();
afterAll(() => tiny.cleanup());
const quiet = { log: () => {}, progressStream: { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream };

function mlflowRuns(): { key: string; status: string }[] {
  const store = new FileStore(path.join(tiny.root, 'mlruns'));
  const exp = store.getExperimentByName('baselines');
  if (!exp) return [];
  return store.listRuns(exp.experimentId).map((info) => ({ key: store.readRun(info).tags[TAGS.cellKey], status: info.status }));
}

describe('a tiny real grid (x2, minmax W4A4, one Set5 image) end to end', () => {
  const opts = () => ({ name: 'baselines', set: tiny.set(), dataDir: tiny.dataDir, resultsDir: tiny.resultsDir, ...quiet });
  const tracker = () => new Tracker({ trackingUri: tiny.trackingUri });

  test('runs every cell once, stores results, logs one MLflow run per cell, writes the tables', async () => {
    const report = await runExperiment({ ...opts(), tracker: tracker() });
    const grid = resolveGrid(opts());
    expect(grid.cells.map((c) => c.label)).toEqual(['eval Set5 x2 fp', 'calibrate x2 minmax W4A4', 'eval Set5 x2 minmax W4A4']);
    expect(report.ran.sort()).toEqual(grid.cells.map((c) => c.key).sort());
    expect(report.failed).toEqual([]);
    const store = new CellStore(tiny.resultsDir);
    const [fp, cal, q] = grid.cells;
    const fpResult = store.readEval(fp)!;
    expect(fpResult.images.map((i) => i.name)).toEqual(['butterfly']);
    expect(fpResult.psnr_y).toBeGreaterThan(25);
    expect(store.readQParams(cal)!.calibration.count).toBe(4);
    const qResult = store.readEval(q)!;
    expect(qResult).toMatchObject({ method: 'minmax', wbits: 4, abits: 4, cell: q.key });
    expect(qResult.psnr_y).not.toBe(fpResult.psnr_y);
    expect(JSON.parse(fs.readFileSync(path.join(store.dir(q.key), 'config.json'), 'utf8'))).toMatchObject({ key: q.key, deps: [cal.key] });
    expect(mlflowRuns().map((r) => r.key).sort()).toEqual(grid.cells.map((c) => c.key).sort());
    expect(mlflowRuns().every((r) => r.status === 'FINISHED')).toBe(true);

    const csv = fs.readFileSync(path.join(tiny.resultsDir, 'baselines/baselines.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('scale,method,bits,Set5_psnr_y,Set5_ssim_y,calibration_seconds,calibrate_cell,Set5_cell');
    expect(csv[1]).toBe(`2,fp,FP,${fpResult.psnr_y.toFixed(4)},${fpResult.ssim_y.toFixed(4)},,,${fp.key}`);
    expect(csv[2]).toMatch(new RegExp(`^2,minmax,W4A4,${qResult.psnr_y.toFixed(4)},${qResult.ssim_y.toFixed(4)},[0-9.]+,${cal.key},${q.key}$`));
    const env = JSON.parse(fs.readFileSync(path.join(tiny.resultsDir, 'baselines/env.json'), 'utf8'));
    expect(env).toMatchObject({ node: process.version, onnxruntime: expect.stringMatching(/^\d+\.\d+/) });
  }, 150000);

  test('a rerun does no work and logs no second run', async () => {
    const report = await runExperiment({ ...opts(), tracker: tracker() });
    expect(report.ran).toEqual([]);
    expect(report.skipped).toHaveLength(3);
    expect(mlflowRuns()).toHaveLength(3);
  });

  test('after a crash, a cell folder with config.json but no result is redone, finished cells are skipped', async () => {
    const grid = resolveGrid(opts());
    const store = new CellStore(tiny.resultsDir);
    const victim = grid.cells[2];
    const before = fs.readFileSync(store.resultPath(grid.cells[0]));
    fs.rmSync(store.resultPath(victim));
    // What a kill -9 mid-write leaves: a temp file beside the result, never the result itself.
    fs.writeFileSync(path.join(store.dir(victim.key), '.metrics.json.1234.abcdef.tmp'), '{"half":');
    const report = await runExperiment({ ...opts(), tracker: tracker() });
    expect(report.ran).toEqual([victim.key]);
    expect(report.skipped.sort()).toEqual([grid.cells[0].key, grid.cells[1].key].sort());
    expect(store.readEval(victim)!.cell).toBe(victim.key);
    expect(fs.readFileSync(store.resultPath(grid.cells[0]))).toEqual(before);
    // The cell already had a FINISHED run: it is not logged twice.
    expect(mlflowRuns()).toHaveLength(3);
  }, 120000);

  test('--jobs 2 runs independent cells in worker processes with the same results', async () => {
    const grid = resolveGrid(opts());
    const store = new CellStore(tiny.resultsDir);
    const [fp, , q] = grid.cells;
    const want = [store.readEval(fp)!, store.readEval(q)!];
    fs.rmSync(store.resultPath(fp));
    fs.rmSync(store.resultPath(q));
    const report = await runExperiment({ ...opts(), tracker: null, jobs: 2 });
    expect(report.failed).toEqual([]);
    expect(report.ran.sort()).toEqual([fp.key, q.key].sort());
    const got = [store.readEval(fp)!, store.readEval(q)!];
    for (let i = 0; i < 2; i++) {
      expect(got[i].psnr_y).toBe(want[i].psnr_y);
      expect(got[i].threads).toBe(1);
    }
  }, 120000);

  test('the tables cover the whole grid and mark cells that never ran as missing', async () => {
    const grid = resolveGrid({ ...opts(), set: [...tiny.set(), 'bits=W4A4,W2A2'] });
    await writeTables(grid, tiny.resultsDir);
    const csv = fs.readFileSync(path.join(tiny.resultsDir, 'baselines/baselines.csv'), 'utf8').trim().split('\n');
    expect(csv).toHaveLength(4);
    const w2 = grid.cells.filter((c) => c.axes.bits === 'W2A2');
    expect(csv[3]).toBe(`2,minmax,W2A2,missing,missing,missing,${w2[0].key},${w2[1].key}`);
    const json = JSON.parse(fs.readFileSync(path.join(tiny.resultsDir, 'baselines/baselines.json'), 'utf8'));
    expect(json.cells).toEqual({ total: 5, done: 3, missing: 2 });
    expect(json.rows[2]).toMatchObject({ bits: 'W2A2', calibration: { status: 'missing', seconds: null }, datasets: { Set5: { status: 'missing', psnr_y: null } } });
  });
});
