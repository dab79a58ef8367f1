/**
 * SRC, structural residual calibration: each quantized Linear's weight is re-solved so that its output under its
 * quantized input matches the float output, W' = argmin E||W x − W' Q(x)||² + λ||W' − W||² (closed form from
 * calibration Gram matrices, λ per layer on the held-out patches), and then rounded onto the weight quantizer's
 * grid column by column with the remaining columns corrected (GPTQ/OBQ), the held-out split choosing between
 * that, plain rounding of W' and leaving W. Derivation: docs/harmoq.md, "SRC".
 */
import type { StateDict } from '@harmoq/torch-io';
import { toFloat32 } from '@harmoq/swinir';
import type { BoundsMap, QuantPlan } from '../plan';
import { scalarQuantizer, stepSize, type Bounds, type QuantizerSpec } from '../quantizer';
import { siteWeight, type QuantSite } from '../sites';
import { momentWidth, type LinearMoments } from './capture';
import { cholesky, matmul, spdInverse, traceAMBt } from './linalg';

/** A Linear's or Conv's input and weight quantizers (a split qkv part is one Linear). */
export interface LinearPair {
  input: QuantSite;
  weight: QuantSite;
}

/**
 * The layers SRC solves, in plan (forward) order: every Linear, and every Conv when the plan quantizes Convs (a
 * Conv is a Linear on its im2col tokens, capture.ts `convTokens`).
 */
export function linearPairs(plan: QuantPlan): LinearPair[] {
  const inputKind = { linear_weight: 'linear_input', conv_weight: 'conv_input' } as const;
  const inputs = new Map(plan.sites.filter((s) => s.kind === 'linear_input' || s.kind === 'conv_input').map((s) => [`${s.kind}:${s.module}`, s]));
  return plan.sites.flatMap((weight) => {
    if (weight.kind !== 'linear_weight' && weight.kind !== 'conv_weight') return [];
    const input = inputs.get(`${inputKind[weight.kind]}:${weight.module}`);
    return input ? [{ input, weight }] : [];
  });
}

/** Normalised second moments of one Linear input: F = E[x xᵀ], H = E[q qᵀ], C = E[x qᵀ] (q = Q(x)). */
export interface Grams {
  n: number;
  f: Float64Array;
  h: Float64Array;
  c: Float64Array;
}

/**
 * The Grams of a Linear input from its moments; `withBias` appends a constant 1 to x and Q(x), so that the layer's
 * bias (the last column of [W b]) is solved for too: the ridge and GPTQ then also cancel the mean of the error.
 * `structure` = β > 0 adds β times the Grams of the Laplacian-filtered inputs (per filtered token), so that every
 * solve and error below is of E‖e‖² + β E‖L e‖², e = W̃x̃ − V q̃: the output error plus its high-pass part over the
 * token grid (L e = W Lx − V_w LQ(x), the bias has no Laplacian). docs/harmoq.md, "SRC".
 */
export function gramsOf(m: LinearMoments, withBias = false, structure = 0): Grams {
  const n = m.channels, k = withBias ? n + 1 : n;
  const l = m.structure;
  if (structure > 0 && (!l || !l.qgram || l.rows === 0)) throw new Error(`SRC structure weight ${structure} needs structure moments (capture with structure=true)`);
  const build = (inner: Float64Array, rowMean: Float64Array, colMean: Float64Array, filtered: Float64Array | undefined) => {
    const out = new Float64Array(k * k);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) out[i * k + j] = inner[i * n + j] / m.rows + (structure > 0 ? (structure * filtered![i * n + j]) / l!.rows : 0);
    }
    if (withBias) {
      for (let i = 0; i < n; i++) [out[i * k + n], out[n * k + i]] = [rowMean[i] / m.rows, colMean[i] / m.rows];
      out[n * k + n] = 1;
    }
    return out;
  };
  return {
    n: k, f: build(m.gram, m.sum, m.sum, l?.gram), h: build(m.qgram!, m.qsum!, m.qsum!, l?.qgram), c: build(m.cross!, m.sum, m.qsum!, l?.cross),
  };
}

/** E||W x − V q||² from the moments: tr(W F Wᵀ) − 2 tr(W C Vᵀ) + tr(V H Vᵀ), per token. */
export function outputError(w: Float64Array, v: Float64Array, rows: number, g: Grams): number {
  return traceAMBt(w, g.f, w, rows, g.n) - 2 * traceAMBt(w, g.c, v, rows, g.n) + traceAMBt(v, g.h, v, rows, g.n);
}

function meanDiagonal(a: Float64Array, n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += a[i * n + i];
  return sum / n;
}

function plusDiagonal(a: Float64Array, n: number, lambda: number): Float64Array {
  const out = Float64Array.from(a);
  for (let i = 0; i < n; i++) out[i * n + i] += lambda;
  return out;
}

/** The ridge solution W' = (W C + λ W)(H + λ I)⁻¹. */
export function ridgeWeights(w: Float64Array, rows: number, g: Grams, lambda: number): Float64Array {
  const rhs = matmul(w, g.c, rows, g.n, g.n);
  for (let i = 0; i < rhs.length; i++) rhs[i] += lambda * w[i];
  return matmul(rhs, dampedInverse(g.h, g.n, lambda, 'SRC ridge solve'), rows, g.n, g.n);
}

/**
 * A positive definite H + λI, raising λ tenfold while the Cholesky factorisation fails: a low-bit Q(x) can have a
 * channel that is constant (H singular with the bias column), and the float32 sums from the graph are not exact.
 */
function dampedInverse(h: Float64Array, n: number, lambda: number, what: string): Float64Array {
  const unit = meanDiagonal(h, n) || 1;
  for (let damp = lambda, tries = 0; ; damp = Math.max(damp * 10, 1e-6 * unit), tries++) {
    try {
      return spdInverse(plusDiagonal(h, n, damp), n, what);
    } catch (err) {
      if (tries >= 12) throw err;
    }
  }
}

/** Relative ridge strengths tried (λ = ρ · mean diag H); Infinity keeps W. */
export const RIDGE_GRID: readonly number[] = [1e-3, 1e-2, 1e-1, 1, Infinity];

/** Row quantizers of a weight slice (one per row when per channel). */
function rowQuantizers(bounds: Bounds, spec: QuantizerSpec, rows: number): ((x: number) => number)[] {
  return Array.from({ length: rows }, (_, r) => {
    const c = bounds.lower.length === 1 ? 0 : r;
    return scalarQuantizer(bounds.lower[c], bounds.upper[c], spec.bits, spec.form);
  });
}

/** Plain rounding of the first `columns` columns (default all; a bias column after them stays float) onto the grid. */
export function roundToGrid(w: Float64Array, rows: number, n: number, bounds: Bounds, spec: QuantizerSpec, columns = n): Float64Array {
  const q = rowQuantizers(bounds, spec, rows);
  return Float64Array.from(w, (v, i) => (i % n < columns ? q[Math.floor(i / n)](v) : v));
}

/**
 * GPTQ/OBQ rounding of W onto the grid for inputs with second moment H: columns in order, each quantization error
 * spread over the columns not yet quantized through the upper Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ U).
 */
export function gptqRound(
  w: Float64Array, rows: number, n: number, factor: Float64Array, bounds: Bounds, spec: QuantizerSpec, columns = n,
): Float64Array {
  const l = factor; // gptqFactor(H): U[j][k] = L[k][j]
  const q = rowQuantizers(bounds, spec, rows);
  const out = Float64Array.from(w);
  for (let j = 0; j < columns; j++) {
    const ujj = l[j * n + j];
    for (let r = 0; r < rows; r++) {
      const v = out[r * n + j], qv = q[r](v);
      const err = (v - qv) / ujj;
      out[r * n + j] = qv;
      for (let k = j + 1; k < n; k++) out[r * n + k] -= err * l[k * n + j];
    }
  }
  return out;
}

/** The Cholesky factor of the damped inverse Hessian GPTQ spreads errors with (one per H, shared by every grid tried). */
export function gptqFactor(h: Float64Array, n: number): Float64Array {
  return cholesky(dampedInverse(h, n, 0.01 * meanDiagonal(h, n), 'GPTQ Hessian'), n, 'GPTQ inverse Hessian');
}

/**
 * Quantiles of the weights that SRC's bound search takes as weight grids, next to the calibrated bounds: every
 * (lower, upper) pair, per channel when the quantizer is; for a symmetric quantizer, [−a, a] with a an upper
 * quantile of |W|. Why: a per-tensor 2-bit grid fitted to the weights in L2 (DOBI) is pulled toward a few large
 * weights (the stand-ins' conv_first and upsample have an identity-like tail to 1.0 over a bulk within ±0.2), and
 * then rounds the bulk to one level; the layer's output error, with GPTQ's compensation, is what should choose.
 */
export const BOUND_QUANTILES = { lower: [0, 0.01, 0.05, 0.2], upper: [1, 0.99, 0.95, 0.8] } as const;

/** The weight grids SRC tries for one weight slice (`w` rows x k, the first `columns` columns quantized): the calibrated one first. */
export function weightBoundCandidates(w: Float64Array, rows: number, k: number, columns: number, bounds: Bounds, spec: QuantizerSpec): Bounds[] {
  const groups = bounds.lower.length;
  const sorted = Array.from({ length: groups }, (_, c) => {
    const [r0, r1] = groups === 1 ? [0, rows] : [c, c + 1];
    const values: number[] = [];
    for (let r = r0; r < r1; r++) for (let j = 0; j < columns; j++) values.push(spec.symmetric ? Math.abs(w[r * k + j]) : w[r * k + j]);
    return Float64Array.from(values).sort();
  });
  const at = (a: Float64Array, q: number) => a[Math.round(q * (a.length - 1))];
  const out: Bounds[] = [bounds];
  const pairs = spec.symmetric ? BOUND_QUANTILES.upper.map((u) => [0, u] as const) : BOUND_QUANTILES.lower.flatMap((l) => BOUND_QUANTILES.upper.map((u) => [l, u] as const));
  for (const [lq, uq] of pairs) {
    const lower: number[] = [], upper: number[] = [];
    for (let c = 0; c < groups; c++) {
      const [l, u] = spec.symmetric ? [-at(sorted[c], uq), at(sorted[c], uq)] : [at(sorted[c], lq), at(sorted[c], uq)];
      // A degenerate range (constant channel) keeps that channel's calibrated bounds.
      const ok = Math.fround(u) > Math.fround(l) && stepSize(l, u, spec.bits) > 0;
      lower.push(ok ? l : bounds.lower[c]);
      upper.push(ok ? u : bounds.upper[c]);
    }
    out.push({ lower, upper });
  }
  return out;
}

export type SrcChoice = 'keep' | 'ridge' | 'gptq';

/** SRC's choice for one Linear and the held-out output errors behind it (per token, float model's output as target). */
export interface SrcDecision {
  choice: SrcChoice;
  rho: number;
  /** Held-out E||W x − Ŵ Q(x)||² of plain rounding of W, and of the choice. */
  before: number;
  after: number;
  /** The float weights to store (W' or the GPTQ grid values). */
  weights: Float64Array;
  /** The weight grid chosen (the calibrated bounds unless the bound search found a better one). */
  bounds: Bounds;
}

/**
 * Solves one Linear: ridge strength on held-out, then keep / rounded ridge / GPTQ ridge by held-out error, on the
 * calibrated weight grid and, with `boundSearch`, on each grid of `weightBoundCandidates` too.
 */
export function solveLinear(
  w: Float64Array, rows: number, calibration: Grams, heldOut: Grams, bounds: Bounds, spec: QuantizerSpec, gptq: boolean, columns = calibration.n,
  boundSearch = false,
): SrcDecision {
  const n = calibration.n;
  const lambdaUnit = meanDiagonal(calibration.h, n);
  let best = { rho: Infinity, v: w, error: outputError(w, w, rows, heldOut) };
  for (const rho of RIDGE_GRID) {
    if (!Number.isFinite(rho)) continue;
    const v = ridgeWeights(w, rows, calibration, rho * lambdaUnit);
    const error = outputError(w, v, rows, heldOut);
    if (error < best.error) best = { rho, v, error };
  }
  const before = outputError(w, roundToGrid(w, rows, n, bounds, spec, columns), rows, heldOut);
  const lambda = Number.isFinite(best.rho) ? best.rho * lambdaUnit : 0;
  const factor = gptq ? gptqFactor(plusDiagonal(calibration.h, n, lambda), n) : null;
  let pick: { choice: SrcChoice; weights: Float64Array; bounds: Bounds; error: number } = { choice: 'keep', weights: w, bounds, error: before };
  for (const [i, grid] of (boundSearch ? weightBoundCandidates(w, rows, n, columns, bounds, spec) : [bounds]).entries()) {
    const candidates: { choice: SrcChoice; weights: Float64Array; quantized: Float64Array }[] = [
      ...(i === 0 ? [] : [{ choice: 'keep' as const, weights: w, quantized: roundToGrid(w, rows, n, grid, spec, columns) }]),
      { choice: 'ridge', weights: best.v, quantized: roundToGrid(best.v, rows, n, grid, spec, columns) },
    ];
    if (factor) {
      const g = gptqRound(best.v, rows, n, factor, grid, spec, columns);
      candidates.push({ choice: 'gptq', weights: g, quantized: g });
    }
    for (const c of candidates) {
      const error = outputError(w, c.quantized, rows, heldOut);
      if (error < pick.error) pick = { choice: c.choice, weights: c.weights, bounds: grid, error };
    }
  }
  return { choice: pick.choice, rho: best.rho, before, after: pick.error, weights: pick.weights, bounds: pick.bounds };
}

export interface SrcVariant {
  gptq: boolean;
  /** β of the structure term (0: output error only). */
  structure: number;
  stateDict: StateDict;
  /** The bounds with the weight grids the bound search chose (the input bounds when it is off). */
  bounds: BoundsMap;
  decisions: (SrcDecision & { site: string })[];
}

/** One SRC solve: GPTQ rounding or not, the structure weight β, and whether weight grids are searched. */
export interface SrcSolve {
  gptq: boolean;
  structure: number;
  boundSearch?: boolean;
}

/**
 * SRC over every Linear (and Conv) of the plan, once per solve: transformed copies of `stateDict` and `bounds`,
 * and the decisions. `moments` captures the Grams (with `bounds`' input quantizers) on the calibration and
 * held-out patches, once for all variants.
 */
export async function calibrateResiduals(
  plan: QuantPlan, stateDict: StateDict, bounds: BoundsMap, variants: readonly SrcSolve[],
  moments: (sites: QuantSite[], set: 'calibration' | 'heldOut') => Promise<Map<string, LinearMoments>>,
): Promise<SrcVariant[]> {
  const pairs = linearPairs(plan);
  const inputs = pairs.map((p) => p.input);
  const cal = await moments(inputs, 'calibration');
  // Without held-out patches the choices fall back to the calibration moments (then they can overfit).
  const held = await moments(inputs, 'heldOut');
  return variants.map((v) => residualVariant(plan, stateDict, bounds, pairs, cal, held, v));
}

/**
 * SRC block by block: each block's Linears are solved on moments captured with every earlier block already
 * corrected (weights and weight grids), so a layer's Q(x~) is the input it will really see (with
 * `quantizedInputMoments`, the error of all earlier layers, their corrections included). One capture per block
 * and split instead of one for all.
 */
export async function calibrateResidualsSequential(
  plan: QuantPlan, stateDict: StateDict, bounds: BoundsMap, solve: SrcSolve,
  moments: (sites: QuantSite[], set: 'calibration' | 'heldOut', stateDict: StateDict, bounds: BoundsMap) => Promise<Map<string, LinearMoments>>,
  onBlock?: (done: number, total: number) => void,
): Promise<SrcVariant> {
  const blocks = new Map<string, LinearPair[]>();
  for (const pair of linearPairs(plan)) {
    const module = pair.weight.module!;
    const block = /^(.*\.blocks\.\d+)\./.exec(module)?.[1] ?? module;
    blocks.set(block, [...(blocks.get(block) ?? []), pair]);
  }
  let [sd, b] = [stateDict, bounds];
  const decisions: SrcVariant['decisions'] = [];
  for (const [i, group] of [...blocks.values()].entries()) {
    const inputs = group.map((p) => p.input);
    const cal = await moments(inputs, 'calibration', sd, b);
    const held = await moments(inputs, 'heldOut', sd, b);
    const v = residualVariant(plan, sd, b, group, cal, held, solve);
    [sd, b] = [v.stateDict, v.bounds];
    decisions.push(...v.decisions);
    onBlock?.(i + 1, blocks.size);
  }
  return { gptq: solve.gptq, structure: solve.structure, stateDict: sd, bounds: b, decisions };
}

function residualVariant(
  plan: QuantPlan, stateDict: StateDict, bounds: BoundsMap, pairs: LinearPair[], cal: Map<string, LinearMoments>, held: Map<string, LinearMoments>,
  solve: SrcSolve,
): SrcVariant {
  const sd: StateDict = new Map(stateDict);
  const grids: BoundsMap = new Map(bounds);
  const decisions = pairs.map(({ input, weight }) => {
    const rows = weight.shape![0], n = momentWidth(plan, input);
    const [start] = weight.rows!;
    const biasKey = weight.weightKey!.replace(/weight$/, 'bias');
    const bias = sd.has(biasKey) ? toFloat32(sd.get(biasKey)!, biasKey).subarray(start, start + rows) : undefined;
    // [W b]: the bias is solved with the weights (never quantized), so the mean of the output error cancels too.
    const k = bias ? n + 1 : n;
    const values = siteWeight(weight, sd);
    const w = Float64Array.from({ length: rows * k }, (_, i) => (i % k < n ? values[Math.floor(i / k) * n + (i % k)] : bias![Math.floor(i / k)]));
    const heldOut = held.get(input.id)!.rows > 0 ? held.get(input.id)! : cal.get(input.id)!;
    const d = solveLinear(w, rows, gramsOf(cal.get(input.id)!, !!bias, solve.structure), gramsOf(heldOut, !!bias, solve.structure), bounds.get(weight.id)!,
      plan.spec(weight), solve.gptq, n, solve.boundSearch ?? false);
    grids.set(weight.id, d.bounds);
    if (d.choice !== 'keep') {
      const write = (key: string, offset: number, column: (r: number, j: number) => number, width: number) => {
        const t = sd.get(key)!;
        const data = Float32Array.from(toFloat32(t, key));
        for (let r = 0; r < rows; r++) for (let j = 0; j < width; j++) data[(offset + r) * width + j] = column(r, j);
        sd.set(key, { dtype: 'float32', shape: t.shape, data });
      };
      write(weight.weightKey!, start, (r, j) => d.weights[r * k + j], n);
      if (bias) write(biasKey, start, (r) => d.weights[r * k + n], 1);
    }
    return { ...d, site: weight.id };
  });
  return { gptq: solve.gptq, structure: solve.structure, stateDict: sd, bounds: grids, decisions };
}
