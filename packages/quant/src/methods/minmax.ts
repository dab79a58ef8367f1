/**
 * MinMax: each quantizer spans the full range of its tensor (weights) or of its float activations over
 * the calibration patches.
 * Paper: the "MinMax" baseline of the SR-PTQ tables (e.g. Liu et al., "2DQuant: Low-bit Post-Training
 * Quantization for Image Super-Resolution", NeurIPS 2024, Table 3); the observer goes back to
 * Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
 * Inference", CVPR 2018.
 * Deviations: none in the bounds (exact min/max, also for activations). Symmetric quantizers take +-max|x|.
 */
import { z } from 'zod';
import type { PtqMethod } from '../method';
import { boundsPerSite } from '../per-site';
import { minmaxBounds } from '../search';

export type MinmaxOptions = Record<string, never>;

export const minmax: PtqMethod<MinmaxOptions> = {
  name: 'minmax',
  paper: 'Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018 (the MinMax baseline of 2DQuant, NeurIPS 2024)',
  summary: 'bounds = the min and max of each tensor over the calibration patches',
  defaults: {},
  options: z.strictObject({}) as z.ZodType<MinmaxOptions>,
  calibrate: (ctx) => boundsPerSite(ctx, 'minmax', (d, _site, spec) => minmaxBounds(d, spec.symmetric)),
};
