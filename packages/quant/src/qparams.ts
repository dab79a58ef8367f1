/**
 * QParams files: the result of a calibration, versioned JSON. They record the method and its resolved
 * options, the bits and quantizer settings, the architecture with its full SwinIRConfig, the checkpoint's
 * sha256, the calibration data (files with hashes, seed, patch size, counts, split), the preset, the code
 * version and the bounds of every quantizer. Unknown keys are refused; a file is only applied to the
 * architecture, checkpoint and scale it was made for.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { repoRoot, writeFileAtomic } from '@harmoq/data';
import type { SwinIRConfig } from '@harmoq/swinir';
import { z } from 'zod';
import { calibrationSettingsSchema, zodMessage } from './config';
import { ConfigError } from './errors';
import { PRESET_NAMES } from './method';
import { DEFAULT_QUANT_SETTINGS, makePlan, quantSettingsSchema, validateBounds, type BoundsMap, type QuantPlan } from './plan';

export const QPARAMS_FORMAT = 'harmoq-qparams';
/** 2 added optional per-site `noise` (NoisyQuant) and `twin` (PTQ4ViT) to the bounds; version-1 files still read. */
export const QPARAMS_VERSION = 2;
export const SUPPORTED_QPARAMS_VERSIONS: readonly number[] = [1, QPARAMS_VERSION];

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
  version: z.union([z.literal(1), z.literal(QPARAMS_VERSION)]),
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
  bounds: z.record(z.string(), z.strictObject({
    lower: z.array(z.number()),
    upper: z.array(z.number()),
    noise: z.array(z.number()).optional(),
    twin: z.strictObject({ signed: z.boolean(), fine: z.array(z.number()), shift: z.array(z.number().int()) }).optional(),
  })),
}).refine((q) => q.version > 1 || Object.values(q.bounds).every((b) => !b.noise && !b.twin), {
  message: 'noise and twin bounds need qparams version 2', path: ['version'],
});
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

/** Writes bounds one quantizer per line; the rest indented. Atomic. */
export async function writeQParams(file: string, qparams: QParams): Promise<void> {
  const checked = qparamsSchema.parse(qparams);
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

/** The plan and bounds a qparams file describes, checked against each other. */
export function qparamsPlan(qparams: QParams, file = 'qparams'): { plan: QuantPlan; bounds: BoundsMap } {
  const plan = makePlan(qparams.model.config as SwinIRConfig, { ...DEFAULT_QUANT_SETTINGS, ...qparams.quantizer, wbits: qparams.wbits, abits: qparams.abits });
  const bounds: BoundsMap = new Map(Object.entries(qparams.bounds));
  validateBounds(plan, bounds, { file });
  return { plan, bounds };
}
