/**
 * NoisyQuant: at every Linear input, a fixed noisy bias N (one value per input feature, uniform in
 * [-A/2, A/2]) is added before the activation quantizer and removed after it, x^ = Q(x + N) - N (noise.ts; on
 * hardware W N folds into the Linear's bias). The amplitude A is chosen per layer from candidates
 * A = r * s (s the step of the layer's base quantizer, r in `amplitudes`, 0 included) by the Linear's output
 * error ||W_q x^ - W x||^2 on calibration rows; Q's bounds for x + N come from DOBI's search on x + N.
 * Everything else (weights, q/k/v, the attention map, convolutions) keeps plain DOBI bounds.
 * Paper: Liu et al., "NoisyQuant: Noisy Bias-Enhanced Post-Training Activation Quantization for Vision
 * Transformers", CVPR 2023.
 * Deviations:
 * - The paper pairs NoisyQuant with its own base quantizers (PTQ4ViT's / EasyQuant-style searches); here the
 *   base bounds are DOBI's (dobi.ts), so the gain over `dobi` is NoisyQuant's alone.
 * - The output error is measured on a seeded sample of `rows` input rows from the first `patches`
 *   calibration patches (never a test set). Bounds for x + N are DOBI's two-sided search on those rows,
 *   starting from the full calibration range widened by A/2 on each side; when A = 0 wins, the site keeps
 *   the base DOBI bounds from all calibration patches and gets no noise.
 * - One noise pattern per layer (drawn once from the seeded RNG) is scaled by each candidate amplitude,
 *   rather than a fresh draw per candidate.
 */
import { z } from 'zod';
import type { PtqMethod } from '../method';
import { uniformNoise } from '../noise';
import { fakeQuantize, stepSize, type Bounds } from '../quantizer';
import { captureSamples, linearBias, linearRows, meanSquaredError } from '../samples';
import { bestCandidate, dobiCandidates } from '../search';
import { weightLayout } from '../sites';
import { ExactDistribution, type Distribution } from '../stats';
import { dobi } from './dobi';

const f32 = Math.fround;

export interface NoisyQuantOptions extends Record<string, unknown> {
  /** Candidate amplitudes as multiples of the base quantizer's step (0 = no noise). */
  amplitudes: number[];
  /** DOBI candidates, for the base bounds and for x + N. */
  steps: number;
  patches: number;
  rows: number;
}

export const noisyQuant: PtqMethod<NoisyQuantOptions> = {
  name: 'noisyquant',
  paper: 'Liu et al., "NoisyQuant: Noisy Bias-Enhanced Post-Training Activation Quantization for Vision Transformers", CVPR 2023',
  summary: 'DOBI bounds plus a fixed uniform noisy bias at each Linear input, amplitude chosen per layer by output error',
  defaults: { amplitudes: [0, 0.25, 0.5, 0.75, 1, 1.5], steps: 100, patches: 32, rows: 2048 },
  options: z.strictObject({
    amplitudes: z.array(z.number().min(0)).min(1),
    steps: z.number().int().min(1).max(10000),
    patches: z.number().int().min(1),
    rows: z.number().int().min(1),
  }),
  presets: { quick: { patches: 4, rows: 512 } },
  async calibrate(ctx, opts) {
    const bounds = await dobi.calibrate(ctx, { search: 'two-sided', steps: opts.steps });
    const inputs = ctx.sites.filter((s) => s.kind === 'linear_input');
    const weightOf = new Map(ctx.sites.filter((s) => s.kind === 'linear_weight').map((s) => [s.module, s]));
    const samples = await captureSamples(ctx, new Set(inputs.map((s) => s.hookSite)), { ...opts, windows: 1 });
    const rng = ctx.rng.fork(0x4e51);
    for (const [i, site] of inputs.entries()) {
      const weightSite = weightOf.get(site.module);
      if (!weightSite) continue;
      const spec = ctx.spec(site), wspec = ctx.spec(weightSite);
      const x = samples.get(site.hookSite)!;
      const w = ctx.weight(weightSite);
      const bias = linearBias(ctx, weightSite);
      const reference = linearRows(x.data, w, bias);
      const wq = fakeQuantize(w, bounds.get(weightSite.id)!, wspec.bits, wspec.form, wspec.perChannel ? weightLayout(weightSite) : undefined);
      const layout = spec.perChannel ? x.layout : undefined;
      const outputError = (b: Bounds) => meanSquaredError(linearRows(fakeQuantize(x.data, b, spec.bits, spec.form, layout), wq, bias), reference);
      const base = bounds.get(site.id)!;
      const full = await ctx.distributions(site);
      const step = Math.max(...base.lower.map((l, c) => stepSize(l, base.upper[c], spec.bits)));
      const pattern = uniformNoise(rng, site.channels, 1);
      let best = base, bestError = outputError(base);
      for (const ratio of opts.amplitudes) {
        if (ratio === 0) continue;
        const amplitude = ratio * step;
        const noise = pattern.map((p) => f32(amplitude * p));
        const shifted = new Float32Array(x.data.length);
        for (let j = 0; j < shifted.length; j++) shifted[j] = x.data[j] + noise[j % noise.length];
        const pairs = full.map((d, c) => {
          const values = spec.perChannel ? shifted.filter((_, j) => j % x.layout.channels === c) : shifted;
          const onSamples = new ExactDistribution(values);
          const widened: Distribution = {
            count: onSamples.count, min: d.min - amplitude / 2, max: d.max + amplitude / 2,
            quantile: (q) => onSamples.quantile(q), error: (...args) => onSamples.error(...args),
          };
          return bestCandidate(onSamples, { bits: spec.bits, form: spec.form, candidates: dobiCandidates(widened, opts.steps, false, spec.symmetric) }).bounds;
        });
        const candidate: Bounds = { lower: pairs.map((p) => p[0]), upper: pairs.map((p) => p[1]), noise };
        const error = outputError(candidate);
        if (error < bestError) [best, bestError] = [candidate, error];
      }
      bounds.set(site.id, best);
      ctx.progress({ stage: 'noisyquant', step: i + 1, total: inputs.length, site: site.id, loss: bestError });
    }
    return bounds;
  },
};
