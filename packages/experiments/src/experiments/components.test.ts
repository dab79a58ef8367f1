/** The component ablation grid: one calibration per variant, cells shared with baselines, deltas, and a tiny real run. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resolveGrid, runExperiment } from '../run';
import { CellStore } from '../store';
import { buildTables } from '../tables/build';
import { decimalsFor } from '../tables/plain';
import { tinyGrid } from '../testing/tiny-grid';
import { componentRows, VARIANT_NAMES, type ComponentEntry, type ComponentVariant } from './components';

const tiny = tinyGrid('harmoq-comp-');
afterAll(() => tiny.cleanup());
const quiet = { log: () => {}, progressStream: { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream, tracker: null };
const BASE = ['scales=2', 'datasets=Set5', 'quant.calibration.count=4', 'quant.calibration.heldOutCount=0'];
const grid = (set: string[], only: string[] = []) => resolveGrid({ name: 'components', set: [...BASE, ...set], only, dataDir: tiny.dataDir });

describe('components grid', () => {
  test('one calibration per variant and bits, with its stages; 2dquant, dobi and all three are the baselines cells', () => {
    const g = grid(['bits=W4A4,W2A2']);
    const cals = g.cells.filter((c) => c.kind === 'calibrate');
    expect(cals).toHaveLength(VARIANT_NAMES.length * 2);
    expect(new Set(cals.map((c) => c.key)).size).toBe(cals.length);
    const request = (variant: string, bits: string) => {
      const cal = cals.find((c) => c.axes.variant === variant && c.axes.bits === bits)!;
      return cal.config.kind === 'calibrate' ? cal.config.request : undefined;
    };
    expect(request('hso+src', 'W2A2')).toMatchObject({ method: 'harmoq', wbits: 2, abits: 2, options: { hso: true, abr: false, src: true } });
    expect(request('hso', 'W4A4')?.options).toMatchObject({ hso: true, abr: false, src: false });
    expect(request('abr+src', 'W4A4')?.options).toMatchObject({ hso: false, abr: true, src: true });
    expect(request('dobi', 'W4A4')).toMatchObject({ method: 'dobi', options: { search: 'two-sided', steps: 100 } });
    expect(cals.map((c) => c.label)).toContain('calibrate x2 harmoq W2A2 hso+abr');
    // Every eval carries its variant for --only; one eval per calibration and set.
    const evals = g.cells.filter((c) => c.kind === 'eval');
    expect(evals.map((c) => c.axes.variant).sort()).toEqual([...VARIANT_NAMES, ...VARIANT_NAMES].sort());
    const base = resolveGrid({
      name: 'baselines', dataDir: tiny.dataDir,
      set: ['scales=2', 'datasets=Set5', 'quant.calibration.count=4', 'quant.calibration.heldOutCount=0', 'fp=false', 'methods=2dquant,dobi,harmoq', 'bits=W4A4,W2A2'],
    });
    const whole = g.cells.filter((c) => ['2dquant', 'dobi', 'hso+abr+src'].includes(c.axes.variant)).map((c) => c.key).sort();
    expect(whole).toEqual(base.cells.map((c) => c.key).sort());
  });

  test('quant.harmoq.steps reaches DOBI too; the stage switches belong to the variants; --only and --set are checked', () => {
    const g = grid(['bits=W3A3', 'variants=dobi,hso', 'quant.harmoq.steps=50']);
    const options = g.cells.filter((c) => c.kind === 'calibrate').map((c) => (c.config.kind === 'calibrate' ? c.config.request.options.steps : null));
    expect(options).toEqual([50, 50]);
    expect(() => grid(['quant.harmoq.src=false'])).toThrow(/quant\.harmoq\.src: the components grid sets the HarmoQ stages per variant/);
    expect(() => grid(['quant.dobi.steps=5'])).toThrow(/quant\.dobi\.steps/);
    expect(() => grid(['variants=dobi,hso+src+abr'])).toThrow(/variants\.1/);
    expect(() => grid(['bits=W9A9'])).toThrow(/bits\.0/);
    const only = grid(['bits=W4A4,W2A2'], ['variant=hso', 'bits=W2A2']);
    expect(only.selected.map((c) => c.label)).toEqual(['calibrate x2 harmoq W2A2 hso', 'eval Set5 x2 harmoq W2A2 hso']);
    expect(() => grid([], ['variant=all'])).toThrow(/--only variant='all' is not in this grid/);
  });
});

describe('component rows', () => {
  const entry = (variant: ComponentVariant, psnr: number | null, ssim: number | null, dataset: string | null = 'Set5'): ComponentEntry => ({
    scale: 4, bits: 'W2A2', variant, dataset, cell: `eval-${variant}-${dataset}`, status: psnr === null ? 'missing' : 'done',
    psnr_y: psnr, ssim_y: ssim, seconds: null,
  });

  test('deltas against the 2dquant and dobi rows of the same scale, bits and set; missing stays null', () => {
    const rows = componentRows([
      entry('hso', 27.5, 0.81), entry('2dquant', 27.0, 0.8), entry('dobi', 26.0, 0.78), entry('hso', 24.0, 0.6, 'Set14'),
      { ...entry('hso', null, null, null), seconds: 12.5, status: 'done' },
    ], ['W2A2']);
    expect(rows.map((r) => r.variant)).toEqual(['2dquant', 'dobi', 'hso']);
    const hso = rows[2];
    expect(hso.stages).toEqual(['hso']);
    expect(hso.calibration).toEqual({ cell: 'eval-hso-null', status: 'done', seconds: 12.5 });
    expect(hso.datasets.Set5.vs_2dquant!.psnr_y).toBeCloseTo(0.5, 12);
    expect(hso.datasets.Set5.vs_dobi!.ssim_y).toBeCloseTo(0.03, 12);
    expect(hso.datasets.Set14.vs_2dquant).toBeNull();
    expect(Object.keys(hso.datasets)).toEqual(['Set5', 'Set14']);
    expect(rows[0].stages).toBeNull();
    expect(rows[1].stages).toEqual([]);
  });
});

describe('a tiny real run', () => {
  // 2DQuant without its distillation (50 s even at 2 iterations) but with fewer DOBI candidates: a row of its own, cheap.
  const SET = ['bits=W4A4', 'variants=dobi,hso,2dquant', 'quant.2dquant.iterations=0', 'quant.2dquant.steps=20'];

  test('rows, deltas, incremental and leave-one-out tables; `harmoq tables` rebuilds the same bytes', async () => {
    const report = await runExperiment({ name: 'components', set: [...BASE, ...SET], dataDir: tiny.dataDir, resultsDir: tiny.resultsDir, ...quiet });
    expect(report.failed).toEqual([]);
    expect(report.ran).toHaveLength(6);
    const store = new CellStore(tiny.resultsDir);
    const psnr = Object.fromEntries(grid(SET).cells.filter((c) => c.kind === 'eval').map((c) => [c.axes.variant, store.readEval(c)!.psnr_y]));
    // HSO moves the float weights, so its quantized model differs from DOBI's (the same bounds search without it).
    expect(Math.abs(psnr.hso - psnr.dobi)).toBeGreaterThan(1e-4);
    expect(Math.abs(psnr['2dquant'] - psnr.dobi)).toBeGreaterThan(1e-6);
    const dir = path.join(tiny.resultsDir, 'components');
    const file = JSON.parse(fs.readFileSync(path.join(dir, 'components.json'), 'utf8'));
    const hso = file.rows.find((r: { variant: string }) => r.variant === 'hso');
    expect(hso.datasets.Set5.vs_2dquant.psnr_y).toBeCloseTo(psnr.hso - psnr['2dquant'], 10);
    expect(hso.datasets.Set5.vs_dobi.psnr_y).toBeCloseTo(psnr.hso - psnr.dobi, 10);
    expect(hso.calibration.seconds).toBeGreaterThan(0);
    const csv = fs.readFileSync(path.join(dir, 'components.csv'), 'utf8').split('\n');
    expect(csv[0]).toMatch(/^scale,bits,variant,method,stages,Set5_psnr_y,Set5_ssim_y,Set5_psnr_y_vs_2dquant,/);
    expect(csv.filter((l) => l.startsWith('2,W4A4,'))).toHaveLength(3);

    const tex = fs.readFileSync(path.join(dir, 'tables/components-incremental-x2.tex'), 'utf8');
    const rowOf = (label: string) => tex.split('\n').find((l) => l.startsWith(`${label} & W4A4 & `))!.replace(/ \\\\$/, '').split(' & ');
    const digits = decimalsFor(Object.values(psnr).map((v) => v - psnr['2dquant']), 2, 4);
    const best = Math.max(...Object.values(psnr)).toFixed(digits);
    expect(tex).toContain(`\\textbf{${best}}`);
    expect(rowOf('+HSO')[4]).toBe(`${psnr.hso >= psnr['2dquant'] ? '+' : ''}${(psnr.hso - psnr['2dquant']).toFixed(digits)}`);
    expect(rowOf('2DQuant')[4]).toBe(`+${(0).toFixed(digits)}`);
    // Variants not run are not rows; the leave-one-out table has none of its rows, so it is not written.
    expect(tex).not.toContain('+HSO +ABR');
    const files = fs.readdirSync(path.join(dir, 'tables')).sort();
    expect(files).toEqual(['components-incremental-x2.csv', 'components-incremental-x2.md', 'components-incremental-x2.tex', 'tables.tex']);
    expect(fs.readdirSync(path.join(dir, 'figures')).sort()).toEqual([
      'components-x2-psnr-Set5.png', 'components-x2-psnr-Set5.tex', 'components-x2-ssim-Set5.png', 'components-x2-ssim-Set5.tex', 'figures.tex',
    ]);

    const before = new Map(files.map((f) => [f, fs.readFileSync(path.join(dir, 'tables', f))]));
    const [built] = await buildTables({ resultsDir: tiny.resultsDir, only: 'components' });
    expect(built.origin).toBe(path.join('components', 'components.json'));
    for (const [f, bytes] of before) expect(fs.readFileSync(path.join(dir, 'tables', f)).equals(bytes)).toBe(true);
  }, 120_000);
});
