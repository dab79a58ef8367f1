import * as path from 'node:path';
import { initBackend } from './backend';
import { loadSwinIR } from './load';
import type { NCHWArray, SwinIRModel } from './model';
import { forwardTiled, tileOrigins, type TileableModel } from './tiled';
import { dataDir, maxAbsDiff } from './testing/golden';

/** A smooth pattern plus a little texture, in [0.15, 0.85]. */
function testImage(h: number, w: number, n = 1): NCHWArray {
  const data = new Float32Array(n * 3 * h * w);
  for (let b = 0; b < n; b++) for (let c = 0; c < 3; c++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    data[((b * 3 + c) * h + y) * w + x] = 0.5 + 0.3 * Math.sin(x / 5 + c + b) * Math.cos(y / 7) + 0.05 * (((x * 31 + y * 17 + c * 7) % 13) / 13 - 0.5);
  }
  return { data, shape: [n, 3, h, w] };
}

/** Per-pixel x2 "model": nearest upsampling plus a per-call constant, so tile averaging is observable. */
function mockModel(offsetPerCall: number): TileableModel & { calls: [number, number][] } {
  const calls: [number, number][] = [];
  return {
    calls,
    config: { windowSize: 4, upscale: 2 },
    forward(input) {
      const [n, c, h, w] = input.shape;
      const offset = calls.length * offsetPerCall;
      calls.push([h, w]);
      const out = new Float32Array(n * c * 4 * h * w);
      for (let p = 0; p < n * c; p++) for (let y = 0; y < 2 * h; y++) for (let x = 0; x < 2 * w; x++) {
        out[(p * 2 * h + y) * 2 * w + x] = input.data[(p * h + (y >> 1)) * w + (x >> 1)] + offset;
      }
      return { data: out, shape: [n, c, 2 * h, 2 * w] };
    },
  };
}

describe('tileOrigins', () => {
  it('is range(0, size - tile, stride) + [size - tile], as main_test_swinir.py', () => {
    expect(tileOrigins(100, 48, 16)).toEqual([0, 16, 32, 48, 52]);
    expect(tileOrigins(64, 48, 16)).toEqual([0, 16]);
    expect(tileOrigins(48, 48, 16)).toEqual([0]);
  });
});

describe('forwardTiled accumulation', () => {
  it('covers every pixel: a per-pixel model gives the untiled result exactly, for any batch', () => {
    const input = testImage(21, 30, 2);
    const model = mockModel(0);
    const tiled = forwardTiled(model, input, { tile: 12, overlap: 4 });
    expect(tiled.shape).toEqual([2, 3, 42, 60]);
    expect(maxAbsDiff(tiled.data, mockModel(0).forward(input).data)).toBeLessThanOrEqual(1e-7); // (v+v)/2 rounding; NaN if uncovered
    // h: 0, 8, 9; w: 0, 8, 16, 18 -> 12 tiles of 12x12, rows outer as in the official loops.
    expect(model.calls).toEqual(new Array(12).fill([12, 12]));
  });

  it('divides by the number of tiles covering each pixel', () => {
    const input = testImage(12, 20);
    // Tiles at w = 0, 4, 8 (tile 12, overlap 8); call k adds k. Output column 2x+1 for input column x:
    const tiled = forwardTiled(mockModel(1), input, { tile: 12, overlap: 8 });
    const base = mockModel(0).forward(input);
    const at = (arr: NCHWArray, x: number) => arr.data[5 * 40 + 2 * x + 1]; // channel 0, output row 5
    expect(at(tiled, 1) - at(base, 1)).toBeCloseTo(0, 5); // only tile 0
    expect(at(tiled, 5) - at(base, 5)).toBeCloseTo(0.5, 5); // tiles 0, 1
    expect(at(tiled, 9) - at(base, 9)).toBeCloseTo(1, 5); // tiles 0, 1, 2
    expect(at(tiled, 18) - at(base, 18)).toBeCloseTo(2, 5); // only tile 2
  });

  it('refuses tiles that are not window multiples and overlaps that leave no stride', () => {
    const input = testImage(16, 16);
    expect(() => forwardTiled(mockModel(0), input, { tile: 10 })).toThrow('tile 10 must be a positive multiple of window_size 4');
    expect(() => forwardTiled(mockModel(0), input, { tile: 16, overlap: 16 })).toThrow('tile overlap 16 must be an integer in [0, 16)');
  });
});

describe('forwardTiled with the house SwinIR-light x2 weights (wasm)', () => {
  let model: SwinIRModel;
  const input = testImage(48, 48);
  let untiled: NCHWArray;

  beforeAll(async () => {
    await initBackend('wasm');
    model = (await loadSwinIR(path.join(dataDir(), 'weights/house/swinir_light_x2_house.pth'), { arch: 'swinir-light', scale: 2 })).model;
    untiled = model.forward(input);
  });
  afterAll(() => model.dispose());

  it('a tile covering the whole image is the untiled forward, bit for bit', () => {
    expect(maxAbsDiff(forwardTiled(model, input, { tile: 48 }).data, untiled.data)).toBe(0);
    expect(maxAbsDiff(forwardTiled(model, input, { tile: 64 }).data, untiled.data)).toBe(0); // clamped to 48
  });

  it('overlapping tiles differ from the untiled forward only near seams, and only a little', () => {
    // tile 32, overlap 16: origins 0 and 16 on both axes, 4 tiles. Windows (and reflect padding at tile
    // borders) differ from the whole-image run, so exact equality is not expected.
    const tiled = forwardTiled(model, input, { tile: 32, overlap: 16 });
    let meanAbs = 0;
    for (let i = 0; i < tiled.data.length; i++) meanAbs += Math.abs(tiled.data[i] - untiled.data[i]);
    meanAbs /= tiled.data.length;
    expect(meanAbs).toBeLessThan(1e-3); // seen 3.6e-4, under 1/255
    expect(maxAbsDiff(tiled.data, untiled.data)).toBeLessThan(0.06); // seen 0.029
    expect(maxAbsDiff(tiled.data, untiled.data)).toBeGreaterThan(0);
  });
});
