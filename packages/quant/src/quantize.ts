/**
 * `quantizeModel`: one calibration run from a resolved request to a QParams object (the CLI writes it),
 * and `quantizedEngineOptions`: what an engine needs to run a model with a qparams file's bounds.
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { calibrationPatches, seededRng } from '@harmoq/data';
import { defaultThreads, type EngineName, type EngineOptions } from '@harmoq/engine';
import { toFloat32, type ActivationHook, type SwinIRConfig } from '@harmoq/swinir';
import { bytesOfData, sha256File, type StateDict } from '@harmoq/torch-io';
import { methodByName, type QuantizeRequest } from './config';
import { createCalibrationContext } from './context';
import { CalibrationError } from './errors';
import { calibrationParts, type ProgressUpdate } from './method';
import { onnxQuantSites, quantizedWeight } from './onnx';
import { makePlan, validateBounds, type BoundsMap, type QuantPlan } from './plan';
import { attachWeightOverrides, codeVersion, encodeWeightOverrides, QPARAMS_FORMAT, QPARAMS_VERSION, type QParams } from './qparams';
import { quantizeStateDict, tfjsQuantHooks, toTfBounds } from './tfjs';

export interface ModelToQuantize {
  arch: string;
  config: SwinIRConfig;
  stateDict: StateDict;
  checkpoint: { file: string; sha256: string };
}

export interface QuantizeRunOptions {
  /** Data folder holding calibration/. */
  dataDir: string;
  /** onnxruntime threads (default: all cores). */
  threads?: number;
  onProgress?: (update: ProgressUpdate) => void;
}

/** Calibrates `model` with `request` and returns the qparams (bounds validated: finite, u > l, all sites). */
export async function quantizeModel(model: ModelToQuantize, request: QuantizeRequest, options: QuantizeRunOptions): Promise<QParams> {
  const started = process.hrtime.bigint();
  const method = methodByName(request.method);
  const plan = makePlan(model.config, { ...request.quantizer, wbits: request.wbits, abits: request.abits });
  const scale = model.config.upscale;
  const c = request.calibration;
  const data = await calibrationPatches({
    scale, patchSize: c.patchSize, count: c.count, heldOutCount: c.heldOutCount, heldOutFraction: c.heldOutFraction,
    seed: request.seed, augment: c.augment, dataDir: options.dataDir,
  });
  const threads = options.threads ?? defaultThreads();
  const ctx = createCalibrationContext({
    plan, stateDict: model.stateDict, data, rng: seededRng(request.seed).fork(3), threads,
    captureEngine: c.engine, bins: c.bins, channelBins: c.channelBins, onProgress: options.onProgress,
  });
  let bounds: BoundsMap;
  let changed: StateDict | undefined;
  try {
    const result = calibrationParts(await method.calibrate(ctx, request.options));
    bounds = result.bounds;
    if (result.stateDict) changed = changedTensors(model.stateDict, result.stateDict);
  } finally {
    ctx.dispose();
  }
  validateBounds(plan, bounds);
  const hashed = (names: string[]) => names.map((name) => ({ name, sha256: sha256File(path.join(data.description.folder, name)) }));
  const qparams: QParams = {
    format: QPARAMS_FORMAT,
    version: QPARAMS_VERSION,
    method: method.name,
    options: request.options,
    preset: request.preset,
    seed: request.seed,
    wbits: request.wbits,
    abits: request.abits,
    quantizer: plan.settings.sites === request.quantizer.sites ? request.quantizer : { ...request.quantizer, sites: plan.settings.sites },
    model: { arch: model.arch, scale, config: model.config, checkpoint: { file: path.basename(model.checkpoint.file), sha256: model.checkpoint.sha256 } },
    calibration: {
      ...c,
      seed: request.seed,
      scale,
      folder: data.description.folder,
      calibrationFiles: hashed(data.description.calibrationFiles),
      heldOutFiles: hashed(data.description.heldOutFiles),
      resize: data.description.resize,
    },
    code: codeVersion(),
    created: new Date().toISOString(),
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
    ...(changed && changed.size > 0 ? { weights: { file: 'weights.safetensors', sha256: encodeWeightOverrides(changed).sha256, tensors: [...changed.keys()] } } : {}),
    bounds: Object.fromEntries(plan.sites.map((s) => [s.id, bounds.get(s.id)!])),
  };
  if (qparams.weights) attachWeightOverrides(qparams, changed!);
  return qparams;
}

/** The tensors of `transformed` whose values differ from `original` (same keys, shapes and dtypes required). */
function changedTensors(original: StateDict, transformed: StateDict): StateDict {
  const out: StateDict = new Map();
  for (const [key, t] of transformed) {
    const o = original.get(key);
    if (!o || o.shape.join() !== t.shape.join() || o.dtype !== t.dtype) {
      throw new CalibrationError(`the method's state dict has '${key}' ${t.dtype}[${t.shape.join(', ')}], the checkpoint ${o ? `${o.dtype}[${o.shape.join(', ')}]` : 'has no such tensor'}`);
    }
    if (!Buffer.from(bytesOfData(o.data)).equals(bytesOfData(t.data))) out.set(key, t);
  }
  return out;
}

/** The checkpoint with a plan's weight overrides applied (itself when there are none). */
export function withWeightOverrides(plan: QuantPlan, stateDict: StateDict): StateDict {
  if (!plan.weightOverrides) return stateDict;
  const merged: StateDict = new Map(stateDict);
  for (const [key, t] of plan.weightOverrides) {
    const o = stateDict.get(key);
    if (!o || o.shape.join() !== t.shape.join()) {
      throw new CalibrationError(`weight override '${key}' [${t.shape.join(', ')}] does not match the checkpoint (${o ? `[${o.shape.join(', ')}]` : 'no such tensor'})`);
    }
    merged.set(key, t);
  }
  return merged;
}

/**
 * Engine options that run the model fake-quantized: on onnx, fake-quant nodes at the sites (weights
 * swapped for their quantized values); on tfjs, a state dict with quantized weights and an activation hook.
 * The plan's weight overrides (qparams version 3) replace the checkpoint's tensors first.
 */
export function quantizedEngineOptions(
  plan: QuantPlan, bounds: BoundsMap, checkpoint: StateDict, engine: EngineName,
): Pick<EngineOptions, 'stateDict' | 'sites' | 'hook'> {
  const stateDict = withWeightOverrides(plan, checkpoint);
  if (engine === 'onnx') return { stateDict, sites: onnxQuantSites(plan, bounds, stateDict) };
  const quantized = quantizeStateDict(plan, bounds, stateDict, (site) => quantizedWeight(plan, site, bounds.get(site.id)!, stateDict));
  const tensors = new Map<string, tf.Tensor>();
  const param = (key: string) => {
    let t = tensors.get(key);
    if (!t) {
      const entry = quantized.get(key)!;
      t = tf.keep(tf.tensor(toFloat32(entry, key), entry.shape, 'float32'));
      tensors.set(key, t);
    }
    return t;
  };
  // Built on first use, so the bound tensors live on the backend the runner selected.
  let hooks: ReturnType<typeof tfjsQuantHooks> | undefined;
  const hook: ActivationHook = (site, x, kind) => {
    hooks ??= tfjsQuantHooks(plan, toTfBounds(plan, bounds), param, { weightsPrequantized: true });
    return hooks.hook(site, x, kind);
  };
  return { stateDict: quantized, hook };
}
