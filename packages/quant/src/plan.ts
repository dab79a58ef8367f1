/**
 * A quantization plan: the sites of a site set for one model config, each with its quantizer spec
 * (bits, form, granularity, symmetry), and the bounds every quantizer gets.
 */
import type { SwinIRConfig } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { z } from 'zod';
import { CalibrationError, ConfigError } from './errors';
import { noiseProblem } from './noise';
import { SUPPORTED_BITS, checkBits, stepSize, type Bounds, type QuantizerSpec } from './quantizer';
import { DEFAULT_SITE_SET, parseSiteSet, quantSites, siteIds, type QuantSite, type SiteSet } from './sites';
import { twinProblem } from './twin';

/** How the sites are quantized. The defaults are 2DQuant's: real-offset, per-tensor, asymmetric. */
export const quantSettingsSchema = z.strictObject({
  wbits: z.number().int(),
  abits: z.number().int(),
  form: z.enum(['real-offset', 'integer']),
  weightGranularity: z.enum(['tensor', 'channel']),
  activationGranularity: z.enum(['tensor', 'channel']),
  weightSymmetric: z.boolean(),
  activationSymmetric: z.boolean(),
  /** Site set spec, e.g. '2dquant' or '2dquant+conv' (see sites.ts). */
  sites: z.string(),
});
export type QuantSettings = z.infer<typeof quantSettingsSchema>;

export const DEFAULT_QUANT_SETTINGS: Omit<QuantSettings, 'wbits' | 'abits'> = {
  form: 'real-offset',
  weightGranularity: 'tensor',
  activationGranularity: 'tensor',
  weightSymmetric: false,
  activationSymmetric: false,
  sites: DEFAULT_SITE_SET,
};

/** Bounds per quantizer id, in forward order. */
export type BoundsMap = Map<string, Bounds>;

export interface QuantPlan {
  config: SwinIRConfig;
  settings: QuantSettings;
  siteSet: SiteSet;
  sites: QuantSite[];
  byId: Map<string, QuantSite>;
  spec(site: QuantSite): QuantizerSpec;
  /**
   * Float tensors that replace the checkpoint's before quantizing (a method that transforms weights, e.g. HarmoQ,
   * records them in a sidecar file; qparamsPlan loads them). `quantizedEngineOptions` applies them.
   */
  weightOverrides?: StateDict;
}

export function makePlan(config: SwinIRConfig, settings: QuantSettings): QuantPlan {
  checkBits(settings.wbits, 'weight bits');
  checkBits(settings.abits, 'activation bits');
  const siteSet = parseSiteSet(settings.sites);
  const sites = quantSites(config, siteSet);
  siteIds(sites);
  const byId = new Map(sites.map((s) => [s.id, s]));
  return {
    config, settings: { ...settings, sites: siteSet.spec }, siteSet, sites, byId,
    spec: (site) => site.role === 'weight'
      ? { bits: settings.wbits, form: settings.form, symmetric: settings.weightSymmetric, perChannel: settings.weightGranularity === 'channel' }
      : { bits: settings.abits, form: settings.form, symmetric: settings.activationSymmetric, perChannel: settings.activationGranularity === 'channel' },
  };
}

/** How many (l, u) pairs a site's quantizer has. */
export function boundCount(plan: QuantPlan, site: QuantSite): number {
  return plan.spec(site).perChannel ? site.channels : 1;
}

/**
 * Checks that bounds fit the plan: every site present and no other, one pair per channel (or one),
 * finite, u > l in float32, l = -u where symmetric (twin grids excepted); noise and twin grids as noiseProblem and
 * twinProblem check them. Calibration results that fail are a CalibrationError
 * naming the site and step; bounds read from a file are a ConfigError.
 */
export function validateBounds(plan: QuantPlan, bounds: BoundsMap, origin: { file?: string; step?: number } = {}): void {
  const where = origin.file ? ` in '${origin.file}'` : '';
  const fail = (site: string, message: string) => origin.file
    ? new ConfigError(`${message}${where}`, { value: site })
    : new CalibrationError(`${message} (calibration step ${origin.step ?? 'final'})`, site, origin.step);
  for (const id of bounds.keys()) {
    if (!plan.byId.has(id)) throw fail(id, `bounds for '${id}', which is not a quantizer of site set '${plan.siteSet.spec}'`);
  }
  for (const site of plan.sites) {
    const b = bounds.get(site.id);
    if (!b) throw fail(site.id, `no bounds for quantizer '${site.id}'`);
    const want = boundCount(plan, site);
    if (b.lower.length !== want || b.upper.length !== want) {
      throw fail(site.id, `quantizer '${site.id}' has ${b.lower.length}/${b.upper.length} lower/upper bounds, expected ${want}`);
    }
    const spec = plan.spec(site);
    const problem = noiseProblem(site, b.noise) ?? twinProblem(site, b, spec.bits);
    if (problem) throw fail(site.id, problem);
    for (let c = 0; c < want; c++) {
      const l = b.lower[c], u = b.upper[c];
      if (!Number.isFinite(l) || !Number.isFinite(u)) throw fail(site.id, `non-finite bounds [${l}, ${u}] at quantizer '${site.id}'`);
      if (!(stepSize(l, u, spec.bits) > 0)) throw fail(site.id, `empty range [${l}, ${u}] at quantizer '${site.id}'`);
      if (spec.symmetric && !b.twin && Math.fround(l) !== -Math.fround(u)) {
        throw fail(site.id, `symmetric quantizer '${site.id}' has bounds [${l}, ${u}], not [-u, u]`);
      }
    }
  }
}

export const BITS_CHOICES = SUPPORTED_BITS;
