/**
 * PSNR-vs-bits curves from the baselines rows: one chart per scale x dataset, one line per method over the
 * bit widths (lowest on the left), the float model as a dashed reference. Missing cells are left out.
 */
import { orderBits, type BaselinesSource } from '../tables/source';
import { ARCH_LABELS, methodLabel } from '../tables/table';
import { PALETTE, type LineChart } from './charts';

export interface NamedChart<C> {
  /** File stem. */
  name: string;
  chart: C;
}

export function psnrBitsCharts(source: BaselinesSource): NamedChart<LineChart>[] {
  const scales = [...new Set(source.rows.map((r) => r.scale))].sort((a, b) => a - b);
  const arch = ARCH_LABELS[source.arch] ?? source.arch;
  const charts: NamedChart<LineChart>[] = [];
  for (const scale of scales) {
    const rows = source.rows.filter((r) => r.scale === scale);
    const bits = orderBits(rows.filter((r) => r.method !== 'fp').map((r) => r.bits)).reverse();
    for (const dataset of source.datasets) {
      const value = (r: (typeof rows)[number]) => (r.datasets[dataset]?.status === 'done' ? r.datasets[dataset].psnr_y : null);
      const fp = rows.find((r) => r.method === 'fp');
      const fpValue = fp ? value(fp) : null;
      const series = source.methods.map((method, i) => ({
        name: method,
        label: methodLabel(method),
        color: PALETTE[i % PALETTE.length],
        points: rows
          .filter((r) => r.method === method && value(r) !== null)
          .map((r) => ({ category: r.bits, y: value(r)! })),
      })).filter((s) => s.points.length > 0);
      if (series.length === 0 && fpValue === null) continue;
      charts.push({
        name: `psnr-bits-x${scale}-${dataset}`,
        chart: {
          title: `${arch} x${scale}, ${dataset}`,
          xLabel: 'bits (weights / activations)',
          yLabel: 'PSNR-Y (dB)',
          categories: bits,
          series,
          ...(fpValue === null ? {} : { reference: { y: fpValue, label: `FP ${fpValue.toFixed(2)} dB` } }),
        },
      });
    }
  }
  return charts;
}
