/** The headline grid: seeds x methods x bits, cells shared with baselines at the default seed, paired gains and claims, a tiny real run. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_SEED, resolveRequest } from '@harmoq/quant';
import { resolveGrid, runExperiment } from '../run';
import { CellStore } from '../store';
import { buildTables } from '../tables/build';
import { decimalsFor } from '../tables/plain';
import { tinyGrid } from '../testing/tiny-grid';
import { budgetOf, headlineRows, spread, type HeadlineEntry } from './harmoq';

const tiny = tinyGrid('harmoq-head-');
afterAll(() => tiny.cleanup());
const quiet = { log: () => {}, progressStream: { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream, tracker: null };
const BASE = ['scales=2', 'datasets=Set5', 'quant.calibration.count=4', 'quant.calibration.heldOutCount=0'];
const grid = (set: string[], only: string[] = []) => resolveGrid({ name: 'harmoq', set: [...BASE, ...set], only, dataDir: tiny.dataDir });

describe('harmoq (headline) grid', () => {
  test('one calibration per seed, method and bits; the seed draws the patches; the default seed is the baselines cell', () => {
    const g = grid(['bits=W4A4,W2A2', `seeds=${DEFAULT_SEED},7`]);
    const cals = g.cells.filter((c) => c.kind === 'calibrate');
    expect(cals).toHaveLength(2 * 2 * 2);
    expect(new Set(cals.map((c) => c.key)).size).toBe(cals.length);
    // The target's bits (W2A2) come first, whatever the configured order.
    expect(cals[0].label).toBe(`calibrate x2 2dquant W2A2 seed ${DEFAULT_SEED}`);
    const seeds = cals.map((c) => (c.config.kind === 'calibrate' ? c.config.request.seed : null));
    expect(new Set(seeds)).toEqual(new Set([DEFAULT_SEED, 7]));
    expect(cals.every((c) => c.config.kind === 'calibrate' && String(c.config.request.seed) === c.axes.seed)).toBe(true);
    const evals = g.cells.filter((c) => c.kind === 'eval');
    expect(evals).toHaveLength(cals.length);
    expect(evals.every((e) => e.deps.length === 1 && cals.find((c) => c.key === e.deps[0])!.axes.seed === e.axes.seed)).toBe(true);
    const base = resolveGrid({ name: 'baselines', dataDir: tiny.dataDir, set: [...BASE, 'fp=false', 'methods=2dquant,harmoq', 'bits=W4A4,W2A2'] });
    const atDefault = g.cells.filter((c) => c.axes.seed === String(DEFAULT_SEED)).map((c) => c.key).sort();
    expect(atDefault).toEqual(base.cells.map((c) => c.key).sort());
    const only = grid(['bits=W2A2', 'seeds=1,2'], ['seed=2', 'method=harmoq']);
    expect(only.selected.map((c) => c.label)).toEqual(['calibrate x2 harmoq W2A2 seed 2', 'eval Set5 x2 harmoq W2A2 2']);
  });

  test('bad settings name the value', () => {
    expect(() => grid(['seeds=1,1'])).toThrow(/seeds must be distinct/);
    expect(() => grid(['challenger=2dquant'])).toThrow(/baseline and challenger must be different methods/);
    expect(() => grid(['baseline=nosuch'])).toThrow(/baseline/);
    expect(() => grid(['target.dataset=Urban'])).toThrow(/target\.dataset/);
    expect(() => grid(['target.margin=1'])).toThrow(/unknown --set key 'target\.margin'.*target\.psnr_y/);
  });
});

describe('budgets', () => {
  test('gradient steps x batch x crop from the request; harmoq counts them only with its distillation on', () => {
    const of = (method: string, set: string[] = []) => budgetOf(resolveRequest({ method, wbits: 2, abits: 2, preset: 'quick', set }));
    expect(of('2dquant')).toEqual({ method: '2dquant', gradientSteps: 150, batch: 4, crop: 16, patches: 32, patchSize: 48, heldOut: 8 });
    expect(of('harmoq', ['dqc=false'])).toMatchObject({ gradientSteps: 0, batch: null, crop: null });
    expect(of('harmoq', ['dqc=true'])).toMatchObject({ gradientSteps: 150, batch: 4, crop: 16 });
    expect(of('dobi')).toMatchObject({ gradientSteps: 0, batch: null, crop: null });
  });
});

describe('headline rows', () => {
  const cfg = { baseline: 'a', challenger: 'b', bits: ['W2A2', 'W4A4'], seeds: [1, 2, 3], target: { bits: 'W2A2', dataset: 'Set5', psnr_y: 0.46 } };
  const e = (method: string, seed: number, psnr: number | null, over: Partial<HeadlineEntry> = {}): HeadlineEntry => ({
    scale: 4, bits: 'W2A2', seed, method, dataset: 'Set5', cell: `eval-${method}-${seed}`, status: psnr === null ? 'missing' : 'done',
    psnr_y: psnr, ssim_y: psnr === null ? null : psnr / 100, seconds: null, ...over,
  });

  test('spread is the mean and the sample standard deviation', () => {
    const s = spread([1, 2, 3, 6])!;
    expect(s.mean).toBe(3);
    expect(s.std).toBeCloseTo(Math.sqrt(14 / 3), 12);
    expect([s.min, s.max]).toEqual([1, 6]);
    expect(spread([5])!.std).toBe(0);
    expect(spread([])).toBeNull();
  });

  test('gains pair the same seed; the target claim is met only with every seed stored', () => {
    const entries = [
      e('a', 1, 30), e('b', 1, 30.5), e('a', 2, 31), e('b', 2, 31.7), e('a', 3, 29), e('b', 3, null),
      e('a', 1, null, { dataset: null, seconds: 100, status: 'done' }), e('b', 1, null, { dataset: null, seconds: 10, status: 'done' }),
      e('a', 1, 28, { bits: 'W4A4' }), e('b', 1, 27.9, { bits: 'W4A4' }), e('a', 1, 25, { dataset: 'Set14' }), e('b', 1, 26, { dataset: 'Set14' }),
    ];
    const rows = headlineRows(entries, cfg);
    expect(rows.map((r) => `${r.bits} ${r.dataset}`)).toEqual(['W2A2 Set5', 'W2A2 Set14', 'W4A4 Set5']);
    const [target, set14, w4] = rows;
    expect(target.gain.seeds).toEqual([1, 2]);
    expect(target.gain.psnr_y!.mean).toBeCloseTo(0.6, 12);
    expect(target.gain.ssim_y!.mean).toBeCloseTo(0.006, 12);
    expect(target.baseline.seeds).toEqual([1, 2, 3]);
    expect(target.baseline.psnr_y!.mean).toBeCloseTo(30, 12);
    expect(target.baseline.calibration_seconds).toBe(100);
    expect(target.challenger.calibration_seconds).toBe(10);
    expect([target.claim, target.required, target.met]).toEqual(['target', 0.46, null]);
    expect(set14.claim).toBeNull();
    expect([w4.claim, w4.required, w4.met]).toEqual(['no-loss', 0, null]);

    const all = headlineRows([...entries.filter((x) => !(x.method === 'b' && x.seed === 3)), e('b', 3, 29.1)], cfg);
    expect(all[0].met).toBe(false); // gains 0.5, 0.7, 0.1: mean 0.433 < 0.46
    const better = headlineRows([...entries.filter((x) => !(x.method === 'b' && x.seed === 3)), e('b', 3, 29.3)], cfg);
    expect(better[0].gain.psnr_y!.mean).toBeCloseTo(0.5, 12);
    expect(better[0].met).toBe(true);
  });
});

describe('a tiny real run', () => {
  // Two cheap methods stand in for the pair; the grid, the pairing and the tables are the same code.
  const SET = ['bits=W4A4', 'seeds=1,2', 'baseline=minmax', 'challenger=dobi', 'quant.dobi.steps=20', 'target.bits=W4A4'];

  test('rows from the stored cells; `harmoq tables` writes the per-scale and claims tables and rebuilds the same bytes', async () => {
    const report = await runExperiment({ name: 'harmoq', set: [...BASE, ...SET], dataDir: tiny.dataDir, resultsDir: tiny.resultsDir, ...quiet });
    expect(report.failed).toEqual([]);
    expect(report.ran).toHaveLength(8);
    const store = new CellStore(tiny.resultsDir);
    const evals = grid(SET).cells.filter((c) => c.kind === 'eval');
    const psnr = (method: string, seed: string) => store.readEval(evals.find((c) => c.axes.method === method && c.axes.seed === seed)!)!.psnr_y;
    // Different seeds draw different calibration patches, so MinMax's activation ranges differ.
    expect(psnr('minmax', '1')).not.toBe(psnr('minmax', '2'));
    const dir = path.join(tiny.resultsDir, 'harmoq');
    const file = JSON.parse(fs.readFileSync(path.join(dir, 'harmoq.json'), 'utf8'));
    expect(file.rows).toHaveLength(1);
    const gains = ['1', '2'].map((s) => psnr('dobi', s) - psnr('minmax', s));
    expect(file.rows[0].gain.psnr_y.mean).toBeCloseTo((gains[0] + gains[1]) / 2, 10);
    expect(file.rows[0].met).toBe(file.rows[0].gain.psnr_y.mean >= 0.46);
    expect(file.budgets).toEqual([{ scale: 2, bits: 'W4A4', methods: [
      { method: 'minmax', gradientSteps: 0, batch: null, crop: null, patches: 4, patchSize: 48, heldOut: 0 },
      { method: 'dobi', gradientSteps: 0, batch: null, crop: null, patches: 4, patchSize: 48, heldOut: 0 },
    ] }]);
    expect(fs.readFileSync(path.join(dir, 'harmoq.csv'), 'utf8').split('\n')[0]).toMatch(/^scale,bits,dataset,minmax_psnr_y_mean,minmax_psnr_y_std,/);

    const files = fs.readdirSync(path.join(dir, 'tables')).sort();
    expect(files).toEqual(['harmoq-claims.csv', 'harmoq-claims.md', 'harmoq-claims.tex', 'harmoq-x2.csv', 'harmoq-x2.md', 'harmoq-x2.tex', 'tables.tex']);
    const tex = fs.readFileSync(path.join(dir, 'tables/harmoq-x2.tex'), 'utf8');
    const mean = (m: string) => (psnr(m, '1') + psnr(m, '2')) / 2;
    const winner = mean('dobi') > mean('minmax') ? 'dobi' : 'minmax';
    // As many decimals as the gains need to show (decimalsFor), the same in every PSNR cell of the table.
    const digits = decimalsFor(gains, 2, 4);
    expect(tex).toContain(`\\textbf{${mean(winner).toFixed(digits)} $\\pm$ `);
    const claims = fs.readFileSync(path.join(dir, 'tables/harmoq-claims.md'), 'utf8');
    expect(claims).toContain(`| x2 | W4A4 | Set5 | target | +0.46 |`);
    expect(claims).toContain(`| 2/2 | ${file.rows[0].met ? 'yes' : 'no'} |`);

    const before = new Map(files.map((f) => [f, fs.readFileSync(path.join(dir, 'tables', f))]));
    const [built] = await buildTables({ resultsDir: tiny.resultsDir, only: 'harmoq' });
    expect(built.origin).toBe(path.join('harmoq', 'harmoq.json'));
    for (const [f, bytes] of before) expect(fs.readFileSync(path.join(dir, 'tables', f)).equals(bytes)).toBe(true);
  }, 180_000);
});
