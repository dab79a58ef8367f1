/**
 * HarmoQ: HSO (harmonized per-channel scales, closed form, absorbed into the float model; ../harmoq/hso.ts),
 * DOBI bounds on the scaled model, ABR (bounds re-fitted round by round on the quantized model's own
 * distributions, held-out stopping; ../harmoq/abr.ts), then SRC (each Linear's and quantized Conv's weight and
 * weight grid re-solved against its quantized input, output error plus its Laplacian (structure) part, ridge +
 * GPTQ rounding, held-out choices; ../harmoq/src.ts). Each stage switches off on its own
 * (`--set hso=false`, `src=false`, `abr=false`; or `options.hso=false`); all three off is DOBI. Optionally
 * (`dqc=true`) 2DQuant's bound distillation runs between ABR and SRC with 2DQuant's own budget (docs/harmoq.md).
 * Paper: Wang et al., "HarmoQ: Harmonized Post-Training Quantization for High-Fidelity Image Super-Resolution",
 * arXiv:2511.05868 (AAAI 2026). Only its abstract is known (anchors.md section 4): every stage here is our own
 * derivation (docs/harmoq.md), which also lists where each departs from the abstract (e.g. ABR is a search, not
 * gradient-based; the stages run HSO, ABR, SRC rather than the abstract's SRC, HSO, ABR order).
 */
import type { PatchSet } from '@harmoq/data';
import { z } from 'zod';
import type { CalibrationContext, CalibrationResult, PtqMethod } from '../method';
import type { BoundsMap } from '../plan';
import { forwardPatches } from '../capture';
import { refineBounds } from '../harmoq/abr';
import { linearInputMoments, quantizedInputMoments } from '../harmoq/capture';
import { harmonize } from '../harmoq/hso';
import { calibrateResiduals, calibrateResidualsSequential } from '../harmoq/src';
import type { QuantSite } from '../sites';
import { distillBounds } from '../dqc';
import { dobi } from './dobi';
import { twoDQuant } from './twodquant';

/** 2DQuant's budget per preset (iterations, batch, crop), so HarmoQ's distillation spends exactly as much. */
const budget = (preset: 'quick' | 'paper') => {
  const p = { ...twoDQuant.defaults, ...twoDQuant.presets?.[preset] };
  return { iterations: p.iterations, batch: p.batch, crop: p.crop };
};

export interface HarmoqOptions extends Record<string, unknown> {
  /** Structural residual calibration (weights re-solved per Linear). */
  src: boolean;
  /** Harmonized scale optimization (per-channel scales absorbed into the float model). */
  hso: boolean;
  /** Adaptive boundary refinement (bounds re-fitted on the quantized model, held-out stopping). */
  abr: boolean;
  /** ABR's most rounds, and the contiguous segments of activation quantizers it refits one at a time. */
  rounds: number;
  segments: number;
  /** Calibration patches (the first ones) ABR's captures run on. */
  abrPatches: number;
  /** SRC rounds weights with GPTQ when that wins on held-out (else ridge + plain rounding, or W kept). */
  gptq: boolean;
  /**
   * SRC also chooses each weight grid: quantile ranges of the weights (`BOUND_QUANTILES` in ../harmoq/src.ts) next
   * to the calibrated bounds, by the layer's held-out output error after its correction.
   */
  weightGrids: boolean;
  /** DOBI candidates (initial bounds and ABR's search). */
  steps: number;
  /**
   * Bound distillation after ABR: 2DQuant's DQC (../dqc.ts, its loss, optimizer and settings) from ABR's bounds on
   * the harmonized model, kept only when it lowers the held-out output error (run before ABR it did harm; measured
   * in docs/harmoq.md). `iterations` x `batch` x `crop` is the budget,
   * per preset the same as `2dquant`'s, so the two spend the same gradient steps.
   */
  dqc: boolean;
  iterations: number;
  batch: number;
  crop: number;
  /**
   * SRC's inputs: 'float' applies the site's quantizer to the float model's input (the layer's own error only);
   * 'quantized' takes Q(x~) from the fully quantized model (x~ carries the error of every layer before), captured
   * once; 'sequential' recaptures it block by block after the earlier blocks were corrected (one GPTQ/ridge
   * variant, per `gptq`).
   */
  srcInputs: 'float' | 'quantized' | 'sequential';
  /**
   * SRC's structure weight β: each Linear is also solved with the objective E‖e‖² + β E‖L e‖² (L a Laplacian over
   * the token grid, the high-pass part of the output error; docs/harmoq.md), next to β = 0; the whole-model
   * held-out check chooses. 0: the output error only.
   */
  structure: number;
}

/** Mean squared difference on the held-out patches between `stateDict` fake-quantized with `bounds` and the original float model. */
async function heldOutError(ctx: CalibrationContext, stateDict: CalibrationContext['stateDict'], bounds: BoundsMap): Promise<number> {
  const [fp, q] = await Promise.all([ctx.forward(null, 'heldOut'), forwardPatches(ctx.plan, stateDict, ctx.data.heldOut, bounds, ctx.threads)]);
  let sum = 0;
  for (let i = 0; i < fp.length; i++) sum += (q[i] - fp[i]) ** 2;
  return sum / fp.length;
}

/** The first `count` patches of a set (a view). */
function firstPatches(patches: PatchSet, count: number): PatchSet {
  const [n, c, h, w] = patches.lrShape;
  const [, hc, hh, hw] = patches.hrShape;
  const k = Math.min(n, count);
  return {
    lr: patches.lr.subarray(0, k * c * h * w), lrShape: [k, c, h, w], hr: patches.hr.subarray(0, k * hc * hh * hw), hrShape: [k, hc, hh, hw],
    sources: patches.sources.slice(0, k),
  };
}

export const harmoq: PtqMethod<HarmoqOptions, BoundsMap | CalibrationResult> = {
  name: 'harmoq',
  paper: 'Wang et al., "HarmoQ: Harmonized Post-Training Quantization for High-Fidelity Image Super-Resolution", arXiv:2511.05868, AAAI 2026',
  summary: 'HSO closed-form channel scales, DOBI, ABR bound rounds on the quantized model, SRC ridge + GPTQ weights',
  defaults: {
    src: true, hso: true, abr: true, rounds: 2, segments: 4, abrPatches: 8, gptq: true, weightGrids: true, steps: 100, srcInputs: 'float', structure: 1,
    dqc: false, iterations: twoDQuant.defaults.iterations, batch: twoDQuant.defaults.batch, crop: twoDQuant.defaults.crop,
  },
  presets: { quick: budget('quick'), paper: budget('paper') },
  options: z.strictObject({
    src: z.boolean(), hso: z.boolean(), abr: z.boolean(), rounds: z.number().int().min(1).max(20), segments: z.number().int().min(1).max(1000), abrPatches: z.number().int().min(1), gptq: z.boolean(), weightGrids: z.boolean(),
    steps: z.number().int().min(1).max(10000), srcInputs: z.enum(['float', 'quantized', 'sequential']),
    dqc: z.boolean(), iterations: z.number().int().min(0), batch: z.number().int().min(1), crop: z.number().int().min(0),
    structure: z.number().min(0).max(1e6),
  }),
  async calibrate(ctx, opts) {
    const { plan, threads } = ctx;
    const moments = (stateDict: CalibrationContext['stateDict'], bounds: BoundsMap | null, structure = false) =>
      (sites: QuantSite[], set: 'calibration' | 'heldOut' = 'calibration') => linearInputMoments(plan, stateDict, ctx.data[set], sites, bounds, threads, structure);
    const started = Date.now();
    const note = (stage: string, text: string) => ctx.progress({ stage, step: 1, total: 1, note: `${text} (at ${((Date.now() - started) / 1000).toFixed(1)} s)` });

    let stateDict = ctx.stateDict;
    let scaled: CalibrationContext = ctx;
    if (opts.hso) {
      const hso = await harmonize(plan, stateDict, moments(stateDict, null));
      const moved = hso.groups.filter((g) => g.gamma > 0);
      const ratio = moved.reduce((a, g) => a + Math.log(g.after / g.before), 0) / Math.max(1, moved.length);
      note('hso', `${moved.length}/${hso.groups.length} Linear inputs scaled, modelled error x${Math.exp(ratio).toFixed(3)} (geometric mean)`);
      stateDict = hso.stateDict;
      scaled = ctx.withStateDict(stateDict);
    }
    let bounds = await dobi.calibrate(scaled, { search: 'two-sided', steps: opts.steps });
    const hasHeldOut = ctx.data.heldOut.lrShape[0] > 0;
    if (opts.abr) {
      if (!hasHeldOut) note('abr', 'no held-out patches: ABR needs them for its stopping rule, skipped');
      else {
        const abr = await refineBounds(plan, stateDict, firstPatches(ctx.data.calibration, opts.abrPatches), bounds,
          { rounds: opts.rounds, segments: opts.segments, steps: opts.steps, threads },
          (b) => heldOutError(ctx, stateDict, b),
          (r) => ctx.progress({ stage: 'abr', step: r.segment + 1, total: opts.segments, loss: r.heldOutError, note: `round ${r.round}: ${r.kept ? 'kept' : 'no gain'}` }));
        note('abr', `held-out output MSE ${abr.initialError.toExponential(4)} -> ${Math.min(abr.initialError, ...abr.rounds.map((r) => r.heldOutError)).toExponential(4)}`);
        bounds = abr.bounds;
      }
    }
    if (opts.dqc && opts.iterations > 0) {
      const { bounds: tuned } = await distillBounds(scaled, bounds, { ...twoDQuant.defaults, iterations: opts.iterations, batch: opts.batch, crop: opts.crop });
      if (!hasHeldOut) bounds = tuned;
      else {
        const [before, after] = [await heldOutError(ctx, stateDict, bounds), await heldOutError(ctx, stateDict, tuned)];
        note('dqc', `held-out output MSE ${before.toExponential(4)} -> ${after.toExponential(4)}: ${after < before ? 'kept' : 'dropped'}`);
        if (after < before) bounds = tuned;
      }
    }
    if (opts.src) {
      // The float model before SRC is the target; `corrected` is the quantized model's weights (sequential SRC).
      const [target, calibrated] = [stateDict, bounds];
      const structure = opts.structure > 0;
      const quantizedMoments = (sites: QuantSite[], set: 'calibration' | 'heldOut' = 'calibration', corrected = target, grids = bounds) =>
        quantizedInputMoments(plan, target, ctx.data[set], sites, grids, threads, corrected, structure);
      const solves = (opts.gptq ? [true, false] : [false]).flatMap((gptq) => [0, ...(structure ? [opts.structure] : [])]
        .map((beta) => ({ gptq, structure: beta, boundSearch: opts.weightGrids })));
      const variants = opts.srcInputs === 'sequential'
        ? [await calibrateResidualsSequential(plan, target, bounds, { gptq: opts.gptq, structure: opts.structure, boundSearch: opts.weightGrids }, quantizedMoments,
          (done, total) => ctx.progress({ stage: 'src', step: done, total, note: 'blocks' }))]
        : await calibrateResiduals(plan, target, bounds, solves, opts.srcInputs === 'quantized' ? quantizedMoments : moments(target, bounds, structure));
      const nameOf = (v: { gptq: boolean; structure: number }) => `${v.gptq ? 'gptq' : 'ridge'}${v.structure > 0 ? `+L${v.structure}` : ''}`;
      if (!hasHeldOut) [stateDict, bounds] = [variants[0].stateDict, variants[0].bounds];
      else {
        // Per-layer choices are local; the whole model on the held-out patches decides whether (and which) SRC is kept.
        const scored = [{ name: 'none', sd: stateDict, bounds }, ...variants.map((v) => ({ name: nameOf(v), sd: v.stateDict, bounds: v.bounds }))];
        const errors: number[] = [];
        for (const c of scored) errors.push(await heldOutError(ctx, c.sd, c.bounds));
        const best = errors.indexOf(Math.min(...errors));
        [stateDict, bounds] = [scored[best].sd, scored[best].bounds];
        const counts = variants.map((v) => {
          const [weights, grids] = [v.decisions.filter((d) => d.choice !== 'keep').length, v.decisions.filter((d) => d.bounds !== calibrated.get(d.site)).length];
          return `${nameOf(v)} ${weights}/${v.decisions.length} weights, ${grids} grids`;
        }).join(', ');
        note('src', `layers changed: ${counts}; held-out output MSE ${scored.map((c, i) => `${c.name} ${errors[i].toExponential(4)}`).join(', ')}: ${scored[best].name} kept`);
      }
    }
    return stateDict === ctx.stateDict ? bounds : { bounds, stateDict };
  },
};
