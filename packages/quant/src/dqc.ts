/**
 * DQC (distillation quantization calibration), stage 2 of 2DQuant: Adam on the lower and upper bounds only,
 * the float model as teacher, on the tfjs reference (wasm backend), whole model per step.
 *
 * The loss follows the released code (`basicsr/models/2dquant_model.py` `optimize_parameters`, anchors.md
 * 1.4) term by term, including its normalisations, so the balance between the two terms is the published one
 * at the same batch and patch size:
 *   pixel   = pixelWeight * mean|y_q - y_f| / numel(y) * B
 *   feature = sum over the 4 residual-group outputs of featureWeight * mean((f_q/|f_q| - f_f/|f_f|)^2) / numel
 * with |f| the L2 norm of one sample's feature (detached, as in the code). `featureNorm: 'per-sample'` is the
 * paper's form. `'broadcast'` reproduces the code's shape bug: a (B,1,1,1) norm against (B, HW, C) features
 * broadcasts to (B, B, HW, C), dividing every sample by every other sample's norm; it is computed here in
 * closed form (no B x B tensor), see docs/quant-dqc.md.
 */
import * as tf from '@tensorflow/tfjs';
import type { PatchSet, Rng } from '@harmoq/data';
import type { SwinIRModel } from '@harmoq/swinir';
import { CalibrationError } from './errors';
import type { CalibrationContext } from './method';
import type { BoundsMap } from './plan';
import { disposeTfBounds, fromTfBounds, type TfBoundsMap } from './tfjs';

export type FeatureNorm = 'per-sample' | 'broadcast';

export interface DqcOptions {
  iterations: number;
  batch: number;
  lr: number;
  beta1: number;
  beta2: number;
  pixelWeight: number;
  featureWeight: number;
  featureNorm: FeatureNorm;
  /** Random crop of each calibration patch per step (0: the whole patch); bounds memory on wasm. */
  crop: number;
}

export interface DqcResult {
  bounds: BoundsMap;
  /** Total loss per step. */
  losses: number[];
  /** Wall-clock seconds per step (forward, backward and Adam update). */
  stepSeconds: number[];
}

/** The stage names of the residual-group outputs (SwinIR's BasicLayer, before the RSTB conv). */
export function groupStages(depths: readonly number[]): string[] {
  return depths.map((d, layer) => `rstb${layer}_block${d - 1}`);
}

/** Identity forward, zero gradient: torch's `.detach()`. */
const detach = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const x = args[0] as tf.Tensor;
  return { value: tf.clone(x), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) };
}) as (x: tf.Tensor) => tf.Tensor;

/** Per-sample L2 norms of NHWC features, shape [B] (detached). */
function sampleNorms(f: tf.Tensor): tf.Tensor1D {
  return tf.sqrt(tf.sum(tf.square(detach(f)), [1, 2, 3])) as tf.Tensor1D;
}

/**
 * The feature term for one layer, before featureWeight: mean((fq/nq - ff/nf)^2) / numel, where numel and the
 * mean run over the normalised tensor ((B,HW,C) per sample, (B,B,HW,C) broadcast).
 */
export function featureTerm(fq: tf.Tensor4D, ff: tf.Tensor4D, norm: FeatureNorm): tf.Scalar {
  const b = fq.shape[0];
  const n = fq.size / b;
  const nq = sampleNorms(fq), nf = sampleNorms(ff);
  if (norm === 'per-sample') {
    const diff = tf.sub(tf.div(fq, tf.reshape(nq, [b, 1, 1, 1])), tf.div(ff, tf.reshape(nf, [b, 1, 1, 1])));
    const numel = b * n;
    return tf.div(tf.sum(tf.square(diff)), numel * numel) as tf.Scalar;
  }
  // sum_{i,j} |a_j/p_i - c_j/q_i|^2 = sum_i (A/p_i^2 - 2X/(p_i q_i) + C/q_i^2), A = sum_j |a_j|^2,
  // X = sum_j <a_j, c_j>, C = sum_j |c_j|^2 (i indexes the norm, j the sample).
  const a = tf.sum(tf.square(fq)), c = tf.sum(tf.square(ff)), x = tf.sum(tf.mul(fq, ff));
  const total = tf.sum(tf.addN([
    tf.mul(a, tf.reciprocal(tf.square(nq))),
    tf.mul(tf.mul(x, -2), tf.reciprocal(tf.mul(nq, nf))),
    tf.mul(c, tf.reciprocal(tf.square(nf))),
  ]));
  const numel = b * b * n;
  return tf.div(total, numel * numel) as tf.Scalar;
}

/**
 * The patches at `indices`, each cropped to `crop` x `crop` at a random offset (the whole patch when crop is 0),
 * as an NHWC tensor (the model's layout).
 */
function cropBatch(patches: PatchSet, indices: readonly number[], crop: number, rng: Rng): tf.Tensor4D {
  const [, ch, h, w] = patches.lrShape;
  const ch_ = crop || h, cw = crop || w;
  const size = ch * h * w;
  const out = new Float32Array(indices.length * ch_ * cw * ch);
  indices.forEach((p, i) => {
    const src = patches.lr.subarray(p * size, (p + 1) * size);
    const oy = rng.int(h - ch_ + 1), ox = rng.int(w - cw + 1);
    const dst = i * ch_ * cw * ch;
    for (let y = 0; y < ch_; y++) {
      for (let x = 0; x < cw; x++) for (let k = 0; k < ch; k++) out[dst + (y * cw + x) * ch + k] = src[(k * h + y + oy) * w + x + ox];
    }
  });
  return tf.tensor4d(out, [indices.length, ch_, cw, ch]);
}

/** The float model's output and residual-group features on x (no gradient tape: computed outside minimize). */
function teacherOf(model: SwinIRModel, x: tf.Tensor4D, stages: readonly string[]): { output: tf.Tensor4D; features: tf.Tensor4D[] } {
  const features: tf.Tensor4D[] = [];
  const output = model.apply(x, {
    onStage: (name, t) => {
      if (stages.includes(name)) features[stages.indexOf(name)] = tf.clone(t);
    },
  });
  return { output, features };
}

/**
 * Runs DQC from `init` and returns the trained bounds. Batches are drawn from the calibration patches with
 * ctx.rng (without replacement within a pass over the pool), each patch randomly cropped; the teacher runs on
 * the same crops each step. After every step each upper bound is kept at
 * least `minGap` above its lower bound (the code has no such guard; a crossed pair would make the step
 * negative).
 */
export async function distillBounds(ctx: CalibrationContext, init: BoundsMap, options: DqcOptions): Promise<DqcResult> {
  const model = await ctx.tfjsModel();
  const pool = ctx.data.calibration;
  const count = pool.lrShape[0];
  if (options.batch > count) {
    throw new CalibrationError(`dqc batch ${options.batch} is larger than the calibration pool (${count} patches; raise calibration.count)`);
  }
  const [, , h, w] = pool.lrShape;
  if (options.crop > Math.min(h, w)) {
    throw new CalibrationError(`dqc crop ${options.crop} is larger than the calibration patches (${h}x${w})`);
  }
  const stages = groupStages(ctx.config.depths);
  const vars: TfBoundsMap = ctx.tfjsBounds(init, true);
  const varList = [...vars.values()].flatMap((b) => [b.lower, b.upper]) as tf.Variable[];
  const hooks = ctx.tfjsHooks(vars);
  const optimizer = tf.train.adam(options.lr, options.beta1, options.beta2, 1e-8);
  const rng = ctx.rng.fork(7);
  let order: number[] = [];
  const losses: number[] = [];
  const stepSeconds: number[] = [];
  try {
    for (let step = 1; step <= options.iterations; step++) {
      const t0 = process.hrtime.bigint();
      if (order.length < options.batch) order = rng.shuffle(Array.from({ length: count }, (_, i) => i));
      const indices = order.splice(0, options.batch);
      const loss = tf.tidy(() => {
        const x = cropBatch(pool, indices, options.crop, rng);
        const { output: yf, features: ff } = teacherOf(model, x, stages);
        const cost = optimizer.minimize(() => {
          const terms: tf.Scalar[] = [];
          const yq = model.apply(x, {
            hook: hooks.hook,
            weightHook: hooks.weightHook,
            onStage: (name, t) => {
              const layer = stages.indexOf(name);
              if (layer >= 0) terms.push(tf.mul(featureTerm(t, ff[layer], options.featureNorm), options.featureWeight) as tf.Scalar);
            },
          });
          const pixel = tf.mul(tf.mean(tf.abs(tf.sub(yq, yf))), (options.pixelWeight * indices.length) / yq.size) as tf.Scalar;
          return tf.addN([pixel, ...terms]) as tf.Scalar;
        }, true, varList);
        for (const b of vars.values()) (b.upper as tf.Variable).assign(tf.maximum(b.upper, tf.add(b.lower, minGap(b.lower))));
        return cost!;
      });
      const value = (await loss.data())[0];
      loss.dispose();
      losses.push(value);
      stepSeconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
      ctx.progress({ stage: 'dqc', step, total: options.iterations, loss: value });
    }
    return { bounds: fromTfBounds(vars), losses, stepSeconds };
  } finally {
    optimizer.dispose();
    disposeTfBounds(vars);
  }
}

/** The smallest allowed u - l: relative to |l|, so it is above float32 rounding at any scale. */
function minGap(lower: tf.Tensor): tf.Tensor {
  return tf.add(tf.mul(tf.abs(lower), 1e-6), 1e-8);
}
