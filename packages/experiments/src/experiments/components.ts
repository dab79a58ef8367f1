/**
 * `components`: the component ablation of HarmoQ (issue 10 item 3). Per scale and bit width, the 2DQuant
 * baseline, DOBI (= HarmoQ with every stage off), the stages added one at a time in the order HarmoQ runs them
 * (HSO, then ABR, then SRC; see packages/quant/src/methods/harmoq.ts), and leave-one-out (all three minus one).
 * Each HarmoQ variant is one `harmoq` calibration with its stage switches set through the request's `set` list
 * (`harmoq.hso=false` ...). The incremental "+HSO +ABR" and the leave-one-out "without SRC" are the same
 * stages, so the same cell. Tables: `results/components/components.{csv,json}` and, through `harmoq tables`,
 * an incremental and a leave-one-out table per scale.
 */
import { stringify } from 'csv-stringify/sync';
import { z } from 'zod';
import { DEFAULT_SEED, type QuantizeRequest } from '@harmoq/quant';
import { calibrateCell, evalCell, type Cell } from '../cells';
import { ExperimentError } from '../errors';
import { defineExperiment, writeRowsFiles, type AggregateContext, type GridContext } from '../grid';
import type { CellStore } from '../store';
import { storedValues, type StoredValues } from '../entries';
import {
  BITS_FIELD, byCost, calibrationRequest, checkpointFor, DATASETS_FIELD, MODEL_FIELDS, parseBits, QUANT_FIELD, SCALES_FIELD, STAND_IN,
} from './baselines';

/** HarmoQ's stages in the order it runs them. */
export const STAGES = ['hso', 'abr', 'src'] as const;
export type Stage = (typeof STAGES)[number];

interface VariantSpec {
  method: '2dquant' | 'dobi' | 'harmoq';
  /** The HarmoQ stages on; null for 2DQuant, which is not HarmoQ. */
  stages: readonly Stage[] | null;
}

/**
 * Every row of both tables, named by the stages it runs. The `dobi` row is the method `dobi`, not `harmoq` with
 * every stage off: with all three off harmoq.ts runs exactly `dobi.calibrate(ctx, { search: 'two-sided', steps })`
 * (tested in @harmoq/quant), so the numbers are the same, and the `dobi` request is the baselines grid's cell, so
 * it is computed once for both grids. `quant.harmoq.steps` is forwarded to it to keep the two equal.
 */
export const COMPONENT_VARIANTS = {
  '2dquant': { method: '2dquant', stages: null },
  dobi: { method: 'dobi', stages: [] },
  hso: { method: 'harmoq', stages: ['hso'] },
  'hso+abr': { method: 'harmoq', stages: ['hso', 'abr'] },
  'hso+abr+src': { method: 'harmoq', stages: ['hso', 'abr', 'src'] },
  'abr+src': { method: 'harmoq', stages: ['abr', 'src'] },
  'hso+src': { method: 'harmoq', stages: ['hso', 'src'] },
} as const satisfies Record<string, VariantSpec>;
export type ComponentVariant = keyof typeof COMPONENT_VARIANTS;
export const VARIANT_NAMES = Object.keys(COMPONENT_VARIANTS) as [ComponentVariant, ...ComponentVariant[]];

/** The incremental table: 2DQuant, then DOBI and the stages added in run order. */
export const INCREMENTAL: readonly ComponentVariant[] = ['2dquant', 'dobi', 'hso', 'hso+abr', 'hso+abr+src'];
/** The leave-one-out table: all three, then without each stage (in run order of the stage left out). */
export const LEAVE_ONE_OUT: readonly { variant: ComponentVariant; without: Stage | null }[] = [
  { variant: 'hso+abr+src', without: null }, { variant: 'abr+src', without: 'hso' },
  { variant: 'hso+src', without: 'abr' }, { variant: 'hso+abr', without: 'src' },
];

/**
 * The variants whose cells are whole methods of the baselines grid (same request, same key): 2dquant, dobi and
 * HarmoQ with its default stages. The others are ablation-only.
 */
export const WHOLE_METHOD_VARIANTS: readonly ComponentVariant[] = ['2dquant', 'dobi', 'hso+abr+src'];


export const componentsSchema = z.strictObject({
  ...MODEL_FIELDS,
  variants: z.array(z.enum(VARIANT_NAMES)).min(1),
  bits: BITS_FIELD,
  scales: SCALES_FIELD,
  datasets: DATASETS_FIELD,
  /** Calibration overrides as in `baselines`; the stage switches `harmoq.{hso,abr,src}` belong to the variants. */
  quant: QUANT_FIELD,
});
export type ComponentsConfig = z.infer<typeof componentsSchema>;

/** The resolved calibration request of one variant at one bit width. */
export function variantRequest(config: ComponentsConfig, variant: ComponentVariant, wbits: number, abits: number): QuantizeRequest {
  const spec: VariantSpec = COMPONENT_VARIANTS[variant];
  for (const key of Object.keys(config.quant)) {
    if ((STAGES as readonly string[]).some((s) => key === `harmoq.${s}`) || key.startsWith('dobi.')) {
      throw new ExperimentError(
        `quant.${key}: the components grid sets the HarmoQ stages per variant and runs its DOBI row as HarmoQ without stages ` +
          `(choose rows with --set variants=... or --only variant=...; DOBI's candidates follow quant.harmoq.steps)`,
        { value: key, choices: VARIANT_NAMES },
      );
    }
  }
  let quant = config.quant;
  if (spec.method === 'harmoq') quant = { ...quant, ...Object.fromEntries(STAGES.map((s) => [`harmoq.${s}`, spec.stages!.includes(s)])) };
  else if (spec.method === 'dobi' && quant['harmoq.steps'] !== undefined) quant = { ...quant, 'dobi.steps': quant['harmoq.steps'] };
  return calibrationRequest({ ...config, quant }, spec.method, wbits, abits);
}

function cells(config: ComponentsConfig, ctx: GridContext): Cell[] {
  const out: Cell[] = [];
  const variants = [...new Set(config.variants)];
  for (const scale of [...new Set(config.scales)].sort((a, b) => b - a)) {
    const model = { arch: config.arch, scale, checkpointPath: checkpointFor(config, scale, ctx.dataDir), dataDir: ctx.dataDir };
    const calibrations = variants.flatMap((variant) => [...new Set(config.bits)].map((bits): Cell => {
      const { wbits, abits } = parseBits(bits);
      const cal = calibrateCell({ ...model, request: variantRequest(config, variant, wbits, abits) });
      const label = COMPONENT_VARIANTS[variant].method === 'harmoq' ? `${cal.label} ${variant}` : cal.label;
      return { ...cal, label, axes: { ...cal.axes, variant } };
    }));
    const emitted = new Set<string>();
    for (const dataset of byCost(config.datasets)) {
      for (const cal of calibrations) {
        if (!emitted.has(cal.key)) {
          emitted.add(cal.key);
          out.push(cal);
        }
        const harmoq = cal.axes.method === 'harmoq';
        out.push(evalCell({ ...model, dataset, quant: cal, ...(harmoq ? { axes: { variant: cal.axes.variant } } : {}) }));
      }
    }
  }
  return out;
}

/** One stored cell of the grid: a calibration (`dataset` null) or an eval of one variant on one set. */
export interface ComponentEntry extends StoredValues {
  scale: number;
  bits: string;
  variant: ComponentVariant;
}

export interface Delta {
  psnr_y: number;
  ssim_y: number;
}

export interface ComponentDatasetEntry {
  cell: string;
  status: 'done' | 'missing';
  psnr_y: number | null;
  ssim_y: number | null;
  /** This row minus the 2dquant / dobi row at the same scale, bits and set; null when either is missing. */
  vs_2dquant: Delta | null;
  vs_dobi: Delta | null;
}

export interface ComponentRow {
  scale: number;
  bits: string;
  variant: ComponentVariant;
  method: string;
  stages: Stage[] | null;
  calibration: { cell: string; status: 'done' | 'missing'; seconds: number | null } | null;
  datasets: Record<string, ComponentDatasetEntry>;
}

export function componentEntries(grid: readonly Cell[], store: Pick<CellStore, 'readEval' | 'readQParams'>): ComponentEntry[] {
  return grid.map((c): ComponentEntry => ({
    scale: c.config.scale, bits: c.axes.bits, variant: c.axes.variant as ComponentVariant, ...storedValues(c, store),
  }));
}

function delta(row: { psnr_y: number | null; ssim_y: number | null }, ref: ComponentEntry | undefined): Delta | null {
  if (row.psnr_y === null || row.ssim_y === null || !ref || ref.psnr_y === null || ref.ssim_y === null) return null;
  return { psnr_y: row.psnr_y - ref.psnr_y, ssim_y: row.ssim_y - ref.ssim_y };
}

/** Rows in scale, bits (`bits` order), variant (VARIANT_NAMES order); datasets cheapest first. */
export function componentRows(entries: readonly ComponentEntry[], bits: readonly string[]): ComponentRow[] {
  const id = (e: { scale: number; bits: string; variant: string }) => `${e.scale}|${e.bits}|${e.variant}`;
  const evalOf = new Map(entries.filter((e) => e.dataset !== null).map((e) => [`${id(e)}|${e.dataset}`, e]));
  const rows = new Map<string, ComponentRow>();
  for (const e of entries) {
    let row = rows.get(id(e));
    if (!row) {
      const spec: VariantSpec = COMPONENT_VARIANTS[e.variant];
      row = { scale: e.scale, bits: e.bits, variant: e.variant, method: spec.method, stages: spec.stages && [...spec.stages], calibration: null, datasets: {} };
      rows.set(id(e), row);
    }
    if (e.dataset === null) {
      row.calibration = { cell: e.cell, status: e.status, seconds: e.seconds };
      continue;
    }
    const ref = (variant: ComponentVariant) => evalOf.get(`${id({ ...e, variant })}|${e.dataset}`);
    row.datasets[e.dataset] = {
      cell: e.cell, status: e.status, psnr_y: e.psnr_y, ssim_y: e.ssim_y, vs_2dquant: delta(e, ref('2dquant')), vs_dobi: delta(e, ref('dobi')),
    };
  }
  const datasets = byCost(entries.flatMap((e) => (e.dataset === null ? [] : [e.dataset])));
  return [...rows.values()]
    .map((row) => ({ ...row, datasets: Object.fromEntries(datasets.filter((d) => row.datasets[d]).map((d) => [d, row.datasets[d]])) }))
    .sort((a, b) => a.scale - b.scale || bits.indexOf(a.bits) - bits.indexOf(b.bits) || VARIANT_NAMES.indexOf(a.variant) - VARIANT_NAMES.indexOf(b.variant));
}

const full = (v: number | null | undefined) => (v === null || v === undefined ? '' : String(v));

export function componentsCsv(rows: readonly ComponentRow[]): string {
  const datasets = byCost(rows.flatMap((r) => Object.keys(r.datasets)));
  const header = [
    'scale', 'bits', 'variant', 'method', 'stages',
    ...datasets.flatMap((d) => [`${d}_psnr_y`, `${d}_ssim_y`, `${d}_psnr_y_vs_2dquant`, `${d}_ssim_y_vs_2dquant`, `${d}_psnr_y_vs_dobi`, `${d}_ssim_y_vs_dobi`]),
    'calibration_seconds', 'calibrate_cell', ...datasets.map((d) => `${d}_cell`),
  ];
  return stringify([header, ...rows.map((r) => [
    r.scale, r.bits, r.variant, r.method, r.stages === null ? '' : r.stages.join('+'),
    ...datasets.flatMap((d) => {
      const e = r.datasets[d];
      return [full(e?.psnr_y), full(e?.ssim_y), full(e?.vs_2dquant?.psnr_y), full(e?.vs_2dquant?.ssim_y), full(e?.vs_dobi?.psnr_y), full(e?.vs_dobi?.ssim_y)];
    }),
    full(r.calibration?.seconds), r.calibration?.cell ?? '', ...datasets.map((d) => r.datasets[d]?.cell ?? ''),
  ])]);
}

/** The rows file: config, every cell's key and values (tables refresh them from the store), derived rows. */
export interface ComponentsRowsFile {
  experiment: 'components';
  config: ComponentsConfig;
  cells: { total: number; done: number; missing: number };
  entries: ComponentEntry[];
  rows: ComponentRow[];
}

async function aggregate(config: ComponentsConfig, grid: readonly Cell[], ctx: AggregateContext): Promise<string[]> {
  const entries = componentEntries(grid, ctx.store);
  const rows = componentRows(entries, config.bits);
  return writeRowsFiles('components', config, grid, ctx, componentsCsv(rows), { entries, rows });
}

export const components = defineExperiment<ComponentsConfig>({
  name: 'components',
  aliases: [],
  description: 'HarmoQ component ablation: 2DQuant, DOBI, +HSO, +ABR, +SRC (incremental) and all three minus one (leave-one-out)',
  schema: componentsSchema,
  defaults: (preset) => ({
    preset,
    seed: DEFAULT_SEED,
    ...STAND_IN,
    // Run order: cheapest calibrations first (DOBI, then the HarmoQ variants, 2DQuant's distillation last).
    variants: ['dobi', 'hso', 'hso+abr', 'hso+abr+src', 'abr+src', 'hso+src', '2dquant'],
    bits: ['W4A4', 'W3A3', 'W2A2'],
    scales: [2, 4],
    datasets: ['Set5', 'Set14', 'B100'],
    quant: {},
  }),
  cells,
  aggregate,
});
