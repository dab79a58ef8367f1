import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { asymmetryCharts, sensitivityChart, type AsymmetryRow, type SensitivityRow } from '../figures/hooks';
import { barChartSpec, lineChartSpec, tikzBarChart, tikzLineChart } from '../figures/charts';
import { renderSvgs, svgToPng } from '../figures/vega';
import { buildTables } from './build';
import { decimalsFor } from './plain';
import { fillTableBlocks } from './readme';
import { loadBaselines } from './source';
import { rankColumn } from './table';

const tmp: string[] = [];
afterAll(() => tmp.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
function tempResults(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-tables-'));
  tmp.push(dir);
  return dir;
}

let counter = 0;
const key = (kind: 'eval' | 'cal') => `${kind}-${(++counter).toString(16).padStart(24, '0')}`;
type Values = Record<string, [number, number] | null>;

/** A baselines rows file as `harmoq exp baselines` writes it; null values are cells that have not run. */
function rowsFile(rows: { scale: number; method: string; bits: string; values: Values }[]) {
  return {
    experiment: 'baselines',
    config: {
      preset: 'quick', seed: 3407, arch: 'swinir-light', checkpoint: 'weights/house/swinir_light_x{scale}_house.pth', fp: true,
      methods: ['minmax', 'percentile', 'dobi'], bits: ['W4A4', 'W2A2'], scales: [4], datasets: ['Set5', 'Set14'], quant: {},
    },
    cells: { total: 0, done: 0, missing: 0 },
    rows: rows.map((r) => ({
      scale: r.scale, method: r.method, bits: r.bits,
      calibration: r.method === 'fp' ? null : { cell: key('cal'), status: 'done', seconds: 1 },
      datasets: Object.fromEntries(Object.entries(r.values).map(([d, v]) => [d, {
        cell: key('eval'), status: v ? 'done' : 'missing',
        psnr_y: v?.[0] ?? null, ssim_y: v?.[1] ?? null, psnr: v?.[0] ?? null, ssim: v?.[1] ?? null, seconds: v ? 1 : null,
      }])),
    })),
  };
}

/** x4: FP best everywhere (must not be ranked); W4A4 with a clear order; W2A2 with a tie and a missing cell. */
const SYNTHETIC = [
  { scale: 4, method: 'fp', bits: 'FP', values: { Set5: [32.0, 0.9], Set14: [28.5, 0.8] } as Values },
  { scale: 4, method: 'minmax', bits: 'W4A4', values: { Set5: [30.11, 0.8501], Set14: [27.1, 0.7001] } as Values },
  { scale: 4, method: 'percentile', bits: 'W4A4', values: { Set5: [30.52, 0.8603], Set14: [27.3, 0.7002] } as Values },
  { scale: 4, method: 'dobi', bits: 'W4A4', values: { Set5: [30.31, 0.8702], Set14: null } as Values },
  { scale: 4, method: 'minmax', bits: 'W2A2', values: { Set5: [25.004, 0.6], Set14: [24.0, 0.5] } as Values },
  { scale: 4, method: 'percentile', bits: 'W2A2', values: { Set5: [24.996, 0.61], Set14: [23.0, 0.52] } as Values },
  { scale: 4, method: 'dobi', bits: 'W2A2', values: { Set5: [24.5, 0.62], Set14: [23.5, 0.51] } as Values },
];

function writeSynthetic(resultsDir: string, rows = SYNTHETIC): void {
  fs.mkdirSync(path.join(resultsDir, 'baselines'), { recursive: true });
  fs.writeFileSync(path.join(resultsDir, 'baselines', 'baselines.json'), JSON.stringify(rowsFile(rows), null, 2));
}

/** A table row of the .tex, split into its cells. */
function texRow(tex: string, label: string, bits: string): string[] {
  const line = tex.split('\n').find((l) => l.startsWith(`${label} & ${bits} &`));
  if (!line) throw new Error(`no row ${label} ${bits} in\n${tex}`);
  return line.replace(/\s*\\\\$/, '').split(' & ');
}

function balanced(text: string): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth < 0) return false;
  }
  return depth === 0;
}

describe('rankColumn', () => {
  test('best and second distinct printed value; ties share; missing never ranked; one value is not a ranking', () => {
    expect(rankColumn(['30.10', '30.30', '30.20', null])).toEqual([0, 1, 2, 0]);
    expect(rankColumn(['25.00', '25.00', '24.50'])).toEqual([1, 1, 2]);
    expect(rankColumn(['0.8000', null, ''])).toEqual([0, 0, 0]);
    expect(rankColumn(['1.00', '1.00'])).toEqual([1, 1]);
  });
});

describe('decimalsFor', () => {
  test('enough decimals for the largest difference to keep two significant digits, within [base, max]', () => {
    expect(decimalsFor([3.02, -0.5], 2, 4)).toBe(2);
    expect(decimalsFor([0.05], 2, 4)).toBe(3);
    expect(decimalsFor([0.0014, -0.0058, null], 2, 4)).toBe(4);
    expect(decimalsFor([0.00001], 2, 4)).toBe(4);
    expect(decimalsFor([0.00007], 4, 5)).toBe(5);
  });
  test('no finite non-zero difference: the base', () => {
    expect(decimalsFor([], 2, 4)).toBe(2);
    expect(decimalsFor([0, null, undefined, Number.NaN], 2, 4)).toBe(2);
  });
});

describe('harmoq tables on a synthetic rows file', () => {
  const resultsDir = tempResults();
  writeSynthetic(resultsDir);
  let tex = '';
  beforeAll(async () => {
    await buildTables({ resultsDir, crops: null });
    tex = fs.readFileSync(path.join(resultsDir, 'baselines/tables/baselines-x4.tex'), 'utf8');
  });

  test('bold best and underlined second within each bit group; the FP row is never ranked', () => {
    expect(texRow(tex, 'FP', 'W32A32')).toEqual(['FP', 'W32A32', '32.00', '0.9000', '28.50', '0.8000']);
    expect(texRow(tex, 'MinMax', 'W4A4')).toEqual(['MinMax', 'W4A4', '30.11', '0.8501', '\\underline{27.10}', '\\underline{0.7001}']);
    expect(texRow(tex, 'Percentile', 'W4A4')).toEqual(['Percentile', 'W4A4', '\\textbf{30.52}', '\\underline{0.8603}', '\\textbf{27.30}', '\\textbf{0.7002}']);
    expect(texRow(tex, 'DOBI', 'W4A4')).toEqual(['DOBI', 'W4A4', '\\underline{30.31}', '\\textbf{0.8702}', '--', '--']);
    // 25.004 and 24.996 both print 25.00: a shared best, so 24.50 is second.
    expect(texRow(tex, 'MinMax', 'W2A2').slice(2, 3)).toEqual(['\\textbf{25.00}']);
    expect(texRow(tex, 'Percentile', 'W2A2').slice(2, 3)).toEqual(['\\textbf{25.00}']);
    expect(texRow(tex, 'DOBI', 'W2A2').slice(2)).toEqual(['\\underline{24.50}', '\\textbf{0.6200}', '\\underline{23.50}', '\\underline{0.5100}']);
  });

  test('the .tex is a booktabs table in the paper layout with a caption naming checkpoint, preset and seed', () => {
    expect(balanced(tex)).toBe(true);
    expect(tex).toContain('\\begin{tabular}{llcccc}');
    expect(tex.match(/\\(toprule|midrule|bottomrule)/g)).toEqual(['\\toprule', '\\midrule', '\\midrule', '\\midrule', '\\bottomrule']);
    expect(tex).toContain('\\multicolumn{2}{c}{Set5} & \\multicolumn{2}{c}{Set14}');
    expect(tex).toMatch(/\\caption\{[^\n]*swinir\\_light\\_x4\\_house\.pth[^\n]*preset \\texttt\{quick\}, seed 3407/);
    for (const line of tex.split('\n').filter((l) => l.endsWith('\\\\') && !l.includes('multicolumn'))) {
      expect(line.split('&')).toHaveLength(6);
    }
    // Method order within a group follows the grid's methods; groups follow its bits.
    const labels = tex.split('\n').filter((l) => / & W\d/.test(l)).map((l) => l.split(' & ').slice(0, 2).join(' '));
    expect(labels).toEqual(['FP W32A32', 'MinMax W4A4', 'Percentile W4A4', 'DOBI W4A4', 'MinMax W2A2', 'Percentile W2A2', 'DOBI W2A2']);
  });

  test('missing cells: -- in LaTeX and Markdown, empty in CSV', () => {
    const md = fs.readFileSync(path.join(resultsDir, 'baselines/tables/baselines-x4.md'), 'utf8');
    expect(md).toContain('| DOBI | W4A4 | <ins>30.31</ins> | **0.8702** | -- | -- |');
    expect(md).toContain('| Percentile | W4A4 | **30.52** | <ins>0.8603</ins> | **27.30** | **0.7002** |');
    const csv = fs.readFileSync(path.join(resultsDir, 'baselines/tables/baselines-x4.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('scale,method,bits,Set5_psnr_y,Set5_ssim_y,Set14_psnr_y,Set14_ssim_y,Set5_psnr_y_rank,Set5_ssim_y_rank,Set14_psnr_y_rank,Set14_ssim_y_rank');
    expect(csv).toContain('4,dobi,W4A4,30.31,0.8702,,,2,1,,');
    expect(csv).toContain('4,fp,W32A32,32,0.9,28.5,0.8,,,,');
  });

  test('compiles with pdflatex when it is installed', () => {
    const which = spawnSync('sh', ['-c', 'command -v pdflatex'], { encoding: 'utf8' });
    if (which.status !== 0) {
      console.warn('pdflatex not on PATH: compile check skipped (the structural checks above still ran)');
      return;
    }
    const dir = path.join(resultsDir, 'baselines/tables');
    const outDir = tempResults();
    const run = spawnSync('pdflatex', ['-interaction=nonstopmode', '-halt-on-error', '-output-directory', outDir, 'tables.tex'], { cwd: dir, encoding: 'utf8', timeout: 60000 });
    expect(run.status).toBe(0);
    const bytes = fs.readFileSync(path.join(outDir, 'tables.pdf'));
    expect(bytes.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    expect(bytes.length).toBeGreaterThan(5000);
    expect(run.stdout).toContain('(1 page');
  });

  test('PSNR-vs-bits figure: PNG of the expected size with ink; TikZ with balanced braces and one curve per method', async () => {
    const png = fs.readFileSync(path.join(resultsDir, 'baselines/figures/psnr-bits-x4-Set5.png'));
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect(info.width).toBeGreaterThan(600);
    expect(info.height).toBeGreaterThan(400);
    let ink = 0;
    const colors = new Set<number>();
    for (let i = 0; i < data.length; i += info.channels) {
      if (data[i] < 200 || data[i + 1] < 200 || data[i + 2] < 200) ink++;
      colors.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    }
    expect(ink / (info.width * info.height)).toBeGreaterThan(0.01);
    expect(colors.size).toBeGreaterThan(20);
    // Each method's color is drawn: the palette's first three (minmax, percentile, dobi).
    for (const rgb of [[76, 120, 168], [245, 133, 24], [228, 87, 86]]) {
      let hits = 0;
      for (let i = 0; i < data.length; i += info.channels) if (data[i] === rgb[0] && data[i + 1] === rgb[1] && data[i + 2] === rgb[2]) hits++;
      expect(hits).toBeGreaterThan(50);
    }
    const tikz = fs.readFileSync(path.join(resultsDir, 'baselines/figures/psnr-bits-x4-Set14.tex'), 'utf8');
    expect(balanced(tikz)).toBe(true);
    expect(tikz.match(/^\\begin\{tikzpicture\}/gm)).toHaveLength(1);
    const curves = tikz.split('\n').filter((l) => l.startsWith('\\draw') && l.includes('plot coordinates'));
    expect(curves).toHaveLength(3);
    expect(tikz.match(/^% series (\S+)$/gm)).toEqual(['% series minmax', '% series percentile', '% series dobi']);
    // dobi's Set14 W4A4 is missing: its curve has only the W2A2 point.
    expect(curves[2].match(/\(/g)).toHaveLength(1);
    expect(tikz).toContain('FP 28.50 dB');
  });

  test('a rebuild writes the same bytes, and removes files it no longer makes', async () => {
    const snapshot = () => {
      const files = ['tables', 'figures'].flatMap((sub) => fs.readdirSync(path.join(resultsDir, 'baselines', sub)).map((f) => path.join(sub, f))).sort();
      return Object.fromEntries(files.map((f) => [f, fs.readFileSync(path.join(resultsDir, 'baselines', f)).toString('base64')]));
    };
    const before = snapshot();
    fs.writeFileSync(path.join(resultsDir, 'baselines/tables/baselines-x8.tex'), 'stale');
    await buildTables({ resultsDir, crops: null });
    expect(snapshot()).toEqual(before);
    expect(Object.keys(before)).toEqual(expect.arrayContaining(['tables/tables.tex', 'figures/psnr-bits-x4-Set5.png', 'figures/psnr-bits-x4-Set14.tex']));
  });
});

describe('where the rows come from', () => {
  test("a listed cell's stored result fills a row the rows file has as missing; unlisted cells are ignored", () => {
    const resultsDir = tempResults();
    writeSynthetic(resultsDir);
    const file = path.join(resultsDir, 'baselines/baselines.json');
    const rows = JSON.parse(fs.readFileSync(file, 'utf8'));
    const dobi = rows.rows.find((r: { method: string; bits: string }) => r.method === 'dobi' && r.bits === 'W4A4');
    const cell = dobi.datasets.Set14.cell;
    fs.mkdirSync(path.join(resultsDir, 'cells', cell), { recursive: true });
    fs.writeFileSync(path.join(resultsDir, 'cells', cell, 'metrics.json'), JSON.stringify({ psnr_y: 27.9, ssim_y: 0.71, psnr: 26, ssim: 0.7, seconds: 2 }));
    // A finished cell from another code version with the same axes: not in the rows file, so not in the table.
    const other = key('eval');
    fs.mkdirSync(path.join(resultsDir, 'cells', other), { recursive: true });
    fs.writeFileSync(path.join(resultsDir, 'cells', other, 'metrics.json'), JSON.stringify({ psnr_y: 99, ssim_y: 1, psnr: 99, ssim: 1, seconds: 1 }));
    const source = loadBaselines(resultsDir)!;
    const row = source.rows.find((r) => r.method === 'dobi' && r.bits === 'W4A4')!;
    expect(row.datasets.Set14).toMatchObject({ status: 'done', psnr_y: 27.9, cell });
    expect(source.rows.flatMap((r) => Object.values(r.datasets).map((e) => e.cell))).not.toContain(other);
    expect(source.origin).toBe(path.join('baselines', 'baselines.json'));
  });

  test('without a rows file, finished cells are grouped by their recorded axes; two cells for one entry are refused', () => {
    const resultsDir = tempResults();
    const cell = (k: string, axes: Record<string, string>, config: Record<string, unknown>, result: [string, unknown]) => {
      const dir = path.join(resultsDir, 'cells', k);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ key: k, kind: config.kind, axes, config }));
      fs.writeFileSync(path.join(dir, result[0]), JSON.stringify(result[1]));
    };
    const base = { arch: 'swinir-light', scale: 4, checkpoint: 'swinir_light_x4_house.pth' };
    const cal = key('cal');
    cell(cal, { scale: '4', method: 'minmax', bits: 'W4A4' }, { kind: 'calibrate', ...base, request: { preset: 'quick', seed: 7 } }, ['qparams.json', { seconds: 3 }]);
    cell(key('eval'), { scale: '4', method: 'fp', dataset: 'Set5' }, { kind: 'eval', ...base, quant: null }, ['metrics.json', { psnr_y: 30, ssim_y: 0.8, psnr: 29, ssim: 0.79, seconds: 1 }]);
    cell(key('eval'), { scale: '4', method: 'minmax', bits: 'W4A4', dataset: 'Set5' }, { kind: 'eval', ...base, quant: cal }, ['metrics.json', { psnr_y: 29, ssim_y: 0.7, psnr: 28, ssim: 0.69, seconds: 1 }]);
    cell(key('eval'), { scale: '4', method: 'minmax', bits: 'W4A4', dataset: 'Set14' }, { kind: 'eval', ...base, quant: cal }, ['config-only-no-result.json', {}]);
    const source = loadBaselines(resultsDir)!;
    expect(source).toMatchObject({ origin: 'cells', preset: 'quick', seed: 7, checkpoints: { 4: 'swinir_light_x4_house.pth' }, datasets: ['Set5'], bits: ['W4A4'] });
    expect(source.rows.map((r) => `${r.method} ${r.bits} ${r.datasets.Set5.psnr_y}`)).toEqual(['fp FP 30', 'minmax W4A4 29']);
    expect(source.rows[1].calibration).toEqual({ cell: cal, status: 'done', seconds: 3 });

    // Another study's cells in the same folder (the headline comparison's seeded runs, with their own calibration
    // of another seed) are not baselines cells and do not make the seed ambiguous.
    const seeded = key('cal');
    cell(seeded, { scale: '4', method: 'minmax', bits: 'W4A4', seed: '8' }, { kind: 'calibrate', ...base, request: { preset: 'quick', seed: 8 } }, ['qparams.json', { seconds: 4 }]);
    cell(key('eval'), { scale: '4', method: 'minmax', bits: 'W4A4', dataset: 'Set5', seed: '8' }, { kind: 'eval', ...base, quant: seeded }, ['metrics.json', { psnr_y: 27, ssim_y: 0.7, psnr: 26, ssim: 0.69, seconds: 1 }]);
    expect(loadBaselines(resultsDir)).toMatchObject({ seed: 7, rows: [{ method: 'fp' }, { method: 'minmax', datasets: { Set5: { psnr_y: 29 } } }] });

    const twin = key('eval');
    cell(twin, { scale: '4', method: 'minmax', bits: 'W4A4', dataset: 'Set5' }, { kind: 'eval', ...base, quant: cal }, ['metrics.json', { psnr_y: 28, ssim_y: 0.7, psnr: 28, ssim: 0.69, seconds: 1 }]);
    expect(() => loadBaselines(resultsDir)).toThrow(new RegExp(`cells eval-\\w+ and ${twin} both hold x4 minmax W4A4 on Set5`));
  });

  test('an unknown --only names the choices; an empty results folder has nothing to build', async () => {
    const resultsDir = tempResults();
    await expect(buildTables({ resultsDir, only: 'nope' })).rejects.toThrow("no tables for experiment 'nope' (choices: baselines, asymmetry, sensitivity, components, harmoq)");
    expect(await buildTables({ resultsDir })).toEqual(['baselines', 'asymmetry', 'sensitivity', 'components', 'harmoq'].map((experiment) => ({ experiment, origin: null, files: [] })));
  });
});

test('README blocks are refilled from the generated Markdown; a missing file says how to build it', () => {
  const resultsDir = tempResults();
  fs.mkdirSync(path.join(resultsDir, 'baselines/tables'), { recursive: true });
  fs.writeFileSync(path.join(resultsDir, 'baselines/tables/baselines-x4.md'), '| new |\n');
  const readme = 'intro\n<!-- harmoq tables: baselines/tables/baselines-x4.md -->\n| old |\n| old |\n<!-- /harmoq tables -->\nmiddle\n' +
    '<!-- harmoq tables: baselines/tables/baselines-x2.md -->\n<!-- /harmoq tables -->\nend\n';
  const filled = fillTableBlocks(readme, resultsDir);
  expect(filled).toBe('intro\n<!-- harmoq tables: baselines/tables/baselines-x4.md -->\n| new |\n\n<!-- /harmoq tables -->\nmiddle\n' +
    '<!-- harmoq tables: baselines/tables/baselines-x2.md -->\n_(not built yet: run `npx harmoq tables`)_\n\n<!-- /harmoq tables -->\nend\n');
  expect(fillTableBlocks(filled, resultsDir)).toBe(filled);
});

describe('figure hooks for later experiments (synthetic rows)', () => {
  const asymmetry: AsymmetryRow[] = [2, 3, 4].flatMap((bits) => [
    { quantized: 'weights' as const, bits, dataset: 'Set5', psnrDrop: 0.2 * (5 - bits), ssimDrop: 0.03 * (5 - bits) },
    { quantized: 'activations' as const, bits, dataset: 'Set5', psnrDrop: bits === 3 ? null : 0.5 * (5 - bits), ssimDrop: 0.01 * (5 - bits) },
  ]);
  const sensitivity: SensitivityRow[] = ['conv_first', 'layers.0.attn.qkv', 'layers.0.mlp.fc1', 'layers.1.attn.qkv', 'conv_last'].map((layer, index) => ({
    layer, index, group: layer.includes('attn') ? 'attn' : layer.includes('mlp') ? 'mlp' : 'conv', psnrDrop: index === 2 ? null : 0.1 + index * 0.05,
  }));

  test('asymmetry: PSNR and SSIM charts per dataset, one series per quantized side, missing points left out', () => {
    const charts = asymmetryCharts(asymmetry);
    expect(charts.map((c) => c.name)).toEqual(['asymmetry-psnr-Set5', 'asymmetry-ssim-Set5']);
    const psnr = charts[0].chart;
    expect(psnr.categories).toEqual(['2', '3', '4']);
    expect(psnr.series.map((s) => [s.name, s.points.map((p) => p.category)])).toEqual([['weights', ['2', '3', '4']], ['activations', ['2', '4']]]);
    const tikz = tikzLineChart(psnr);
    expect(balanced(tikz)).toBe(true);
    expect(tikz.split('\n').filter((l) => l.includes('plot coordinates'))).toHaveLength(2);
  });

  test('sensitivity: one bar per layer with a value, in network order, colored by group', () => {
    const { chart } = sensitivityChart(sensitivity);
    expect(chart.bars.map((b) => b.category)).toEqual(['conv_first', 'layers.0.attn.qkv', 'layers.1.attn.qkv', 'conv_last']);
    expect(chart.bars[1].color).toBe(chart.bars[2].color);
    expect(chart.bars[0].color).not.toBe(chart.bars[1].color);
    const tikz = tikzBarChart(chart);
    expect(balanced(tikz)).toBe(true);
    expect(tikz.split('\n').filter((l) => l.startsWith('\\fill') && l.includes('rectangle'))).toHaveLength(4);
  });

  test('both render to non-blank PNGs through vega-lite and resvg', async () => {
    const svgs = renderSvgs([lineChartSpec(asymmetryCharts(asymmetry)[0].chart), barChartSpec(sensitivityChart(sensitivity).chart)]);
    expect(svgs).toHaveLength(2);
    for (const svg of svgs) {
      const { data, info } = await sharp(svgToPng(svg)).raw().toBuffer({ resolveWithObject: true });
      expect(info.width).toBeGreaterThan(500);
      let ink = 0;
      for (let i = 0; i < data.length; i += info.channels) if (data[i] < 200) ink++;
      expect(ink).toBeGreaterThan(2000);
    }
  });
});
