/**
 * ABR, adaptive boundary refinement: the quantizers, in forward order, are cut into contiguous segments; segment by
 * segment, candidate bounds are scored by the model's output error on the held-out patches (against the float
 * model) and the best is kept if it beats the current bounds. Candidates: every activation quantizer of the segment
 * re-fitted (DOBI's search) on the distribution it meets in the quantized model (every quantizer before it active
 * at its current, already refined, bounds), and the segment's activation or weight ranges narrowed or widened
 * about their midpoints. HSO's scales and the weights stay fixed. A round that keeps nothing stops the loop.
 * Derivation and cost: docs/harmoq.md, "ABR".
 */
import type { PatchSet } from '@harmoq/data';
import type { SiteInfo } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { activationHookSites } from '../capture';
import { CalibrationError } from '../errors';
import { captureOutput, onnxChannelAxis, onnxQuantSites } from '../onnx';
import type { BoundsMap, QuantPlan } from '../plan';
import { bestCandidate, dobiCandidates, ensureRange } from '../search';
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

/** A segment: activation hook sites (for the capture) and the quantizer ids whose bounds it may change. */
export interface AbrSegment {
  hooks: Set<string>;
  activations: string[];
  weights: string[];
}

/** The quantizers in forward order, cut at activation hook sites into `count` contiguous segments of near-equal size. */
export function abrSegments(plan: QuantPlan, count: number): AbrSegment[] {
  const hooks = [...activationHookSites(plan).keys()];
  const k = Math.max(1, Math.min(count, hooks.length));
  const segmentOf = new Map(hooks.map((h, i) => [h, Math.min(k - 1, Math.floor((i * k) / hooks.length))]));
  const segments: AbrSegment[] = Array.from({ length: k }, () => ({ hooks: new Set(), activations: [], weights: [] }));
  let current = 0;
  for (const site of plan.sites) {
    if (site.role === 'activation') {
      current = segmentOf.get(site.hookSite)!;
      segments[current].hooks.add(site.hookSite);
      segments[current].activations.push(site.id);
    } else {
      segments[current].weights.push(site.id);
    }
  }
  return segments;
}

/** Range factors tried for a segment's activations and weights (1 = the current bounds). */
export const ABR_RANGE_FACTORS: readonly number[] = [0.8, 1.25];

/** `bounds` with the ranges of `ids` scaled by `factor` about their midpoints (l = -u kept for symmetric pairs). */
export function scaleRanges(bounds: BoundsMap, ids: readonly string[], factor: number): BoundsMap {
  const out: BoundsMap = new Map(bounds);
  for (const id of ids) {
    const b = bounds.get(id)!;
    const pairs = b.lower.map((l, c) => {
      const mid = (l + b.upper[c]) / 2, half = ((b.upper[c] - l) / 2) * factor;
      return ensureRange(mid - half, mid + half);
    });
    out.set(id, { ...b, lower: pairs.map((p) => p[0]), upper: pairs.map((p) => p[1]) });
  }
  return out;
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
    for (const [segment, part] of segments.entries()) {
      const stats = await quantizedActivationStats(plan, stateDict, patches, best.bounds, settings.threads, part.hooks);
      const candidates = [
        refitActivationBounds(plan, best.bounds, stats, settings.steps),
        ...ABR_RANGE_FACTORS.map((f) => scaleRanges(best.bounds, part.activations, f)),
        ...(part.weights.length > 0 ? ABR_RANGE_FACTORS.map((f) => scaleRanges(best.bounds, part.weights, f)) : []),
      ];
      let winner: { bounds: BoundsMap; error: number } | undefined;
      for (const candidate of candidates) {
        const e = await error(candidate);
        if (e < (winner?.error ?? best.error)) winner = { bounds: candidate, error: e };
      }
      const kept = winner !== undefined;
      log.push({ round, segment, heldOutError: winner?.error ?? best.error, kept });
      onSegment?.(log[log.length - 1]);
      if (winner) [best, keptAny] = [winner, true];
    }
    if (!keptAny) break;
  }
  return { bounds: best.bounds, initialError, rounds: log };
}
