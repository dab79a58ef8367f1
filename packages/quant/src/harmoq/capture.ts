/**
 * HarmoQ's captures: onnxruntime forwards over patches whose graph carries extra outputs at Linear inputs,
 * reduced in the graph (MatMul Gram matrices, per-channel min/max) so only C x C sums come back per batch.
 * Used by HSO (float second moments and ranges) and SRC (E[Q(x)Q(x)^T], E[x Q(x)^T]); see docs/harmoq.md.
 */
import * as ort from 'onnxruntime-node';
import type { PatchSet } from '@harmoq/data';
import type { SiteHook } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { onnxSession } from '../capture';
import { siteQuantNodes } from '../onnx';
import type { BoundsMap, QuantPlan } from '../plan';
import type { QuantSite } from '../sites';

/** Sums over the tokens of one Linear input (row-major C x C matrices, float64). */
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

/**
 * Moments of the float inputs of `sites` (Linear input sites) over `patches`, on the float model. With
 * `bounds`, each site's input quantizer is applied in the graph too (to the float input: the layer's own
 * quantization error, not its upstream's) for the quantized Gram and cross matrices. Keyed by site id.
 */
export async function linearInputMoments(
  plan: QuantPlan, stateDict: StateDict, patches: PatchSet, sites: readonly QuantSite[], bounds: BoundsMap | null, threads: number,
): Promise<Map<string, LinearMoments>> {
  const byHook = new Map<string, QuantSite[]>();
  for (const s of sites) byHook.set(s.hookSite, [...(byHook.get(s.hookSite) ?? []), s]);
  const result = new Map<string, LinearMoments>();
  for (const s of sites) {
    const n = s.channels;
    result.set(s.id, {
      channels: n, rows: 0, gram: new Float64Array(n * n), min: new Float64Array(n).fill(Infinity), max: new Float64Array(n).fill(-Infinity),
      sum: new Float64Array(n), ...(bounds ? { qgram: new Float64Array(n * n), cross: new Float64Array(n * n), qsum: new Float64Array(n) } : {}),
    });
  }
  const hook: SiteHook = (site, input, g, info) => {
    const list = byHook.get(site);
    if (!list || info.kind !== 'linear_input') return input;
    const x = input;
    const n = list[0].channels;
    const xt = g.op('Transpose', [x], { perm: [1, 0] });
    g.addOutput(g.op('MatMul', [xt, x]), 'float32', [n, n], out(site, 'gram'));
    g.addOutput(g.op('ReduceMin', [x], { axes: [0], keepdims: 0 }), 'float32', [n], out(site, 'min'));
    g.addOutput(g.op('ReduceMax', [x], { axes: [0], keepdims: 0 }), 'float32', [n], out(site, 'max'));
    g.addOutput(g.op('ReduceSum', [x, g.int64([0])], { keepdims: 0 }), 'float32', [n], out(site, 'sum'));
    g.addOutput(g.op('Shape', [x]), 'int64', [2], out(site, 'shape'));
    if (bounds) {
      for (const s of list) {
        const q = siteQuantNodes(g, x, bounds.get(s.id)!, plan.spec(s), info, `${s.id}.harmoq`);
        g.addOutput(g.op('MatMul', [g.op('Transpose', [q], { perm: [1, 0] }), q]), 'float32', [n, n], out(s.id, 'qgram'));
        g.addOutput(g.op('MatMul', [xt, q]), 'float32', [n, n], out(s.id, 'cross'));
        g.addOutput(g.op('ReduceSum', [q, g.int64([0])], { keepdims: 0 }), 'float32', [n], out(s.id, 'qsum'));
      }
    }
    return input;
  };
  const addTo = (target: Float64Array, source: ort.Tensor) => {
    const d = source.data as Float32Array;
    for (let i = 0; i < d.length; i++) target[i] += d[i];
  };
  await runPatches(plan, stateDict, patches, hook, threads, 8, (outputs) => {
    for (const [hookSite, list] of byHook) {
      const rows = Number((outputs[out(hookSite, 'shape')].data as BigInt64Array)[0]);
      const gram = outputs[out(hookSite, 'gram')], mn = outputs[out(hookSite, 'min')].data as Float32Array, mx = outputs[out(hookSite, 'max')].data as Float32Array;
      for (const s of list) {
        const m = result.get(s.id)!;
        m.rows += rows;
        addTo(m.gram, gram);
        addTo(m.sum, outputs[out(hookSite, 'sum')]);
        for (let j = 0; j < m.channels; j++) {
          m.min[j] = Math.min(m.min[j], mn[j]);
          m.max[j] = Math.max(m.max[j], mx[j]);
        }
        if (bounds) {
          addTo(m.qgram!, outputs[out(s.id, 'qgram')]);
          addTo(m.cross!, outputs[out(s.id, 'cross')]);
          addTo(m.qsum!, outputs[out(s.id, 'qsum')]);
        }
      }
    }
  });
  return result;
}
