/**
 * PTQ4ViT (base form): twin-uniform quantizers (twin.ts) for the post-softmax attention map (unsigned: the
 * coarse step fixed at 1/2^(b-1) so its range covers [0, 1], the fine step 2^-m of it) and the post-GELU fc2
 * input (signed: the fine step fixed so the negative range [-2^(b-1) d1, 0] just covers the calibration
 * minimum, the coarse step 2^m d1 for the positives); uniform quantizers elsewhere. Scaling factors are
 * searched per layer from candidates: for every Linear, its input and weight quantizers alternately
 * (`rounds` times), keeping the candidate with the smallest cosine distance between the Linear's float and
 * quantized outputs on sampled calibration rows.
 * Paper: Yuan et al., "PTQ4ViT: Post-Training Quantization for Vision Transformers with Twin Uniform
 * Quantization", ECCV 2022.
 * Deviations:
 * - The Hessian-guided metric needs gradients of the task loss; this is the paper's "base PTQ4ViT" metric,
 *   cosine distance of layer outputs, on calibration patches (never a test set).
 * - Uniform candidates scale the calibration range [min, max] by alpha from 1 down to `minRatio` (the paper:
 *   alpha*Delta_max for alpha in [0, 1.2]), in the plan's form (2DQuant's real-offset grid by default, not
 *   the paper's symmetric one). Twin candidates are m = 0..`maxShift`.
 * - Sites that feed no Linear here (q, k, v, the attention map, convolutions) are searched on their own
 *   tensor's cosine distance, not on the following matmul's output (that would need aligned q/k/v samples).
 * - Layer outputs come from a seeded sample of `rows` Linear-input rows (attention: `windows` windows) from
 *   the first `patches` calibration patches; ranges from all calibration patches.
 */
import { z } from 'zod';
import type { CalibrationContext, PtqMethod } from '../method';
import type { BoundsMap } from '../plan';
import { fakeQuantize, type Bounds } from '../quantizer';
import { captureSamples, cosineDistance, linearBias, linearRows, type SiteSamples } from '../samples';
import { scaledRangeCandidates, type BoundPair } from '../search';
import { weightLayout, type QuantSite } from '../sites';
import { twinRange, type TwinUniform } from '../twin';

const f32 = Math.fround;

export interface Ptq4vitOptions extends Record<string, unknown> {
  /** Uniform candidates per quantizer. */
  candidates: number;
  minRatio: number;
  /** Twin candidates: m = 0..maxShift. */
  maxShift: number;
  /** Alternating input/weight searches per Linear. */
  rounds: number;
  /** Twin-uniform at the attention map and the fc2 input (false: uniform everywhere). */
  twin: boolean;
  patches: number;
  rows: number;
  windows: number;
}

export const isPostSoftmax = (site: QuantSite) => site.id.endsWith('.attn.attn_map');
export const isPostGelu = (site: QuantSite) => site.id.endsWith('.mlp.fc2.input');

/** Per-channel candidate pairs joined by index into whole-site Bounds. */
function joinChannels(perChannel: BoundPair[][]): Bounds[] {
  return perChannel[0].map((_, i) => ({ lower: perChannel.map((c) => c[i][0]), upper: perChannel.map((c) => c[i][1]) }));
}

function twinCandidates(site: QuantSite, mins: number[], bits: number, maxShift: number): Bounds[] {
  const half = 2 ** (bits - 1);
  return Array.from({ length: maxShift + 1 }, (_, m) => {
    const twin: TwinUniform = isPostSoftmax(site)
      ? { signed: false, fine: mins.map(() => f32(1 / half / 2 ** m)), shift: mins.map(() => m) }
      : { signed: true, fine: mins.map((min) => f32(Math.max(-min, 1e-8) / half)), shift: mins.map(() => m) };
    return { ...twinRange(twin, bits), twin };
  });
}

async function candidatesFor(ctx: CalibrationContext, site: QuantSite, opts: Ptq4vitOptions): Promise<Bounds[]> {
  const spec = ctx.spec(site);
  const dists = await ctx.distributions(site);
  if (opts.twin && site.role === 'activation' && (isPostSoftmax(site) || isPostGelu(site))) {
    return twinCandidates(site, dists.map((d) => d.min), spec.bits, opts.maxShift);
  }
  return joinChannels(dists.map((d) => scaledRangeCandidates(d, opts.candidates, opts.minRatio, spec.symmetric)));
}

/** The first candidate with the smallest cost. */
function argmin<T>(candidates: readonly T[], cost: (c: T) => number): T {
  let best = candidates[0], bestCost = Infinity;
  for (const c of candidates) {
    const e = cost(c);
    if (e < bestCost) [best, bestCost] = [c, e];
  }
  return best;
}

export const ptq4vit: PtqMethod<Ptq4vitOptions> = {
  name: 'ptq4vit',
  paper: 'Yuan et al., "PTQ4ViT: Post-Training Quantization for Vision Transformers with Twin Uniform Quantization", ECCV 2022',
  summary: 'twin-uniform softmax/GELU quantizers; per-layer scale search by output cosine distance (base PTQ4ViT)',
  defaults: { candidates: 100, minRatio: 0.01, maxShift: 10, rounds: 3, twin: true, patches: 32, rows: 2048, windows: 32 },
  options: z.strictObject({
    candidates: z.number().int().min(1).max(10000),
    minRatio: z.number().gt(0).lte(1),
    maxShift: z.number().int().min(0).max(30),
    rounds: z.number().int().min(1),
    twin: z.boolean(),
    patches: z.number().int().min(1),
    rows: z.number().int().min(1),
    windows: z.number().int().min(1),
  }),
  presets: { quick: { candidates: 20, rounds: 2, patches: 4, rows: 256, windows: 4 } },
  async calibrate(ctx, opts) {
    const candidates = new Map<string, Bounds[]>();
    for (const site of ctx.sites) candidates.set(site.id, await candidatesFor(ctx, site, opts));
    const activations = ctx.sites.filter((s) => s.role === 'activation');
    const samples = await captureSamples(ctx, new Set(activations.map((s) => s.hookSite)), opts);
    const quantize = (site: QuantSite, x: Float32Array, b: Bounds, layout?: SiteSamples['layout']) => {
      const spec = ctx.spec(site);
      return fakeQuantize(x, b, spec.bits, spec.form, spec.perChannel ? (layout ?? weightLayout(site)) : undefined);
    };
    const bounds: BoundsMap = new Map();
    const weightOf = new Map(ctx.sites.filter((s) => s.kind === 'linear_weight').map((s) => [s.module, s]));
    const done = new Set<string>();
    for (const [i, site] of ctx.sites.entries()) {
      if (done.has(site.id)) continue;
      const weightSite = site.kind === 'linear_input' ? weightOf.get(site.module) : undefined;
      if (weightSite) {
        // A Linear: alternate input and weight searches on the layer output's cosine distance.
        const x = samples.get(site.hookSite)!;
        const w = ctx.weight(weightSite);
        const bias = linearBias(ctx, weightSite);
        const reference = linearRows(x.data, w, bias);
        let wb = candidates.get(weightSite.id)![0];
        let xb = candidates.get(site.id)![0];
        for (let r = 0; r < opts.rounds; r++) {
          const wq = quantize(weightSite, w, wb);
          xb = argmin(candidates.get(site.id)!, (b) => cosineDistance(linearRows(quantize(site, x.data, b, x.layout), wq, bias), reference));
          const xq = quantize(site, x.data, xb, x.layout);
          wb = argmin(candidates.get(weightSite.id)!, (b) => cosineDistance(linearRows(xq, quantize(weightSite, w, b), bias), reference));
        }
        bounds.set(site.id, xb).set(weightSite.id, wb);
        done.add(weightSite.id);
      } else if (!bounds.has(site.id)) {
        const values = site.role === 'weight' ? ctx.weight(site) : samples.get(site.hookSite)!.data;
        const layout = site.role === 'weight' ? undefined : samples.get(site.hookSite)!.layout;
        bounds.set(site.id, argmin(candidates.get(site.id)!, (b) => cosineDistance(quantize(site, values, b, layout), values)));
      }
      ctx.progress({ stage: 'ptq4vit', step: i + 1, total: ctx.sites.length, site: site.id });
    }
    return bounds;
  },
};
