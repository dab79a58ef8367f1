/**
 * Cells: the unit of work of a grid. A cell is plain data (it crosses process boundaries) keyed by a hash of
 * its resolved config, the sha256 of its input files and the code version, so a finished cell is found again
 * by whatever grid asks for the same thing, and never by a grid that asks for something else.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { listBenchmark, listCalibration, repoRoot } from '@harmoq/data';
import type { QuantizeRequest, QuantRole } from '@harmoq/quant';
import { codeVersion, importClosure, type CodeVersion } from './code-version';
import { canonicalJson, fileSha256, filesDigest, sha256Hex } from './hash';

export const CELL_KINDS = ['calibrate', 'eval'] as const;
export type CellKind = (typeof CELL_KINDS)[number];

/** Bumped when the meaning of a cell's stored result changes, so old results are not reused. */
export const CELL_FORMAT = 'harmoq-cell/1';

/** The model a cell runs on. `checkpoint` is the file name: the path is where it lives, not what it is. */
export interface ModelSpec {
  arch: string;
  scale: number;
  checkpoint: string;
}

export interface CalibrateConfig extends ModelSpec {
  kind: 'calibrate';
  /** The resolved quantization request (method, bits, preset, seed, quantizer, calibration, options). */
  request: QuantizeRequest;
}

export interface EvalConfig extends ModelSpec {
  kind: 'eval';
  dataset: string;
  engine: 'onnx';
  /** The calibrate cell whose qparams the model runs with; null for the float model. */
  quant: string | null;
  /**
   * Only the qparams' quantizers of these roles, the rest float (`restrictQuantization`). Absent (not
   * undefined) for a full eval, so adding the field left every other cell's config as it was.
   */
  roles?: QuantRole[];
  /** A sensitivity probe instead of one eval: each unit's quantizers alone (see probe.ts). */
  probe?: ProbeSpec;
}

/** Quantizers evaluated one group at a time, the rest float, on the set's images or their center crops. */
export interface ProbeSpec {
  /** A unit: a name for the tables and the quantizer ids quantized together. */
  units: { name: string; sites: string[] }[];
  /** Side of the LR center crop in pixels (the HR crop is scale times that); null: whole images. */
  crop: number | null;
}

export type CellConfig = CalibrateConfig | EvalConfig;

export interface Cell {
  key: string;
  kind: CellKind;
  /** For people: `eval Set5 x4 minmax W4A4`. */
  label: string;
  /** Grid coordinates (`--only` filters on these; tables are built from them). */
  axes: Record<string, string>;
  config: CellConfig;
  /** sha256 digests of the input files. */
  inputs: Record<string, string>;
  code: CodeVersion;
  /** Keys of the cells this one reads. */
  deps: string[];
  /** Where the inputs are on this machine; not part of the key. */
  paths: { checkpoint: string; dataDir: string };
  /** Relative cost, for the time-left estimate: an eval's output megapixels, 1 for a calibration. */
  work: number;
}

/**
 * The code each kind of cell is keyed on. Float evaluation does not depend on @harmoq/quant, so work on the
 * quantizers leaves FP cells valid. Of @harmoq/quant a calibration counts the framework its entry points
 * import plus the one method it runs (not the registry, which imports them all), and a quantized eval the
 * framework only: a new or changed method invalidates its own cells and no others. Of this package only the
 * executor counts: the grids, tables and progress display do not change a result.
 */
const FLOAT_CODE = ['engine', 'swinir', 'torch-io', 'data', 'metrics', 'atomic-fs'];
const EXECUTOR = ['packages/experiments/src/execute.ts', 'packages/experiments/src/probe.ts'];
const QUANT_SRC = 'packages/quant/src';
const QUANT_REGISTRY = `${QUANT_SRC}/methods/index.ts`;
/** What execute.ts and probe.ts call: quantizeModel, the qparams reader and writer, restrictQuantization. */
const QUANT_ENTRIES = ['quantize.ts', 'qparams.ts', 'restrict.ts'].map((f) => `${QUANT_SRC}/${f}`);

/** The file in the quant methods folder that defines `name` (its `name: '<name>',` line). */
export function methodSource(name: string, root: string = repoRoot()): string {
  const dir = path.join(root, QUANT_SRC, 'methods');
  const line = new RegExp(`^\\s*name:\\s*'${name.replace(/[^\w-]/g, '\\$&')}',?\\s*$`, 'm');
  const files = fs.readdirSync(dir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'index.ts')
    .filter((f) => line.test(fs.readFileSync(path.join(dir, f), 'utf8')));
  if (files.length !== 1) {
    throw new Error(`method '${name}': expected one file in ${QUANT_SRC}/methods with the line "name: '${name}',", found ${files.length ? files.join(', ') : 'none'}`);
  }
  return `${QUANT_SRC}/methods/${files[0]}`;
}

const quantCodes = new Map<string, CodeVersion>();

/**
 * The code version of a calibration running `method`, or of a quantized eval (null); memoized per process like
 * codeVersion, since a grid asks once per cell and the closure reads every file it follows.
 */
function quantCode(method: string | null): CodeVersion {
  let code = quantCodes.get(method ?? '');
  if (!code) {
    const entries = [...QUANT_ENTRIES, ...(method === null ? [] : [methodSource(method)])];
    const files = importClosure(entries, { cut: [QUANT_REGISTRY], wholePackages: FLOAT_CODE });
    code = codeVersion(FLOAT_CODE, [...EXECUTOR, 'packages/quant/package.json', ...files]);
    quantCodes.set(method ?? '', code);
  }
  return code;
}

/** The key: kind prefix plus 24 hex digits (96 bits) of sha256 over everything that decides the result. */
export function cellKey(parts: Pick<Cell, 'kind' | 'config' | 'inputs' | 'code' | 'deps'>): string {
  const digest = sha256Hex(canonicalJson({
    format: CELL_FORMAT, kind: parts.kind, config: parts.config, inputs: parts.inputs, code: parts.code, deps: [...parts.deps].sort(),
  }));
  return `${parts.kind === 'calibrate' ? 'cal' : 'eval'}-${digest.slice(0, 24)}`;
}

/** The kind a key names (its prefix). */
export function kindOfKey(key: string): CellKind {
  return key.startsWith('cal-') ? 'calibrate' : 'eval';
}

export function bitsLabel(wbits: number, abits: number): string {
  return `W${wbits}A${abits}`;
}

export interface CalibrateCellInput {
  arch: string;
  scale: number;
  checkpointPath: string;
  dataDir: string;
  request: QuantizeRequest;
}

export function calibrateCell(input: CalibrateCellInput): Cell {
  const { request } = input;
  const config: CalibrateConfig = {
    kind: 'calibrate', arch: input.arch, scale: input.scale, checkpoint: path.basename(input.checkpointPath), request,
  };
  const calibrationRoot = path.join(input.dataDir, 'calibration');
  const inputs = {
    checkpoint: fileSha256(input.checkpointPath),
    calibration: filesDigest(calibrationRoot, listCalibration(input.dataDir)),
  };
  const code = quantCode(request.method);
  const bits = bitsLabel(request.wbits, request.abits);
  return {
    key: cellKey({ kind: 'calibrate', config, inputs, code, deps: [] }),
    kind: 'calibrate',
    label: `calibrate x${input.scale} ${request.method} ${bits}`,
    axes: { scale: String(input.scale), method: request.method, bits },
    config, inputs, code, deps: [],
    paths: { checkpoint: path.resolve(input.checkpointPath), dataDir: path.resolve(input.dataDir) },
    work: 1,
  };
}

export interface EvalCellInput {
  arch: string;
  scale: number;
  checkpointPath: string;
  dataDir: string;
  dataset: string;
  /** The calibrate cell to take qparams from; omitted for the float model. */
  quant?: Cell;
  /** Only these quantizer roles (needs `quant`). */
  roles?: QuantRole[];
  probe?: ProbeSpec;
  /** Axes added to (or replacing) the ones the cell would have, and a label suffix. */
  axes?: Record<string, string>;
}

const datasetDigests = new Map<string, string>();

/** Hash of a benchmark set's HR files and its LR files at this scale (memoized per process). */
export function datasetDigest(dataDir: string, dataset: string, scale: number): string {
  const memo = `${path.resolve(dataDir)}\0${dataset}\0${scale}`;
  let digest = datasetDigests.get(memo);
  if (!digest) {
    const files = listBenchmark(dataset, scale, dataDir).flatMap((e) => (e.lrPath ? [e.hrPath, e.lrPath] : [e.hrPath]));
    digest = filesDigest(path.join(dataDir, 'benchmarks'), files);
    datasetDigests.set(memo, digest);
  }
  return digest;
}

/** Width x height from a PNG's IHDR chunk (bytes 16..23), without decoding it. */
function pngPixels(file: string): number {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(24);
    fs.readSync(fd, head, 0, 24, 0);
    return head.readUInt32BE(16) * head.readUInt32BE(20);
  } finally {
    fs.closeSync(fd);
  }
}

/** A set's HR megapixels (the SR output size, whatever the scale). */
function datasetMegapixels(dataDir: string, dataset: string): number {
  return listBenchmark(dataset, 2, dataDir).reduce((a, e) => a + pngPixels(e.hrPath), 0) / 1e6;
}

/** A probe's output megapixels: the float reference plus every unit, on the crops or the whole images. */
function probeMegapixels(dataDir: string, dataset: string, scale: number, probe: ProbeSpec): number {
  const runs = probe.units.length + 1;
  if (probe.crop === null) return runs * datasetMegapixels(dataDir, dataset);
  return (runs * listBenchmark(dataset, scale, dataDir).length * (probe.crop * scale) ** 2) / 1e6;
}

export function evalCell(input: EvalCellInput): Cell {
  const quant = input.quant;
  if (quant && quant.kind !== 'calibrate') throw new Error(`eval cell needs a calibrate cell, got ${quant.kind} ${quant.key}`);
  if (!quant && (input.roles || input.probe)) throw new Error('an eval restricted to some quantizers needs a calibrate cell');
  const config: EvalConfig = {
    kind: 'eval', arch: input.arch, scale: input.scale, checkpoint: path.basename(input.checkpointPath),
    dataset: input.dataset, engine: 'onnx', quant: quant?.key ?? null,
    ...(input.roles ? { roles: input.roles } : {}),
    ...(input.probe ? { probe: input.probe } : {}),
  };
  const inputs = { checkpoint: fileSha256(input.checkpointPath), dataset: datasetDigest(input.dataDir, input.dataset, input.scale) };
  const code = quant ? quantCode(null) : codeVersion(FLOAT_CODE, EXECUTOR);
  const deps = quant ? [quant.key] : [];
  const axes: Record<string, string> = quant
    ? { ...quant.axes, dataset: input.dataset, ...input.axes }
    : { scale: String(input.scale), method: 'fp', dataset: input.dataset, ...input.axes };
  const extra = Object.entries(input.axes ?? {}).filter(([k]) => !['scale', 'method', 'bits', 'dataset'].includes(k)).map(([, v]) => ` ${v}`).join('');
  return {
    key: cellKey({ kind: 'eval', config, inputs, code, deps }),
    kind: 'eval',
    label: `eval ${input.dataset} x${input.scale} ${quant ? `${axes.method} ${axes.bits}` : 'fp'}${extra}`,
    axes, config, inputs, code, deps,
    paths: { checkpoint: path.resolve(input.checkpointPath), dataDir: path.resolve(input.dataDir) },
    work: input.probe ? probeMegapixels(input.dataDir, input.dataset, input.scale, input.probe) : datasetMegapixels(input.dataDir, input.dataset),
  };
}
