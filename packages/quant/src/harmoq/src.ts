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
import { scalarQuantizer, type Bounds, type QuantizerSpec } from '../quantizer';
import { siteWeight, type QuantSite } from '../sites';
import type { LinearMoments } from './capture';
import { cholesky, matmul, spdInverse, traceAMBt } from './linalg';

/** A Linear's input and weight quantizers (a split qkv part is one Linear). */
export interface LinearPair {
  input: QuantSite;
  weight: QuantSite;
}

export function linearPairs(plan: QuantPlan): LinearPair[] {
  const inputs = new Map(plan.sites.filter((s) => s.kind === 'linear_input').map((s) => [s.module!, s]));
  return plan.sites.filter((s) => s.kind === 'linear_weight' && inputs.has(s.module!)).map((weight) => ({ input: inputs.get(weight.module!)!, weight }));
}

/** Normalised second moments of one Linear input: F = E[x xᵀ], H = E[q qᵀ], C = E[x qᵀ] (q = Q(x)). */
export interface Grams {
  n: number;
  f: Float64Array;
  h: Float64Array;
  c: Float64Array;
}

export function gramsOf(m: LinearMoments): Grams {
  const scale = (a: Float64Array) => a.map((v) => v / m.rows);
  return { n: m.channels, f: scale(m.gram), h: scale(m.qgram!), c: scale(m.cross!) };
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
  return matmul(rhs, spdInverse(plusDiagonal(g.h, g.n, lambda), g.n, 'SRC ridge solve'), rows, g.n, g.n);
}

/** Relative ridge strengths tried (λ = ρ · mean diag H); Infinity keeps W. */
export const RIDGE_GRID: readonly number[] = [1e-4, 1e-3, 1e-2, 1e-1, 1, Infinity];

/** Row quantizers of a weight slice (one per row when per channel). */
function rowQuantizers(bounds: Bounds, spec: QuantizerSpec, rows: number): ((x: number) => number)[] {
  return Array.from({ length: rows }, (_, r) => {
    const c = bounds.lower.length === 1 ? 0 : r;
    return scalarQuantizer(bounds.lower[c], bounds.upper[c], spec.bits, spec.form);
  });
}

/** Plain rounding of every weight onto the grid. */
export function roundToGrid(w: Float64Array, rows: number, n: number, bounds: Bounds, spec: QuantizerSpec): Float64Array {
  const q = rowQuantizers(bounds, spec, rows);
  return Float64Array.from(w, (v, i) => q[Math.floor(i / n)](v));
}

/**
 * GPTQ/OBQ rounding of W onto the grid for inputs with second moment H: columns in order, each quantization error
 * spread over the columns not yet quantized through the upper Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ U).
 */
export function gptqRound(w: Float64Array, rows: number, n: number, h: Float64Array, bounds: Bounds, spec: QuantizerSpec): Float64Array {
  const damped = plusDiagonal(h, n, 0.01 * meanDiagonal(h, n) + 1e-12);
  const l = cholesky(spdInverse(damped, n, 'GPTQ Hessian'), n, 'GPTQ inverse Hessian'); // U[j][k] = L[k][j]
  const q = rowQuantizers(bounds, spec, rows);
  const out = Float64Array.from(w);
  for (let j = 0; j < n; j++) {
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
}

/** Solves one Linear: ridge strength on held-out, then keep / rounded ridge / GPTQ ridge by held-out error. */
export function solveLinear(
  w: Float64Array, rows: number, calibration: Grams, heldOut: Grams, bounds: Bounds, spec: QuantizerSpec, gptq: boolean,
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
  const plain = roundToGrid(w, rows, n, bounds, spec);
  const before = outputError(w, plain, rows, heldOut);
  const candidates: { choice: SrcChoice; weights: Float64Array; quantized: Float64Array }[] = [
    { choice: 'keep', weights: w, quantized: plain },
    { choice: 'ridge', weights: best.v, quantized: roundToGrid(best.v, rows, n, bounds, spec) },
  ];
  if (gptq) {
    const lambda = Number.isFinite(best.rho) ? best.rho * lambdaUnit : 0;
    const g = gptqRound(best.v, rows, n, plusDiagonal(calibration.h, n, lambda), bounds, spec);
    candidates.push({ choice: 'gptq', weights: g, quantized: g });
  }
  let pick = { ...candidates[0], error: before };
  for (const c of candidates.slice(1)) {
    const error = outputError(w, c.quantized, rows, heldOut);
    if (error < pick.error) pick = { ...c, error };
  }
  return { choice: pick.choice, rho: best.rho, before, after: pick.error, weights: pick.weights };
}

/**
 * SRC over every Linear of the plan: a transformed copy of `stateDict` and the decisions. `moments` captures the
 * Grams (with `bounds`' input quantizers) on the calibration and held-out patches.
 */
export async function calibrateResiduals(
  plan: QuantPlan, stateDict: StateDict, bounds: BoundsMap, gptq: boolean,
  moments: (sites: QuantSite[], set: 'calibration' | 'heldOut') => Promise<Map<string, LinearMoments>>,
): Promise<{ stateDict: StateDict; decisions: (SrcDecision & { site: string })[] }> {
  const pairs = linearPairs(plan);
  const inputs = pairs.map((p) => p.input);
  const cal = await moments(inputs, 'calibration');
  // Without held-out patches the choices fall back to the calibration moments (then they can overfit).
  const held = await moments(inputs, 'heldOut');
  const sd: StateDict = new Map(stateDict);
  const decisions = pairs.map(({ input, weight }) => {
    const rows = weight.shape![0];
    const w = Float64Array.from(siteWeight(weight, sd));
    const heldOut = held.get(input.id)!.rows > 0 ? held.get(input.id)! : cal.get(input.id)!;
    const d = solveLinear(w, rows, gramsOf(cal.get(input.id)!), gramsOf(heldOut), bounds.get(weight.id)!, plan.spec(weight), gptq);
    if (d.choice !== 'keep') {
      const key = weight.weightKey!;
      const t = sd.get(key)!;
      const data = Float32Array.from(toFloat32(t, key));
      data.set(Float32Array.from(d.weights), weight.rows![0] * w.length / rows);
      sd.set(key, { dtype: 'float32', shape: t.shape, data });
    }
    return { ...d, site: weight.id };
  });
  return { stateDict: sd, decisions };
}
