/** The CalibrationContext handed to methods: lazy, cached access to statistics, forwards and the tfjs model. */
import type { CalibrationData, Rng } from '@harmoq/data';
import { SwinIRModel, initBackend } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { collectActivationStats, forwardPatches, type ActivationStats, type CaptureEngine } from './capture';
import { CalibrationError } from './errors';
import type { CalibrationContext, ProgressUpdate } from './method';
import type { BoundsMap, QuantPlan } from './plan';
import { siteWeight, weightLayout, type QuantSite } from './sites';
import { ExactDistribution, firstNonFinite, type Distribution } from './stats';
import { tfjsQuantHooks, toTfBounds, type TfBoundsMap } from './tfjs';

export interface ContextOptions {
  plan: QuantPlan;
  stateDict: StateDict;
  data: CalibrationData;
  rng: Rng;
  threads: number;
  captureEngine: CaptureEngine;
  bins: number;
  channelBins: number;
  onProgress?: (update: ProgressUpdate) => void;
}

export interface OwnedContext extends CalibrationContext {
  /** Frees the tfjs model and tensors the context made. */
  dispose(): void;
}

export function createCalibrationContext(options: ContextOptions): OwnedContext {
  const { plan, stateDict, data } = options;
  const derived: OwnedContext[] = [];
  let stats: Promise<ActivationStats> | undefined;
  const fpOutputs = new Map<string, Promise<Float32Array>>();
  let model: Promise<SwinIRModel> | undefined;
  let loaded: SwinIRModel | undefined;

  const checkFinite = (values: ArrayLike<number>, site: string, step: number) => {
    const bad = firstNonFinite(values);
    if (bad >= 0) throw new CalibrationError(`non-finite value ${values[bad]} at '${site}' (calibration step ${step})`, site, step);
  };

  const ctx: OwnedContext = {
    config: plan.config,
    stateDict,
    plan,
    sites: plan.sites,
    data,
    rng: options.rng,
    threads: options.threads,
    spec: (site) => plan.spec(site),
    progress(update) {
      if (update.loss !== undefined && !Number.isFinite(update.loss)) {
        throw new CalibrationError(
          `loss ${update.loss} in stage '${update.stage}' at step ${update.step}/${update.total}${update.site ? ` (site '${update.site}')` : ''}`,
          update.site, update.step);
      }
      options.onProgress?.(update);
    },
    weight: (site) => {
      const values = siteWeight(site, stateDict);
      checkFinite(values, site.id, 0);
      return values;
    },
    async distributions(site: QuantSite): Promise<Distribution[]> {
      const spec = plan.spec(site);
      if (site.role === 'weight') {
        const values = ctx.weight(site);
        if (!spec.perChannel) return [new ExactDistribution(values)];
        const { channels, inner } = weightLayout(site);
        return Array.from({ length: channels }, (_, c) => new ExactDistribution(values.subarray(c * inner, (c + 1) * inner)));
      }
      const histogram = (await ctx.activationStats()).get(site.hookSite)!;
      return Array.from({ length: histogram.channels }, (_, c) => histogram.distribution(c));
    },
    activationStats() {
      stats ??= collectActivationStats(plan, stateDict, data.calibration, {
        engine: options.captureEngine, threads: options.threads, bins: options.bins, channelBins: options.channelBins,
        onBatch: (done, total) => options.onProgress?.({ stage: 'activations', step: done, total }),
      });
      return stats;
    },
    forward(bounds, set) {
      const patches = data[set];
      if (bounds) return forwardPatches(plan, stateDict, patches, bounds, options.threads);
      let cached = fpOutputs.get(set);
      if (!cached) {
        cached = forwardPatches(plan, stateDict, patches, null, options.threads);
        fpOutputs.set(set, cached);
      }
      return cached;
    },
    async outputError(bounds, set = 'heldOut') {
      if (data[set].lrShape[0] === 0) throw new CalibrationError(`outputError: the ${set} set is empty (raise its patch count)`);
      const [fp, q] = await Promise.all([ctx.forward(null, set), ctx.forward(bounds, set)]);
      let sum = 0;
      for (let i = 0; i < fp.length; i++) sum += (q[i] - fp[i]) ** 2;
      return sum / fp.length;
    },
    tfjsModel() {
      model ??= initBackend().then(() => (loaded = new SwinIRModel(stateDict, plan.config)));
      return model;
    },
    tfjsHooks(bounds: TfBoundsMap) {
      return tfjsQuantHooks(plan, bounds, (key) => {
        if (!loaded) throw new CalibrationError('tfjsHooks needs the model: await ctx.tfjsModel() first');
        return loaded.param(key);
      });
    },
    tfjsBounds: (bounds: BoundsMap, trainable: boolean) => toTfBounds(plan, bounds, trainable),
    checkFinite,
    withStateDict(other: StateDict) {
      for (const [key, t] of stateDict) {
        const o = other.get(key);
        if (!o || o.shape.join() !== t.shape.join()) {
          throw new CalibrationError(`withStateDict: '${key}' is ${o ? `[${o.shape.join(', ')}]` : 'missing'}, expected [${t.shape.join(', ')}]`);
        }
      }
      const child = createCalibrationContext({ ...options, stateDict: other, rng: options.rng.fork(derived.length + 1) });
      derived.push(child);
      return child;
    },
    dispose() {
      loaded?.dispose();
      derived.forEach((d) => d.dispose());
    },
  };
  return ctx;
}
