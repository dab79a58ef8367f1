/**
 * HSO, harmonized scale optimization: a per-input-channel scale s for each Linear whose input and weight are both
 * quantized, x -> x/s and W -> W diag(s), chosen in closed form from a model of the output error both quantizers
 * cause at their bit widths, then absorbed exactly into the float model (LayerNorm affine before q/k/v and fc1;
 * v's output rows before proj). fc2 (after GELU) keeps s = 1. Derivation: docs/harmoq.md, "HSO".
 */
import { blockPrefix } from '@harmoq/swinir';
import { toFloat32 } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { gridSteps } from '../quantizer';
import type { QuantPlan } from '../plan';
import { siteWeight, type QuantSite } from '../sites';
import type { LinearMoments } from './capture';

/** One Linear input that HSO scales, the weights it feeds and where the scale is absorbed. */
export interface ScaleGroup {
  /** Block prefix, e.g. `layers.0.residual_group.blocks.1`. */
  block: string;
  /** `qkv` (LayerNorm norm1), `proj` (v's output rows of qkv), `fc1` (LayerNorm norm2). */
  kind: 'qkv' | 'proj' | 'fc1';
  /** The input quantizers (three for a split qkv, sharing the tensor) and the weight quantizers behind them. */
  inputs: QuantSite[];
  weights: QuantSite[];
}

/** The groups of a plan, per block in the order they are solved (proj first: it rescales v's rows, which qkv's balance sees). */
export function scaleGroups(plan: QuantPlan): ScaleGroup[] {
  const groups: ScaleGroup[] = [];
  plan.config.depths.forEach((depth, layer) => {
    for (let b = 0; b < depth; b++) {
      const block = blockPrefix(layer, b);
      for (const [kind, hook] of [['proj', `${block}.attn.proj`], ['qkv', `${block}.attn.qkv`], ['fc1', `${block}.mlp.fc1`]] as const) {
        const inputs = plan.sites.filter((s) => s.role === 'activation' && s.hookSite === hook);
        const weights = plan.sites.filter((s) => s.role === 'weight' && s.hookSite === `${hook}.weight`);
        if (inputs.length > 0 && weights.length > 0) groups.push({ block, kind, inputs, weights });
      }
    }
  });
  return groups;
}

/** The modelled error of one group: input statistics, the weight slices and the quantizers' bit widths and granularity. */
export interface BalanceProblem {
  /** E[x_j²], min and max of x_j over the calibration tokens. */
  second: Float64Array;
  lo: Float64Array;
  hi: Float64Array;
  /** Each weight quantizer's slice, row-major [rows x channels]. */
  weights: { values: Float64Array; rows: number }[];
  abits: number;
  wbits: number;
  activationPerChannel: boolean;
  weightPerChannel: boolean;
}

export function balanceProblem(plan: QuantPlan, group: ScaleGroup, moments: LinearMoments, stateDict: StateDict): BalanceProblem {
  const n = moments.channels;
  const second = Float64Array.from({ length: n }, (_, j) => moments.gram[j * n + j] / moments.rows);
  const aSpec = plan.spec(group.inputs[0]), wSpec = plan.spec(group.weights[0]);
  return {
    second, lo: moments.min, hi: moments.max,
    weights: group.weights.map((s) => ({ values: Float64Array.from(siteWeight(s, stateDict)), rows: s.shape![0] })),
    abits: aSpec.bits, wbits: wSpec.bits, activationPerChannel: aSpec.perChannel, weightPerChannel: wSpec.perChannel,
  };
}

/** Quantizer steps at scales s: activation step per channel (all equal when per tensor), Σ_i Δw_i² per weight slice. */
function steps(p: BalanceProblem, s: Float64Array): { da: Float64Array; dw2: number[] } {
  const n = s.length, qa = gridSteps(p.abits), qw = gridSteps(p.wbits);
  const da = new Float64Array(n);
  if (p.activationPerChannel) {
    for (let j = 0; j < n; j++) da[j] = (p.hi[j] - p.lo[j]) / s[j] / qa;
  } else {
    let lo = Infinity, hi = -Infinity;
    for (let j = 0; j < n; j++) [lo, hi] = [Math.min(lo, p.lo[j] / s[j]), Math.max(hi, p.hi[j] / s[j])];
    da.fill((hi - lo) / qa);
  }
  const dw2 = p.weights.map(({ values, rows }) => {
    let total = 0, lo = Infinity, hi = -Infinity;
    for (let i = 0; i < rows; i++) {
      if (p.weightPerChannel) [lo, hi] = [Infinity, -Infinity];
      for (let j = 0; j < n; j++) {
        const v = values[i * n + j] * s[j];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      if (p.weightPerChannel) total += ((hi - lo) / qw) ** 2;
    }
    return p.weightPerChannel ? total : rows * ((hi - lo) / qw) ** 2;
  });
  return { da, dw2 };
}

/** Σ_i W_ij² per channel, summed over the weight slices. */
function columnNorms(p: BalanceProblem, n: number): Float64Array {
  const w = new Float64Array(n);
  for (const { values, rows } of p.weights) for (let i = 0; i < rows; i++) for (let j = 0; j < n; j++) w[j] += values[i * n + j] ** 2;
  return w;
}

/**
 * The modelled output error (uniform noise of variance Δ²/12, the 1/12 dropped):
 * Σ_j Δa_j² s_j² Σ_i W_ij² (activation noise through W diag(s)) + Σ_slices Σ_i Δw_i² Σ_j E[x_j²]/s_j² (weight
 * noise times x/s), with the steps computed from the ranges of x/s and W diag(s) at these scales.
 */
export function modelledError(p: BalanceProblem, s: Float64Array): number {
  const n = s.length;
  const { da, dw2 } = steps(p, s);
  const w = columnNorms(p, n);
  let act = 0, x = 0;
  for (let j = 0; j < n; j++) {
    act += da[j] ** 2 * s[j] ** 2 * w[j];
    x += p.second[j] / s[j] ** 2;
  }
  return act + dw2.reduce((a, b) => a + b, 0) * x;
}

const LOG_LIMIT = Math.log(1e3);

/** Scales with geometric mean 1 (the model and the absorbed network are invariant to a common factor), log-clamped. */
function normalise(s: Float64Array): Float64Array {
  const logs = Array.from(s, (v) => Math.log(v));
  const mean = logs.reduce((a, b) => a + b, 0) / s.length;
  return Float64Array.from(logs, (l) => Math.exp(Math.max(-LOG_LIMIT, Math.min(LOG_LIMIT, l - mean))));
}

/**
 * The closed form: with the steps held fixed, each channel's error a_j s_j² + b_j / s_j² is least at
 * s_j = (b_j / a_j)^(1/4), a_j = Δa_j² Σ_i W_ij², b_j = E[x_j²] Σ_i Δw_i²; the steps depend on s, so iterate.
 */
export function closedFormScales(p: BalanceProblem, iterations = 8): Float64Array {
  const n = p.second.length;
  const w = columnNorms(p, n);
  let s: Float64Array = new Float64Array(n).fill(1);
  for (let it = 0; it < iterations; it++) {
    const { da, dw2 } = steps(p, s);
    const dw = dw2.reduce((a, b) => a + b, 0);
    const next = Float64Array.from({ length: n }, (_, j) => {
      const a = da[j] ** 2 * w[j], b = p.second[j] * dw;
      return a > 0 && b > 0 ? (b / a) ** 0.25 : 1;
    });
    s = normalise(next);
  }
  return s;
}

/**
 * The scales HSO applies: the closed form s*, then s*^γ with γ picked on the full model (steps recomputed from the
 * ranges at each s, which the closed form holds fixed; its optimum often sits at a kink where the channel that sets
 * a range changes): γ over 0 .. 2 by 0.02, then by 0.001 around the best. γ = 0 is no scaling, so the modelled
 * error never rises.
 */
export function harmonizedScales(p: BalanceProblem): { scales: Float64Array; gamma: number; before: number; after: number } {
  const closed = closedFormScales(p);
  const at = (gamma: number) => modelledError(p, closed.map((v) => v ** gamma));
  const before = at(0);
  let best = { gamma: 0, error: before };
  const scan = (from: number, to: number, step: number) => {
    for (let k = 0; from + k * step <= to + 1e-12; k++) {
      const gamma = from + k * step;
      const error = at(gamma);
      if (error < best.error) best = { gamma, error };
    }
  };
  scan(0.02, 2, 0.02);
  scan(Math.max(0, best.gamma - 0.02), best.gamma + 0.02, 0.001);
  return { scales: closed.map((v) => v ** best.gamma), gamma: best.gamma, before, after: best.error };
}

/** A float32 copy of a state-dict tensor (the copy HSO edits). */
function editable(sd: StateDict, key: string): Float32Array {
  const t = sd.get(key)!;
  const data = Float32Array.from(toFloat32(t, key));
  sd.set(key, { dtype: 'float32', shape: t.shape, data });
  return data;
}

/**
 * Absorbs s into `sd` (edited in place; pass a copy): the consumer's weight columns times s, the producer divided
 * by s (LayerNorm weight and bias, or v's rows and bias in qkv). Exact in real arithmetic; float32 rounding only.
 */
export function absorbScales(sd: StateDict, group: ScaleGroup, s: Float64Array, embedDim: number): void {
  const n = s.length;
  const scaleColumns = (key: string) => {
    const w = editable(sd, key);
    for (let r = 0; r < w.length / n; r++) for (let j = 0; j < n; j++) w[r * n + j] *= s[j];
  };
  const divide = (key: string, offset: number, rowSize: number) => {
    if (!sd.has(key)) return;
    const v = editable(sd, key);
    for (let j = 0; j < n; j++) for (let k = 0; k < rowSize; k++) v[(offset + j) * rowSize + k] /= s[j];
  };
  const b = group.block;
  if (group.kind === 'proj') {
    divide(`${b}.attn.qkv.weight`, 2 * embedDim, embedDim);
    divide(`${b}.attn.qkv.bias`, 2 * embedDim, 1);
    scaleColumns(`${b}.attn.proj.weight`);
    return;
  }
  const norm = group.kind === 'qkv' ? `${b}.norm1` : `${b}.norm2`;
  divide(`${norm}.weight`, 0, 1);
  divide(`${norm}.bias`, 0, 1);
  scaleColumns(group.kind === 'qkv' ? `${b}.attn.qkv.weight` : `${b}.mlp.fc1.weight`);
}

/** Runs HSO on a context's float model: a transformed copy of its state dict, and the modelled errors per group. */
export async function harmonize(
  plan: QuantPlan, stateDict: StateDict, moments: (sites: QuantSite[]) => Promise<Map<string, LinearMoments>>,
): Promise<{ stateDict: StateDict; groups: { group: ScaleGroup; gamma: number; before: number; after: number }[] }> {
  const groups = scaleGroups(plan);
  const stats = await moments(groups.map((g) => g.inputs[0]));
  const sd: StateDict = new Map(stateDict);
  const report = groups.map((group) => {
    const problem = balanceProblem(plan, group, stats.get(group.inputs[0].id)!, sd);
    const { scales, gamma, before, after } = harmonizedScales(problem);
    if (gamma > 0) absorbScales(sd, group, scales, plan.config.embedDim);
    return { group, gamma, before, after };
  });
  return { stateDict: sd, groups: report };
}
