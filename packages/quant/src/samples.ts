/**
 * Float activation samples at hook sites, for methods whose search needs actual values rather than histograms
 * (layer-output metrics: PTQ4ViT, NoisyQuant). A few calibration patches run through the float onnxruntime
 * graph with the sites as outputs (as capture.ts does), and a seeded random subset of each tensor's units is
 * kept: rows of a Linear input, windows of an attention tensor (all heads), whole images of a conv input.
 */
import * as ort from 'onnxruntime-node';
import type { SiteInfo, SiteHook } from '@harmoq/swinir';
import { toFloat32 } from '@harmoq/swinir';
import { onnxSession } from './capture';
import { CalibrationError } from './errors';
import type { CalibrationContext } from './method';
import { captureOutput, onnxQuantSites } from './onnx';
import type { ChannelLayout } from './quantizer';
import type { QuantSite } from './sites';

export interface SiteSamples {
  /** Units one after another: [S, C] rows, [S, heads, N, d] windows, or [S, C, H, W] images. */
  data: Float32Array;
  units: number;
  /** One unit's shape. */
  unitShape: number[];
  /** The per-channel layout of `data` (features, heads or channels). */
  layout: ChannelLayout;
}

export interface SampleOptions {
  /** Calibration patches to run (the first ones). */
  patches: number;
  /** Linear-input rows to keep per site. */
  rows: number;
  /** Attention windows to keep per site. */
  windows: number;
}

/** Samples of the tensors at `hookSites` (activation hook sites) over the first calibration patches. */
export async function captureSamples(ctx: CalibrationContext, hookSites: ReadonlySet<string>, options: SampleOptions): Promise<Map<string, SiteSamples>> {
  const patches = ctx.data.calibration;
  const [count, c, h, w] = patches.lrShape;
  const used = Math.min(count, options.patches);
  if (used === 0) throw new CalibrationError('captureSamples: no calibration patches');
  const rng = ctx.rng.fork(0x5a3);
  const infos = new Map<string, SiteInfo>();
  const addOutputs = onnxQuantSites(ctx.plan, null, ctx.stateDict, { capture: hookSites, quantize: false });
  const hook: SiteHook = (site, tensor, g, info) => {
    if (hookSites.has(site)) infos.set(site, info);
    return addOutputs(site, tensor, g, info);
  };
  const parts = new Map<string, { chunks: Float32Array[]; unitShape: number[] }>();
  const session = await onnxSession(ctx.plan, ctx.stateDict, h, w, hook, ctx.threads);
  try {
    for (let p = 0; p < used; p++) {
      const size = c * h * w;
      const input = new ort.Tensor('float32', patches.lr.subarray(p * size, (p + 1) * size), [1, c, h, w]);
      const outputs = await session.run({ input });
      for (const site of hookSites) {
        const t = outputs[captureOutput(site)];
        const kept = sampleUnits(t.data as Float32Array, t.dims as number[], infos.get(site)!, options, used, p, rng.int.bind(rng));
        const entry = parts.get(site) ?? { chunks: [], unitShape: kept.unitShape };
        entry.chunks.push(kept.data);
        parts.set(site, entry);
      }
      for (const t of Object.values(outputs)) t.dispose?.();
      ctx.progress({ stage: 'samples', step: p + 1, total: used });
    }
  } finally {
    await session.release();
  }
  const out = new Map<string, SiteSamples>();
  for (const [site, { chunks, unitShape }] of parts) {
    const data = new Float32Array(chunks.reduce((n, a) => n + a.length, 0));
    chunks.reduce((offset, a) => (data.set(a, offset), offset + a.length), 0);
    const unit = unitShape.reduce((a, b) => a * b, 1);
    out.set(site, { data, units: data.length / unit, unitShape, layout: { channels: unitShape[0], inner: unit / unitShape[0] } });
  }
  for (const [site, s] of out) ctx.checkFinite(s.data, site, 0);
  return out;
}

/** The units of one patch's tensor to keep, unit-major (see SiteSamples). */
function sampleUnits(
  data: Float32Array, dims: number[], info: SiteInfo, options: SampleOptions, patches: number, patch: number, int: (n: number) => number,
): { data: Float32Array; unitShape: number[] } {
  // Spread the wanted count over the patches; the last patches take the remainder.
  const share = (total: number) => Math.floor((total * (patch + 1)) / patches) - Math.floor((total * patch) / patches);
  if (info.kind === 'linear_input') {
    const features = dims[dims.length - 1], rows = data.length / features;
    const take = Math.min(rows, share(options.rows));
    const out = new Float32Array(take * features);
    for (let i = 0; i < take; i++) {
      const r = int(rows);
      out.set(data.subarray(r * features, (r + 1) * features), i * features);
    }
    return { data: out, unitShape: [features] };
  }
  if (info.kind === 'attention') {
    // ONNX attention tensors are [heads, windows, N, d]; a unit is one window across all heads.
    const [heads, windows] = dims;
    const per = dims.slice(2).reduce((a, b) => a * b, 1);
    const take = Math.min(windows, share(options.windows));
    const out = new Float32Array(take * heads * per);
    for (let i = 0; i < take; i++) {
      const win = int(windows);
      for (let hd = 0; hd < heads; hd++) out.set(data.subarray((hd * windows + win) * per, (hd * windows + win + 1) * per), (i * heads + hd) * per);
    }
    return { data: out, unitShape: [heads, ...dims.slice(2)] };
  }
  // Conv inputs: the whole image (batch 1), NCHW.
  return { data: Float32Array.from(data), unitShape: dims.slice(1) };
}

/** The float32 bias of a Linear site's module (its row slice for a split qkv part), or zeros. */
export function linearBias(ctx: CalibrationContext, weightSite: QuantSite): Float32Array {
  const key = weightSite.weightKey!.replace(/\.weight$/, '.bias');
  const [start, end] = weightSite.rows!;
  const t = ctx.stateDict.get(key);
  return t ? toFloat32(t, key).slice(start, end) : new Float32Array(end - start);
}

/** y = x W^T + b for rows x [S, inF], W [outF, inF]; float64 accumulation. */
export function linearRows(x: Float32Array, weight: Float32Array, bias: Float32Array): Float64Array {
  const outF = bias.length, inF = weight.length / outF, rows = x.length / inF;
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let sum = bias[o];
      for (let i = 0, xr = r * inF, wo = o * inF; i < inF; i++) sum += x[xr + i] * weight[wo + i];
      y[r * outF + o] = sum;
    }
  }
  return y;
}

/** 1 - cos(a, b) over whole tensors (the base PTQ4ViT metric). */
export function cosineDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa === 0 || bb === 0 ? (aa === bb ? 0 : 1) : 1 - ab / Math.sqrt(aa * bb);
}

/** Mean squared difference. */
export function meanSquaredError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] - b[i]) ** 2;
  return sum / a.length;
}
