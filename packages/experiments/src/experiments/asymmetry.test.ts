/** The asymmetry grid: its cells (one calibration, three restrictions), the index, and a tiny real run. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resolveGrid, runExperiment } from '../run';
import { CellStore } from '../store';
import { tinyGrid } from '../testing/tiny-grid';
import { asymmetryRows, lossRatio, type AsymmetryEntry } from './asymmetry';

const tiny = tinyGrid('harmoq-asym-');
afterAll(() => tiny.cleanup());
const quiet = { log: () => {}, progressStream: { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream, tracker: null };
const SMALL = ['scales=2', 'methods=minmax', 'bits=2', 'datasets=Set5', 'quant.calibration.count=4', 'quant.calibration.heldOutCount=0'];
const grid = (set: string[] = SMALL, only: string[] = []) => resolveGrid({ name: 'asymmetry', set, only, dataDir: tiny.dataDir });

describe('asymmetry index', () => {
  const floor = { psnr: 0.05, ssim: 0.0005 };
  const fp = { psnr_y: 30, ssim_y: 0.9 };
  const entry = (setting: AsymmetryEntry['setting'], psnr: number | null, ssim: number | null): AsymmetryEntry => ({
    scale: 4, dataset: 'Set5', method: setting === 'fp' ? 'fp' : 'minmax', bits: setting === 'fp' ? null : 4, setting,
    cell: `eval-${setting}`, status: psnr === null ? 'missing' : 'done', psnr_y: psnr, ssim_y: ssim,
  });

  test('ratio of relative losses; under the floor, a gain or a missing value is undefined', () => {
    expect(lossRatio(fp, { psnr: 1.5, ssim: 0.045 }, floor)).toBeCloseTo((0.045 / 0.9) / (1.5 / 30), 12);
    expect(lossRatio(fp, { psnr: 0.01, ssim: 0.045 }, floor)).toBeNull();
    expect(lossRatio(fp, { psnr: 1, ssim: 0.0001 }, floor)).toBeNull();
    expect(lossRatio(fp, { psnr: -1, ssim: -0.01 }, { psnr: 0, ssim: 0 })).toBeNull();
  });

  test('index = ratio(weights) / ratio(activations), from the float entry of the same scale and set', () => {
    const rows = asymmetryRows([
      entry('fp', 30, 0.9), entry('weights', 29.5, 0.85), entry('activations', 28, 0.88), entry('both', 27, 0.8),
    ], floor, ['minmax']);
    expect(rows).toHaveLength(1);
    const [row] = rows;
    expect(row.settings.weights).toMatchObject({ psnr_drop: 0.5, ssim_drop: expect.closeTo(0.05, 12) });
    const w = (0.05 / 0.9) / (0.5 / 30), a = (0.02 / 0.9) / (2 / 30);
    expect(row.index).toBeCloseTo(w / a, 9);
    expect(row.index).toBeGreaterThan(1); // weights cost relatively more SSIM: the paper's direction
    const missing = asymmetryRows([entry('fp', 30, 0.9), entry('weights', 29.5, 0.85), entry('activations', null, null)], floor, ['minmax']);
    expect(missing[0].index).toBeNull();
    expect(missing[0].settings.activations?.psnr_drop).toBeNull();
  });
});

describe('asymmetry grid', () => {
  test('one calibration per bit width, three evals per set from it; "both" is the baselines eval cell', () => {
    const g = grid(['scales=2', 'methods=minmax,dobi', 'bits=2,8', 'datasets=Set5', 'quant.calibration.count=4']);
    const cals = g.cells.filter((c) => c.kind === 'calibrate');
    expect(cals.map((c) => c.label)).toEqual(['calibrate x2 minmax W8A8', 'calibrate x2 minmax W2A2', 'calibrate x2 dobi W8A8', 'calibrate x2 dobi W2A2']);
    const evals = g.cells.filter((c) => c.config.kind === 'eval' && c.config.quant === cals[1].key);
    expect(evals.map((c) => [c.axes.setting, c.config.kind === 'eval' && c.config.roles])).toEqual([['weights', ['weight']], ['activations', ['activation']], ['both', undefined]]);
    expect(new Set(evals.map((c) => c.key)).size).toBe(3);
    const base = resolveGrid({ name: 'baselines', set: ['scales=2', 'methods=minmax', 'bits=W2A2', 'datasets=Set5', 'quant.calibration.count=4'], dataDir: tiny.dataDir });
    expect(base.cells.map((c) => c.key)).toEqual(expect.arrayContaining([cals[1].key, evals[2].key]));
  });

  test('--only keeps the float eval every drop needs; --set is checked against the schema', () => {
    const g = grid(SMALL, ['setting=weights', 'method=minmax', 'bits=2']);
    expect(g.selected.map((c) => c.label)).toEqual(['eval Set5 x2 fp', 'calibrate x2 minmax W2A2', 'eval Set5 x2 minmax 2 weights']);
    expect(() => grid([...SMALL, 'bits=9'])).toThrow(/bits must be one of 2, 3, 4, 5, 6, 7, 8/);
    expect(() => grid([...SMALL, 'settings=weights,both,neither'])).toThrow(/settings/);
    expect(() => grid([...SMALL, 'floors.psnr=1'])).toThrow(/did you mean 'floor'/);
  });

  test('a tiny real run: the restricted evals differ from each other and from float; rows, table and figures written', async () => {
    const report = await runExperiment({ name: 'asymmetry', set: SMALL, dataDir: tiny.dataDir, resultsDir: tiny.resultsDir, ...quiet });
    expect(report.failed).toEqual([]);
    expect(report.ran).toHaveLength(5);
    const store = new CellStore(tiny.resultsDir);
    const [fp, , weights, activations, both] = grid().cells.map((c) => store.readEval(c));
    const psnr = [fp, weights, activations, both].map((r) => r!.psnr_y);
    expect(new Set(psnr).size).toBe(4);
    // The stand-in model barely moves under minmax on one image (one side alone even gains ~0.02 dB at W2A2), so
    // only that each restriction computes something of its own is asserted, not the sign of a drop.
    for (let i = 1; i < 4; i++) expect(Math.abs(psnr[i] - psnr[0])).toBeGreaterThan(1e-4);
    const file = JSON.parse(fs.readFileSync(path.join(tiny.resultsDir, 'asymmetry/asymmetry.json'), 'utf8'));
    expect(file.rows[0].settings.weights.psnr_drop).toBeCloseTo(psnr[0] - psnr[1], 10);
    expect(file.rows[0].settings.activations.ssim_drop).toBeCloseTo(fp!.ssim_y - activations!.ssim_y, 10);
    const tex = fs.readFileSync(path.join(tiny.resultsDir, 'asymmetry/tables/asymmetry-x2.tex'), 'utf8');
    expect(tex).toContain('\\toprule');
    expect(tex).toMatch(new RegExp(`^MinMax & W2A2 & ${(psnr[0] - psnr[1]).toFixed(2)} & `, 'm'));
    const figures = fs.readdirSync(path.join(tiny.resultsDir, 'asymmetry/figures')).sort();
    expect(figures).toEqual(['asymmetry-x2-minmax-psnr-Set5.png', 'asymmetry-x2-minmax-psnr-Set5.tex', 'asymmetry-x2-minmax-ssim-Set5.png', 'asymmetry-x2-minmax-ssim-Set5.tex', 'figures.tex']);
    const again = await runExperiment({ name: 'asymmetry', set: SMALL, dataDir: tiny.dataDir, resultsDir: tiny.resultsDir, ...quiet });
    expect(again.ran).toEqual([]);
  }, 120_000);
});
