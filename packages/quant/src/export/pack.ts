/**
 * Bit packing of integer weight levels, and their unpacking as stock ONNX ops.
 *
 * Levels are written little-endian into one bit stream, b bits each, so every 8 values fill exactly b bytes.
 * In the graph a group of b bytes becomes one int64 word (Cast, Mul by 256^j, ReduceSum), and value i of
 * the group is (word / 2^(b*i)) mod 2^b (Div, Mod on int64). Every input is an initializer, so onnxruntime
 * folds the unpacking into a constant when the session loads: it costs nothing per inference.
 */
import type { GraphBuilder } from '@harmoq/swinir';
import { ConfigError } from '../errors';

/** The levels (each < 2^bits) packed b bits per value, padded with zeros to a whole number of 8-value groups. */
export function packBits(levels: Uint8Array, bits: number): Uint8Array {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new ConfigError(`cannot pack ${bits}-bit levels (choices: 1..8)`);
  const groups = Math.ceil(levels.length / 8);
  const out = new Uint8Array(groups * bits);
  const limit = 2 ** bits;
  for (let i = 0; i < levels.length; i++) {
    const k = levels[i];
    if (k >= limit) throw new ConfigError(`level ${k} at ${i} does not fit ${bits} bits`);
    const bit = i * bits;
    const byte = bit >> 3, shift = bit & 7;
    const wide = k << shift; // at most 15 bits: spans two bytes
    out[byte] |= wide & 0xff;
    if (wide > 0xff) out[byte + 1] |= wide >> 8;
  }
  return out;
}

/** The inverse of packBits, in TypeScript (tests and checks). */
export function unpackBits(packed: Uint8Array, bits: number, count: number): Uint8Array {
  const out = new Uint8Array(count);
  const mask = 2 ** bits - 1;
  for (let i = 0; i < count; i++) {
    const bit = i * bits;
    const byte = bit >> 3, shift = bit & 7;
    const wide = packed[byte] | ((packed[byte + 1] ?? 0) << 8);
    out[i] = (wide >> shift) & mask;
  }
  return out;
}

/** Adds `packed` as a uint8 initializer and the stock ops that unpack it to a uint8 tensor of `shape`. */
export function unpackNodes(g: GraphBuilder, packed: Uint8Array, bits: number, shape: number[], hint: string): string {
  const count = shape.reduce((a, b) => a * b, 1);
  const groups = packed.length / bits;
  if (!Number.isInteger(groups) || groups * 8 < count) throw new ConfigError(`packed tensor '${hint}' has ${packed.length} bytes, too few for ${count} ${bits}-bit values`);
  const bytes = g.constant(packed, [groups, bits], `${hint}.packed`);
  const word = g.op('ReduceSum', [
    g.op('Mul', [g.op('Cast', [bytes], { to: 7 }), g.int64(Array.from({ length: bits }, (_, j) => 256 ** j))]),
    g.int64([1]),
  ], { keepdims: 1 });
  const divisors = g.int64(Array.from({ length: 8 }, (_, i) => 2 ** (bits * i)));
  const values = g.op('Mod', [g.op('Div', [word, divisors]), g.int64([2 ** bits])]);
  let flat = g.op('Reshape', [values, g.int64([groups * 8])]);
  if (groups * 8 !== count) flat = g.op('Slice', [flat, g.int64([0]), g.int64([count]), g.int64([0])]);
  return g.op('Reshape', [g.op('Cast', [flat], { to: 2 }), g.int64(shape)], undefined, `${hint}.levels`);
}
