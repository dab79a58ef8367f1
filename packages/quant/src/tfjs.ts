/**
 * Fake quantization in the tfjs reference (`SwinIRModel`), differentiable in the bounds: an ActivationHook
 * for inputs and attention tensors and a WeightHook for weights, both built from `fakeQuantTf`.
 *
 * The qkv split is rebuilt as in the ONNX rewrite (see onnx.ts): the qkv input site only remembers the
 * LayerNorm output, and each of the q/k/v sites returns its own projection of it through that part's input
 * and weight quantizers. The model's float q/k/v are then off the gradient path.
 */
import * as tf from '@tensorflow/tfjs';
import type { ActivationHook, WeightHook } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { toFloat32 } from '@harmoq/swinir';
import type { BoundsMap, QuantPlan } from './plan';
import { noisyQuantTf } from './noise';
import { fakeQuantTf } from './quantizer';
import type { QuantSite } from './sites';
import { toTfTwin, twinQuantTf, type TfTwin } from './twin';

/** Bounds as tensors (tf.Variable for gradient methods), shaped to broadcast against the site tensor. */
export interface TfBounds {
  lower: tf.Tensor;
  upper: tf.Tensor;
  /** NoisyQuant noise per feature (constant, shape [C]). */
  noise?: tf.Tensor;
  /** Twin-uniform grids (constants), used instead of lower/upper. */
  twin?: TfTwin;
}
export type TfBoundsMap = Map<string, TfBounds>;

/**
 * The broadcast shape of a site's bounds: [] per tensor; per channel, the channel count at the channel
 * axis of the tfjs tensor (weights: [out, 1] / [out, 1, 1, 1]; Linear inputs [C]; q/k/v/attn_map
 * [heads, 1, 1]; conv inputs NHWC [C]).
 */
export function tfBoundsShape(site: QuantSite, channels: number): number[] {
  if (channels === 1) return [];
  if (site.role === 'weight') return [channels, ...site.shape!.slice(1).map(() => 1)];
  if (site.kind === 'attention') return [channels, 1, 1];
  return [channels]; // Linear inputs [.., C] and NHWC conv inputs: the last axis
}

/** Bounds as tensors, trainable (tf.variable) or not. */
export function toTfBounds(plan: QuantPlan, bounds: BoundsMap, trainable = false): TfBoundsMap {
  const out: TfBoundsMap = new Map();
  for (const site of plan.sites) {
    const b = bounds.get(site.id)!;
    const shape = tfBoundsShape(site, b.lower.length);
    const make = (values: number[], which: string) => {
      const t = tf.tensor(values, shape, 'float32');
      if (!trainable) return tf.keep(t);
      const v = tf.variable(t, true, `${site.id}.${which}`);
      t.dispose();
      return v;
    };
    out.set(site.id, {
      lower: make(b.lower, 'lower'), upper: make(b.upper, 'upper'),
      ...(b.noise && { noise: tf.keep(tf.tensor(b.noise, tfBoundsShape(site, b.noise.length), 'float32')) }),
      ...(b.twin && { twin: toTfTwin(b.twin, plan.spec(site).bits, shape) }),
    });
  }
  return out;
}

/** Reads tensors back into plain bounds (e.g. after gradient steps). */
export function fromTfBounds(bounds: TfBoundsMap): BoundsMap {
  const out: BoundsMap = new Map();
  for (const [id, b] of bounds) {
    out.set(id, {
      lower: Array.from(b.lower.dataSync()), upper: Array.from(b.upper.dataSync()),
      ...(b.noise && { noise: Array.from(b.noise.dataSync()) }), ...(b.twin && { twin: b.twin.params }),
    });
  }
  return out;
}

export function disposeTfBounds(bounds: TfBoundsMap): void {
  for (const b of bounds.values()) {
    for (const t of [b.lower, b.upper, b.noise, b.twin?.fine, b.twin?.coarse, b.twin?.threshold]) t?.dispose();
  }
}

export interface TfjsQuantHooks {
  hook: ActivationHook;
  weightHook: WeightHook;
}

/**
 * Hooks that fake-quantize every quantizer of `plan`. `param(key)` returns a model parameter (PyTorch
 * layout), e.g. `model.param.bind(model)`; the split qkv reads its weight slices through it. With
 * `weightsPrequantized` the weights are taken as already quantized (a state dict from
 * `quantizeStateDict`) and only activations are quantized.
 */
export function tfjsQuantHooks(
  plan: QuantPlan, bounds: TfBoundsMap, param: (key: string) => tf.Tensor, options: { weightsPrequantized?: boolean } = {},
): TfjsQuantHooks {
  const byHook = new Map<string, QuantSite[]>();
  for (const site of plan.sites) byHook.set(site.hookSite, [...(byHook.get(site.hookSite) ?? []), site]);
  const quant = (site: QuantSite, x: tf.Tensor) => {
    const b = bounds.get(site.id)!;
    const { bits, form } = plan.spec(site);
    if (b.twin) return twinQuantTf(x, b.twin, bits);
    const uniform = (y: tf.Tensor) => fakeQuantTf(y, b.lower, b.upper, bits, form);
    return b.noise ? noisyQuantTf(x, b.noise, uniform) : uniform(x);
  };
  const qkvInputs = new Map<string, tf.Tensor>();
  const e = plan.config.embedDim;

  const hook: ActivationHook = (site, x) => {
    const sites = byHook.get(site) ?? [];
    if (site.endsWith('.attn.qkv') && sites.some((s) => s.part !== undefined)) {
      qkvInputs.set(site.slice(0, -'.attn.qkv'.length), x);
      return;
    }
    let out = x;
    const qkv = /^(.*)\.attn\.([qkv])$/.exec(site);
    const input = qkv ? qkvInputs.get(qkv[1]) : undefined;
    if (qkv && input) {
      const part = 'qkv'.indexOf(qkv[2]);
      const block = qkv[1];
      const parts = byHook.get(`${block}.attn.qkv`)!;
      const inputSite = parts.find((s) => s.part === part)!;
      const weightSite = byHook.get(`${block}.attn.qkv.weight`)!.find((s) => s.part === part)!;
      const [bw, heads, n, hd] = x.shape;
      const rows = tf.reshape(quant(inputSite, input), [-1, e]) as tf.Tensor2D;
      let w = tf.slice(param(`${block}.attn.qkv.weight`), [part * e, 0], [e, e]);
      if (!options.weightsPrequantized) w = quant(weightSite, w);
      const biasKey = `${block}.attn.qkv.bias`;
      const bias = plan.config.qkvBias ? tf.slice(param(biasKey), [part * e], [e]) : undefined;
      let y: tf.Tensor = tf.fused.matMul({ a: rows, b: tf.transpose(w) as tf.Tensor2D, bias });
      y = tf.transpose(tf.reshape(y, [bw, n, heads, hd]), [0, 2, 1, 3]);
      if (part === 0) y = tf.mul(y, plan.config.qkScale || hd ** -0.5);
      out = y;
    }
    for (const s of sites) if (s.role === 'activation') out = quant(s, out);
    return out === x ? undefined : out;
  };

  const weightHook: WeightHook = (module, weight) => {
    if (options.weightsPrequantized) return;
    const sites = (byHook.get(`${module}.weight`) ?? []).filter((s) => s.part === undefined);
    if (sites.length === 0) return;
    return quant(sites[0], weight);
  };
  return { hook, weightHook };
}

/**
 * A state dict whose quantized weights are replaced by their fake-quantized values (float32), for engines
 * that take weights as data (the tfjs runner has no weight hook). The split qkv slices are quantized
 * in place, each with its own bounds.
 */
export function quantizeStateDict(plan: QuantPlan, bounds: BoundsMap, stateDict: StateDict, quantizeWeight: (site: QuantSite) => Float32Array): StateDict {
  const out: StateDict = new Map(stateDict);
  const edited = new Map<string, Float32Array>();
  for (const site of plan.sites) {
    if (site.role !== 'weight') continue;
    const key = site.weightKey!;
    let data = edited.get(key);
    if (!data) {
      data = Float32Array.from(toFloat32(stateDict.get(key)!, key));
      edited.set(key, data);
    }
    const rowSize = site.shape!.slice(1).reduce((a, b) => a * b, 1);
    data.set(quantizeWeight(site), site.rows![0] * rowSize);
  }
  for (const [key, data] of edited) out.set(key, { ...stateDict.get(key)!, dtype: 'float32', data });
  return out;
}
