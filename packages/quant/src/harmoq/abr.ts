/**
 * ABR, adaptive boundary refinement: the activation quantizers, in forward order, are cut into contiguous
 * segments; segment by segment, each quantizer's bounds are re-fitted (DOBI's search) on the distribution it
 * meets in the quantized model, i.e. with every quantizer before it active at its current (already refined)
 * bounds, so bounds follow the error that builds up through depth; weights and HSO's scales stay fixed. A
 * segment's update is kept only if the held-out output error against the float model falls; a round that keeps
 * nothing stops the loop. Derivation and cost: docs/harmoq.md, "ABR".
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
  plan: QuantPlan, stateDict: StateDict, patches: PatchSet, bounds: BoundsMap, threads: number, only?: ReadonlySet<string>, bins = 8192, channelBins = 256,
): Promise<Map<string, StreamingHistogram>> {
  const groups = new Map([...activationHookSites(plan)].filter(([hook]) => !only || only.has(hook)));
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

/** Activation bounds of the sites in `stats` re-fitted by DOBI's search on those distributions; the rest kept. */
export function refitActivationBounds(plan: QuantPlan, bounds: BoundsMap, stats: Map<string, StreamingHistogram>, steps: number): BoundsMap {
  const out: BoundsMap = new Map();
  for (const site of plan.sites) {
    const previous = bounds.get(site.id)!;
    if (site.role !== 'activation' || !stats.has(site.hookSite)) {
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
  segment: number;
  heldOutError: number;
  kept: boolean;
}

/** The activation hook sites in forward order, cut into `count` contiguous segments of near-equal size. */
export function abrSegments(plan: QuantPlan, count: number): Set<string>[] {
  const hooks = [...activationHookSites(plan).keys()];
  const k = Math.max(1, Math.min(count, hooks.length));
  return Array.from({ length: k }, (_, i) => new Set(hooks.slice(Math.floor((i * hooks.length) / k), Math.floor(((i + 1) * hooks.length) / k))));
}

/**
 * Up to `rounds` rounds over `segments` segments from `init`; `error` scores bounds on the held-out patches.
 * Returns the best bounds (the initial ones if no segment update helps) and every segment's score.
 */
export async function refineBounds(
  plan: QuantPlan, stateDict: StateDict, patches: PatchSet, init: BoundsMap,
  settings: { rounds: number; segments: number; steps: number; threads: number },
  error: (bounds: BoundsMap) => Promise<number>, onSegment?: (r: AbrRound) => void,
): Promise<{ bounds: BoundsMap; initialError: number; rounds: AbrRound[] }> {
  let best = { bounds: init, error: await error(init) };
  const initialError = best.error;
  const log: AbrRound[] = [];
  const segments = abrSegments(plan, settings.segments);
  for (let round = 1; round <= settings.rounds; round++) {
    let keptAny = false;
    for (const [segment, hooks] of segments.entries()) {
      const stats = await quantizedActivationStats(plan, stateDict, patches, best.bounds, settings.threads, hooks);
      const next = refitActivationBounds(plan, best.bounds, stats, settings.steps);
      const e = await error(next);
      const kept = e < best.error;
      log.push({ round, segment, heldOutError: e, kept });
      onSegment?.(log[log.length - 1]);
      if (kept) [best, keptAny] = [{ bounds: next, error: e }, true];
    }
    if (!keptAny) break;
  }
  return { bounds: best.bounds, initialError, rounds: log };
}
