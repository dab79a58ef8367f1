/**
 * NoisyQuant's noisy bias (Liu et al., CVPR 2023): a fixed vector N, one value per input feature of a
 * Linear, is added before the activation quantizer and removed after it, x^ = Q(x + N) - N. On hardware the
 * subtraction is folded into the Linear's bias (W(Q(x+N) - N) + b = W Q(x+N) + (b - W N)); in fake
 * quantization it is applied to the activation, float32 step by step in the same order by the typed-array
 * function, the tfjs ops and the ONNX nodes (Add, the uniform quantizer, Sub). N runs along the last axis,
 * which is the feature axis of a Linear input in every layout here ([.., C] in PyTorch and tfjs, [tokens, C]
 * in ONNX).
 */
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '@harmoq/data';
import type { GraphBuilder } from '@harmoq/swinir';

const f32 = Math.fround;

/** N = A (u - 1/2), u uniform in [0, 1): one float32 value per feature, in [-A/2, A/2]. */
export function uniformNoise(rng: Rng, features: number, amplitude: number): number[] {
  return Array.from({ length: features }, () => f32(amplitude * (rng.next() - 0.5)));
}

/**
 * Q(x + N) - N on a tensor whose last axis has noise.length features; `quantize(y, out)` is the uniform
 * quantizer (it may write into `out`).
 */
export function noisyQuantize(
  x: Float32Array, noise: readonly number[], quantize: (y: Float32Array, out: Float32Array<ArrayBuffer>) => Float32Array, out = new Float32Array(x.length),
): Float32Array {
  const c = noise.length;
  const n = Float32Array.from(noise);
  const shifted = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) shifted[i] = x[i] + n[i % c];
  const q = quantize(shifted, out);
  for (let i = 0; i < x.length; i++) out[i] = q[i] - n[i % c];
  return out;
}

/** Q(x + N) - N as tfjs ops; `noise` broadcasts along x's last axis. */
export function noisyQuantTf(x: tf.Tensor, noise: tf.Tensor, quantize: (y: tf.Tensor) => tf.Tensor): tf.Tensor {
  return tf.sub(quantize(tf.add(x, noise)), noise);
}

/** Q(x + N) - N as ONNX nodes; `noise` is a constant that broadcasts against x (per feature). */
export function noisyQuantNodes(g: GraphBuilder, x: string, noise: string, quantize: (y: string) => string, id: string): string {
  return g.op('Sub', [quantize(g.op('Add', [x, noise])), noise], undefined, `${id}.denoised`);
}

/** Why a site's noise is invalid, or undefined: Linear inputs only, one finite value per input feature. */
export function noiseProblem(site: { id: string; kind: string; channels: number }, noise: readonly number[] | undefined): string | undefined {
  if (!noise) return undefined;
  const at = `at quantizer '${site.id}'`;
  if (site.kind !== 'linear_input') return `noise ${at}, which is a ${site.kind} site (Linear inputs only)`;
  if (noise.length !== site.channels) return `${noise.length} noise values ${at}, expected one per input feature (${site.channels})`;
  const bad = noise.find((v) => !Number.isFinite(v));
  return bad === undefined ? undefined : `non-finite noise ${bad} ${at}`;
}
