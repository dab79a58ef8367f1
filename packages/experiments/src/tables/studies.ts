/**
 * Tables and figures of the asymmetry and sensitivity studies. Source: the experiment's rows file
 * (`results/<exp>/<exp>.json`, written by `harmoq exp`), whose entries name their cells; each named cell's
 * stored result refreshes its values (a cell that finished after the file was written counts), then the drops,
 * indices and ranks are derived again with the experiment's own functions.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Cell } from '../cells';
import {
  ASYMMETRY_SETTINGS, asymmetryRows, indexSummary, type AsymmetryDrops, type AsymmetryRowsFile, type AsymmetrySetting,
} from '../experiments/asymmetry';
import { rankedOrder, sensitivityEntries, type SensitivityEntry, type SensitivityRowsFile } from '../experiments/sensitivity';
import { PALETTE, type LineChart } from '../figures/charts';
import type { NamedChart } from '../figures/curves';
import { asymmetryCharts } from '../figures/hooks';
import { CellStore } from '../store';
import { refreshEntry, type StoredValues } from '../entries';
import { cell, fixed, type PlainCell, type PlainColumn, type PlainTable } from './plain';
import { ARCH_LABELS, methodLabel } from './table';

/** `results/<exp>/<exp>.json`, or null when the experiment has not written one. */
export function readRowsFile<T>(resultsDir: string, experiment: string): T | null {
  const file = path.join(resultsDir, experiment, `${experiment}.json`);
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as T) : null;
}

/**
 * A rows file whose entries name their cells (components, harmoq), each entry refreshed from its cell's stored
 * result, and where it came from relative to the results folder; null when the experiment has not written one.
 */
export function readRefreshedRows<E extends StoredValues, F extends { entries: E[] }>(
  resultsDir: string, experiment: string,
): { file: F; entries: E[]; origin: string } | null {
  const file = readRowsFile<F>(resultsDir, experiment);
  if (!file) return null;
  const store = new CellStore(resultsDir);
  return { file, entries: file.entries.map((e) => refreshEntry(e, store)), origin: path.join(experiment, `${experiment}.json`) };
}

/** Just enough of a Cell for the store to find its result. */
const stored = (key: string): Cell => ({ key, kind: 'eval' } as Cell);

export interface AsymmetrySource {
  origin: string;
  config: AsymmetryRowsFile['config'];
  rows: AsymmetryDrops[];
}

export function loadAsymmetry(resultsDir: string): AsymmetrySource | null {
  const file = readRowsFile<AsymmetryRowsFile>(resultsDir, 'asymmetry');
  if (!file) return null;
  const store = new CellStore(resultsDir);
  const refreshed = file.entries.map((e) => {
    const r = store.readEval(stored(e.cell));
    return r ? { ...e, status: 'done' as const, psnr_y: r.psnr_y, ssim_y: r.ssim_y } : e;
  });
  return { origin: path.join('asymmetry', 'asymmetry.json'), config: file.config, rows: asymmetryRows(refreshed, file.config.floor, file.config.methods) };
}

const SETTING_LABELS: Record<AsymmetrySetting, { md: string; tex: string }> = {
  weights: { md: 'W', tex: 'W' }, activations: { md: 'A', tex: 'A' }, both: { md: 'WA', tex: 'WA' },
};

/** One table per scale: rows method x bits, per dataset the drops of each setting and the index. */
export function asymmetryTables(source: AsymmetrySource): PlainTable[] {
  const { config } = source;
  const settings = ASYMMETRY_SETTINGS.filter((s) => config.settings.includes(s));
  const arch = ARCH_LABELS[config.arch] ?? config.arch;
  const scales = [...new Set(source.rows.map((r) => r.scale))].sort((a, b) => a - b);
  return scales.map((scale) => {
    const rows = source.rows.filter((r) => r.scale === scale);
    const datasets = [...new Set(rows.map((r) => r.dataset))];
    const columns: PlainColumn[] = [
      { header: 'Method', csv: 'method', align: 'l' }, { header: 'Bits', csv: 'bits', align: 'l' },
      ...datasets.flatMap((d) => [
        ...settings.flatMap((s): PlainColumn[] => [
          { header: `ΔPSNR ${SETTING_LABELS[s].md}`, latex: `$\\Delta$P$_{\\mathrm{${SETTING_LABELS[s].tex}}}$`, csv: `${d}_${s}_psnr_drop`, align: 'r' },
          { header: `ΔSSIM ${SETTING_LABELS[s].md}`, latex: `$\\Delta$S$_{\\mathrm{${SETTING_LABELS[s].tex}}}$`, csv: `${d}_${s}_ssim_drop`, align: 'r' },
        ]),
        { header: 'index', latex: '$\\mathcal{A}$', csv: `${d}_asymmetry_index`, align: 'r' as const },
      ]),
    ];
    const keys = [...new Set(rows.map((r) => `${r.method}|${r.bits}`))];
    const body = keys.map((k): PlainCell[] => {
      const [method, bits] = k.split('|');
      const mine = rows.filter((r) => r.method === method && String(r.bits) === bits);
      return [
        cell(method, methodLabel(method)), cell(Number(bits), `W${bits}A${bits}`),
        ...datasets.flatMap((d) => {
          const r = mine.find((x) => x.dataset === d);
          return [
            ...settings.flatMap((s) => [fixed(r?.settings[s]?.psnr_drop ?? null, 2), fixed(r?.settings[s]?.ssim_drop ?? null, 4)]),
            fixed(r?.index ?? null, 2),
          ];
        }),
      ];
    });
    const fps = datasets.map((d) => {
      const fp = rows.find((r) => r.dataset === d)?.fp;
      return `${d} ${fp?.psnr_y == null ? '--' : fp.psnr_y.toFixed(2)} dB / ${fp?.ssim_y == null ? '--' : fp.ssim_y.toFixed(4)}`;
    });
    const facts = `checkpoint ${path.basename(config.checkpoint.replaceAll('{scale}', String(scale)))}, preset ${config.preset}, seed ${config.seed}`;
    const meaning = 'Drops from the float model (FP minus quantized, Y channel) with only the weights (W), only the activations (A) ' +
      `or both (WA) quantized, from one calibration per bit width; index = (relative SSIM loss / relative PSNR loss) under W divided by the same under A, ` +
      `-- where a drop is under ${config.floor.psnr} dB or ${config.floor.ssim} SSIM (see docs/asymmetry.md). FP: ${fps.join(', ')}.`;
    const firstOfMethod = keys.map((k, i) => (i > 0 && k.split('|')[0] !== keys[i - 1].split('|')[0] ? i : -1)).filter((i) => i > 0);
    return {
      name: `asymmetry-x${scale}`,
      title: `${arch} x${scale}, weights vs activations`,
      caption: `${facts}. ${meaning}`,
      groups: [{ label: '', span: 2 }, ...datasets.map((d) => ({ label: d, span: settings.length * 2 + 1 }))],
      columns, rows: body, rules: firstOfMethod,
    };
  });
}

/** PSNR and SSIM drop vs bits, W against A (and WA), per scale x method x dataset. */
export function asymmetryFigures(source: AsymmetrySource): NamedChart<LineChart>[] {
  const charts: NamedChart<LineChart>[] = [];
  const combos = [...new Set(source.rows.map((r) => `${r.scale}|${r.method}`))];
  for (const combo of combos) {
    const [scale, method] = combo.split('|');
    const rows = source.rows.filter((r) => String(r.scale) === scale && r.method === method);
    const points = rows.flatMap((r) => (Object.keys(r.settings) as AsymmetrySetting[]).map((s) => ({
      quantized: s, bits: r.bits, dataset: r.dataset, psnrDrop: r.settings[s]!.psnr_drop, ssimDrop: r.settings[s]!.ssim_drop,
    })));
    for (const c of asymmetryCharts(points)) {
      charts.push({
        name: c.name.replace(/^asymmetry-/, `asymmetry-x${scale}-${method}-`),
        chart: { ...c.chart, title: `x${scale} ${methodLabel(method)}: ${c.chart.title}` },
      });
    }
  }
  return charts;
}

export function asymmetrySummaryLines(source: AsymmetrySource): string[] {
  return indexSummary(source.rows).map((s) =>
    `x${s.scale} ${s.method}: index defined for ${s.defined}/${s.total}, geometric mean ${s.geomean === null ? '--' : s.geomean.toFixed(2)}, ${s.above1} above 1`);
}

export interface SensitivitySource {
  origin: string;
  config: SensitivityRowsFile['config'];
  entries: SensitivityEntry[];
}

export function loadSensitivity(resultsDir: string): SensitivitySource | null {
  const file = readRowsFile<SensitivityRowsFile>(resultsDir, 'sensitivity');
  if (!file) return null;
  // The probe cells again, as far as the entries describe them, so the stored results refresh the drops.
  const cells = new Map<string, Cell>();
  for (const e of file.entries) {
    const c = cells.get(e.cell) ?? {
      ...stored(e.cell),
      config: { kind: 'eval', scale: e.scale, probe: { units: [], crop: null } } as unknown as Cell['config'],
      axes: { bits: String(e.bits), role: e.role, block: e.block < 0 ? 'outside' : String(e.block) },
    };
    (c.config as { probe: { units: { name: string; sites: string[] }[] } }).probe.units.push({ name: e.unit, sites: e.sites });
    cells.set(e.cell, c);
  }
  return { origin: path.join('sensitivity', 'sensitivity.json'), config: file.config, entries: sensitivityEntries([...cells.values()], new CellStore(resultsDir)) };
}

/** One ranking per (scale, bits): every unit in Markdown and CSV, the top `config.top` in LaTeX. */
export function sensitivityTables(source: SensitivitySource): PlainTable[] {
  const { config } = source;
  const arch = ARCH_LABELS[config.arch] ?? config.arch;
  const groups = [...new Set(rankedOrder(source.entries).map((e) => `${e.scale}|${e.bits}`))];
  const images = config.crop === 0 ? `whole ${config.dataset} images` : `${config.crop}x${config.crop} LR center crops of ${config.dataset}`;
  return groups.map((g) => {
    const [scale, bits] = g.split('|').map(Number);
    const entries = rankedOrder(source.entries.filter((e) => e.scale === scale && e.bits === bits));
    const done = entries.filter((e) => e.psnr_drop !== null).length;
    const caption = `Each quantizer alone (${methodLabel(config.method)} bounds, W${bits}A${bits} calibration), ` +
      `the rest float, ranked by PSNR-Y drop on ${images}; ${done} of ${entries.length} units measured, -- not run yet. ` +
      `Checkpoint ${path.basename(config.checkpoint.replaceAll('{scale}', String(scale)))}, preset ${config.preset}, seed ${config.seed}.`;
    return {
      name: `sensitivity-x${scale}-${bits}bit`,
      title: `${arch} x${scale}, ${bits}-bit sensitivity`,
      caption,
      columns: [
        { header: 'Rank', csv: 'psnr_rank', align: 'r' }, { header: 'Site', csv: 'unit', align: 'l' }, { header: 'Role', csv: 'role', align: 'l' },
        { header: 'Block', csv: 'block', align: 'r' }, { header: 'ΔPSNR-Y (dB)', latex: '$\\Delta$PSNR-Y (dB)', csv: 'psnr_drop', align: 'r' },
        { header: 'ΔSSIM-Y', latex: '$\\Delta$SSIM-Y', csv: 'ssim_drop', align: 'r' }, { header: 'SSIM rank', csv: 'ssim_rank', align: 'r' },
      ],
      rows: entries.map((e) => [
        cell(e.psnr_rank), cell(e.unit), cell(e.role), cell(e.block, e.block < 0 ? '--' : String(e.block)),
        fixed(e.psnr_drop, 3), fixed(e.ssim_drop, 4), cell(e.ssim_rank),
      ]),
      latexRows: config.top,
    };
  });
}

/** Drop by block, one line per unit kind; weights and activations apart; PSNR and SSIM; per (scale, bits). */
export function sensitivityFigures(source: SensitivitySource): NamedChart<LineChart>[] {
  const charts: NamedChart<LineChart>[] = [];
  const inBlocks = source.entries.filter((e) => e.block >= 0);
  const groups = [...new Set(inBlocks.map((e) => `${e.scale}|${e.bits}`))];
  for (const g of groups) {
    const [scale, bits] = g.split('|').map(Number);
    for (const role of ['weight', 'activation'] as const) {
      const mine = inBlocks.filter((e) => e.scale === scale && e.bits === bits && e.role === role);
      if (mine.length === 0) continue;
      const blocks = [...new Set(mine.map((e) => e.block))].sort((a, b) => a - b).map(String);
      const kinds = [...new Set(mine.map((e) => e.kind))];
      for (const [metric, field, unit] of [['psnr', 'psnr_drop', ' (dB)'], ['ssim', 'ssim_drop', '']] as const) {
        charts.push({
          name: `sensitivity-x${scale}-${bits}bit-${role}s-${metric}`,
          chart: {
            title: `x${scale} ${bits}-bit ${role}s alone: ${metric.toUpperCase()}-Y drop`,
            xLabel: 'Swin block',
            yLabel: `${metric.toUpperCase()}-Y drop${unit}`,
            categories: blocks,
            series: kinds.map((kind, i) => ({
              name: kind, label: kind, color: PALETTE[i % PALETTE.length],
              points: mine.filter((e) => e.kind === kind && e[field] !== null).map((e) => ({ category: String(e.block), y: e[field]! })),
            })),
          },
        });
      }
    }
  }
  return charts;
}
