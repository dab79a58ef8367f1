/**
 * Twin-uniform quantizers (PTQ4ViT, Yuan et al., ECCV 2022, section 4.1): a b-bit code is one range flag plus a
 * (b-1)-bit level, so the tensor is quantized on one of two uniform grids with steps d1 (fine) and
 * d2 = 2^m d1 (coarse; the power-of-two ratio lets the two ranges share integer accumulators via a shift).
 * With n = 2^(b-1) - 1:
 * - unsigned (post-softmax): x < 2^(b-1) d1 (the paper's R1) -> clamp(round(x/d1), 0, n) d1,
 *   else clamp(round(x/d2), 0, n) d2;
 * - signed (post-GELU): x < 0 (R1, the negative values) -> clamp(round(x/d1), -n, 0) d1,
 *   else clamp(round(x/d2), 0, n) d2.
 * The same float32 steps as the typed-array function, the tfjs ops and the ONNX nodes below (Div, Round,
 * Clip, Mul on both grids, then Less/Where), so the three give identical values.
 */
import * as tf from '@tensorflow/tfjs';
import type { GraphBuilder } from '@harmoq/swinir';
import { roundHalfEven, steRound, type ChannelLayout } from './quantizer';

const f32 = Math.fround;

/** A site's twin-uniform parameters: one fine step and one shift per channel (or one per tensor). */
export interface TwinUniform {
  /** false: post-softmax (both grids from 0); true: post-GELU (the fine grid holds the negative values). */
  signed: boolean;
  /** d1, the fine grid's step, per channel. */
  fine: number[];
  /** m, with the coarse step d2 = 2^m d1, per channel (integers >= 0). */
  shift: number[];
}

/** The largest shift accepted: d2 = 2^30 d1 is already far beyond any activation range. */
export const MAX_TWIN_SHIFT = 30;

/** n = 2^(b-1) - 1: the last level of each grid. */
export function twinLevels(bits: number): number {
  return 2 ** (bits - 1) - 1;
}

/** One channel's constants in float32: fine and coarse steps, the fine clamp range and the range threshold. */
export function twinChannel(twin: TwinUniform, c: number, bits: number): { fine: number; coarse: number; lo: number; hi: number; threshold: number } {
  const n = twinLevels(bits);
  const fine = f32(twin.fine[c]);
  return twin.signed
    ? { fine, coarse: f32(fine * 2 ** twin.shift[c]), lo: -n, hi: 0, threshold: 0 }
    : { fine, coarse: f32(fine * 2 ** twin.shift[c]), lo: 0, hi: n, threshold: f32((n + 1) * fine) };
}

/** The range the two grids span, per channel: the lower/upper a twin site's Bounds record. */
export function twinRange(twin: TwinUniform, bits: number): { lower: number[]; upper: number[] } {
  const n = twinLevels(bits);
  const channels = twin.fine.map((_, c) => twinChannel(twin, c, bits));
  return { lower: channels.map((t) => (twin.signed ? f32(-n * t.fine) : 0)), upper: channels.map((t) => f32(n * t.coarse)) };
}

/** Every value the quantizer can output for channel c (for tests and grid checks). */
export function twinGrid(twin: TwinUniform, c: number, bits: number): { fine: number[]; coarse: number[] } {
  const t = twinChannel(twin, c, bits);
  const n = twinLevels(bits);
  return {
    fine: Array.from({ length: t.hi - t.lo + 1 }, (_, i) => f32((t.lo + i) * t.fine)),
    coarse: Array.from({ length: n + 1 }, (_, k) => f32(k * t.coarse)),
  };
}

/** The twin quantizer of one channel as a function of one float32 value. */
export function twinScalarQuantizer(twin: TwinUniform, c: number, bits: number): (x: number) => number {
  const { fine, coarse, lo, hi, threshold } = twinChannel(twin, c, bits);
  const n = twinLevels(bits);
  return (x) => {
    if (x < threshold) {
      const k = roundHalfEven(f32(x / fine));
      return f32((k < lo ? lo : k > hi ? hi : k) * fine);
    }
    const k = roundHalfEven(f32(x / coarse));
    return f32((k < 0 ? 0 : k > n ? n : k) * coarse);
  };
}

/** Twin-quantizes a tensor; per-channel parameters need the channel layout (as `fakeQuantize`). */
export function twinQuantize(x: Float32Array, twin: TwinUniform, bits: number, layout?: ChannelLayout, out = new Float32Array(x.length)): Float32Array {
  const channels = twin.fine.length;
  const inner = channels === 1 ? x.length : layout!.inner;
  const quantizers = twin.fine.map((_, c) => twinScalarQuantizer(twin, c, bits));
  for (let start = 0, c = 0; start < x.length; start += inner, c = (c + 1) % channels) {
    const q = quantizers[c];
    const end = Math.min(x.length, start + inner);
    for (let i = start; i < end; i++) out[i] = q(x[i]);
  }
  return out;
}

/** The constants of the tfjs form, shaped like the site's bounds (see tfBoundsShape). */
export interface TfTwin {
  params: TwinUniform;
  fine: tf.Tensor;
  coarse: tf.Tensor;
  threshold: tf.Tensor;
}

export function toTfTwin(twin: TwinUniform, bits: number, shape: number[]): TfTwin {
  const ch = twin.fine.map((_, c) => twinChannel(twin, c, bits));
  const make = (values: number[]) => tf.keep(tf.tensor(values, shape, 'float32'));
  return { params: twin, fine: make(ch.map((t) => t.fine)), coarse: make(ch.map((t) => t.coarse)), threshold: make(ch.map((t) => t.threshold)) };
}

/** The twin quantizer as tfjs ops (straight-through rounding; the grids are constants). */
export function twinQuantTf(x: tf.Tensor, twin: TfTwin, bits: number): tf.Tensor {
  const n = twinLevels(bits);
  const fineQ = tf.mul(tf.clipByValue(steRound(tf.div(x, twin.fine)), twin.params.signed ? -n : 0, twin.params.signed ? 0 : n), twin.fine);
  const coarseQ = tf.mul(tf.clipByValue(steRound(tf.div(x, twin.coarse)), 0, n), twin.coarse);
  return tf.where(tf.less(x, twin.threshold), fineQ, coarseQ);
}

/**
 * The twin quantizer as ONNX nodes. `constant(values, hint)` makes a per-channel (or scalar) constant that
 * broadcasts against x (onnx.ts's boundsConstant for the site).
 */
export function twinQuantNodes(
  g: GraphBuilder, x: string, twin: TwinUniform, bits: number, constant: (values: number[], hint: string) => string, id: string,
): string {
  const n = twinLevels(bits);
  const ch = twin.fine.map((_, c) => twinChannel(twin, c, bits));
  const fine = constant(ch.map((t) => t.fine), `${id}.twin_fine`);
  const coarse = constant(ch.map((t) => t.coarse), `${id}.twin_coarse`);
  const threshold = constant(ch.map((t) => t.threshold), `${id}.twin_threshold`);
  const grid = (step: string, lo: number, hi: number) =>
    g.op('Mul', [g.op('Clip', [g.op('Round', [g.op('Div', [x, step])]), g.scalar(lo, 'twin_lo'), g.scalar(hi, 'twin_hi')]), step]);
  const fineQ = grid(fine, twin.signed ? -n : 0, twin.signed ? 0 : n);
  const coarseQ = grid(coarse, 0, n);
  return g.op('Where', [g.op('Less', [x, threshold]), fineQ, coarseQ], undefined, `${id}.fq`);
}

/**
 * Why a site's twin parameters are invalid, or undefined: activation sites only, one fine step and shift per
 * bound, fine steps finite and > 0, shifts integers in [0, MAX_TWIN_SHIFT], lower/upper equal to the span
 * (twinRange), no noise alongside.
 */
export function twinProblem(site: { id: string; role: string }, bounds: { lower: number[]; upper: number[]; noise?: number[]; twin?: TwinUniform }, bits: number): string | undefined {
  const twin = bounds.twin;
  if (!twin) return undefined;
  const at = `at quantizer '${site.id}'`;
  if (site.role !== 'activation') return `twin-uniform grids ${at}, which is a ${site.role} site (activations only)`;
  if (bounds.noise) return `both twin-uniform grids and noise ${at} (one or the other)`;
  const want = bounds.lower.length;
  if (twin.fine.length !== want || twin.shift.length !== want) return `twin ${twin.fine.length}/${twin.shift.length} fine steps/shifts ${at}, expected ${want}`;
  const badFine = twin.fine.find((d) => !(Number.isFinite(d) && f32(d) > 0));
  if (badFine !== undefined) return `twin fine step ${badFine} ${at} (must be finite and > 0)`;
  const badShift = twin.shift.find((m) => !(Number.isInteger(m) && m >= 0 && m <= MAX_TWIN_SHIFT));
  if (badShift !== undefined) return `twin shift ${badShift} ${at} (integers 0..${MAX_TWIN_SHIFT})`;
  const range = twinRange(twin, bits);
  const c = range.upper.findIndex((u, i) => !Number.isFinite(u) || f32(bounds.upper[i]) !== u || f32(bounds.lower[i]) !== range.lower[i]);
  if (c >= 0) return `bounds [${bounds.lower[c]}, ${bounds.upper[c]}] ${at} are not the twin grids' span [${range.lower[c]}, ${range.upper[c]}]`;
  return undefined;
}
