/**
 * The paper-table model, independent of output format: methods as rows grouped by bit width (the float model
 * first, in its own group), datasets x (PSNR, SSIM) as columns, and per column the best and second-best
 * quantized method of each bit group. Ranking uses the values as printed, so two methods that print the
 * same number share the mark; the float row is never ranked.
 */
import type { BaselineRow } from '../experiments/baselines';
import type { BaselinesSource } from './source';

export interface MetricColumn {
  dataset: string;
  metric: 'psnr_y' | 'ssim_y';
  header: string;
  digits: number;
}

/** 1: best in its bit group, 2: second best, 0: neither (or not ranked). */
export type Rank = 0 | 1 | 2;

export interface TableCell {
  value: number | null;
  /** The printed number ('' when missing; each format writes its own missing mark). */
  text: string;
  rank: Rank;
}

export interface TableRow {
  method: string;
  /** Display name (MinMax, DOBI, ...). */
  label: string;
  bits: string;
  cells: TableCell[];
}

export interface TableGroup {
  bits: string;
  ranked: boolean;
  rows: TableRow[];
}

export interface ResultTable {
  /** File stem, e.g. `baselines-x4`. */
  name: string;
  arch: string;
  scale: number;
  checkpoint: string;
  preset: string | null;
  seed: number | null;
  datasets: string[];
  columns: MetricColumn[];
  groups: TableGroup[];
}

const METHOD_LABELS: Record<string, string> = {
  fp: 'FP', minmax: 'MinMax', percentile: 'Percentile', mse: 'MSE', dobi: 'DOBI', '2dquant': '2DQuant',
  ptq4vit: 'PTQ4ViT', noisyquant: 'NoisyQuant', harmoq: 'HarmoQ',
};

export function methodLabel(method: string): string {
  return METHOD_LABELS[method] ?? method;
}

export const ARCH_LABELS: Record<string, string> = { 'swinir-light': 'SwinIR-light', 'swinir-classical': 'SwinIR' };

/** The float model's bits label in the tables. */
export const FP_BITS = 'W32A32';

/**
 * Marks the best and second-best distinct printed values (higher is better); missing values are never
 * marked, and a column needs two values before anything is "best".
 */
export function rankColumn(texts: readonly (string | null)[]): Rank[] {
  const values = texts.map((t) => (t === null || t === '' ? null : Number(t)));
  const present = values.filter((v): v is number => v !== null);
  if (present.length < 2) return values.map(() => 0);
  const distinct = [...new Set(present)].sort((a, b) => b - a);
  return values.map((v) => (v === null ? 0 : v === distinct[0] ? 1 : distinct.length > 1 && v === distinct[1] ? 2 : 0));
}

function columnsFor(datasets: readonly string[]): MetricColumn[] {
  return datasets.flatMap((dataset) => [
    { dataset, metric: 'psnr_y' as const, header: 'PSNR', digits: 2 },
    { dataset, metric: 'ssim_y' as const, header: 'SSIM', digits: 4 },
  ]);
}

function tableRow(row: BaselineRow, columns: readonly MetricColumn[]): TableRow {
  return {
    method: row.method,
    label: methodLabel(row.method),
    bits: row.method === 'fp' ? FP_BITS : row.bits,
    cells: columns.map((c) => {
      const e = row.datasets[c.dataset];
      const value = e?.status === 'done' ? e[c.metric] : null;
      return { value, text: value === null ? '' : value.toFixed(c.digits), rank: 0 as Rank };
    }),
  };
}

/** Sets the ranks of a group's cells, column by column. */
function rankGroup(rows: TableRow[]): void {
  if (rows.length === 0) return;
  for (let c = 0; c < rows[0].cells.length; c++) {
    const ranks = rankColumn(rows.map((r) => r.cells[c].text));
    rows.forEach((r, i) => { r.cells[c].rank = ranks[i]; });
  }
}

/** One table per scale, rows in the source's method and bits order. */
export function baselineTables(source: BaselinesSource): ResultTable[] {
  const scales = [...new Set(source.rows.map((r) => r.scale))].sort((a, b) => a - b);
  const columns = columnsFor(source.datasets);
  return scales.map((scale) => {
    const rows = source.rows.filter((r) => r.scale === scale);
    const groups: TableGroup[] = [];
    const fp = rows.filter((r) => r.method === 'fp');
    if (fp.length > 0) groups.push({ bits: FP_BITS, ranked: false, rows: fp.map((r) => tableRow(r, columns)) });
    const bitsOrder = [...source.bits, ...rows.map((r) => r.bits).filter((b) => b !== 'FP' && !source.bits.includes(b))];
    for (const bits of [...new Set(bitsOrder)]) {
      const inGroup = rows.filter((r) => r.method !== 'fp' && r.bits === bits)
        .sort((a, b) => rankOf(source.methods, a.method) - rankOf(source.methods, b.method));
      if (inGroup.length === 0) continue;
      const group: TableGroup = { bits, ranked: true, rows: inGroup.map((r) => tableRow(r, columns)) };
      rankGroup(group.rows);
      groups.push(group);
    }
    return {
      name: `baselines-x${scale}`, arch: source.arch, scale, checkpoint: source.checkpoints[scale] ?? 'unknown',
      preset: source.preset, seed: source.seed, datasets: source.datasets, columns, groups,
    };
  });
}

function rankOf(order: readonly string[], item: string): number {
  const i = order.indexOf(item);
  return i < 0 ? order.length : i;
}
