/**
 * The loop every distribution-based method shares: for each site, its distributions (one per channel, or
 * one), one (l, u) per distribution, progress after each site.
 */
import type { CalibrationContext } from './method';
import type { BoundsMap } from './plan';
import type { QuantizerSpec } from './quantizer';
import type { BoundPair } from './search';
import type { QuantSite } from './sites';
import type { Distribution } from './stats';

export type BoundChooser = (distribution: Distribution, site: QuantSite, spec: QuantizerSpec) => BoundPair;

export async function boundsPerSite(ctx: CalibrationContext, stage: string, choose: BoundChooser): Promise<BoundsMap> {
  const bounds: BoundsMap = new Map();
  const total = ctx.sites.length;
  for (const [i, site] of ctx.sites.entries()) {
    const spec = ctx.spec(site);
    const pairs = (await ctx.distributions(site)).map((d) => choose(d, site, spec));
    bounds.set(site.id, { lower: pairs.map((p) => p[0]), upper: pairs.map((p) => p[1]) });
    ctx.progress({ stage, step: i + 1, total, site: site.id });
  }
  return bounds;
}
