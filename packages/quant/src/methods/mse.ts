/**
 * MSE: for each tensor, the clipping range that minimises the quantization error ||x - Q(x)||^2, searched
 * over the range [min, max] scaled by alpha = 1 ... minRatio (OMSE-style).
 * Paper: Choukroun et al., "Low-bit Quantization of Neural Networks for Efficient Inference" (OMSE),
 * ICCV Workshops 2019.
 * Deviations: OMSE solves for the scale of symmetric kernels per tensor (and per channel for weights); here
 * the search runs in whatever form the plan uses (2DQuant's asymmetric real-offset grid by default) over a
 * grid of `steps` scalings, and activation errors come from the streaming histogram (exact except in the
 * bins that straddle a rounding edge).
 */
import { z } from 'zod';
import type { PtqMethod } from '../method';
import { boundsPerSite } from '../per-site';
import { bestCandidate, scaledRangeCandidates } from '../search';

export interface MseOptions extends Record<string, unknown> {
  /** Number of candidate scalings between 1 and minRatio. */
  steps: number;
  /** The smallest scaling of the range tried. */
  minRatio: number;
}

export const mse: PtqMethod<MseOptions> = {
  name: 'mse',
  paper: 'Choukroun et al., "Low-bit Quantization of Neural Networks for Efficient Inference" (OMSE), ICCV Workshops 2019',
  summary: 'per tensor, the scaled range [a*min, a*max] with the smallest L2 quantization error',
  defaults: { steps: 100, minRatio: 0.05 },
  options: z.strictObject({ steps: z.number().int().min(1).max(10000), minRatio: z.number().gt(0).lte(1) }),
  calibrate: (ctx, opts) => boundsPerSite(ctx, 'mse', (d, _site, spec) =>
    bestCandidate(d, { bits: spec.bits, form: spec.form, candidates: scaledRangeCandidates(d, opts.steps, opts.minRatio, spec.symmetric) }).bounds),
};
