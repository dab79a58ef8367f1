/**
 * Percentile: activation bounds at the (100-pct)th and pct-th percentiles of the float activations over
 * the calibration patches, which clips rare outliers; weights keep their min/max by default.
 * Paper: Li et al., "Fully Quantized Network for Object Detection", CVPR 2019 (percentile clipping of
 * activations); the "Percentile" baseline of 2DQuant (NeurIPS 2024), Table 3.
 * Deviations: percentiles come from a 8192-bin streaming histogram (linear within a bin), not from sorted
 * values: the error is at most one bin width (range/8192). 2DQuant does not state its percentile; 99.99
 * is the common choice.
 */
import { z } from 'zod';
import type { PtqMethod } from '../method';
import { boundsPerSite } from '../per-site';
import { minmaxBounds, percentileBounds } from '../search';

export interface PercentileOptions extends Record<string, unknown> {
  /** Upper percentile in (50, 100]; the lower bound uses 100 - pct. */
  pct: number;
  /** Also clip weights at the percentiles (default: weights use min/max). */
  weights: boolean;
}

export const percentile: PtqMethod<PercentileOptions> = {
  name: 'percentile',
  paper: 'Li et al., "Fully Quantized Network for Object Detection", CVPR 2019 (the Percentile baseline of 2DQuant, NeurIPS 2024)',
  summary: 'activation bounds at the (100-pct, pct) percentiles; weights min/max',
  defaults: { pct: 99.99, weights: false },
  options: z.strictObject({ pct: z.number().gt(50).lte(100), weights: z.boolean() }),
  calibrate: (ctx, opts) => boundsPerSite(ctx, 'percentile', (d, site, spec) =>
    site.role === 'weight' && !opts.weights ? minmaxBounds(d, spec.symmetric) : percentileBounds(d, opts.pct, spec.symmetric)),
};
