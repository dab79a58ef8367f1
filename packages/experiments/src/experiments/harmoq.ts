/**
 * `harmoq` (alias `headline`): the headline comparison of issue 10 item 4, HarmoQ against the project's own
 * 2DQuant with the same preset, seeds and calibration data (the seed draws the calibration patches, so both
 * methods of one seed see the same patches). Per scale x bits x dataset: each method's PSNR-Y / SSIM-Y mean and
 * sample standard deviation over the seeds, and the paired gain (challenger minus baseline on the same seed):
 * mean, standard deviation, min and max. Each row states the claim it is held to: the target gain (+0.46 dB,
 * the paper's margin) at `target.bits` on `target.dataset`, "never loses" (mean gain >= 0) at the other bit
 * widths, none otherwise; the verdict is a comparison of stored numbers, nothing is selected on them. The
 * budget of each method (gradient steps x batch x crop, patches, mean calibration wall-clock) is read from the
 * resolved requests and the stored qparams. Seed 3407 (DEFAULT_SEED, the first default) gives the same cells
 * as the baselines and components grids. Tables: `results/harmoq/harmoq.{csv,json}`, and through
 * `harmoq tables` a LaTeX/Markdown/CSV table per scale.
 */
import { stringify } from 'csv-stringify/sync';
import { z } from 'zod';
import { DEFAULT_SEED, type QuantizeRequest } from '@harmoq/quant';
import { calibrateCell, evalCell, type Cell } from '../cells';
import { defineExperiment, writeRowsFiles, type AggregateContext, type GridContext } from '../grid';
import type { CellStore } from '../store';
import { storedValues, type StoredValues } from '../entries';
import {
  BITS, BITS_FIELD, byCost, calibrationRequest, checkpointFor, DATASETS_FIELD, METHOD_FIELD, MODEL_FIELDS, parseBits, QUANT_FIELD,
  SCALES_FIELD, STAND_IN,
} from './baselines';

const SEED = MODEL_FIELDS.seed;

export const headlineSchema = z.strictObject({
  preset: MODEL_FIELDS.preset,
  arch: MODEL_FIELDS.arch,
  checkpoint: MODEL_FIELDS.checkpoint,
  seeds: z.array(SEED).min(1).refine((s) => new Set(s).size === s.length, { message: 'seeds must be distinct' }),
  baseline: METHOD_FIELD,
  challenger: METHOD_FIELD,
  bits: BITS_FIELD,
  scales: SCALES_FIELD,
  datasets: DATASETS_FIELD,
  /** The claim at one setting: the challenger's mean PSNR-Y gain over the baseline reaches `psnr_y` dB. */
  target: z.strictObject({ bits: z.enum(BITS), dataset: DATASETS_FIELD.element, psnr_y: z.number() }),
  quant: QUANT_FIELD,
}).refine((c) => c.baseline !== c.challenger, { message: 'baseline and challenger must be different methods', path: ['challenger'] });
export type HeadlineConfig = z.infer<typeof headlineSchema>;

function cells(config: HeadlineConfig, ctx: GridContext): Cell[] {
  const out: Cell[] = [];
  const methods = [config.baseline, config.challenger];
  // x4 first (a quarter of x2's pixels), the target setting's bits first, seeds in order: a partial run holds
  // whole seeds of the claim before anything else.
  const bits = [...new Set(config.bits)].sort((a, b) => Number(b === config.target.bits) - Number(a === config.target.bits));
  const datasets = byCost(config.datasets).sort((a, b) => Number(b === config.target.dataset) - Number(a === config.target.dataset));
  for (const scale of [...new Set(config.scales)].sort((a, b) => b - a)) {
    const model = { arch: config.arch, scale, checkpointPath: checkpointFor(config, scale, ctx.dataDir), dataDir: ctx.dataDir };
    const calibrations = bits.flatMap((b) => config.seeds.flatMap((seed) => methods.map((method): Cell => {
      const { wbits, abits } = parseBits(b);
      const cal = calibrateCell({ ...model, request: calibrationRequest({ ...config, seed }, method, wbits, abits) });
      return { ...cal, label: `${cal.label} seed ${seed}`, axes: { ...cal.axes, seed: String(seed) } };
    })));
    const emitted = new Set<string>();
    for (const dataset of datasets) {
      for (const cal of calibrations) {
        if (!emitted.has(cal.key)) {
          emitted.add(cal.key);
          out.push(cal);
        }
        out.push(evalCell({ ...model, dataset, quant: cal, axes: { seed: cal.axes.seed } }));
      }
    }
  }
  return out;
}

/** One stored cell: a calibration (`dataset` null) or an eval of one method and seed on one set. */
export interface HeadlineEntry extends StoredValues {
  scale: number;
  bits: string;
  seed: number;
  method: string;
}

export interface Spread {
  mean: number;
  /** Sample standard deviation (n - 1); 0 for one value. */
  std: number;
  min: number;
  max: number;
  values: number[];
}

export function spread(values: readonly number[]): Spread | null {
  if (values.length === 0) return null;
  const mean = values.reduce((a, v) => a + v, 0) / values.length;
  const std = values.length > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1)) : 0;
  return { mean, std, min: Math.min(...values), max: Math.max(...values), values: [...values] };
}

export interface MethodSummary {
  /** Seeds with a stored result. */
  seeds: number[];
  psnr_y: Spread | null;
  ssim_y: Spread | null;
  /** Mean calibration wall-clock over the seeds whose calibration is stored. */
  calibration_seconds: number | null;
}

export type Claim = 'target' | 'no-loss' | null;

export interface HeadlineRow {
  scale: number;
  bits: string;
  dataset: string;
  baseline: MethodSummary;
  challenger: MethodSummary;
  /** Challenger minus baseline per seed where both are stored. */
  gain: { seeds: number[]; psnr_y: Spread | null; ssim_y: Spread | null };
  claim: Claim;
  /** The PSNR-Y gain the claim asks for: the target, 0 for no-loss, null without a claim. */
  required: number | null;
  /** Mean PSNR-Y gain >= required, over every configured seed; null while a seed is missing or without a claim. */
  met: boolean | null;
}

/** What a method spent: gradient steps x batch x crop side (0 steps for a method without gradients, or with them switched off), patches. */
export interface Budget {
  method: string;
  gradientSteps: number;
  batch: number | null;
  crop: number | null;
  patches: number;
  patchSize: number;
  heldOut: number;
}

export function budgetOf(request: QuantizeRequest): Budget {
  // A method whose distillation is switchable (harmoq's `dqc`) spends no gradient steps with it off.
  const off = request.options.dqc === false;
  const opt = (k: string) => (!off && typeof request.options[k] === 'number' ? (request.options[k] as number) : null);
  return {
    method: request.method, gradientSteps: opt('iterations') ?? 0, batch: opt('batch'), crop: opt('crop'),
    patches: request.calibration.count, patchSize: request.calibration.patchSize, heldOut: request.calibration.heldOutCount,
  };
}

export function headlineEntries(grid: readonly Cell[], store: Pick<CellStore, 'readEval' | 'readQParams'>): HeadlineEntry[] {
  return grid.map((c): HeadlineEntry => ({
    scale: c.config.scale, bits: c.axes.bits, seed: Number(c.axes.seed), method: c.axes.method, ...storedValues(c, store),
  }));
}

/** Rows in scale, bits (config order), dataset (cheapest first) order. */
export function headlineRows(entries: readonly HeadlineEntry[], config: Pick<HeadlineConfig, 'baseline' | 'challenger' | 'bits' | 'seeds' | 'target'>): HeadlineRow[] {
  const done = (e: HeadlineEntry) => e.status === 'done' && e.psnr_y !== null && e.ssim_y !== null;
  const evals = entries.filter((e) => e.dataset !== null);
  const calibrations = entries.filter((e) => e.dataset === null);
  const keys = [...new Map(evals.map((e) => [`${e.scale}|${e.bits}|${e.dataset}`, e])).values()];
  const datasets = byCost(evals.map((e) => e.dataset!));
  keys.sort((a, b) => a.scale - b.scale || config.bits.indexOf(a.bits) - config.bits.indexOf(b.bits) || datasets.indexOf(a.dataset!) - datasets.indexOf(b.dataset!));
  return keys.map(({ scale, bits, dataset }): HeadlineRow => {
    const mine = evals.filter((e) => e.scale === scale && e.bits === bits && e.dataset === dataset && done(e));
    const bySeed = (method: string) => new Map(mine.filter((e) => e.method === method).map((e) => [e.seed, e]));
    const summary = (method: string): MethodSummary => {
      const runs = [...bySeed(method).values()].sort((a, b) => a.seed - b.seed);
      const secs = calibrations.filter((c) => c.scale === scale && c.bits === bits && c.method === method && c.seconds !== null).map((c) => c.seconds!);
      return {
        seeds: runs.map((r) => r.seed), psnr_y: spread(runs.map((r) => r.psnr_y!)), ssim_y: spread(runs.map((r) => r.ssim_y!)),
        calibration_seconds: secs.length ? secs.reduce((a, v) => a + v, 0) / secs.length : null,
      };
    };
    const base = bySeed(config.baseline);
    const chal = bySeed(config.challenger);
    const paired = [...chal.keys()].filter((s) => base.has(s)).sort((a, b) => a - b);
    const gain = {
      seeds: paired,
      psnr_y: spread(paired.map((s) => chal.get(s)!.psnr_y! - base.get(s)!.psnr_y!)),
      ssim_y: spread(paired.map((s) => chal.get(s)!.ssim_y! - base.get(s)!.ssim_y!)),
    };
    const claim: Claim = bits === config.target.bits ? (dataset === config.target.dataset ? 'target' : null) : 'no-loss';
    const required = claim === 'target' ? config.target.psnr_y : claim === 'no-loss' ? 0 : null;
    const complete = config.seeds.every((s) => paired.includes(s));
    return {
      scale, bits, dataset: dataset!, baseline: summary(config.baseline), challenger: summary(config.challenger), gain, claim, required,
      met: required === null || !complete || !gain.psnr_y ? null : gain.psnr_y.mean >= required,
    };
  });
}

const full = (v: number | null | undefined) => (v === null || v === undefined ? '' : String(v));

export function headlineCsv(rows: readonly HeadlineRow[], config: Pick<HeadlineConfig, 'baseline' | 'challenger'>): string {
  const stats = (prefix: string) => [`${prefix}_mean`, `${prefix}_std`];
  const header = [
    'scale', 'bits', 'dataset',
    ...stats(`${config.baseline}_psnr_y`), ...stats(`${config.baseline}_ssim_y`),
    ...stats(`${config.challenger}_psnr_y`), ...stats(`${config.challenger}_ssim_y`),
    'gain_psnr_y_mean', 'gain_psnr_y_std', 'gain_psnr_y_min', 'gain_ssim_y_mean', 'gain_ssim_y_std', 'seeds',
    'claim', 'required_psnr_y', 'met',
    `${config.baseline}_calibration_seconds`, `${config.challenger}_calibration_seconds`,
  ];
  const pair = (s: Spread | null) => [full(s?.mean), full(s?.std)];
  return stringify([header, ...rows.map((r) => [
    r.scale, r.bits, r.dataset,
    ...pair(r.baseline.psnr_y), ...pair(r.baseline.ssim_y), ...pair(r.challenger.psnr_y), ...pair(r.challenger.ssim_y),
    full(r.gain.psnr_y?.mean), full(r.gain.psnr_y?.std), full(r.gain.psnr_y?.min), full(r.gain.ssim_y?.mean), full(r.gain.ssim_y?.std),
    r.gain.seeds.join(' '), r.claim ?? '', full(r.required), r.met === null ? '' : String(r.met),
    full(r.baseline.calibration_seconds), full(r.challenger.calibration_seconds),
  ])]);
}

/** The rows file: config, every cell's key and values (tables refresh them from the store), derived rows, budgets. */
export interface HeadlineRowsFile {
  experiment: 'harmoq';
  config: HeadlineConfig;
  cells: { total: number; done: number; missing: number };
  entries: HeadlineEntry[];
  rows: HeadlineRow[];
  /** Per scale and bits, each method's budget (the same for every seed). */
  budgets: { scale: number; bits: string; methods: Budget[] }[];
}

export function headlineBudgets(grid: readonly Cell[]): HeadlineRowsFile['budgets'] {
  const out = new Map<string, HeadlineRowsFile['budgets'][number]>();
  for (const c of grid) {
    if (c.config.kind !== 'calibrate') continue;
    const id = `${c.config.scale}|${c.axes.bits}`;
    const entry = out.get(id) ?? { scale: c.config.scale, bits: c.axes.bits, methods: [] };
    if (!entry.methods.some((m) => m.method === c.axes.method)) entry.methods.push(budgetOf(c.config.request));
    out.set(id, entry);
  }
  return [...out.values()];
}

async function aggregate(config: HeadlineConfig, grid: readonly Cell[], ctx: AggregateContext): Promise<string[]> {
  const entries = headlineEntries(grid, ctx.store);
  const rows = headlineRows(entries, config);
  return writeRowsFiles('harmoq', config, grid, ctx, headlineCsv(rows, config), { entries, rows, budgets: headlineBudgets(grid) });
}

export const headline = defineExperiment<HeadlineConfig>({
  name: 'harmoq',
  aliases: ['headline'],
  description: 'the headline comparison: HarmoQ vs 2DQuant over seeds (mean, spread and paired gain; +0.46 dB target at W2A2 on Set5)',
  schema: headlineSchema,
  defaults: (preset) => ({
    preset,
    ...STAND_IN,
    seeds: [DEFAULT_SEED, DEFAULT_SEED + 1, DEFAULT_SEED + 2],
    baseline: '2dquant',
    challenger: 'harmoq',
    bits: ['W2A2', 'W3A3', 'W4A4'],
    scales: [2, 4],
    datasets: ['Set5', 'Set14', 'B100'],
    target: { bits: 'W2A2', dataset: 'Set5', psnr_y: 0.46 },
    quant: {},
  }),
  cells,
  aggregate,
});
