/**
 * Float activation statistics at the quantization sites, gathered by running the float model over the
 * calibration patches, and onnxruntime sessions for float / fake-quant forwards on patches.
 *
 * Two capture paths: onnxruntime, with every wanted site added as a graph output through the SiteHook, and
 * the tfjs reference through its ActivationHook. Both feed the same histograms; onnxruntime is the default
 * because it is faster (measured in packages/quant/README.md).
 */
import * as ort from 'onnxruntime-node';
import type { PatchSet } from '@harmoq/data';
import { defaultSessionOptions } from '@harmoq/engine';
import { SwinIRModel, buildSwinIROnnx, initBackend, type SiteHook, type SiteInfo } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { CalibrationError } from './errors';
import { captureOutput, onnxChannelAxis, onnxQuantSites } from './onnx';
import type { BoundsMap, QuantPlan } from './plan';
import { activationLayout, type QuantSite } from './sites';
import { StreamingHistogram } from './stats';
import type { ChannelLayout } from './quantizer';

export type CaptureEngine = 'onnx' | 'tfjs';
export const CAPTURE_ENGINES: readonly CaptureEngine[] = ['onnx', 'tfjs'];

/** Float statistics per activation hook site (the q/k/v input quantizers share their site's). */
export type ActivationStats = Map<string, StreamingHistogram>;

export interface CaptureOptions {
  engine: CaptureEngine;
  threads: number;
  /** Histogram bins per tensor (per-tensor quantizers) and per channel (per-channel quantizers). */
  bins: number;
  channelBins: number;
  /** Patches per forward; default: as many as keep the captured tensors under ~512 MB. */
  batchSize?: number;
  onBatch?: (done: number, total: number) => void;
}

/** Activation sites of a plan grouped by the hook site whose tensor they quantize, in forward order. */
export function activationHookSites(plan: QuantPlan): Map<string, QuantSite[]> {
  const groups = new Map<string, QuantSite[]>();
  for (const site of plan.sites) {
    if (site.role !== 'activation') continue;
    groups.set(site.hookSite, [...(groups.get(site.hookSite) ?? []), site]);
  }
  return groups;
}

function patchBatch(patches: PatchSet, start: number, end: number): { data: Float32Array; shape: [number, number, number, number] } {
  const [, c, h, w] = patches.lrShape;
  const size = c * h * w;
  return { data: patches.lr.subarray(start * size, end * size), shape: [end - start, c, h, w] };
}

function nonFinite(site: string, value: number, step: number, start: number, end: number): CalibrationError {
  return new CalibrationError(
    `non-finite value ${value} in the float activations at '${site}' (calibration step ${step}, patches ${start}..${end - 1})`, site, step);
}

/** Collects histograms of every activation site of `plan` over `patches`. */
export async function collectActivationStats(
  plan: QuantPlan, stateDict: StateDict, patches: PatchSet, options: CaptureOptions,
): Promise<ActivationStats> {
  const groups = activationHookSites(plan);
  const stats: ActivationStats = new Map();
  for (const [hookSite, sites] of groups) {
    const spec = plan.spec(sites[0]);
    const channels = spec.perChannel ? sites[0].channels : 1;
    stats.set(hookSite, new StreamingHistogram(channels, channels > 1 ? options.channelBins : options.bins));
  }
  if (groups.size === 0) return stats;
  const add = (site: string, data: Float32Array, layout: ChannelLayout, step: number, start: number, end: number) => {
    const bad = stats.get(site)!.add(data, layout);
    if (bad >= 0) throw nonFinite(site, data[bad], step, start, end);
  };
  const count = patches.lrShape[0];
  if (options.engine === 'onnx') {
    const infos = new Map<string, SiteInfo>();
    const addOutputs = onnxQuantSites(plan, null, stateDict, { capture: new Set(groups.keys()), quantize: false });
    const capture: SiteHook = (site, tensor, g, info) => {
      if (groups.has(site)) infos.set(site, info);
      return addOutputs(site, tensor, g, info);
    };
    const session = await onnxSession(plan, stateDict, patches.lrShape[2], patches.lrShape[3], capture, options.threads);
    try {
      let batch = options.batchSize ?? 1;
      for (let start = 0, step = 0; start < count; step++) {
        const end = Math.min(count, start + batch);
        const { data, shape } = patchBatch(patches, start, end);
        const outputs = await session.run({ input: new ort.Tensor('float32', data, shape) });
        let floats = 0;
        for (const site of groups.keys()) {
          const t = outputs[captureOutput(site)];
          floats += t.size;
          const info = infos.get(site)!;
          const axis = onnxChannelAxis(info);
          const dims = t.dims as readonly number[];
          add(site, t.data as Float32Array, { channels: dims[axis], inner: dims.slice(axis + 1).reduce((a, b) => a * b, 1) }, step, start, end);
        }
        for (const t of Object.values(outputs)) t.dispose?.();
        if (options.batchSize === undefined && step === 0) batch = Math.max(1, Math.floor((128 * 2 ** 20) / (floats / (end - start))));
        options.onBatch?.(end, count);
        start = end;
      }
    } finally {
      await session.release();
    }
    return stats;
  }
  await initBackend('wasm');
  const model = new SwinIRModel(stateDict, plan.config);
  try {
    const batch = options.batchSize ?? 4;
    const byHook = new Map([...groups].map(([site, list]) => [site, list[0]]));
    for (let start = 0, step = 0; start < count; start += batch, step++) {
      const end = Math.min(count, start + batch);
      const input = patchBatch(patches, start, end);
      model.forward(input, {
        hook: (site, x) => {
          const q = byHook.get(site);
          if (q) add(site, x.dataSync() as Float32Array, activationLayout(q, x.shape, 'tfjs'), step, start, end);
        },
      });
      options.onBatch?.(end, count);
    }
  } finally {
    model.dispose();
  }
  return stats;
}

/** An onnxruntime session of the SwinIR graph for one input size (batch symbolic), with optional site hook. */
export async function onnxSession(
  plan: QuantPlan, stateDict: StateDict, height: number, width: number, sites: SiteHook | undefined, threads: number,
): Promise<ort.InferenceSession> {
  const model = buildSwinIROnnx(plan.config, stateDict, { height, width, sites });
  return ort.InferenceSession.create(model, defaultSessionOptions(threads));
}

/** The model's output on every patch (float, or fake-quantized with `bounds`), batch by batch. */
export async function forwardPatches(
  plan: QuantPlan, stateDict: StateDict, patches: PatchSet, bounds: BoundsMap | null, threads: number, batchSize = 8,
): Promise<Float32Array> {
  const [count, , h, w] = patches.lrShape;
  const sites = bounds ? onnxQuantSites(plan, bounds, stateDict) : undefined;
  const session = await onnxSession(plan, stateDict, h, w, sites, threads);
  try {
    const s = plan.config.upsampler === '' ? 1 : plan.config.upscale;
    const outSize = 3 * h * s * w * s;
    const out = new Float32Array(count * outSize);
    for (let start = 0; start < count; start += batchSize) {
      const end = Math.min(count, start + batchSize);
      const { data, shape } = patchBatch(patches, start, end);
      const result = (await session.run({ input: new ort.Tensor('float32', data, shape) })).output;
      out.set(result.data as Float32Array, start * outSize);
      result.dispose?.();
    }
    return out;
  } finally {
    await session.release();
  }
}
