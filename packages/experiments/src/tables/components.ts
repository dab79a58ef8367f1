/**
 * Tables and figures of the component ablation. Source: `results/components/components.json` (written by
 * `harmoq exp components`), whose entries name their cells; each named cell's stored result refreshes its
 * values, then the rows and deltas are derived again with the experiment's own `componentRows`.
 * Per scale: the incremental table (2DQuant, DOBI, +HSO, +ABR, +SRC) and the leave-one-out table (all three,
 * then without each stage), in the paper layout: rows grouped by bit width, datasets x (PSNR, SSIM) on the Y
 * channel, best per bit width bold and second underlined, plus one PSNR delta column per dataset.
 */
import * as path from 'node:path';
import {
  componentRows, INCREMENTAL, LEAVE_ONE_OUT, type ComponentEntry, type ComponentRow, type ComponentsRowsFile, type ComponentVariant, type Stage,
} from '../experiments/components';
import { PALETTE, type LineChart } from '../figures/charts';
import type { NamedChart } from '../figures/curves';
import { cell, decimalsFor, type PlainCell, type PlainColumn, type PlainTable } from './plain';
import { orderBits } from './source';
import { readRefreshedRows } from './studies';
import { ARCH_LABELS, rankColumn } from './table';

export interface ComponentsSource {
  origin: string;
  config: ComponentsRowsFile['config'];
  rows: ComponentRow[];
}

export function loadComponents(resultsDir: string): ComponentsSource | null {
  const read = readRefreshedRows<ComponentEntry, ComponentsRowsFile>(resultsDir, 'components');
  return read && { origin: read.origin, config: read.file.config, rows: componentRows(read.entries, read.file.config.bits) };
}

const STAGE_LABELS: Record<Stage, string> = { hso: 'HSO', abr: 'ABR', src: 'SRC' };
const INCREMENTAL_LABELS: Record<string, string> = {
  '2dquant': '2DQuant', dobi: 'DOBI (no stage)', hso: '+HSO', 'hso+abr': '+HSO +ABR', 'hso+abr+src': '+HSO +ABR +SRC (HarmoQ)',
};
const looLabel = (without: Stage | null) => (without === null ? 'HarmoQ (all three)' : `without ${STAGE_LABELS[without]}`);

const signed = (v: number | null, digits: number): PlainCell => cell(v, v === null ? null : `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`);

interface TableSpec {
  name: string;
  title: string;
  /** Rows of one bit group: variant and label. */
  rows: { variant: ComponentVariant; label: string }[];
  /** The PSNR delta column is this row minus `reference`'s. */
  reference: ComponentVariant;
  deltaMeaning: string;
}

/** One table: per bit width a group of rows, per dataset PSNR, SSIM (ranked) and the PSNR delta. */
function ablationTable(source: ComponentsSource, scale: number, spec: TableSpec): PlainTable {
  const { config } = source;
  const mine = source.rows.filter((r) => r.scale === scale);
  const datasets = [...new Set(mine.flatMap((r) => Object.keys(r.datasets)))];
  const bitsGroups = orderBits(mine.map((r) => r.bits)).filter((b) => spec.rows.some((s) => mine.some((r) => r.bits === b && r.variant === s.variant)));
  const body: PlainCell[][] = [];
  const rules: number[] = [];
  const delta = (bits: string, variant: ComponentVariant, d: string, m: 'psnr_y' | 'ssim_y'): number | null => {
    const e = mine.find((r) => r.bits === bits && r.variant === variant)?.datasets[d];
    const ref = mine.find((r) => r.bits === bits && r.variant === spec.reference)?.datasets[d];
    return e?.status === 'done' && ref?.status === 'done' && e[m] != null && ref[m] != null ? e[m]! - ref[m]! : null;
  };
  // Enough decimals that the deltas show: at the default sites the rows differ by milli-dB.
  const digitsOf = (m: 'psnr_y' | 'ssim_y', base: number, max: number) =>
    decimalsFor(bitsGroups.flatMap((b) => spec.rows.flatMap((s) => datasets.map((d) => delta(b, s.variant, d, m)))), base, max);
  const psnrDigits = digitsOf('psnr_y', 2, 4);
  const ssimDigits = digitsOf('ssim_y', 4, 5);
  for (const bits of bitsGroups) {
    if (body.length > 0) rules.push(body.length);
    const find = (variant: ComponentVariant) => mine.find((r) => r.bits === bits && r.variant === variant);
    const group = spec.rows.filter((s) => find(s.variant)).map((s): PlainCell[] => {
      const row = find(s.variant)!;
      return [cell(s.variant, s.label), cell(bits), ...datasets.flatMap((d) => {
        const e = row.datasets[d];
        return [
          cell(e?.psnr_y ?? null, e?.psnr_y == null ? null : e.psnr_y.toFixed(psnrDigits)),
          cell(e?.ssim_y ?? null, e?.ssim_y == null ? null : e.ssim_y.toFixed(ssimDigits)),
          signed(delta(bits, s.variant, d, 'psnr_y'), psnrDigits),
        ];
      })];
    });
    // Best and second per bit group on the printed PSNR and SSIM (not the deltas).
    datasets.forEach((_, i) => {
      for (const col of [2 + 3 * i, 3 + 3 * i]) {
        const ranks = rankColumn(group.map((r) => r[col].text));
        group.forEach((r, k) => { if (ranks[k] > 0) r[col] = { ...r[col], rank: ranks[k] as 1 | 2 }; });
      }
    });
    body.push(...group);
  }
  const columns: PlainColumn[] = [
    { header: 'Method', csv: 'variant', align: 'l' }, { header: 'Bits', csv: 'bits', align: 'l' },
    ...datasets.flatMap((d): PlainColumn[] => [
      { header: 'PSNR', csv: `${d}_psnr_y`, align: 'r' }, { header: 'SSIM', csv: `${d}_ssim_y`, align: 'r' },
      { header: 'ΔPSNR', latex: '$\\Delta$PSNR', csv: `${d}_psnr_y_delta`, align: 'r' },
    ]),
  ];
  const facts = `checkpoint ${path.basename(config.checkpoint.replaceAll('{scale}', String(scale)))}, preset ${config.preset}, seed ${config.seed}`;
  return {
    name: spec.name,
    title: `${ARCH_LABELS[config.arch] ?? config.arch} x${scale}, ${spec.title}`,
    caption: `${facts}. PSNR (dB) / SSIM on the Y channel; ${spec.deltaMeaning}. HarmoQ runs HSO, then DOBI bounds, ABR, SRC; ` +
      'DOBI is HarmoQ with every stage off. Best per bit width in bold, second underlined; -- not run yet.',
    groups: [{ label: '', span: 2 }, ...datasets.map((d) => ({ label: d, span: 3 }))],
    columns, rows: body, rules,
  };
}

export function componentTables(source: ComponentsSource): PlainTable[] {
  const scales = [...new Set(source.rows.map((r) => r.scale))].sort((a, b) => a - b);
  return scales.flatMap((scale) => [
    ablationTable(source, scale, {
      name: `components-incremental-x${scale}`, title: 'HarmoQ stages added one at a time',
      rows: INCREMENTAL.map((variant) => ({ variant, label: INCREMENTAL_LABELS[variant] })),
      reference: '2dquant', deltaMeaning: 'the PSNR delta is this row minus 2DQuant at the same bits',
    }),
    ablationTable(source, scale, {
      name: `components-loo-x${scale}`, title: 'HarmoQ leave-one-out',
      rows: LEAVE_ONE_OUT.map((r) => ({ variant: r.variant, label: looLabel(r.without) })),
      reference: 'hso+abr+src', deltaMeaning: 'the PSNR delta is this row minus all three stages at the same bits (what leaving a stage out costs)',
    }),
  ]).filter((t) => t.rows.length > 0);
}

const SHORT_LABELS: Record<string, string> = { '2dquant': '2DQuant', dobi: 'DOBI', hso: '+HSO', 'hso+abr': '+ABR', 'hso+abr+src': '+SRC' };

/** PSNR-Y and SSIM-Y along the incremental rows, one line per bit width, per scale x dataset. */
export function componentFigures(source: ComponentsSource): NamedChart<LineChart>[] {
  const charts: NamedChart<LineChart>[] = [];
  const arch = ARCH_LABELS[source.config.arch] ?? source.config.arch;
  const scales = [...new Set(source.rows.map((r) => r.scale))].sort((a, b) => a - b);
  for (const scale of scales) {
    const mine = source.rows.filter((r) => r.scale === scale && INCREMENTAL.includes(r.variant));
    const variants = INCREMENTAL.filter((v) => mine.some((r) => r.variant === v));
    const bits = orderBits(mine.map((r) => r.bits));
    const datasets = [...new Set(mine.flatMap((r) => Object.keys(r.datasets)))];
    for (const dataset of datasets) {
      for (const [metric, unit] of [['psnr', ' (dB)'], ['ssim', '']] as const) {
        const field = metric === 'psnr' ? 'psnr_y' : 'ssim_y';
        charts.push({
          name: `components-x${scale}-${metric}-${dataset}`,
          chart: {
            title: `${arch} x${scale}, ${dataset}: HarmoQ stages added`,
            xLabel: 'stages (in run order)',
            yLabel: `${metric.toUpperCase()}-Y${unit}`,
            categories: variants.map((v) => SHORT_LABELS[v]),
            series: bits.map((b, i) => ({
              name: b, label: b, color: PALETTE[i % PALETTE.length],
              points: mine.filter((r) => r.bits === b && r.datasets[dataset]?.[field] != null)
                .sort((x, y) => INCREMENTAL.indexOf(x.variant) - INCREMENTAL.indexOf(y.variant))
                .map((r) => ({ category: SHORT_LABELS[r.variant], y: r.datasets[dataset][field]! })),
            })),
          },
        });
      }
    }
  }
  return charts;
}
