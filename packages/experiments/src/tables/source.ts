/**
 * Where `harmoq tables` reads results from. Never from re-resolving the grid: a grid's cell keys include the
 * code version, so after any code change it would name cells that do not exist and every value would read as
 * missing. The source is the experiment's rows file (`results/<exp>/<exp>.json`, written by `harmoq exp`),
 * which records the cell keys of the grid it was written for; each listed cell's stored result refreshes its
 * values. Without a rows file the finished cells under `results/cells/` are grouped by their own recorded
 * axes, as long as that is unambiguous (one preset, seed, checkpoint per scale, one cell per table entry).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { BENCHMARKS } from '@harmoq/data';
import { METHOD_NAMES } from '@harmoq/quant';
import { ExperimentError } from '../errors';
import type { BaselineDatasetEntry, BaselineRow } from '../experiments/baselines';
import { WHOLE_METHOD_VARIANTS } from '../experiments/components';
import { CellStore, RESULT_FILES } from '../store';

/** What the baselines tables and figures are built from. */
export interface BaselinesSource {
  /** Where the rows came from, relative to the results folder (for the command's log). */
  origin: string;
  arch: string;
  preset: string | null;
  seed: number | null;
  /** Checkpoint file name per scale. */
  checkpoints: Record<number, string>;
  /** The grid's checkpoint path with `{scale}`, relative to the data folder (null when read from cells). */
  checkpointTemplate: string | null;
  /** Column and row orders. */
  datasets: string[];
  methods: string[];
  bits: string[];
  rows: BaselineRow[];
}

const entrySchema = z.object({
  cell: z.string(),
  status: z.enum(['done', 'missing']),
  psnr_y: z.number().nullable(),
  ssim_y: z.number().nullable(),
  psnr: z.number().nullable(),
  ssim: z.number().nullable(),
  seconds: z.number().nullable(),
});

const rowsFileSchema = z.object({
  experiment: z.literal('baselines'),
  config: z.object({
    preset: z.string(),
    seed: z.number(),
    arch: z.string(),
    checkpoint: z.string(),
    methods: z.array(z.string()),
    bits: z.array(z.string()),
    datasets: z.array(z.string()),
  }),
  rows: z.array(z.object({
    scale: z.number(),
    method: z.string(),
    bits: z.string(),
    calibration: z.object({ cell: z.string(), status: z.enum(['done', 'missing']), seconds: z.number().nullable() }).nullable(),
    datasets: z.record(z.string(), entrySchema),
  })),
});

const DATASET_ORDER = Object.keys(BENCHMARKS);

/** Benchmark order (Set5, Set14, B100, ...), unknown names last in name order. */
function orderDatasets(names: Iterable<string>): string[] {
  const rank = (d: string) => (DATASET_ORDER.includes(d) ? DATASET_ORDER.indexOf(d) : DATASET_ORDER.length);
  return [...new Set(names)].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/** `W4A4` -> [4, 4]; higher bit widths first, as in the paper tables. */
export function parseBitsLabel(label: string): { wbits: number; abits: number } | null {
  const m = /^W(\d+)A(\d+)$/.exec(label);
  return m ? { wbits: Number(m[1]), abits: Number(m[2]) } : null;
}

export function orderBits(labels: Iterable<string>): string[] {
  const key = (l: string) => parseBitsLabel(l) ?? { wbits: -1, abits: -1 };
  return [...new Set(labels)].sort((a, b) => key(b).wbits - key(a).wbits || key(b).abits - key(a).abits || (a < b ? -1 : 1));
}

/** Registry order, methods no longer registered after them in name order. */
function orderMethods(names: Iterable<string>): string[] {
  const known = METHOD_NAMES as readonly string[];
  const rank = (m: string) => (known.includes(m) ? known.indexOf(m) : known.length);
  return [...new Set(names)].filter((m) => m !== 'fp').sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1));
}

interface StoredEval {
  psnr_y: number;
  ssim_y: number;
  psnr: number;
  ssim: number;
  seconds: number;
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ExperimentError(`cannot read '${file}': ${err instanceof Error ? err.message : String(err)}`, { value: file, badInput: false });
  }
}

function storedEval(store: CellStore, key: string): StoredEval | undefined {
  const file = store.resultPath({ key, kind: 'eval' });
  return fs.existsSync(file) ? (readJson(file) as StoredEval) : undefined;
}

function storedCalibrationSeconds(store: CellStore, key: string): number | undefined {
  const file = store.resultPath({ key, kind: 'calibrate' });
  return fs.existsSync(file) ? (readJson(file) as { seconds: number }).seconds : undefined;
}

function entryFrom(cell: string, r: StoredEval | undefined): BaselineDatasetEntry {
  return {
    cell, status: r ? 'done' : 'missing',
    psnr_y: r?.psnr_y ?? null, ssim_y: r?.ssim_y ?? null, psnr: r?.psnr ?? null, ssim: r?.ssim ?? null, seconds: r?.seconds ?? null,
  };
}

/** The rows file with each listed cell's stored result (a cell finished after the file was written counts). */
function fromRowsFile(file: string, resultsDir: string): BaselinesSource {
  const parsed = rowsFileSchema.safeParse(readJson(file));
  if (!parsed.success) {
    throw new ExperimentError(`'${file}' is not a baselines rows file: ${parsed.error.issues[0].path.join('.')}: ${parsed.error.issues[0].message}`, { value: file });
  }
  const { config, rows } = parsed.data;
  const store = new CellStore(resultsDir);
  const refreshed: BaselineRow[] = rows.map((row) => ({
    ...row,
    calibration: row.calibration && (() => {
      const seconds = storedCalibrationSeconds(store, row.calibration.cell);
      return seconds === undefined ? row.calibration : { cell: row.calibration.cell, status: 'done' as const, seconds };
    })(),
    datasets: Object.fromEntries(Object.entries(row.datasets).map(([d, e]) => {
      const r = storedEval(store, e.cell);
      return [d, r ? entryFrom(e.cell, r) : e];
    })),
  }));
  const scales = [...new Set(rows.map((r) => r.scale))];
  return {
    origin: path.relative(resultsDir, file),
    arch: config.arch,
    preset: config.preset,
    seed: config.seed,
    checkpoints: Object.fromEntries(scales.map((s) => [s, path.basename(config.checkpoint.replaceAll('{scale}', String(s)))])),
    checkpointTemplate: config.checkpoint,
    datasets: orderDatasets(config.datasets),
    methods: orderMethods(config.methods),
    bits: orderBits(config.bits),
    rows: refreshed,
  };
}

interface CellRecord {
  key: string;
  axes: Record<string, string>;
  config: { kind: string; arch: string; scale: number; checkpoint: string; quant?: string | null; request?: { preset: string; seed: number } };
}

/** One value for the whole table, or an error naming the values found. */
function single<T>(what: string, values: Iterable<T>): T | null {
  const found = [...new Set(values)];
  if (found.length > 1) {
    throw new ExperimentError(
      `results/cells holds cells of several ${what}s (${found.join(', ')}) and there is no rows file saying which belong in the table; ` +
        'run `harmoq exp baselines` with the settings you want (it writes results/baselines/baselines.json from its own cells)',
      { value: found.join(', '), badInput: false },
    );
  }
  return found[0] ?? null;
}

/** Rows from the finished cells themselves, grouped by the axes each recorded when it ran. */
function fromCells(resultsDir: string): BaselinesSource | null {
  const store = new CellStore(resultsDir);
  if (!fs.existsSync(store.root)) return null;
  const records: CellRecord[] = [];
  for (const key of fs.readdirSync(store.root).sort()) {
    if (!/^(cal|eval)-[0-9a-f]{24}$/.test(key)) continue;
    const kind = key.startsWith('cal-') ? 'calibrate' : 'eval';
    const dir = path.join(store.root, key);
    if (!fs.existsSync(path.join(dir, RESULT_FILES[kind]))) continue;
    records.push(readJson(path.join(dir, 'config.json')) as CellRecord);
  }
  const cals = new Map(records.filter((r) => r.config.kind === 'calibrate').map((r) => [r.key, r]));
  // Only plain evals of a baselines-like grid: not the asymmetry study's or the sensitivity probes (they carry a setting or role axis),
  // nor the headline comparison's seeded runs (a seed axis), nor the component ablation's partial HarmoQ variants (its
  // whole-method variants are the baselines grid's own cells).
  const evals = records.filter((r) => r.config.kind === 'eval' && r.axes.method !== undefined && r.axes.dataset !== undefined &&
    r.axes.setting === undefined && r.axes.role === undefined && r.axes.seed === undefined &&
    (r.axes.variant === undefined || (WHOLE_METHOD_VARIANTS as readonly string[]).includes(r.axes.variant)));
  if (evals.length === 0) return null;
  // The preset and seed of the calibrations these evals use, not of every calibration in the folder (other studies' too).
  const used = evals.flatMap((e) => (e.config.quant && cals.has(e.config.quant) ? [cals.get(e.config.quant)!] : []));
  const preset = single('preset', used.map((c) => c.config.request!.preset));
  const seed = single('seed', used.map((c) => c.config.request!.seed));
  const arch = single('arch', evals.map((e) => e.config.arch))!;
  const scales = [...new Set(evals.map((e) => e.config.scale))].sort((a, b) => a - b);
  const checkpoints = Object.fromEntries(scales.map((s) => [s, single(`x${s} checkpoint`, evals.filter((e) => e.config.scale === s).map((e) => e.config.checkpoint))!]));

  const rows = new Map<string, BaselineRow>();
  for (const e of evals) {
    const bits = e.axes.bits ?? 'FP';
    const id = `${e.config.scale}|${e.axes.method}|${bits}`;
    let row = rows.get(id);
    if (!row) {
      const cal = e.config.quant ? cals.get(e.config.quant) : undefined;
      const calibration = e.config.quant
        ? { cell: e.config.quant, status: cal ? 'done' as const : 'missing' as const, seconds: cal ? storedCalibrationSeconds(store, cal.key) ?? null : null }
        : null;
      row = { scale: e.config.scale, method: e.axes.method, bits, calibration, datasets: {} };
      rows.set(id, row);
    }
    const other = row.datasets[e.axes.dataset];
    if (other) {
      throw new ExperimentError(
        `cells ${other.cell} and ${e.key} both hold x${row.scale} ${row.method} ${bits} on ${e.axes.dataset} (from different code versions or settings) ` +
          'and there is no rows file saying which one the table uses; run `harmoq exp baselines` to write results/baselines/baselines.json',
        { value: e.key, badInput: false },
      );
    }
    row.datasets[e.axes.dataset] = entryFrom(e.key, storedEval(store, e.key));
  }
  const datasets = orderDatasets(evals.map((e) => e.axes.dataset));
  const methods = orderMethods(evals.map((e) => e.axes.method));
  const bits = orderBits(evals.filter((e) => e.axes.bits).map((e) => e.axes.bits));
  const methodRank = (m: string) => (m === 'fp' ? -1 : methods.indexOf(m));
  const sorted = [...rows.values()].sort((a, b) => a.scale - b.scale || methodRank(a.method) - methodRank(b.method) || bits.indexOf(a.bits) - bits.indexOf(b.bits));
  return { origin: 'cells', arch, preset, seed, checkpoints, checkpointTemplate: null, datasets, methods, bits, rows: sorted };
}

export const BASELINES_ROWS_FILE = path.join('baselines', 'baselines.json');

/** The baselines rows: the rows file when there is one, else the finished cells; null when neither exists. */
export function loadBaselines(resultsDir: string): BaselinesSource | null {
  const file = path.join(resultsDir, BASELINES_ROWS_FILE);
  return fs.existsSync(file) ? fromRowsFile(file, resultsDir) : fromCells(resultsDir);
}
