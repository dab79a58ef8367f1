/**
 * Bound searches on one Distribution: the building blocks of the distribution-based methods (minmax,
 * percentile, mse, dobi). Each returns (l, u) with u > l in float32.
 */
import type { Distribution } from './stats';
import type { QuantForm } from './quantizer';

const f32 = Math.fround;

export type BoundPair = [number, number];

/** Makes sure u > l in float32 (a constant tensor would give s = 0 and a NaN quantizer). */
export function ensureRange(lower: number, upper: number): BoundPair {
  const l = f32(lower);
  let u = f32(upper);
  if (!(u > l)) u = f32(l + Math.max(Math.abs(l) * 1e-6, 1e-12));
  if (!(u > l)) u = f32(l + Math.abs(l) * 1e-5 + 1e-6);
  return [l, u];
}

/** The exact range, or +-max|x| when symmetric. */
export function minmaxBounds(d: Distribution, symmetric: boolean): BoundPair {
  if (symmetric) {
    const a = Math.max(Math.abs(d.min), Math.abs(d.max));
    return ensureRange(-a, a);
  }
  return ensureRange(d.min, d.max);
}

/** [q(1-p), q(p)] for p = pct/100; symmetric takes the larger magnitude of the two. */
export function percentileBounds(d: Distribution, pct: number, symmetric: boolean): BoundPair {
  const p = pct / 100;
  const lo = d.quantile(1 - p), hi = d.quantile(p);
  if (symmetric) {
    const a = Math.max(Math.abs(lo), Math.abs(hi));
    return ensureRange(-a, a);
  }
  return ensureRange(lo, hi);
}

export interface CandidateSearch {
  bits: number;
  form: QuantForm;
  candidates: BoundPair[];
}

/** The candidate with the smallest ||x - Q(x)||; the first wins ties (strict <, as 2DQuant's loop). */
export function bestCandidate(d: Distribution, search: CandidateSearch): { bounds: BoundPair; error: number; index: number } {
  let best = 0, bestError = Infinity;
  search.candidates.forEach(([l, u], i) => {
    const e = d.error(l, u, search.bits, search.form);
    if (e < bestError) [best, bestError] = [i, e];
  });
  return { bounds: ensureRange(...search.candidates[best]), error: bestError, index: best };
}

/**
 * 2DQuant's DOBI candidates (`DOBI()` in quant_arch.py), in float32 as torch computes them from the tensor's
 * min m and max M. Two-sided: l_i = m + i(M-m)/(2 num), u_i = M - i(M-m)/(2 num); one-sided: l = m,
 * u_i = M - i(M-m)/num; i = 0..num-1. Symmetric tensors start from (-max|x|, max|x|).
 */
export function dobiCandidates(d: Distribution, num: number, oneSided: boolean, symmetric: boolean): BoundPair[] {
  let m = f32(d.min), M = f32(d.max);
  if (symmetric) {
    const a = f32(Math.max(Math.abs(m), Math.abs(M)));
    [m, M] = [-a, a];
  }
  const diff = f32(f32(M - m) / (oneSided ? num : 2 * num));
  return Array.from({ length: num }, (_, i): BoundPair => {
    const step = f32(diff * i);
    return oneSided ? [m, f32(M - step)] : [f32(m + step), f32(M - step)];
  });
}

/**
 * OMSE-style clipping candidates: the range [m, M] (or +-max|x|) scaled by alpha from 1 down to
 * `minRatio`, `steps` values evenly spaced.
 */
export function scaledRangeCandidates(d: Distribution, steps: number, minRatio: number, symmetric: boolean): BoundPair[] {
  const a = Math.max(Math.abs(d.min), Math.abs(d.max));
  return Array.from({ length: steps }, (_, i): BoundPair => {
    const alpha = steps === 1 ? 1 : 1 - (i * (1 - minRatio)) / (steps - 1);
    return symmetric ? [f32(-alpha * a), f32(alpha * a)] : [f32(alpha * d.min), f32(alpha * d.max)];
  });
}
