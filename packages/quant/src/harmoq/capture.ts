/**
 * HarmoQ's captures: onnxruntime forwards over patches whose graph carries extra outputs at Linear inputs,
 * reduced in the graph (MatMul Gram matrices, per-channel min/max) so only C x C sums come back per batch.
 * Used by HSO (float second moments and ranges) and SRC (E[Q(x)Q(x)^T], E[x Q(x)^T]); see docs/harmoq.md.
 */
import * as ort from 'onnxruntime-node';
import type { PatchSet } from '@harmoq/data';
import { blockGeometry, type GraphBuilder, type SiteHook, type SiteInfo } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { onnxSession } from '../capture';
import { onnxQuantSites, siteQuantNodes } from '../onnx';
import type { BoundsMap, QuantPlan } from '../plan';
import type { QuantSite } from '../sites';

/**
 * Sums over the tokens of one Linear or Conv input (row-major n x n matrices, float64). A Conv's tokens are its
 * im2col columns: one per output pixel, n = in_channels x kh x kw in the weight's own order (`convTokens`), so a
 * Conv is the Linear W[out, n] on them and SRC solves both alike.
 */
export interface LinearMoments {
  channels: number;
  /** Tokens summed. */
  rows: number;
  /** Σ x xᵀ of the float input. */
  gram: Float64Array;
  min: Float64Array;
  max: Float64Array;
  /** Σ x over the tokens. */
  sum: Float64Array;
  /** With bounds: Σ Q(x) Q(x)ᵀ, Σ x Q(x)ᵀ and Σ Q(x) under the site's own input quantizer. */
  qgram?: Float64Array;
  cross?: Float64Array;
  qsum?: Float64Array;
  /**
   * With `structure`: the same sums of the Laplacian-filtered inputs, Lx and L Q(x) (`structureTokens`): `rows`
   * filtered tokens, Σ Lx Lxᵀ, and with bounds Σ LQ(x) LQ(x)ᵀ and Σ Lx LQ(x)ᵀ. The Laplacian of a constant is 0,
   * so these carry no bias terms.
   */
  structure?: { rows: number; gram: Float64Array; qgram?: Float64Array; cross?: Float64Array };
}

/** The structure filter: a 3x3 Laplacian (centre 1, 4-neighbours -1/4; zero sum, so the bias drops out). */
export const LAPLACIAN: readonly number[] = [0, -0.25, 0, -0.25, 1, -0.25, 0, -0.25, 0];

/**
 * Lx over the token grid: a Linear input is [tokens, n] in window order (ws x ws windows, row-major inside each,
 * the graph's default 'gather' order; swinir-onnx.ts), so each window is reshaped to its ws x ws grid and filtered
 * per channel by LAPLACIAN on the interior only (no padding: (ws-2)^2 filtered tokens per window, none across a
 * window border, where a shifted window wraps around the image). Returns [tokens', n].
 */
export function structureTokens(g: GraphBuilder, x: string, n: number, ws: number): string {
  const grid = g.op('Transpose', [g.op('Reshape', [x, g.int64([-1, ws, ws, n])])], { perm: [0, 3, 1, 2] });
  const kernel = g.constant(Float32Array.from({ length: n * 9 }, (_, i) => LAPLACIAN[i % 9]), [n, 1, 3, 3], 'harmoq_laplacian');
  const filtered = g.op('Conv', [grid, kernel], { group: n, kernel_shape: [3, 3] });
  return g.op('Reshape', [g.op('Transpose', [filtered], { perm: [0, 2, 3, 1] }), g.int64([-1, n])]);
}

/**
 * A Conv input [batch, c, h, w] as im2col tokens [batch*h*w, c*k*k] (column c*k*k + kh*k + kw, PyTorch's weight
 * order), zero-padded as the Conv pads: a grouped Conv with one-hot kernels unfolds, a transpose and reshape make
 * rows. With `laplacian`, the unfolded maps are first filtered by LAPLACIAN (valid positions only).
 */
export function convTokens(g: GraphBuilder, x: string, c: number, k: number, laplacian = false): string {
  const kk = k * k, p = (k - 1) / 2;
  const eye = new Float32Array(c * kk * kk);
  for (let ch = 0; ch < c; ch++) for (let t = 0; t < kk; t++) eye[(ch * kk + t) * kk + t] = 1;
  let unfolded = g.op('Conv', [x, g.constant(eye, [c * kk, 1, k, k], 'harmoq_unfold')], { group: c, kernel_shape: [k, k], pads: [p, p, p, p] });
  if (laplacian) {
    const kernel = g.constant(Float32Array.from({ length: c * kk * 9 }, (_, i) => LAPLACIAN[i % 9]), [c * kk, 1, 3, 3], 'harmoq_laplacian');
    unfolded = g.op('Conv', [unfolded, kernel], { group: c * kk, kernel_shape: [3, 3] });
  }
  return g.op('Reshape', [g.op('Transpose', [unfolded], { perm: [0, 2, 3, 1] }), g.int64([-1, c * kk])]);
}

/** The kernel side of a Conv input site, from its weight site's [out, in, kh, kw]. */
function convKernel(plan: QuantPlan, site: QuantSite): number {
  const weight = plan.byId.get(`${site.module}.weight`);
  if (!weight?.shape) throw new Error(`conv input ${site.id} has no weight site in the plan`);
  return weight.shape[2];
}

/** Width n of a site's moment tokens: in_features for a Linear, in_channels x kh x kw for a Conv. */
export function momentWidth(plan: QuantPlan, site: QuantSite): number {
  if (site.kind === 'conv_input') return site.channels * convKernel(plan, site) ** 2;
  if (site.kind === 'linear_input') return site.channels;
  throw new Error(`moments are of Linear and Conv inputs, not of ${site.kind} site ${site.id}`);
}

/** How one input site's tensor becomes moment tokens [rows, n], and its structure-filtered tokens (null: no structure). */
interface TokenView {
  n: number;
  tokens: (t: string) => string;
  filtered: ((t: string) => string) | null;
}

function tokenView(g: GraphBuilder, plan: QuantPlan, site: QuantSite, structure: boolean): TokenView {
  const n = momentWidth(plan, site);
  if (site.kind === 'linear_input') {
    const ws = structure ? siteWindow(plan, site) : 0;
    return { n, tokens: (t) => t, filtered: structure ? (t) => structureTokens(g, t, n, ws) : null };
  }
  const k = convKernel(plan, site);
  return { n, tokens: (t) => convTokens(g, t, site.channels, k), filtered: structure ? (t) => convTokens(g, t, site.channels, k, true) : null };
}

const MOMENT_KINDS: readonly SiteInfo['kind'][] = ['linear_input', 'conv_input'];

/** The window side of a block's Linear inputs, from its module path (`...blocks.{j}...`). */
export function siteWindow(plan: QuantPlan, site: QuantSite): number {
  const j = /\.blocks\.(\d+)\./.exec(site.id);
  if (!j) throw new Error(`structure moments: ${site.id} is not a Swin block's Linear input`);
  return blockGeometry(plan.config, Number(j[1])).windowSize;
}

/** Runs `patches` through a session built with `hook`, `batch` patches at a time, handing each result to `take`. */
export async function runPatches(
  plan: QuantPlan, stateDict: StateDict, patches: PatchSet, hook: SiteHook, threads: number, batch: number,
  take: (outputs: ort.InferenceSession.OnnxValueMapType) => void,
): Promise<void> {
  const [count, c, h, w] = patches.lrShape;
  const session = await onnxSession(plan, stateDict, h, w, hook, threads);
  try {
    for (let start = 0; start < count; start += batch) {
      const end = Math.min(count, start + batch);
      const data = patches.lr.subarray(start * c * h * w, end * c * h * w);
      const outputs = await session.run({ input: new ort.Tensor('float32', data, [end - start, c, h, w]) });
      take(outputs);
      for (const t of Object.values(outputs)) t.dispose?.();
    }
  } finally {
    await session.release();
  }
}

const out = (site: string, what: string) => `harmoq:${site}:${what}`;

function emptyMoments(plan: QuantPlan, sites: readonly QuantSite[], quantized: boolean, structure: boolean): Map<string, LinearMoments> {
  const result = new Map<string, LinearMoments>();
  for (const s of sites) {
    const n = momentWidth(plan, s);
    const square = () => new Float64Array(n * n);
    result.set(s.id, {
      channels: n, rows: 0, gram: square(), min: new Float64Array(n).fill(Infinity), max: new Float64Array(n).fill(-Infinity),
      sum: new Float64Array(n), ...(quantized ? { qgram: square(), cross: square(), qsum: new Float64Array(n) } : {}),
      ...(structure ? { structure: { rows: 0, gram: square(), ...(quantized ? { qgram: square(), cross: square() } : {}) } } : {}),
    });
  }
  return result;
}

function sitesByHook(sites: readonly QuantSite[]): Map<string, QuantSite[]> {
  const byHook = new Map<string, QuantSite[]>();
  for (const s of sites) byHook.set(s.hookSite, [...(byHook.get(s.hookSite) ?? []), s]);
  return byHook;
}

/** xᵀ of the float input's tokens and, with structure moments, (Lx)ᵀ, for the cross terms. */
interface Transposed {
  xt: string;
  lxt: string | null;
}

/** The in-graph reductions of the float input `raw` of one hook site (token count, Gram, min, max, sum; of Lx too with `view.filtered`). */
function momentOutputs(g: GraphBuilder, site: string, raw: string, view: TokenView): Transposed {
  const { n } = view;
  const x = view.tokens(raw);
  const xt = g.op('Transpose', [x], { perm: [1, 0] });
  g.addOutput(g.op('Shape', [x]), 'int64', [2], out(site, 'shape'));
  g.addOutput(g.op('MatMul', [xt, x]), 'float32', [n, n], out(site, 'gram'));
  g.addOutput(g.op('ReduceMin', [x], { axes: [0], keepdims: 0 }), 'float32', [n], out(site, 'min'));
  g.addOutput(g.op('ReduceMax', [x], { axes: [0], keepdims: 0 }), 'float32', [n], out(site, 'max'));
  g.addOutput(g.op('ReduceSum', [x, g.int64([0])], { keepdims: 0 }), 'float32', [n], out(site, 'sum'));
  if (!view.filtered) return { xt, lxt: null };
  const lx = view.filtered(raw);
  const lxt = g.op('Transpose', [lx], { perm: [1, 0] });
  g.addOutput(g.op('MatMul', [lxt, lx]), 'float32', [n, n], out(site, 'lgram'));
  g.addOutput(g.op('Shape', [lx]), 'int64', [2], out(site, 'lshape'));
  return { xt, lxt };
}

/** Per site of the hook: Q(toQuantize) under the site's quantizer, its Gram, its sum, and the cross term with x (via xᵀ); the same of LQ. */
function quantizedMomentOutputs(
  g: GraphBuilder, plan: QuantPlan, bounds: BoundsMap, list: readonly QuantSite[], toQuantize: string, t: Transposed, info: SiteInfo, view: TokenView,
): void {
  const { n } = view;
  const grams = (a: string, at: string, what: string, id: string) => {
    g.addOutput(g.op('MatMul', [g.op('Transpose', [a], { perm: [1, 0] }), a]), 'float32', [n, n], out(id, `${what}qgram`));
    g.addOutput(g.op('MatMul', [at, a]), 'float32', [n, n], out(id, `${what}cross`));
  };
  for (const s of list) {
    const raw = siteQuantNodes(g, toQuantize, bounds.get(s.id)!, plan.spec(s), info, `${s.id}.harmoq`);
    const q = view.tokens(raw);
    grams(q, t.xt, '', s.id);
    g.addOutput(g.op('ReduceSum', [q, g.int64([0])], { keepdims: 0 }), 'float32', [n], out(s.id, 'qsum'));
    if (t.lxt && view.filtered) grams(view.filtered(raw), t.lxt, 'l', s.id);
  }
}

/** Adds one batch's reduced outputs to the moments (`rows`: tokens of the batch at a hook site). */
function accumulate(result: Map<string, LinearMoments>, byHook: Map<string, QuantSite[]>, outputs: ort.InferenceSession.OnnxValueMapType): void {
  const addTo = (target: Float64Array, source: ort.Tensor) => {
    const d = source.data as Float32Array;
    for (let i = 0; i < d.length; i++) target[i] += d[i];
  };
  for (const [hookSite, list] of byHook) {
    const mn = outputs[out(hookSite, 'min')].data as Float32Array, mx = outputs[out(hookSite, 'max')].data as Float32Array;
    for (const s of list) {
      const m = result.get(s.id)!;
      m.rows += Number((outputs[out(hookSite, 'shape')].data as BigInt64Array)[0]);
      addTo(m.gram, outputs[out(hookSite, 'gram')]);
      addTo(m.sum, outputs[out(hookSite, 'sum')]);
      for (let j = 0; j < m.channels; j++) {
        m.min[j] = Math.min(m.min[j], mn[j]);
        m.max[j] = Math.max(m.max[j], mx[j]);
      }
      if (m.qgram) {
        addTo(m.qgram, outputs[out(s.id, 'qgram')]);
        addTo(m.cross!, outputs[out(s.id, 'cross')]);
        addTo(m.qsum!, outputs[out(s.id, 'qsum')]);
      }
      if (m.structure) {
        m.structure.rows += Number((outputs[out(hookSite, 'lshape')].data as BigInt64Array)[0]);
        addTo(m.structure.gram, outputs[out(hookSite, 'lgram')]);
        if (m.structure.qgram) {
          addTo(m.structure.qgram, outputs[out(s.id, 'lqgram')]);
          addTo(m.structure.cross!, outputs[out(s.id, 'lcross')]);
        }
      }
    }
  }
}

/**
 * Moments of the float inputs of `sites` (Linear and Conv input sites) over `patches`, on the float model. With
 * `bounds`, each site's input quantizer is applied in the graph too (to the float input: the layer's own
 * quantization error, not its upstream's) for the quantized Gram and cross matrices. With `structure`, the same
 * of the Laplacian-filtered inputs (`LinearMoments.structure`). Keyed by site id.
 */
export async function linearInputMoments(
  plan: QuantPlan, stateDict: StateDict, patches: PatchSet, sites: readonly QuantSite[], bounds: BoundsMap | null, threads: number,
  structure = false,
): Promise<Map<string, LinearMoments>> {
  const byHook = sitesByHook(sites);
  const result = emptyMoments(plan, sites, bounds !== null, structure);
  const hook: SiteHook = (site, input, g, info) => {
    const list = byHook.get(site);
    if (!list || !MOMENT_KINDS.includes(info.kind)) return input;
    const view = tokenView(g, plan, list[0], structure);
    const t = momentOutputs(g, site, input, view);
    if (bounds) quantizedMomentOutputs(g, plan, bounds, list, input, t, info, view);
    return input;
  };
  await runPatches(plan, stateDict, patches, hook, threads, 8, (outputs) => accumulate(result, byHook, outputs));
  return result;
}

/**
 * Moments for SRC against the quantized model's own inputs: at each Linear input site, x is the float model's
 * input and Q(x~) the site's quantizer applied to the input x~ the fully fake-quantized model (`bounds`, weights
 * included) produces there, so Σ x Q(x~)ᵀ also carries the error piled up upstream. `gram`, `sum`, `min`, `max`
 * are of the float x. Two sessions per batch: the float model (`stateDict`) hands its Linear inputs as outputs,
 * the quantized model (`quantizedStateDict`'s weights, e.g. already corrected ones) takes them as extra inputs and
 * reduces in the graph.
 */
export async function quantizedInputMoments(
  plan: QuantPlan, stateDict: StateDict, patches: PatchSet, sites: readonly QuantSite[], bounds: BoundsMap, threads: number,
  quantizedStateDict: StateDict = stateDict, structure = false,
): Promise<Map<string, LinearMoments>> {
  const byHook = sitesByHook(sites);
  const result = emptyMoments(plan, sites, true, structure);
  // A Linear input is [tokens, c], a Conv input [batch, c, h, w]; the quantized session takes it as it comes.
  const dims = (info: SiteInfo, c: number) => (info.kind === 'conv_input' ? ['batch', c, 'height', 'width'] : ['tokens', c]);
  const floatHook: SiteHook = (site, input, g, info) => {
    if (byHook.has(site) && MOMENT_KINDS.includes(info.kind)) g.addOutput(input, 'float32', dims(info, byHook.get(site)![0].channels).map((d) => (typeof d === 'string' ? -1 : d)), out(site, 'x'));
    return input;
  };
  const quantHook = onnxQuantSites(plan, bounds, quantizedStateDict);
  const captureHook: SiteHook = (site, input, g, info) => {
    const list = byHook.get(site);
    if (list && MOMENT_KINDS.includes(info.kind)) {
      const view = tokenView(g, plan, list[0], structure);
      const x = g.addInput(out(site, 'x'), 'float32', dims(info, list[0].channels));
      quantizedMomentOutputs(g, plan, bounds, list, input, momentOutputs(g, site, x, view), info, view);
    }
    return quantHook(site, input, g, info);
  };
  const [count, c, h, w] = patches.lrShape;
  const floatSession = await onnxSession(plan, stateDict, h, w, floatHook, threads);
  const quantSession = await onnxSession(plan, quantizedStateDict, h, w, captureHook, threads);
  try {
    // Two patches at a time: the float model's Linear inputs of a batch are all held at once (~50 MB per 48x48 patch).
    for (let start = 0; start < count; start += 2) {
      const end = Math.min(count, start + 2);
      const input = new ort.Tensor('float32', patches.lr.subarray(start * c * h * w, end * c * h * w), [end - start, c, h, w]);
      const xs = await floatSession.run({ input });
      const feeds: Record<string, ort.Tensor> = { input };
      for (const site of byHook.keys()) feeds[out(site, 'x')] = xs[out(site, 'x')] as ort.Tensor;
      const outputs = await quantSession.run(feeds);
      accumulate(result, byHook, outputs);
      for (const t of [...Object.values(xs), ...Object.values(outputs)]) t.dispose?.();
    }
  } finally {
    await floatSession.release();
    await quantSession.release();
  }
  return result;
}
