/**
 * Chart builders for the figures of experiments that do not exist yet (`asymmetry`, `sensitivity`): typed
 * rows in, chart models out, so each experiment's aggregate only has to produce the rows.
 */
import { PALETTE, type BarChart, type LineChart } from './charts';
import type { NamedChart } from './curves';

/** One asymmetry measurement: only the weights, only the activations, or both quantized to `bits`. */
export interface AsymmetryRow {
  quantized: 'weights' | 'activations' | 'both';
  bits: number;
  dataset: string;
  /** Drop from the float model (FP minus quantized), null when the cell is missing. */
  psnrDrop: number | null;
  ssimDrop: number | null;
}

/**
 * The paper's claim in two charts per dataset: PSNR drop and SSIM drop vs bits, weight-only against
 * activation-only quantization.
 */
export function asymmetryCharts(rows: readonly AsymmetryRow[]): NamedChart<LineChart>[] {
  const datasets = [...new Set(rows.map((r) => r.dataset))];
  const bits = [...new Set(rows.map((r) => r.bits))].sort((a, b) => a - b).map(String);
  // Both quantized is drawn only when measured: the claim is about the two sides apart.
  const targets = ([['weights', 'weights only'], ['activations', 'activations only'], ['both', 'both']] as const)
    .filter(([t]) => t !== 'both' || rows.some((r) => r.quantized === 'both'));
  const out: NamedChart<LineChart>[] = [];
  for (const dataset of datasets) {
    for (const [metric, field, unit] of [['psnr', 'psnrDrop', ' (dB)'], ['ssim', 'ssimDrop', '']] as const) {
      out.push({
        name: `asymmetry-${metric}-${dataset}`,
        chart: {
          title: `${metric.toUpperCase()} drop from FP, ${dataset}`,
          xLabel: 'bits',
          yLabel: `${metric.toUpperCase()} drop${unit}`,
          categories: bits,
          series: targets.map(([target, label], i) => ({
            name: target, label, color: PALETTE[i],
            points: rows
              .filter((r) => r.dataset === dataset && r.quantized === target && r[field] !== null)
              .map((r) => ({ category: String(r.bits), y: r[field]! })),
          })),
        },
      });
    }
  }
  return out;
}

/** One layer quantized alone (the rest in float): its PSNR drop from the float model. */
export interface SensitivityRow {
  /** Layer name, e.g. `layers.0.residual_group.blocks.1.attn.qkv`. */
  layer: string;
  /** Position in the network (bars are drawn in this order). */
  index: number;
  /** Stage or block kind, for the bar color (e.g. `attn`, `mlp`, `conv`). */
  group: string;
  psnrDrop: number | null;
}

/** Per-layer sensitivity: one bar per layer with a value, colored by group. */
export function sensitivityChart(rows: readonly SensitivityRow[], title = 'Per-layer sensitivity'): NamedChart<BarChart> {
  const groups = [...new Set(rows.map((r) => r.group))];
  const bars = rows
    .filter((r) => r.psnrDrop !== null)
    .sort((a, b) => a.index - b.index)
    .map((r) => ({ category: r.layer, value: r.psnrDrop!, color: PALETTE[groups.indexOf(r.group) % PALETTE.length] }));
  return { name: 'sensitivity', chart: { title, xLabel: 'layer', yLabel: 'PSNR drop (dB)', bars } };
}
