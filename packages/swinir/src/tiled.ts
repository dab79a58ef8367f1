import type { SwinIRConfig } from './config';
import type { ForwardOptions, NCHWArray } from './model';
import { SwinIRError } from './errors';

/** What tiling needs of a model: SwinIRModel, or anything with the same forward contract. */
export interface TileableModel {
  readonly config: Pick<SwinIRConfig, 'windowSize' | 'upscale'>;
  forward(input: NCHWArray, options?: Pick<ForwardOptions, 'hook'>): NCHWArray;
}

export interface TileOptions {
  /** Tile size in input pixels (the official `--tile`); must be a multiple of window_size. */
  tile: number;
  /** Overlap between neighbouring tiles (the official `--tile_overlap`, default 32). */
  overlap?: number;
  hook?: ForwardOptions['hook'];
  /** Called after each tile with (done, total). */
  onTile?: (done: number, total: number) => void;
}

/** Tile origins along one axis as `main_test_swinir.py` makes them: range(0, size-tile, stride) + [size-tile]. */
export function tileOrigins(size: number, tile: number, stride: number): number[] {
  const origins: number[] = [];
  for (let i = 0; i < size - tile; i += stride) origins.push(i);
  origins.push(size - tile);
  return origins;
}

/**
 * Tiled inference as the official `test()` with `--tile`: each tile goes through the model alone, outputs
 * are summed into the full-size canvas and divided by how many tiles covered each pixel (float32, same
 * order as the official loops). The tile is clamped to min(tile, H, W) as officially; a clamped tile need
 * not be a window multiple here, because the model pads it (the official code would assert).
 */
export function forwardTiled(model: TileableModel, input: NCHWArray, options: TileOptions): NCHWArray {
  const [n, c, h, w] = input.shape;
  const ws = model.config.windowSize;
  const sf = model.config.upscale;
  const overlap = options.overlap ?? 32;
  if (!Number.isInteger(options.tile) || options.tile <= 0 || options.tile % ws !== 0) {
    throw new SwinIRError(`tile ${options.tile} must be a positive multiple of window_size ${ws}`);
  }
  const tile = Math.min(options.tile, h, w);
  const stride = tile - overlap;
  if (!Number.isInteger(overlap) || overlap < 0 || stride <= 0) {
    throw new SwinIRError(`tile overlap ${overlap} must be an integer in [0, ${tile}) for tile ${tile}`);
  }
  const hOrigins = tileOrigins(h, tile, stride);
  const wOrigins = tileOrigins(w, tile, stride);
  const outH = h * sf;
  const outW = w * sf;
  const sum = new Float32Array(n * c * outH * outW);
  const count = new Float32Array(n * c * outH * outW);
  const patch = new Float32Array(n * c * tile * tile);
  const total = hOrigins.length * wOrigins.length;
  let done = 0;
  for (const y0 of hOrigins) {
    for (const x0 of wOrigins) {
      for (let plane = 0; plane < n * c; plane++) {
        for (let y = 0; y < tile; y++) {
          const src = plane * h * w + (y0 + y) * w + x0;
          patch.set(input.data.subarray(src, src + tile), plane * tile * tile + y * tile);
        }
      }
      const out = model.forward({ data: patch, shape: [n, c, tile, tile] }, { hook: options.hook });
      const ot = tile * sf;
      for (let plane = 0; plane < n * c; plane++) {
        for (let y = 0; y < ot; y++) {
          const dst = plane * outH * outW + (y0 * sf + y) * outW + x0 * sf;
          const src = plane * ot * ot + y * ot;
          for (let x = 0; x < ot; x++) {
            sum[dst + x] += out.data[src + x];
            count[dst + x] += 1;
          }
        }
      }
      options.onTile?.(++done, total);
    }
  }
  for (let i = 0; i < sum.length; i++) sum[i] /= count[i];
  return { data: sum, shape: [n, c, outH, outW] };
}
