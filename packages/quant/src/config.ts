/**
 * A quantization run's settings, resolved once: defaults, then the preset, then `--set key=value`
 * overrides, validated by zod (unknown keys are refused with the nearest valid key). The resolved object is
 * what a qparams file records.
 */
import { z } from 'zod';
import { CAPTURE_ENGINES } from './capture';
import { ConfigError, nearest, unknownChoice } from './errors';
import { PRESET_NAMES, type AnyPtqMethod, type PresetName } from './method';
import { METHOD_NAMES, PTQ_METHODS } from './methods';
import { DEFAULT_QUANT_SETTINGS, quantSettingsSchema } from './plan';
import { checkBits } from './quantizer';

export const calibrationSettingsSchema = z.strictObject({
  /** Calibration patches (LR, patchSize x patchSize). */
  count: z.number().int().min(1),
  patchSize: z.number().int().min(4),
  /** Held-out patches, cut from other images, for any selection a method makes. */
  heldOutCount: z.number().int().min(0),
  heldOutFraction: z.number().gt(0).lt(1),
  augment: z.boolean(),
  /** Which engine runs the float model to gather activation statistics. */
  engine: z.enum(CAPTURE_ENGINES as unknown as ['onnx', 'tfjs']),
  /** Histogram bins per tensor / per channel. */
  bins: z.number().int().min(16).multipleOf(2),
  channelBins: z.number().int().min(16).multipleOf(2),
});
export type CalibrationSettings = z.infer<typeof calibrationSettingsSchema>;

const commonCalibration = { heldOutFraction: 0.25, augment: true, engine: 'onnx', bins: 8192, channelBins: 256 } as const;

/**
 * Calibration data per preset. `paper` is 2DQuant's calibration batch (32 LR patches of 64x64, anchors.md
 * 1.3); `quick` keeps the count and uses 48x48 patches, which fit more of the calibration images at x4.
 */
export const CALIBRATION_PRESETS: Record<PresetName, CalibrationSettings> = {
  quick: { ...commonCalibration, count: 32, patchSize: 48, heldOutCount: 8 },
  paper: { ...commonCalibration, count: 32, patchSize: 64, heldOutCount: 16 },
};

export const DEFAULT_SEED = 3407; // 2DQuant's manual_seed

const quantizerSchema = quantSettingsSchema.omit({ wbits: true, abits: true });
export type QuantizerSettings = z.infer<typeof quantizerSchema>;

export interface QuantizeRequest {
  method: string;
  preset: PresetName;
  seed: number;
  wbits: number;
  abits: number;
  quantizer: QuantizerSettings;
  calibration: CalibrationSettings;
  /** Method options, validated by the method's schema. */
  options: Record<string, unknown>;
}

export function methodByName(name: string): AnyPtqMethod {
  if (!Object.hasOwn(PTQ_METHODS, name)) throw unknownChoice('method', name, METHOD_NAMES);
  return PTQ_METHODS[name as keyof typeof PTQ_METHODS];
}

export function presetByName(name: string): PresetName {
  if (!(PRESET_NAMES as readonly string[]).includes(name)) throw unknownChoice('preset', name, PRESET_NAMES);
  return name as PresetName;
}

/** A `--set` value: true/false, a number, or the string itself. */
function parseValue(raw: string): unknown {
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  if (raw.trim() !== '' && Number.isFinite(Number(raw))) return Number(raw);
  return raw;
}

type Section = 'quantizer' | 'calibration' | 'options';

/**
 * Applies `key=value` settings; keys are `section.key`, `<method>.<option>` for the request's own method (the
 * issues' spelling, `--set harmoq.src=false`; the same as `options.src=false`), or a bare key that only one
 * section has. Another method's name as the section is refused: its options would be silently ignored.
 */
export function applySettings(request: QuantizeRequest, settings: readonly string[]): QuantizeRequest {
  const out: QuantizeRequest = {
    ...request, quantizer: { ...request.quantizer }, calibration: { ...request.calibration }, options: { ...request.options },
  };
  const keys: Record<Section, string[]> = {
    quantizer: Object.keys(quantizerSchema.shape),
    calibration: Object.keys(calibrationSettingsSchema.shape),
    options: Object.keys(methodByName(request.method).defaults),
  };
  const all = (Object.keys(keys) as Section[]).flatMap((s) => keys[s].map((k) => `${s}.${k}`));
  for (const setting of settings) {
    const eq = setting.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--set '${setting}' is not key=value`, { value: setting });
    const key = setting.slice(0, eq).trim();
    const value = parseValue(setting.slice(eq + 1).trim());
    let section: Section | undefined, name = key;
    const dot = key.indexOf('.');
    const prefix = dot > 0 ? key.slice(0, dot) : '';
    const named = prefix === request.method ? 'options' : prefix;
    if (dot > 0 && Object.hasOwn(keys, named)) {
      section = named as Section;
      name = key.slice(dot + 1);
      if (!keys[section].includes(name)) section = undefined;
    } else if (dot > 0 && (METHOD_NAMES as readonly string[]).includes(prefix)) {
      const choices = keys.options.map((k) => `${request.method}.${k}`);
      throw new ConfigError(
        `--set key '${key}' sets an option of method '${prefix}', but this request's method is '${request.method}' ` +
          `(its options: ${choices.join(', ')}; or options.<option>)`,
        { value: key, choices },
      );
    } else {
      const owners = (Object.keys(keys) as Section[]).filter((s) => keys[s].includes(key));
      if (owners.length > 1) {
        throw new ConfigError(`--set key '${key}' is ambiguous (use one of: ${owners.map((s) => `${s}.${key}`).join(', ')})`, { value: key });
      }
      section = owners[0];
    }
    if (!section) {
      const bare = (Object.keys(keys) as Section[]).flatMap((s) => keys[s]);
      const guess = prefix === request.method ? nearest(key, keys.options.map((k) => `${request.method}.${k}`)) : nearest(key, [...all, ...bare]);
      throw new ConfigError(
        `unknown --set key '${key}' for method '${request.method}' (${guess ? `did you mean '${guess}'? ` : ''}keys: ${all.join(', ')})`,
        { value: key, choices: all },
      );
    }
    (out[section] as Record<string, unknown>)[name] = value;
  }
  return out;
}

/** One line from a zod error: the first issue's path and message. */
export function zodMessage(error: z.ZodError): string {
  const issue = error.issues[0];
  const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  if (issue.code === 'unrecognized_keys') return `${where}unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
  return `${where}${issue.message}`;
}

function validate<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new ConfigError(`invalid ${what}: ${zodMessage(parsed.error)}`);
  return parsed.data;
}

export interface RequestInput {
  method: string;
  wbits: number;
  abits: number;
  preset?: string;
  seed?: number;
  /** `key=value` overrides (see applySettings). */
  set?: readonly string[];
}

/** Defaults, preset, overrides; every section validated. */
export function resolveRequest(input: RequestInput): QuantizeRequest {
  const method = methodByName(input.method);
  const preset = presetByName(input.preset ?? 'quick');
  checkBits(input.wbits, '--wbits');
  checkBits(input.abits, '--abits');
  const seed = input.seed ?? DEFAULT_SEED;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new ConfigError(`seed ${seed} must be an integer in 0..4294967295`, { value: String(seed) });
  const base: QuantizeRequest = {
    method: method.name, preset, seed, wbits: input.wbits, abits: input.abits,
    quantizer: { ...DEFAULT_QUANT_SETTINGS },
    calibration: { ...CALIBRATION_PRESETS[preset] },
    options: { ...method.defaults, ...(method.presets?.[preset] ?? {}) },
  };
  const request = applySettings(base, input.set ?? []);
  return {
    ...request,
    quantizer: validate(quantizerSchema, request.quantizer, 'quantizer settings'),
    calibration: validate(calibrationSettingsSchema, request.calibration, 'calibration settings'),
    options: validate(method.options, request.options, `options for method '${method.name}'`) as Record<string, unknown>,
  };
}
