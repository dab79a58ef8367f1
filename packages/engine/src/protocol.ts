/**
 * The official SwinIR test protocol (`main_test_swinir.py`, steps 2-5 in ../shared/golden/README.md):
 * uint8 RGB -> float32 /255 -> flip-pad to a window multiple (repeating the edge row) -> forward, whole or
 * tiled -> crop to h*s x w*s -> clamp 0..1 -> *255 (float32) -> round half to even -> uint8.
 */
import type { Image } from '@harmoq/data';
import { tileOrigins, type NCHWArray } from '@harmoq/swinir';
import { EngineError } from './errors';
import { cropTopLeft, type Shape4 } from './layout';
import type { SRRunner } from './types';

export interface SuperResolveOptions {
  /** Tile size (the official `--tile`): after clamping to min(tile, H, W) it must be a window multiple. */
  tile?: number;
  /** The official `--tile_overlap` (default 32). */
  tileOverlap?: number;
  /** Tiles per forward call (same-size tiles batch); default 1. Does not change the result. */
  tileBatch?: number;
}

/** uint8 HWC RGB -> float32 NCHW [1, 3, h, w] in 0..1, as `imread(...).astype(float32) / 255`. */
export function imageToTensor(image: Image): NCHWArray {
  const { width: w, height: h, data } = image;
  const out = new Float32Array(3 * h * w);
  for (let i = 0; i < h * w; i++) {
    for (let c = 0; c < 3; c++) out[c * h * w + i] = data[i * 3 + c] / 255; // float64 quotient rounds to the float32 one
  }
  return { data: out, shape: [1, 3, h, w] };
}

/**
 * `cat([img, flip(img, dim)], dim)[..., :size + pad]` along H then W, with pad = (size // ws + 1) * ws - size
 * (always 1..ws). Row h is row h-1, row h+1 is row h-2, ... For h < pad the result is only 2h long, as officially.
 */
export function flipPadToWindow(input: NCHWArray, windowSize: number): NCHWArray {
  const [n, c, h, w] = input.shape;
  const target = (size: number) => Math.min(2 * size, (Math.floor(size / windowSize) + 1) * windowSize);
  const hp = target(h), wp = target(w);
  const mirror = (i: number, size: number) => (i < size ? i : 2 * size - 1 - i);
  const out = new Float32Array(n * c * hp * wp);
  for (let plane = 0; plane < n * c; plane++) {
    for (let y = 0; y < hp; y++) {
      const src = plane * h * w + mirror(y, h) * w;
      const dst = plane * hp * wp + y * wp;
      out.set(input.data.subarray(src, src + w), dst);
      for (let x = w; x < wp; x++) out[dst + x] = input.data[src + mirror(x, w)];
    }
  }
  return { data: out, shape: [n, c, hp, wp] };
}

/**
 * The official `test()` with `--tile`: tiles of min(tile, H, W), outputs summed in float32 in the official
 * loop order (rows outer, columns inner), divided by the per-pixel tile count.
 */
export async function runTiled(runner: SRRunner, input: NCHWArray, options: SuperResolveOptions): Promise<NCHWArray> {
  const [n, c, h, w] = input.shape;
  const ws = runner.config.windowSize;
  const s = runner.scale;
  const overlap = options.tileOverlap ?? 32;
  const requested = options.tile ?? 0;
  if (!Number.isInteger(requested) || requested <= 0) throw new EngineError(`tile ${options.tile} is not a positive integer`);
  const tile = Math.min(requested, h, w);
  if (tile % ws !== 0) throw new EngineError(`tile size ${tile} (min of tile ${requested} and ${h}x${w}) is not a multiple of window_size ${ws}`);
  const stride = tile - overlap;
  if (!Number.isInteger(overlap) || overlap < 0 || stride <= 0) {
    throw new EngineError(`tile overlap ${overlap} must be an integer in [0, ${tile}) for tile ${tile}`);
  }
  const batch = options.tileBatch ?? 1;
  if (!Number.isInteger(batch) || batch < 1) throw new EngineError(`tileBatch ${options.tileBatch} is not a positive integer`);

  const origins: [number, number][] = [];
  for (const y0 of tileOrigins(h, tile, stride)) for (const x0 of tileOrigins(w, tile, stride)) origins.push([y0, x0]);
  const outH = h * s, outW = w * s, ot = tile * s;
  const sum = new Float32Array(n * c * outH * outW);
  const count = new Float32Array(n * c * outH * outW);
  for (let first = 0; first < origins.length; first += batch) {
    const group = origins.slice(first, first + batch);
    // Images stay separate batch entries: [group.length * n, c, tile, tile], tile-major.
    const patch = new Float32Array(group.length * n * c * tile * tile);
    group.forEach(([y0, x0], t) => {
      for (let plane = 0; plane < n * c; plane++) {
        for (let y = 0; y < tile; y++) {
          const src = plane * h * w + (y0 + y) * w + x0;
          patch.set(input.data.subarray(src, src + tile), ((t * n * c) + plane) * tile * tile + y * tile);
        }
      }
    });
    const out = await runner.forward(patch, [group.length * n, c, tile, tile]);
    group.forEach(([y0, x0], t) => {
      for (let plane = 0; plane < n * c; plane++) {
        for (let y = 0; y < ot; y++) {
          const dst = plane * outH * outW + (y0 * s + y) * outW + x0 * s;
          const src = ((t * n * c) + plane) * ot * ot + y * ot;
          for (let x = 0; x < ot; x++) {
            sum[dst + x] += out.data[src + x];
            count[dst + x] += 1;
          }
        }
      }
    });
  }
  for (let i = 0; i < sum.length; i++) sum[i] /= count[i]; // float64 quotient rounds to the float32 one
  return { data: sum, shape: [n, c, outH, outW] };
}

/** clamp(0, 1), *255 in float32, round half to even (numpy), uint8; NCHW [1, 3, h, w] -> HWC RGB. */
export function tensorToImage(output: NCHWArray): Image {
  const [n, c, h, w] = output.shape;
  if (n !== 1 || c !== 3) throw new EngineError(`cannot make an RGB image from shape [${output.shape.join(', ')}]`);
  const data = new Uint8Array(h * w * 3);
  const plane = h * w;
  for (let ch = 0; ch < 3; ch++) {
    for (let i = 0; i < plane; i++) {
      let v = output.data[ch * plane + i];
      v = v < 0 ? 0 : v > 1 ? 1 : v; // NaN stays NaN and becomes 0 below, as numpy's astype(uint8) gives 0
      data[i * 3 + ch] = roundHalfEven(Math.fround(v * 255));
    }
  }
  return { width: w, height: h, channels: 3, data };
}

/** numpy.round: nearest integer, ties to even. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Super-resolves one uint8 RGB image exactly as `main_test_swinir.py` does (whole image, or tiled with
 * `tile`), returning the uint8 RGB image it would save.
 */
export async function superResolve(runner: SRRunner, lr: Image, options: SuperResolveOptions = {}): Promise<Image> {
  if (runner.config.inChans !== 3) throw new EngineError(`superResolve needs a 3-channel model, got in_chans ${runner.config.inChans}`);
  const { width: w, height: h } = lr;
  const padded = flipPadToWindow(imageToTensor(lr), runner.config.windowSize);
  const output = options.tile === undefined
    ? await runner.forward(padded.data, padded.shape)
    : await runTiled(runner, padded, options);
  const s = runner.scale;
  const shape = output.shape as Shape4;
  return tensorToImage({ data: cropTopLeft(output.data, shape, h * s, w * s), shape: [1, 3, h * s, w * s] });
}
