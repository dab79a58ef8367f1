/**
 * The extension point: a post-training quantization method is one `PtqMethod` object in one file under
 * methods/, plus one line in methods/index.ts. It receives a `CalibrationContext` (the model, the sites,
 * the calibration and held-out patches, a seeded RNG, progress reporting, float statistics and forward
 * helpers) and returns bounds for every site, or bounds plus a transformed state dict when it changes weights
 * (HarmoQ). See CONTRIBUTING.md, "Adding a PTQ method".
 */
import type { CalibrationData, Rng } from '@harmoq/data';
import type { SwinIRConfig, SwinIRModel } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import type { z } from 'zod';
import type { ActivationStats } from './capture';
import type { BoundsMap, QuantPlan } from './plan';
import type { QuantizerSpec } from './quantizer';
import type { QuantSite } from './sites';
import type { Distribution } from './stats';
import type { TfBoundsMap, TfjsQuantHooks } from './tfjs';

export type PresetName = 'quick' | 'paper';
export const PRESET_NAMES: readonly PresetName[] = ['quick', 'paper'];

export interface ProgressUpdate {
  /** What is running, e.g. 'activations', 'search', 'dqc'. */
  stage: string;
  step: number;
  total: number;
  /** The loss at this step, for methods that optimise one; checked for NaN/Inf. */
  loss?: number;
  /** A short free-text report shown with the step (e.g. a before -> after comparison). */
  note?: string;
}

export interface CalibrationContext {
  readonly config: SwinIRConfig;
  readonly stateDict: StateDict;
  readonly plan: QuantPlan;
  /** The quantizers to calibrate, in forward order (= plan.sites). */
  readonly sites: readonly QuantSite[];
  /** Calibration patches (what bounds are fitted on) and held-out patches (for any selection). */
  readonly data: CalibrationData;
  /** Seeded; use it (or a fork) for every random choice. */
  readonly rng: Rng;
  /** onnxruntime intra-op threads. */
  readonly threads: number;
  spec(site: QuantSite): QuantizerSpec;
  /**
   * Reports progress; the CLI draws it as a bar. A non-finite loss throws a CalibrationError naming the
   * stage and step (and `site`, when given).
   */
  progress(update: ProgressUpdate & { site?: string }): void;
  /** A weight quantizer's float values (its slice of the state dict), PyTorch layout. */
  weight(site: QuantSite): Float32Array;
  /** A site's values as distributions: one per channel for per-channel quantizers, else one. Activations are float statistics over the calibration patches. */
  distributions(site: QuantSite): Promise<Distribution[]>;
  /** Float activation histograms per hook site over the calibration patches (computed once, cached). */
  activationStats(): Promise<ActivationStats>;
  /** Model outputs on a patch set, float (bounds null) or fake-quantized (onnxruntime). Float outputs are cached. */
  forward(bounds: BoundsMap | null, set: 'calibration' | 'heldOut'): Promise<Float32Array>;
  /** Mean squared difference between the fake-quantized and the float output on a patch set (default held-out). */
  outputError(bounds: BoundsMap, set?: 'calibration' | 'heldOut'): Promise<number>;
  /** The tfjs reference model (wasm backend), for gradient methods; built on first use, disposed after calibrate. */
  tfjsModel(): Promise<SwinIRModel>;
  /** Hooks for `model.apply(x, hooks)` that fake-quantize with tensor bounds (tf.variable for training). */
  tfjsHooks(bounds: TfBoundsMap): TfjsQuantHooks;
  /** Bounds as tfjs tensors shaped for the hooks; `trainable` makes them tf.Variables. */
  tfjsBounds(bounds: BoundsMap, trainable: boolean): TfBoundsMap;
  /** Throws a CalibrationError naming the site and step if `values` holds NaN or Inf. */
  checkFinite(values: ArrayLike<number>, site: string, step: number): void;
  /**
   * A context for the same plan, data and settings over another state dict (same keys and shapes), e.g. weights a
   * method transformed: its statistics, float outputs and tfjs model are its own (recomputed on first use), and it
   * is disposed with this one. Its rng is a fork of this one's.
   */
  withStateDict(stateDict: StateDict): CalibrationContext;
}

/**
 * What a method that changes weights returns: the bounds, and the float state dict they belong to (same keys and
 * shapes as ctx.stateDict; tensors that differ are saved next to the qparams file and applied at evaluation).
 */
export interface CalibrationResult {
  bounds: BoundsMap;
  stateDict: StateDict;
}

/** The bounds of a method's result, and its state dict when it returned one. */
export function calibrationParts(result: BoundsMap | CalibrationResult): { bounds: BoundsMap; stateDict?: StateDict } {
  return result instanceof Map ? { bounds: result } : result;
}

/** `R`: a BoundsMap (most methods), or a CalibrationResult for methods that change weights. */
export interface PtqMethod<O extends Record<string, unknown>, R extends BoundsMap | CalibrationResult = BoundsMap> {
  /** Registry key and CLI name. */
  readonly name: string;
  /** Citation of the paper the method comes from. */
  readonly paper: string;
  /** One line for help texts and the docs listing. */
  readonly summary: string;
  /** Option values when nothing else is set. */
  readonly defaults: O;
  /** Validates resolved options; a strict object schema, so unknown keys are refused. */
  readonly options: z.ZodType<O>;
  /** Option overrides per preset ('quick' for 2 CPU cores, 'paper' for the published settings). */
  readonly presets?: Partial<Record<PresetName, Partial<O>>>;
  /** Bounds for every site in ctx.sites (plus the transformed state dict, for methods that change weights). */
  calibrate(ctx: CalibrationContext, options: O): Promise<R>;
}

/** A method of any option type, as the registry holds them (each entry keeps its own option type). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- option types differ per method; PtqMethod<unknown> would reject them
export type AnyPtqMethod = PtqMethod<any, BoundsMap | CalibrationResult>;
