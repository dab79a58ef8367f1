/**
 * Uniform fake quantizers: b-bit grids between a lower bound l and an upper bound u.
 *
 * Two forms:
 * - `real-offset`, exactly 2DQuant's (Kai-Liu001/2DQuant basicsr/archs/quant_arch.py, `quant()` and
 *   `FakeQuantizerAct/Weight.forward`): s = (u-l)/(2^b-1), q = s*round((clip(x,l,u)-l)/s) + l. The grid
 *   starts at l, a real number, so 0 is generally not on it.
 * - `integer`: the range is first widened to contain 0 (l' = min(l, 0), u' = max(u, 0), as PyTorch's observers
 *   do), s = (u'-l')/(2^b-1), and the offset is an integer zero point z = round(-l'/s) in [0, 2^b-1]:
 *   q = s*(clamp(round(x/s)+z, 0, 2^b-1) - z). 0 is always on the grid, as int kernels need.
 * Rounding is half to even (torch.round, onnx Round, tf.round). Every step is rounded to float32 in the
 * order the PyTorch code, the ONNX nodes and the tfjs ops compute it, so all three give the same values.
 *
 * Both forms exist as plain typed-array functions (calibration searches) and as tfjs ops with
 * straight-through gradients (`fakeQuantTf`), 2DQuant's clip gradient included.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from './errors';
import { noisyQuantize } from './noise';
import { twinQuantize, type TwinUniform } from './twin';

export type QuantForm = 'real-offset' | 'integer';
export const QUANT_FORMS: readonly QuantForm[] = ['real-offset', 'integer'];
export const SUPPORTED_BITS: readonly number[] = [2, 3, 4, 5, 6, 7, 8];

/** How one tensor is quantized. Per-channel bounds are one (l, u) pair per channel of `channelAxis`. */
export interface QuantizerSpec {
  bits: number;
  form: QuantForm;
  /** Bounds constrained to l = -u (the grid is symmetric about 0). */
  symmetric: boolean;
  perChannel: boolean;
}

/** Lower and upper bounds: length 1 (per tensor) or one per channel. */
export interface Bounds {
  lower: number[];
  upper: number[];
  /** NoisyQuant (noise.ts), Linear inputs only: one noise value per input feature; the site computes Q(x + N) - N. */
  noise?: number[];
  /** PTQ4ViT twin-uniform grids (twin.ts), in place of the uniform (l, u) grid; lower/upper then record their span. */
  twin?: TwinUniform;
}

export function checkBits(bits: number, what = 'bits'): number {
  if (!SUPPORTED_BITS.includes(bits)) {
    throw new ConfigError(`${what} ${bits} is not supported (choices: ${SUPPORTED_BITS.join(', ')})`, {
      value: String(bits), choices: SUPPORTED_BITS.map(String),
    });
  }
  return bits;
}

/** 2^b - 1: the number of steps between the first and the last level. */
export function gridSteps(bits: number): number {
  return 2 ** bits - 1;
}

// Module-level aliases: hot loops then avoid global lookups (slow inside jest's vm context).
const f32 = Math.fround;
const mathRound = Math.round;

/** torch.round / numpy.round / onnx Round: nearest integer, ties to even. */
export function roundHalfEven(x: number): number {
  const r = mathRound(x); // ties go up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The step s = (u-l)/(2^b-1) of the real-offset form, in float32 as the quantizers compute it. */
export function stepSize(lower: number, upper: number, bits: number): number {
  return f32(f32(f32(upper) - f32(lower)) / gridSteps(bits));
}

/** The bounds the integer form works with: [min(l, 0), max(u, 0)]. */
export function integerRange(lower: number, upper: number): [number, number] {
  return [Math.min(f32(lower), 0), Math.max(f32(upper), 0)];
}

/** The integer zero point z = round(-l'/s) (clamped to [0, 2^b-1] against float rounding). */
export function zeroPoint(lower: number, upper: number, bits: number): number {
  const [l, u] = integerRange(lower, upper);
  const s = stepSize(l, u, bits);
  const z = roundHalfEven(f32(-l / s));
  return z < 0 ? 0 : z > gridSteps(bits) ? gridSteps(bits) : z;
}

/**
 * A quantizer's grid: `start` + k * `step` for k = 0..`steps`; real-offset: start = l; integer: start = -z*s
 * with s from the widened range. Values clip to the first and last level.
 */
export function gridOf(lower: number, upper: number, bits: number, form: QuantForm): { start: number; step: number; steps: number; zero: number } {
  const steps = gridSteps(bits);
  if (form === 'real-offset') return { start: f32(lower), step: stepSize(lower, upper, bits), steps, zero: 0 };
  const [l, u] = integerRange(lower, upper);
  const step = stepSize(l, u, bits);
  const zero = zeroPoint(lower, upper, bits);
  return { start: -zero * step, step, steps, zero };
}

/**
 * The quantizer for one (l, u) as a function of one value, float32 step by step, with s and z computed once.
 * Callers refuse u <= l; here it would give s <= 0.
 */
export function scalarQuantizer(lower: number, upper: number, bits: number, form: QuantForm): (x: number) => number {
  const { step: s, steps: n, zero: z } = gridOf(lower, upper, bits, form);
  if (form === 'real-offset') {
    const l = f32(lower);
    const u = f32(upper);
    return (x) => {
      const c = x < l ? l : x > u ? u : x;
      return f32(f32(roundHalfEven(f32(f32(c - l) / s)) * s) + l);
    };
  }
  return (x) => {
    const r = roundHalfEven(f32(x / s)) + z;
    const k = r < 0 ? 0 : r > n ? n : r;
    return f32((k - z) * s);
  };
}

/** Memory layout of a per-channel tensor: index i belongs to channel floor(i / inner) % channels. */
export interface ChannelLayout {
  channels: number;
  inner: number;
}

/** Fake-quantizes a tensor with per-tensor bounds (length-1 `Bounds`) or per-channel bounds and a layout. */
export function fakeQuantize(
  x: Float32Array, bounds: Bounds, bits: number, form: QuantForm, layout?: ChannelLayout, out = new Float32Array(x.length),
): Float32Array {
  const channels = bounds.lower.length;
  if (channels !== 1 && (!layout || layout.channels !== channels)) {
    throw new ConfigError(`per-channel bounds for ${channels} channels need a layout with ${channels} channels`);
  }
  if (bounds.twin) return twinQuantize(x, bounds.twin, bits, layout, out);
  if (bounds.noise) return noisyQuantize(x, bounds.noise, (y, o) => fakeQuantize(y, { lower: bounds.lower, upper: bounds.upper }, bits, form, layout, o), out);
  const inner = channels === 1 ? x.length : layout!.inner;
  const quantizers = bounds.lower.map((l, c) => scalarQuantizer(l, bounds.upper[c], bits, form));
  for (let start = 0, c = 0; start < x.length; start += inner, c = (c + 1) % channels) {
    const q = quantizers[c];
    const end = Math.min(x.length, start + inner);
    for (let i = start; i < end; i++) out[i] = q(x[i]);
  }
  return out;
}

/**
 * ||x - Q(x)||_2 over the whole tensor with one (l, u): 2DQuant's `cal_mse` (a norm despite its name),
 * accumulated in float64.
 */
export function quantizationError(x: ArrayLike<number>, lower: number, upper: number, bits: number, form: QuantForm): number {
  const q = scalarQuantizer(lower, upper, bits, form);
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    const d = x[i] - q(x[i]);
    sum += d * d;
  }
  return Math.sqrt(sum);
}

// ---------------------------------------------------------------------------------------------------------
// tfjs: differentiable fake quantization.

/** round() forward, identity backward (2DQuant's Differentiable_Round). */
export const steRound: (x: tf.Tensor) => tf.Tensor = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const x = args[0] as tf.Tensor;
  return { value: tf.round(x), gradFunc: (dy: tf.Tensor) => dy };
}) as (x: tf.Tensor) => tf.Tensor;

/** Sums a broadcast gradient back to the shape of the operand it came from. */
export function sumToShape(t: tf.Tensor, shape: readonly number[]): tf.Tensor {
  const lead = t.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < t.rank; i++) {
    const j = i - lead;
    if (j < 0 || (shape[j] === 1 && t.shape[i] !== 1)) axes.push(i);
  }
  return tf.reshape(axes.length > 0 ? tf.sum(t, axes) : t, [...shape]);
}

/**
 * The real-offset quantizer as one differentiable op: the forward is the float32 op sequence of 2DQuant's
 * `quant()`; the backward is its gradient written out (docs/quant-dqc.md), so the graph keeps only x, l and u
 * instead of six full-size intermediates per quantizer. With V = (clip(x,l,u)-l)/s and R = round(V):
 * dx = dy [l <= x <= u]; dl = sum dy ([x <= l] - (R-V)/n); du = sum dy ([x >= u] + (R-V)/n).
 */
const realOffsetOps = new Map<number, (x: tf.Tensor, lower: tf.Tensor, upper: tf.Tensor) => tf.Tensor>();
function realOffsetFakeQuant(n: number): (x: tf.Tensor, lower: tf.Tensor, upper: tf.Tensor) => tf.Tensor {
  let op = realOffsetOps.get(n);
  if (!op) {
    op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [x, lower, upper, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
      save([x, lower, upper]);
      const s = tf.div(tf.sub(upper, lower), n);
      const value = tf.add(tf.mul(tf.round(tf.div(tf.sub(tf.minimum(tf.maximum(x, lower), upper), lower), s)), s), lower);
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [sx, sl, su] = saved;
          const ss = tf.div(tf.sub(su, sl), n);
          const v = tf.div(tf.sub(tf.minimum(tf.maximum(sx, sl), su), sl), ss);
          const residual = tf.div(tf.sub(tf.round(v), v), n);
          const below = tf.cast(tf.lessEqual(sx, sl), 'float32');
          const above = tf.cast(tf.greaterEqual(sx, su), 'float32');
          const inside = tf.cast(tf.logicalAnd(tf.greaterEqual(sx, sl), tf.lessEqual(sx, su)), 'float32');
          return [
            tf.mul(dy, inside),
            sumToShape(tf.mul(dy, tf.sub(below, residual)), sl.shape),
            sumToShape(tf.mul(dy, tf.add(above, residual)), su.shape),
          ];
        },
      };
    }) as (x: tf.Tensor, lower: tf.Tensor, upper: tf.Tensor) => tf.Tensor;
    realOffsetOps.set(n, op);
  }
  return op;
}

/**
 * The fake quantizer as differentiable tfjs ops. `lower`/`upper` are scalars or broadcast against x (per
 * channel). Straight-through rounding, so l and u also get the LSQ-like gradient through s; in the
 * real-offset form the clip adds 2DQuant's bound gradient.
 */
export function fakeQuantTf(x: tf.Tensor, lower: tf.Tensor, upper: tf.Tensor, bits: number, form: QuantForm): tf.Tensor {
  const n = gridSteps(bits);
  if (form === 'real-offset') return realOffsetFakeQuant(n)(x, lower, upper);
  const l = tf.minimum(lower, 0);
  const si = tf.div(tf.sub(tf.maximum(upper, 0), l), n);
  const z = tf.clipByValue(steRound(tf.div(tf.neg(l), si)), 0, n);
  const k = tf.clipByValue(tf.add(steRound(tf.div(x, si)), z), 0, n);
  return tf.mul(tf.sub(k, z), si);
}
