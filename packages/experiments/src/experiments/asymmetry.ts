/**
 * `asymmetry`: the paper's claim that on SwinIR weight quantization mainly costs SSIM and activation
 * quantization mainly costs PSNR. Per scale, method and bit width one calibration (WbAb), evaluated three
 * ways from the same bounds: weights only, activations only (`restrictQuantization`), and both (the plain
 * eval, the same cell the baselines grid has). The asymmetry index is defined in docs/asymmetry.md.
 */
import { stringify } from 'csv-stringify/sync';
import { z } from 'zod';
import { DEFAULT_SEED, SUPPORTED_BITS, type QuantRole } from '@harmoq/quant';
import { calibrateCell, evalCell, type Cell } from '../cells';
import { defineExperiment, writeRowsFiles, type AggregateContext, type GridContext } from '../grid';
import type { CellStore } from '../store';
import {
  byCost, calibrationRequest, checkpointFor, DATASETS_FIELD, METHOD_FIELD, MODEL_FIELDS, QUANT_FIELD, SCALES_FIELD, STAND_IN,
} from './baselines';

export const ASYMMETRY_SETTINGS = ['weights', 'activations', 'both'] as const;
export type AsymmetrySetting = (typeof ASYMMETRY_SETTINGS)[number];
const ROLES: Record<AsymmetrySetting, QuantRole[] | undefined> = { weights: ['weight'], activations: ['activation'], both: undefined };

export const asymmetrySchema = z.strictObject({
  ...MODEL_FIELDS,
  methods: z.array(METHOD_FIELD).min(1),
  /** One calibration per bit width b at WbAb; each setting uses its weight or activation half. */
  bits: z.array(z.number().int().refine((b) => SUPPORTED_BITS.includes(b), { message: `bits must be one of ${SUPPORTED_BITS.join(', ')}` })).min(1),
  settings: z.array(z.enum(ASYMMETRY_SETTINGS)).min(1),
  scales: SCALES_FIELD,
  datasets: DATASETS_FIELD,
  /**
   * Drops below these (PSNR dB, SSIM) are noise at the printed precision: an index built on one is undefined
   * (printed `--`), see docs/asymmetry.md.
   */
  floor: z.strictObject({ psnr: z.number().min(0), ssim: z.number().min(0) }),
  quant: QUANT_FIELD,
});
export type AsymmetryConfig = z.infer<typeof asymmetrySchema>;

function cells(config: AsymmetryConfig, ctx: GridContext): Cell[] {
  const out: Cell[] = [];
  const settings = ASYMMETRY_SETTINGS.filter((s) => config.settings.includes(s));
  for (const scale of [...new Set(config.scales)].sort((a, b) => b - a)) {
    const model = { arch: config.arch, scale, checkpointPath: checkpointFor(config, scale, ctx.dataDir), dataDir: ctx.dataDir };
    const calibrations = config.methods.flatMap((method) => [...new Set(config.bits)].sort((a, b) => b - a).map((bits) => {
      const cal = calibrateCell({ ...model, request: calibrationRequest(config, method, bits, bits) });
      // `--only bits=4`: the bit width, not the W4A4 label (every calibration here is WbAb).
      return { ...cal, axes: { ...cal.axes, bits: String(bits) } };
    }));
    const emitted = new Set<string>();
    for (const dataset of byCost(config.datasets)) {
      // Every drop needs the float eval: no method, bits or setting axis, so no `--only` on those drops it.
      const fp = evalCell({ ...model, dataset });
      out.push({ ...fp, axes: { scale: fp.axes.scale, dataset } });
      for (const cal of calibrations) {
        if (!emitted.has(cal.key)) {
          emitted.add(cal.key);
          out.push(cal);
        }
        for (const setting of settings) {
          out.push(evalCell({ ...model, dataset, quant: cal, roles: ROLES[setting], axes: { setting } }));
        }
      }
    }
  }
  return out;
}

/** One stored eval of the grid: the float model (`setting` 'fp', `bits` null) or one setting of one calibration. */
export interface AsymmetryEntry {
  scale: number;
  dataset: string;
  method: string;
  bits: number | null;
  setting: AsymmetrySetting | 'fp';
  cell: string;
  status: 'done' | 'missing';
  psnr_y: number | null;
  ssim_y: number | null;
}

export interface SettingDrop {
  psnr_y: number | null;
  ssim_y: number | null;
  /** FP minus quantized; null when either is missing. */
  psnr_drop: number | null;
  ssim_drop: number | null;
  /** (SSIM drop / FP SSIM) / (PSNR drop / FP PSNR); null when a drop is under the floor. */
  ratio: number | null;
}

/** One (scale, method, bits, dataset): the drops of each setting and the asymmetry index. */
export interface AsymmetryDrops {
  scale: number;
  method: string;
  bits: number;
  dataset: string;
  fp: { psnr_y: number | null; ssim_y: number | null };
  settings: Partial<Record<AsymmetrySetting, SettingDrop>>;
  /** ratio(weights) / ratio(activations): > 1 when weights cost relatively more SSIM than activations do. */
  index: number | null;
}

export function entriesFromCells(grid: readonly Cell[], store: Pick<CellStore, 'readEval'>): AsymmetryEntry[] {
  return grid.filter((c) => c.kind === 'eval').map((c) => {
    const r = store.readEval(c);
    return {
      scale: c.config.scale, dataset: c.axes.dataset, method: c.axes.method ?? 'fp', bits: c.axes.bits === undefined ? null : Number(c.axes.bits),
      setting: (c.axes.setting ?? 'fp') as AsymmetryEntry['setting'], cell: c.key, status: r ? 'done' : 'missing',
      psnr_y: r?.psnr_y ?? null, ssim_y: r?.ssim_y ?? null,
    };
  });
}

/** The relative-loss ratio of one setting; null when a drop is missing or under the floor (noise, or a gain). */
export function lossRatio(fp: { psnr_y: number; ssim_y: number }, drop: { psnr: number; ssim: number }, floor: AsymmetryConfig['floor']): number | null {
  if (!(drop.psnr >= floor.psnr && drop.ssim >= floor.ssim && drop.psnr > 0 && drop.ssim > 0)) return null;
  return (drop.ssim / fp.ssim_y) / (drop.psnr / fp.psnr_y);
}

/** Drops and indices from the entries; rows in scale, method (config order), bits (high first), dataset order. */
export function asymmetryRows(entries: readonly AsymmetryEntry[], floor: AsymmetryConfig['floor'], methods: readonly string[]): AsymmetryDrops[] {
  const fpOf = new Map(entries.filter((e) => e.setting === 'fp').map((e) => [`${e.scale}|${e.dataset}`, e]));
  const rows = new Map<string, AsymmetryDrops>();
  for (const e of entries) {
    if (e.setting === 'fp' || e.bits === null) continue;
    const id = `${e.scale}|${e.method}|${e.bits}|${e.dataset}`;
    const fpEntry = fpOf.get(`${e.scale}|${e.dataset}`);
    const fp = { psnr_y: fpEntry?.psnr_y ?? null, ssim_y: fpEntry?.ssim_y ?? null };
    let row = rows.get(id);
    if (!row) {
      row = { scale: e.scale, method: e.method, bits: e.bits, dataset: e.dataset, fp, settings: {}, index: null };
      rows.set(id, row);
    }
    const known = fp.psnr_y !== null && fp.ssim_y !== null && e.psnr_y !== null && e.ssim_y !== null;
    const psnrDrop = known ? fp.psnr_y! - e.psnr_y! : null;
    const ssimDrop = known ? fp.ssim_y! - e.ssim_y! : null;
    row.settings[e.setting] = {
      psnr_y: e.psnr_y, ssim_y: e.ssim_y, psnr_drop: psnrDrop, ssim_drop: ssimDrop,
      ratio: known ? lossRatio({ psnr_y: fp.psnr_y!, ssim_y: fp.ssim_y! }, { psnr: psnrDrop!, ssim: ssimDrop! }, floor) : null,
    };
  }
  for (const row of rows.values()) {
    const w = row.settings.weights?.ratio ?? null, a = row.settings.activations?.ratio ?? null;
    row.index = w !== null && a !== null ? w / a : null;
  }
  const datasets = byCost(entries.map((e) => e.dataset));
  return [...rows.values()].sort((x, y) => x.scale - y.scale || methods.indexOf(x.method) - methods.indexOf(y.method) ||
    y.bits - x.bits || datasets.indexOf(x.dataset) - datasets.indexOf(y.dataset));
}

/** Geometric mean of the defined indices per (scale, method), and how many were defined. */
export function indexSummary(rows: readonly AsymmetryDrops[]): { scale: number; method: string; defined: number; total: number; geomean: number | null; above1: number }[] {
  const groups = new Map<string, AsymmetryDrops[]>();
  for (const r of rows) groups.set(`${r.scale}|${r.method}`, [...(groups.get(`${r.scale}|${r.method}`) ?? []), r]);
  return [...groups.values()].map((g) => {
    const defined = g.map((r) => r.index).filter((v): v is number => v !== null);
    return {
      scale: g[0].scale, method: g[0].method, defined: defined.length, total: g.length,
      geomean: defined.length ? Math.exp(defined.reduce((s, v) => s + Math.log(v), 0) / defined.length) : null,
      above1: defined.filter((v) => v > 1).length,
    };
  });
}

const full = (v: number | null | undefined) => (v === null || v === undefined ? '' : String(v));

export function asymmetryCsv(rows: readonly AsymmetryDrops[]): string {
  const header = ['scale', 'method', 'bits', 'dataset', 'fp_psnr_y', 'fp_ssim_y',
    ...ASYMMETRY_SETTINGS.flatMap((s) => [`${s}_psnr_y`, `${s}_ssim_y`, `${s}_psnr_drop`, `${s}_ssim_drop`, `${s}_ratio`]), 'asymmetry_index'];
  return stringify([header, ...rows.map((r) => [
    r.scale, r.method, r.bits, r.dataset, full(r.fp.psnr_y), full(r.fp.ssim_y),
    ...ASYMMETRY_SETTINGS.flatMap((s) => {
      const d = r.settings[s];
      return [full(d?.psnr_y), full(d?.ssim_y), full(d?.psnr_drop), full(d?.ssim_drop), full(d?.ratio)];
    }),
    full(r.index),
  ])]);
}

/** The rows file: config, every eval's cell key and values (tables refresh them from the store), derived rows. */
export interface AsymmetryRowsFile {
  experiment: 'asymmetry';
  config: AsymmetryConfig;
  cells: { total: number; done: number; missing: number };
  entries: AsymmetryEntry[];
  rows: AsymmetryDrops[];
  summary: ReturnType<typeof indexSummary>;
}

async function aggregate(config: AsymmetryConfig, grid: readonly Cell[], ctx: AggregateContext): Promise<string[]> {
  const entries = entriesFromCells(grid, ctx.store);
  const rows = asymmetryRows(entries, config.floor, config.methods);
  return writeRowsFiles('asymmetry', config, grid, ctx, asymmetryCsv(rows), { entries, rows, summary: indexSummary(rows) });
}

export const asymmetry = defineExperiment<AsymmetryConfig>({
  name: 'asymmetry',
  aliases: [],
  description: 'weight-only vs activation-only vs both, from one calibration per bit width: PSNR/SSIM drops and the asymmetry index',
  schema: asymmetrySchema,
  defaults: (preset) => ({
    preset,
    seed: DEFAULT_SEED,
    ...STAND_IN,
    methods: ['minmax', 'dobi'],
    bits: [2, 3, 4, 6, 8],
    settings: [...ASYMMETRY_SETTINGS],
    scales: [2, 4],
    datasets: ['Set5', 'Set14'],
    floor: { psnr: 0.05, ssim: 0.0005 },
    quant: {},
  }),
  cells,
  aggregate,
});
