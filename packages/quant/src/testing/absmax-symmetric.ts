/**
 * AbsMax symmetric: every quantizer gets the symmetric range [-a, a], a = max|x| of its tensor (weights) or
 * of its float activations over the calibration patches, times `scale`.
 * Paper: the "max" calibration in Krishnamoorthi, "Quantizing deep convolutional networks for efficient
 * inference: A whitepaper", arXiv:1806.08342, 2018.
 * Deviations: none; per-channel quantizers get one range per channel.
 */
import { z } from 'zod';
import type { PtqMethod } from '../method';
import { boundsPerSite } from '../per-site';
import { ensureRange } from '../search';

export interface AbsmaxOptions extends Record<string, unknown> {
  /** Widens (> 1) or narrows (< 1) every range. */
  scale: number;
}

export const absmaxSymmetric: PtqMethod<AbsmaxOptions> = {
  name: 'absmax-symmetric',
  paper: 'Krishnamoorthi, "Quantizing deep convolutional networks for efficient inference: A whitepaper", arXiv:1806.08342, 2018',
  summary: 'symmetric bounds +-max|x| of each tensor, times a scale',
  defaults: { scale: 1 },
  options: z.strictObject({ scale: z.number().positive() }),
  calibrate: (ctx, opts) => boundsPerSite(ctx, 'absmax', (distribution) => {
    const a = Math.max(Math.abs(distribution.min), Math.abs(distribution.max)) * opts.scale;
    return ensureRange(-a, a);
  }),
};
