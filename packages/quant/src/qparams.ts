/**
 * QParams files: the result of a calibration, versioned JSON. They record the method and its resolved
 * options, the bits and quantizer settings, the architecture with its full SwinIRConfig, the checkpoint's
 * sha256, the calibration data (files with hashes, seed, patch size, counts, split), the preset, the code
 * version and the bounds of every quantizer. Unknown keys are refused; a file is only applied to the
 * architecture, checkpoint and scale it was made for.
 *
 * Version 3 adds `weights`: a method that transforms float weights (HarmoQ) has the tensors that differ from the
 * checkpoint saved in a safetensors sidecar next to the qparams file (`<name>.weights.safetensors`), recorded by
 * name and sha256; qparamsPlan loads it, refusing a sidecar whose hash differs.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot, writeFileAtomic } from '@harmoq/data';
import type { SwinIRConfig } from '@harmoq/swinir';
import { encodeSafetensors, readSafetensors, sha256Bytes, type StateDict } from '@harmoq/torch-io';
import { z } from 'zod';
import { calibrationSettingsSchema, zodMessage } from './config';
import { ConfigError } from './errors';
import { PRESET_NAMES } from './method';
import { DEFAULT_QUANT_SETTINGS, makePlan, quantSettingsSchema, validateBounds, type BoundsMap, type QuantPlan } from './plan';

export const QPARAMS_FORMAT = 'harmoq-qparams';
/**
 * 2 added optional per-site `noise` (NoisyQuant) and `twin` (PTQ4ViT) to the bounds; 3 the optional `weights`
 * sidecar. Version-1 and -2 files still read.
 */
export const QPARAMS_VERSION = 3;
export const SUPPORTED_QPARAMS_VERSIONS: readonly number[] = [1, 2, QPARAMS_VERSION];

const swinirConfigSchema = z.strictObject({
  upscale: z.number().int(),
  inChans: z.number().int(),
  imgSize: z.number().int(),
  windowSize: z.number().int(),
  imgRange: z.number(),
  depths: z.array(z.number().int()),
  embedDim: z.number().int(),
  numHeads: z.array(z.number().int()),
  mlpRatio: z.number(),
  qkvBias: z.boolean(),
  qkScale: z.number().nullable(),
  upsampler: z.enum(['pixelshuffledirect', 'pixelshuffle', 'nearest+conv', '']),
  resiConnection: z.enum(['1conv', '3conv']),
  patchNorm: z.boolean(),
  ape: z.boolean(),
});

const fileSchema = z.strictObject({ name: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) });

export const qparamsSchema = z.strictObject({
  format: z.literal(QPARAMS_FORMAT),
  version: z.union([z.literal(1), z.literal(2), z.literal(QPARAMS_VERSION)]),
  method: z.string(),
  options: z.record(z.string(), z.unknown()),
  preset: z.enum(PRESET_NAMES as unknown as ['quick', 'paper']),
  seed: z.number().int(),
  wbits: z.number().int(),
  abits: z.number().int(),
  quantizer: quantSettingsSchema.omit({ wbits: true, abits: true }),
  model: z.strictObject({
    arch: z.string(),
    scale: z.number().int(),
    config: swinirConfigSchema,
    checkpoint: z.strictObject({ file: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  }),
  calibration: calibrationSettingsSchema.extend({
    seed: z.number().int(),
    scale: z.number().int(),
    folder: z.string(),
    calibrationFiles: z.array(fileSchema),
    heldOutFiles: z.array(fileSchema),
    resize: z.literal('matlab-imresize-uint8'),
  }).strict(),
  code: z.strictObject({ package: z.string(), version: z.string(), git: z.string().nullable() }),
  created: z.string(),
  seconds: z.number(),
  /** Float tensors that replace the checkpoint's (version 3): the sidecar's file name (next to this file), hash and keys. */
  weights: z.strictObject({ file: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/), tensors: z.array(z.string()) }).optional(),
  bounds: z.record(z.string(), z.strictObject({
    lower: z.array(z.number()),
    upper: z.array(z.number()),
    noise: z.array(z.number()).optional(),
    twin: z.strictObject({ signed: z.boolean(), fine: z.array(z.number()), shift: z.array(z.number().int()) }).optional(),
  })),
}).refine((q) => q.version > 1 || Object.values(q.bounds).every((b) => !b.noise && !b.twin), {
  message: 'noise and twin bounds need qparams version 2', path: ['version'],
}).refine((q) => q.version > 2 || !q.weights, { message: 'weight overrides need qparams version 3', path: ['version'] });
export type QParams = z.infer<typeof qparamsSchema>;

/** The package version and, when this is a git checkout, the commit. */
export function codeVersion(): QParams['code'] {
  let git: string | null = null;
  try {
    const r = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: repoRoot(), encoding: 'utf8', timeout: 5000 });
    if (r.status === 0 && /^[0-9a-f]{40}$/.test(r.stdout.trim())) git = r.stdout.trim();
  } catch {
    git = null;
  }
  const pkg = JSON.parse(fs.readFileSync(require.resolve('../package.json'), 'utf8')) as { name: string; version: string };
  return { package: pkg.name, version: pkg.version, git };
}

/** Weight tensors that belong to a qparams object: set by quantizeModel (not yet written) or by readQParams (its file). */
const weightSources = new WeakMap<QParams, StateDict | string>();

/** The sidecar's bytes for a set of override tensors, and their sha256 (what `weights.sha256` records). */
export function encodeWeightOverrides(tensors: StateDict): { bytes: Uint8Array; sha256: string } {
  const bytes = Buffer.concat(encodeSafetensors(tensors));
  return { bytes, sha256: sha256Bytes(bytes) };
}

/** Attaches the override tensors to a qparams object whose `weights` records them (quantizeModel does this). */
export function attachWeightOverrides(qparams: QParams, tensors: StateDict): void {
  weightSources.set(qparams, tensors);
}

/** The sidecar file name for a qparams file: `h.json` -> `h.weights.safetensors`. */
export function weightsFileFor(qparamsFile: string): string {
  return `${path.basename(qparamsFile).replace(/\.json$/, '')}.weights.safetensors`;
}

/**
 * The override tensors of a qparams object (undefined when it has none): those attached in memory, else the
 * sidecar next to `file`, refused if its sha256 differs from the recorded one.
 */
export function weightOverrides(qparams: QParams, file = 'qparams'): StateDict | undefined {
  if (!qparams.weights) return undefined;
  const source = weightSources.get(qparams) ?? file;
  if (typeof source !== 'string') return source;
  const sidecar = path.join(path.dirname(source), qparams.weights.file);
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(sidecar);
  } catch (err) {
    throw new ConfigError(`qparams file '${source}' needs its weight file '${sidecar}': ${(err as Error).message}`, { value: sidecar });
  }
  const sha = sha256Bytes(bytes);
  if (sha !== qparams.weights.sha256) {
    throw new ConfigError(
      `weight file '${sidecar}' has sha256 ${sha.slice(0, 12)}..., but '${source}' records ${qparams.weights.sha256.slice(0, 12)}... (a stale or foreign sidecar)`,
      { value: sidecar });
  }
  const tensors = readSafetensors(bytes, sidecar).stateDict;
  const keys = [...tensors.keys()];
  if (keys.join('\n') !== qparams.weights.tensors.join('\n')) {
    throw new ConfigError(`weight file '${sidecar}' holds tensors [${keys.join(', ')}], '${source}' lists [${qparams.weights.tensors.join(', ')}]`, { value: sidecar });
  }
  weightSources.set(qparams, tensors);
  return tensors;
}

/**
 * Writes bounds one quantizer per line; the rest indented. Atomic. A qparams object with weight overrides gets
 * its sidecar `<name>.weights.safetensors` written first (also atomic), and `weights.file` names it.
 */
export async function writeQParams(file: string, qparams: QParams): Promise<void> {
  let checked = qparamsSchema.parse(qparams);
  if (checked.weights) {
    const tensors = weightOverrides(qparams);
    const { bytes, sha256 } = encodeWeightOverrides(tensors!);
    if (sha256 !== checked.weights.sha256) throw new ConfigError(`writeQParams: the weight overrides' sha256 ${sha256} differs from the recorded ${checked.weights.sha256}`);
    const name = weightsFileFor(file);
    await writeFileAtomic(path.join(path.dirname(file), name), bytes);
    checked = { ...checked, weights: { ...checked.weights, file: name } };
    qparams.weights = checked.weights;
  }
  const { bounds, ...rest } = checked;
  const head = JSON.stringify(rest, null, 2).replace(/\[\s+([^\][{}]*?)\s+\]/g, (_m, inner: string) => `[${inner.replace(/\s*\n\s*/g, ' ')}]`);
  const lines = Object.entries(bounds).map(([id, b]) => `    ${JSON.stringify(id)}: ${JSON.stringify(b)}`);
  const text = `${head.slice(0, -2)},\n  "bounds": {\n${lines.join(',\n')}\n  }\n}\n`;
  JSON.parse(text); // the hand-joined text must still be one JSON object
  await writeFileAtomic(file, text);
}

/** Reads and validates a qparams file: JSON, format, a supported version, no unknown keys. */
export function readQParams(file: string): QParams {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read qparams file '${file}': ${(err as Error).message}`, { value: file });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`qparams file '${file}' is not JSON: ${(err as Error).message}`, { value: file });
  }
  const head = raw as { format?: unknown; version?: unknown } | null;
  if (typeof head !== 'object' || head === null || head.format !== QPARAMS_FORMAT) {
    throw new ConfigError(`'${file}' is not a qparams file (no "format": "${QPARAMS_FORMAT}")`, { value: file });
  }
  if (!SUPPORTED_QPARAMS_VERSIONS.includes(head.version as number)) {
    throw new ConfigError(`qparams file '${file}' has version ${String(head.version)} (supported: ${SUPPORTED_QPARAMS_VERSIONS.join(', ')})`, {
      value: String(head.version), choices: SUPPORTED_QPARAMS_VERSIONS.map(String),
    });
  }
  const parsed = qparamsSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid qparams file '${file}': ${zodMessage(parsed.error)}`, { value: file });
  if (parsed.data.weights) weightSources.set(parsed.data, file);
  return parsed.data;
}

export interface ModelIdentity {
  arch: string;
  scale: number;
  config: SwinIRConfig;
  sha256: string;
  /** The checkpoint path, for messages. */
  file?: string;
}

function configDifferences(a: SwinIRConfig, b: SwinIRConfig): string[] {
  return (Object.keys(a) as (keyof SwinIRConfig)[])
    .filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]))
    .map((k) => `${k} ${JSON.stringify(a[k])} vs ${JSON.stringify(b[k])}`);
}

/** Refuses a qparams file made for another architecture, scale, config or checkpoint, naming both values. */
export function checkQParamsFor(qparams: QParams, model: ModelIdentity, file: string): void {
  const q = qparams.model;
  if (q.arch !== model.arch) {
    throw new ConfigError(`qparams file '${file}' is for arch ${q.arch}, but the model is ${model.arch}`, { value: q.arch });
  }
  if (q.scale !== model.scale) {
    throw new ConfigError(`qparams file '${file}' is for scale x${q.scale}, but the model is x${model.scale}`, { value: String(q.scale) });
  }
  const diff = configDifferences(q.config as SwinIRConfig, model.config);
  if (diff.length > 0) {
    throw new ConfigError(`qparams file '${file}' is for another SwinIR config (qparams vs model: ${diff.join('; ')})`);
  }
  if (q.checkpoint.sha256 !== model.sha256) {
    throw new ConfigError(
      `qparams file '${file}' was calibrated on checkpoint ${q.checkpoint.file} (sha256 ${q.checkpoint.sha256.slice(0, 12)}...), ` +
        `but the model is ${model.file ?? 'another checkpoint'} (sha256 ${model.sha256.slice(0, 12)}...)`,
      { value: q.checkpoint.sha256 },
    );
  }
}

/**
 * The plan and bounds a qparams file describes, checked against each other; the plan carries the file's weight
 * overrides (loaded from the sidecar next to `file` and hash-checked), which quantizedEngineOptions applies.
 */
export function qparamsPlan(qparams: QParams, file = 'qparams'): { plan: QuantPlan; bounds: BoundsMap } {
  const plan = makePlan(qparams.model.config as SwinIRConfig, { ...DEFAULT_QUANT_SETTINGS, ...qparams.quantizer, wbits: qparams.wbits, abits: qparams.abits });
  const bounds: BoundsMap = new Map(Object.entries(qparams.bounds));
  validateBounds(plan, bounds, { file });
  const overrides = weightOverrides(qparams, file);
  return { plan: overrides ? { ...plan, weightOverrides: overrides } : plan, bounds };
}
