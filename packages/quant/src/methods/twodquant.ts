/**
 * 2DQuant: DOBI bounds (stage 1, see dobi.ts), then DQC (stage 2, see ../dqc.ts): Adam (lr 1e-2, betas 0.9 and
 * 0.99) on the lower and upper bounds only, L1 between the fake-quantized and the float output plus 5x the
 * MSE of normalised features at the 4 residual-group outputs.
 * Paper: Liu et al., "2DQuant: Low-bit Post-Training Quantization for Image Super-Resolution", NeurIPS 2024;
 * code Kai-Liu001/2DQuant `basicsr/models/2dquant_model.py` (anchors.md 1.4).
 * Deviations:
 * - Feature normalisation is per sample, as the paper describes (`featureNorm: 'per-sample'`, both presets);
 *   the code's broadcast form (anchors.md 1.4) is `featureNorm: 'broadcast'`.
 * - Training batches are drawn from the calibration patches (the code streams all of DF2K, which is not
 *   here); `calibration.count` sets the pool size. The final iterate is kept: no checkpoint is selected, and
 *   never on a test set (the code's schedule appears to pick the best-Set5 iteration, anchors.md 1.5).
 * - `quick` runs far fewer steps on smaller batches than the code's 4000 x 16 (see README, "Presets", for
 *   the measured step times that set it); `paper` is the code's setting, meant for a GPU backend.
 * - Upper bounds are kept just above lower bounds after each step (the code has no guard).
 */
import { z } from 'zod';
import { distillBounds, type DqcOptions } from '../dqc';
import type { PtqMethod } from '../method';
import { dobi, type DobiOptions } from './dobi';

export interface TwoDQuantOptions extends DqcOptions, Record<string, unknown> {
  /** DOBI's search for the initial bounds. */
  search: DobiOptions['search'];
  steps: number;
}

export const twoDQuant: PtqMethod<TwoDQuantOptions> = {
  name: '2dquant',
  paper: 'Liu et al., "2DQuant: Low-bit Post-Training Quantization for Image Super-Resolution", NeurIPS 2024',
  summary: 'DOBI bounds, then DQC: Adam on the bounds against the float model (output L1 + 5x group-feature MSE)',
  defaults: {
    search: 'two-sided', steps: 100,
    iterations: 4000, batch: 16, lr: 1e-2, beta1: 0.9, beta2: 0.99, pixelWeight: 1, featureWeight: 5, featureNorm: 'per-sample', crop: 0,
  },
  options: z.strictObject({
    search: z.enum(['two-sided', 'one-sided', 'paper']),
    steps: z.number().int().min(1).max(10000),
    iterations: z.number().int().min(0),
    batch: z.number().int().min(1),
    lr: z.number().positive(),
    beta1: z.number().min(0).lt(1),
    beta2: z.number().min(0).lt(1),
    pixelWeight: z.number().min(0),
    featureWeight: z.number().min(0),
    featureNorm: z.enum(['per-sample', 'broadcast']),
    crop: z.number().int().min(0),
  }),
  presets: { quick: { iterations: 150, batch: 4, crop: 16 }, paper: { iterations: 4000, batch: 16, crop: 0 } },
  async calibrate(ctx, opts) {
    const init = await dobi.calibrate(ctx, { search: opts.search, steps: opts.steps });
    if (opts.iterations === 0) return init;
    const { bounds } = await distillBounds(ctx, init, opts);
    if (ctx.data.heldOut.lrShape[0] > 0) {
      // Reported, never used to select: the final iterate is returned either way.
      const [before, after] = [await ctx.outputError(init), await ctx.outputError(bounds)];
      ctx.progress({ stage: 'held-out output MSE, DOBI -> DQC', step: 1, total: 1, loss: after, note: `${before.toExponential(4)} -> ${after.toExponential(4)}` });
    }
    return bounds;
  },
};
