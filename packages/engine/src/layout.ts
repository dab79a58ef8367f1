/** NCHW array helpers shared by the runners and the test protocol. */
import { EngineError } from './errors';

export type Shape4 = readonly [number, number, number, number];

export function checkShape(data: Float32Array, shape: Shape4, channels: number): void {
  const [n, c, h, w] = shape;
  if (shape.length !== 4 || ![n, c, h, w].every((d) => Number.isInteger(d) && d >= 1) || c !== channels) {
    throw new EngineError(`input shape [${shape.join(', ')}] is not [N, ${channels}, H, W] with positive sizes`);
  }
  if (data.length !== n * c * h * w) {
    throw new EngineError(`input has ${data.length} values but shape [${shape.join(', ')}] needs ${n * c * h * w}`);
  }
}

/**
 * `F.pad(x, (0, padW, 0, padH), 'reflect')` on the bottom/right: row h+i copies row h-2-i (no edge repeat).
 * PyTorch requires pad < size; callers check.
 */
export function reflectPadBottomRight(data: Float32Array, shape: Shape4, padH: number, padW: number): Float32Array {
  const [n, c, h, w] = shape;
  const hp = h + padH, wp = w + padW;
  const out = new Float32Array(n * c * hp * wp);
  for (let plane = 0; plane < n * c; plane++) {
    for (let y = 0; y < hp; y++) {
      const sy = y < h ? y : 2 * (h - 1) - y;
      const src = plane * h * w + sy * w;
      const dst = plane * hp * wp + y * wp;
      out.set(data.subarray(src, src + w), dst);
      for (let x = w; x < wp; x++) out[dst + x] = data[src + 2 * (w - 1) - x];
    }
  }
  return out;
}

/** Top-left crop of every plane to outH x outW. */
export function cropTopLeft(data: Float32Array, shape: Shape4, outH: number, outW: number): Float32Array {
  const [n, c, h, w] = shape;
  if (outH === h && outW === w) return data;
  const out = new Float32Array(n * c * outH * outW);
  for (let plane = 0; plane < n * c; plane++) {
    for (let y = 0; y < outH; y++) {
      const src = plane * h * w + y * w;
      out.set(data.subarray(src, src + outW), plane * outH * outW + y * outW);
    }
  }
  return out;
}
