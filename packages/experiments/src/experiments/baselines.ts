/**
 * `baselines` (alias `main`, the paper's main table): every PTQ method x bits x scale x dataset, plus the
 * float model. Methods come from the PTQ_METHODS registry, so a method added there joins the grid. Tables:
 * `results/baselines/baselines.{csv,json}`, one row per scale x method x bits, built from stored cells only.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { z } from 'zod';
import { BENCHMARKS } from '@harmoq/data';
import { ConfigError, DEFAULT_SEED, METHOD_NAMES, SUPPORTED_BITS, resolveRequest, type QuantizeRequest } from '@harmoq/quant';
import { ARCH_NAMES } from '@harmoq/swinir';
import { bitsLabel, calibrateCell, evalCell, type Cell } from '../cells';
import { ExperimentError } from '../errors';
import { defineExperiment, writeRowsFiles, GRID_PRESETS, type AggregateContext, type GridContext } from '../grid';

const DATASETS = Object.keys(BENCHMARKS) as [string, ...string[]];
/** Every `W<w>A<a>` label the quantizers support, and a non-empty list of them (a grid's `bits`). */
export const BITS = SUPPORTED_BITS.flatMap((w) => SUPPORTED_BITS.map((a) => bitsLabel(w, a))) as [string, ...string[]];
export const BITS_FIELD = z.array(z.enum(BITS)).min(1);

/** Scales the stand-in checkpoints and SwinIR configs support. */
const SCALES = [2, 3, 4, 8];

/** Fields every grid over one checkpoint per scale shares (the other experiment modules spread them). */
export const MODEL_FIELDS = {
  preset: z.enum(GRID_PRESETS),
  seed: z.number().int().min(0).max(0xffffffff),
  arch: z.enum(ARCH_NAMES as unknown as [string, ...string[]]),
  /** Checkpoint per scale: `{scale}` is replaced; relative paths are relative to the data folder. */
  checkpoint: z.string().includes('{scale}', { message: "must contain '{scale}'" }),
};
/** The model every grid runs by default: the bundled SwinIR-light stand-ins, one checkpoint per scale. */
export const STAND_IN = { arch: 'swinir-light', checkpoint: 'weights/house/swinir_light_x{scale}_house.pth' } as const;
export const METHOD_FIELD = z.enum(METHOD_NAMES as unknown as [string, ...string[]]);
export const SCALES_FIELD = z.array(z.number().int().refine((s) => SCALES.includes(s), { message: `scale must be one of ${SCALES.join(', ')}` })).min(1);
export const DATASETS_FIELD = z.array(z.enum(DATASETS)).min(1);
/**
 * Calibration overrides for every cell, as `harmoq quantize --set` takes them: `quantizer.<key>`,
 * `calibration.<key>`, or `<method>.<option>` for one method's options.
 */
export const QUANT_FIELD = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]));

export const baselinesSchema = z.strictObject({
  ...MODEL_FIELDS,
  /** Include the float model's row. */
  fp: z.boolean(),
  methods: z.array(METHOD_FIELD).min(1),
  bits: BITS_FIELD,
  scales: SCALES_FIELD,
  datasets: DATASETS_FIELD,
  quant: QUANT_FIELD,
});
export type BaselinesConfig = z.infer<typeof baselinesSchema>;

/** The bit widths of a BITS label. */
export function parseBits(label: string): { wbits: number; abits: number } {
  const m = /^W(\d+)A(\d+)$/.exec(label)!;
  return { wbits: Number(m[1]), abits: Number(m[2]) };
}

/** The `quant` overrides that apply to one method, as resolveRequest's `set` list. */
function quantSettings(quant: Record<string, string | number | boolean>, method: string): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(quant)) {
    const dot = key.indexOf('.');
    const section = dot > 0 ? key.slice(0, dot) : '';
    if (section === 'quantizer' || section === 'calibration') out.push(`${key}=${value}`);
    else if (section === method) out.push(`options.${key.slice(dot + 1)}=${value}`);
    else if (!(METHOD_NAMES as readonly string[]).includes(section)) {
      const choices = ['quantizer.<key>', 'calibration.<key>', ...METHOD_NAMES.map((m) => `${m}.<option>`)];
      throw new ExperimentError(`quant.${key}: unknown section '${section || key}' (choices: ${choices.join(', ')})`, { value: key, choices });
    }
  }
  return out;
}

/** The resolved calibration request of one grid entry; a bad override is an ExperimentError naming it. */
export function calibrationRequest(
  config: { preset: string; seed: number; quant: Record<string, string | number | boolean> }, method: string, wbits: number, abits: number,
): QuantizeRequest {
  try {
    return resolveRequest({ method, wbits, abits, preset: config.preset, seed: config.seed, set: quantSettings(config.quant, method) });
  } catch (err) {
    if (err instanceof ConfigError) throw new ExperimentError(`${method} ${bitsLabel(wbits, abits)}: ${err.message}`, { value: err.value, choices: err.choices });
    throw err;
  }
}

/** Benchmark sets cheapest first (the BENCHMARKS order: Set5, Set14, B100, ...). */
export function byCost(datasets: readonly string[]): string[] {
  return [...new Set(datasets)].sort((a, b) => DATASETS.indexOf(a) - DATASETS.indexOf(b));
}

export function checkpointFor(config: Pick<BaselinesConfig, 'checkpoint'>, scale: number, dataDir: string): string {
  const file = path.resolve(dataDir, config.checkpoint.replaceAll('{scale}', String(scale)));
  if (!fs.existsSync(file)) {
    throw new ExperimentError(`no checkpoint for x${scale}: '${file}' does not exist (checkpoint=${config.checkpoint}, data ${dataDir})`, { value: file });
  }
  return file;
}

function cells(config: BaselinesConfig, ctx: GridContext): Cell[] {
  const out: Cell[] = [];
  // x4 first: a quarter of the output pixels of x2, so a partial run has more of the table.
  for (const scale of [...new Set(config.scales)].sort((a, b) => b - a)) {
    const checkpointPath = checkpointFor(config, scale, ctx.dataDir);
    const model = { arch: config.arch, scale, checkpointPath, dataDir: ctx.dataDir };
    const calibrations: Cell[] = [];
    for (const method of config.methods) {
      for (const bits of config.bits) {
        const { wbits, abits } = parseBits(bits);
        calibrations.push(calibrateCell({ ...model, request: calibrationRequest(config, method, wbits, abits) }));
      }
    }
    const emitted = new Set<string>();
    for (const dataset of byCost(config.datasets)) {
      if (config.fp) out.push(evalCell({ ...model, dataset }));
      for (const cal of calibrations) {
        if (!emitted.has(cal.key)) {
          emitted.add(cal.key);
          out.push(cal);
        }
        out.push(evalCell({ ...model, dataset, quant: cal }));
      }
    }
  }
  return out;
}

export interface BaselineDatasetEntry {
  cell: string;
  status: 'done' | 'missing';
  psnr_y: number | null;
  ssim_y: number | null;
  psnr: number | null;
  ssim: number | null;
  seconds: number | null;
}

export interface BaselineRow {
  scale: number;
  method: string;
  bits: string;
  calibration: { cell: string; status: 'done' | 'missing'; seconds: number | null } | null;
  datasets: Record<string, BaselineDatasetEntry>;
}

/** The table rows, from stored cells only; a cell without a result is `missing`, never a number. */
export function baselineRows(config: BaselinesConfig, grid: readonly Cell[], ctx: Pick<AggregateContext, 'store'>): BaselineRow[] {
  const rows = new Map<string, BaselineRow>();
  const datasets = byCost(config.datasets);
  const rowKey = (a: Record<string, string>) => `${a.scale}|${a.method}|${a.bits ?? 'FP'}`;
  const rowFor = (a: Record<string, string>): BaselineRow => {
    const key = rowKey(a);
    let row = rows.get(key);
    if (!row) {
      row = { scale: Number(a.scale), method: a.method, bits: a.bits ?? 'FP', calibration: null, datasets: {} };
      rows.set(key, row);
    }
    return row;
  };
  for (const cell of grid) {
    const row = rowFor(cell.axes);
    if (cell.kind === 'calibrate') {
      const q = ctx.store.readQParams(cell);
      row.calibration = { cell: cell.key, status: q ? 'done' : 'missing', seconds: q ? q.seconds : null };
    } else {
      const r = ctx.store.readEval(cell);
      row.datasets[cell.axes.dataset] = {
        cell: cell.key, status: r ? 'done' : 'missing',
        psnr_y: r?.psnr_y ?? null, ssim_y: r?.ssim_y ?? null, psnr: r?.psnr ?? null, ssim: r?.ssim ?? null, seconds: r?.seconds ?? null,
      };
    }
  }
  const methodOrder = ['fp', ...config.methods];
  return [...rows.values()]
    .map((row) => ({ ...row, datasets: Object.fromEntries(datasets.filter((d) => row.datasets[d]).map((d) => [d, row.datasets[d]])) }))
    .sort((a, b) => a.scale - b.scale || methodOrder.indexOf(a.method) - methodOrder.indexOf(b.method) ||
      config.bits.indexOf(a.bits) - config.bits.indexOf(b.bits));
}

const MISSING = 'missing';

export function baselinesCsv(config: BaselinesConfig, rows: readonly BaselineRow[]): string {
  const datasets = byCost(config.datasets);
  const header = [
    'scale', 'method', 'bits',
    ...datasets.flatMap((d) => [`${d}_psnr_y`, `${d}_ssim_y`]),
    'calibration_seconds', 'calibrate_cell', ...datasets.map((d) => `${d}_cell`),
  ];
  const records = rows.map((row) => [
    row.scale, row.method, row.bits,
    ...datasets.flatMap((d) => {
      const e = row.datasets[d];
      return e?.status === 'done' ? [e.psnr_y!.toFixed(4), e.ssim_y!.toFixed(4)] : [MISSING, MISSING];
    }),
    row.calibration === null ? '' : row.calibration.status === 'done' ? row.calibration.seconds!.toFixed(1) : MISSING,
    row.calibration?.cell ?? '', ...datasets.map((d) => row.datasets[d]?.cell ?? ''),
  ]);
  return stringify([header, ...records]);
}

async function aggregate(config: BaselinesConfig, grid: readonly Cell[], ctx: AggregateContext): Promise<string[]> {
  const rows = baselineRows(config, grid, ctx);
  return writeRowsFiles('baselines', config, grid, ctx, baselinesCsv(config, rows), { rows });
}

export const baselines = defineExperiment<BaselinesConfig>({
  name: 'baselines',
  aliases: ['main'],
  description: 'every PTQ method x bits x scale x dataset plus the float model (the paper\'s main table)',
  schema: baselinesSchema,
  defaults: (preset) => ({
    preset,
    seed: DEFAULT_SEED,
    ...STAND_IN,
    fp: true,
    methods: [...METHOD_NAMES],
    bits: ['W4A4', 'W3A3', 'W2A2'],
    scales: [2, 4],
    datasets: ['Set5', 'Set14', 'B100'],
    quant: {},
  }),
  cells,
  aggregate,
});
