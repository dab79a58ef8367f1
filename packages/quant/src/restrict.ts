/**
 * Some of a calibration's quantizers, the rest float: weight-only or activation-only quantization and
 * one-site-at-a-time sensitivity, all from the bounds of one qparams file.
 *
 * A plan cannot simply lose sites: the ONNX rewrite rebuilds 2DQuant's split qkv from both quantizers of each
 * part. So the kept weight quantizers are applied to the weights up front (the float32 values the engine would
 * compute, written into the state dict) and the restricted plan holds only the kept activation quantizers, on
 * the fused qkv. The split's three input quantizers see the same tensor, so on the fused qkv they are one:
 * that needs all three kept or none, with equal bounds (MinMax, DOBI, percentile give equal ones; a method that
 * learns per-part input bounds cannot be restricted at the qkv input, and the error says so).
 */
import { toFloat32 } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { ConfigError } from './errors';
import { quantizedWeight } from './onnx';
import { makePlan, type BoundsMap, type QuantPlan } from './plan';
import { withWeightOverrides } from './quantize';
import { FUSED_QKV, type QuantSite } from './sites';

export interface RestrictedQuantization {
  /** Only the kept activation quantizers; qkv fused. */
  plan: QuantPlan;
  bounds: BoundsMap;
  /** The checkpoint with the plan's weight overrides and the kept weight quantizers applied. */
  stateDict: StateDict;
}

/** The fused qkv input quantizer that stands for a split part's (`<block>.attn.qkv.q.input` -> `<block>.attn.qkv.input`). */
const fusedInputId = (site: QuantSite) => site.id.replace(/\.attn\.qkv\.[qkv]\.input$/, '.attn.qkv.input');

/**
 * `plan` with only the quantizers `keep` selects; pass the result to `quantizedEngineOptions`. Keeping every
 * quantizer computes what the full plan computes (up to float summation order in qkv); keeping none, the
 * float model.
 */
export function restrictQuantization(
  plan: QuantPlan, bounds: BoundsMap, checkpoint: StateDict, keep: (site: QuantSite) => boolean,
): RestrictedQuantization {
  const stateDict: StateDict = new Map(withWeightOverrides(plan, checkpoint));
  const kept = plan.sites.filter(keep);
  for (const site of kept.filter((s) => s.role === 'weight')) {
    const key = site.weightKey!;
    const tensor = stateDict.get(key)!;
    const values = Float32Array.from(toFloat32(tensor, key));
    const rowSize = tensor.shape.slice(1).reduce((a, b) => a * b, 1);
    values.set(quantizedWeight(plan, site, bounds.get(site.id)!, stateDict), site.rows![0] * rowSize);
    stateDict.set(key, { dtype: 'float32', shape: tensor.shape, data: values });
  }

  const activationBounds: BoundsMap = new Map();
  for (const site of kept.filter((s) => s.role === 'activation')) {
    if (site.part === undefined || site.kind !== 'linear_input') {
      activationBounds.set(site.id, bounds.get(site.id)!);
      continue;
    }
    const parts = plan.sites.filter((s) => s.part !== undefined && s.role === 'activation' && fusedInputId(s) === fusedInputId(site));
    const missing = parts.filter((s) => !keep(s)).map((s) => s.id);
    if (missing.length > 0) {
      throw new ConfigError(`'${site.id}' kept without ${missing.join(', ')}: the split qkv inputs are one tensor; keep all three or none`, { value: site.id });
    }
    const mine = JSON.stringify(bounds.get(site.id));
    const other = parts.find((s) => JSON.stringify(bounds.get(s.id)) !== mine);
    if (other) {
      throw new ConfigError(`'${site.id}' and '${other.id}' have different bounds, so the qkv input cannot be quantized apart from the qkv weights`, { value: site.id });
    }
    activationBounds.set(fusedInputId(site), bounds.get(site.id)!);
  }

  const fused = makePlan(plan.config, { ...plan.settings, sites: plan.siteSet.qkvSplit ? `${plan.settings.sites}+${FUSED_QKV}` : plan.settings.sites });
  const sites = fused.sites.filter((s) => activationBounds.has(s.id));
  return {
    plan: { ...fused, sites, byId: new Map(sites.map((s) => [s.id, s])) },
    bounds: new Map(sites.map((s) => [s.id, activationBounds.get(s.id)!])),
    stateDict,
  };
}
