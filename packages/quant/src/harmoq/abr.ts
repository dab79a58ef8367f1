/**
 * ABR, adaptive boundary refinement: rounds of re-fitting every activation quantizer's bounds (DOBI's search) on
 * the distribution it meets in the quantized model, i.e. with every quantizer before it active at the previous
 * round's bounds, so bounds follow the error that builds up through depth; weights and HSO's scales stay fixed.
 * A round is kept only if the held-out output error against the float model falls; the first round that does
 * not improve it stops the loop. Derivation and cost: docs/harmoq.md, "ABR".
 */
import type { PatchSet } from '@harmoq/data';
import type { SiteInfo } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { activationHookSites } from '../capture';
import { CalibrationError } from '../errors';
import { captureOutput, onnxChannelAxis, onnxQuantSites } from '../onnx';
import type { BoundsMap, QuantPlan } from '../plan';
import { bestCandidate, dobiCandidates } from '../search';
import { StreamingHistogram } from '../stats';
import { runPatches } from './capture';

/** Histograms of every activation site's input in the model fake-quantized with `bounds` (keyed by hook site). */
export async function quantizedActivationStats(
  plan: QuantPlan, stateDict: StateDict, patches: PatchSet, bounds: BoundsMap, threads: number, bins = 8192, channelBins = 256,
): Promise<Map<string, StreamingHistogram>> {
  const groups = activationHookSites(plan);
  const stats = new Map<string, StreamingHistogram>();
  for (const [hookSite, sites] of groups) {
    const channels = plan.spec(sites[0]).perChannel ? sites[0].channels : 1;
    stats.set(hookSite, new StreamingHistogram(channels, channels > 1 ? channelBins : bins));
  }
  const infos = new Map<string, SiteInfo>();
  const inner = onnxQuantSites(plan, bounds, stateDict, { capture: new Set(groups.keys()), quantize: true });
  let step = 0;
  await runPatches(plan, stateDict, patches, (site, tensor, g, info) => {
    if (groups.has(site)) infos.set(site, info);
    return inner(site, tensor, g, info);
  }, threads, 1, (outputs) => {
    for (const site of groups.keys()) {
      const t = outputs[captureOutput(site)];
      const dims = t.dims as readonly number[];
      const axis = onnxChannelAxis(infos.get(site)!);
      const bad = stats.get(site)!.add(t.data as Float32Array, { channels: dims[axis], inner: dims.slice(axis + 1).reduce((a, b) => a * b, 1) });
      if (bad >= 0) throw new CalibrationError(`non-finite value at '${site}' in the quantized model (ABR capture, patch ${step})`, site, step);
    }
    step++;
  });
  return stats;
}

/** Activation bounds re-fitted by DOBI's search on the quantized model's distributions; weight bounds kept. */
export function refitActivationBounds(plan: QuantPlan, bounds: BoundsMap, stats: Map<string, StreamingHistogram>, steps: number): BoundsMap {
  const out: BoundsMap = new Map();
  for (const site of plan.sites) {
    const previous = bounds.get(site.id)!;
    if (site.role !== 'activation') {
      out.set(site.id, previous);
      continue;
    }
    const spec = plan.spec(site);
    const h = stats.get(site.hookSite)!;
    const pairs = Array.from({ length: h.channels }, (_, c) => {
      const d = h.distribution(c);
      return bestCandidate(d, { bits: spec.bits, form: spec.form, candidates: dobiCandidates(d, steps, false, spec.symmetric) }).bounds;
    });
    out.set(site.id, { ...previous, lower: pairs.map((p) => p[0]), upper: pairs.map((p) => p[1]) });
  }
  return out;
}

export interface AbrRound {
  round: number;
  heldOutError: number;
  kept: boolean;
}

/**
 * Up to `rounds` refinement rounds from `init`; `error` scores bounds on the held-out patches. Returns the best
 * bounds seen (the initial ones if no round improves) and the rounds' errors.
 */
export async function refineBounds(
  plan: QuantPlan, stateDict: StateDict, patches: PatchSet, init: BoundsMap, rounds: number, steps: number, threads: number,
  error: (bounds: BoundsMap) => Promise<number>, onRound?: (r: AbrRound) => void,
): Promise<{ bounds: BoundsMap; initialError: number; rounds: AbrRound[] }> {
  let best = { bounds: init, error: await error(init) };
  const initialError = best.error;
  const log: AbrRound[] = [];
  for (let round = 1; round <= rounds; round++) {
    const stats = await quantizedActivationStats(plan, stateDict, patches, best.bounds, threads);
    const next = refitActivationBounds(plan, best.bounds, stats, steps);
    const e = await error(next);
    const kept = e < best.error;
    log.push({ round, heldOutError: e, kept });
    onRound?.(log[log.length - 1]);
    if (!kept) break;
    best = { bounds: next, error: e };
  }
  return { bounds: best.bounds, initialError, rounds: log };
}
