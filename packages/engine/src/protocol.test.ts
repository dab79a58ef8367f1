import * as path from 'node:path';
import { dataDir, goldenDir, readImage, type Image } from '@harmoq/data';
import { presetConfig, type NCHWArray, type SwinIRConfig } from '@harmoq/swinir';
import { EngineError, flipPadToWindow, loadRunner, roundHalfEven, runTiled, superResolve, tensorToImage, type SRRunner } from './index';

describe('protocol pieces', () => {
  test('flip padding repeats the edge row/column and always adds 1..window', () => {
    // 1 x 1 x 3 x 2 image [[1, 2], [3, 4], [5, 6]], window 4: h 3 -> 4 (pad 1), w 2 -> 4 (pad 2).
    const out = flipPadToWindow({ data: Float32Array.from([1, 2, 3, 4, 5, 6]), shape: [1, 1, 3, 2] }, 4);
    expect(out.shape).toEqual([1, 1, 4, 4]);
    expect(Array.from(out.data)).toEqual([1, 2, 2, 1, 3, 4, 4, 3, 5, 6, 6, 5, 5, 6, 6, 5]);
    // A multiple of the window still gets a full window more, mirrored.
    const full = flipPadToWindow({ data: new Float32Array(16).map((_, i) => i), shape: [1, 1, 4, 4] }, 4);
    expect(full.shape).toEqual([1, 1, 8, 8]);
    expect(full.data[4 * 8 + 0]).toBe(12); // row 4 = row 3
    expect(full.data[7 * 8 + 7]).toBe(0); // row 7 = row 0, col 7 = col 0
    // Shorter than the pad: only 2h rows, as `cat(...)[:h + pad]` gives.
    expect(flipPadToWindow({ data: new Float32Array(2), shape: [1, 1, 1, 2] }, 8).shape).toEqual([1, 1, 2, 4]);
  });

  test('round half to even and uint8 conversion follow numpy', () => {
    expect([0.5, 1.5, 2.5, 254.5, 2.4999, 2.5001].map(roundHalfEven)).toEqual([0, 2, 2, 254, 2, 3]);
    // 0.5/255 * 255 in float32 is exactly 0.5 -> 0; 1.5/255 * 255 -> 1.5 -> 2; clamps; NaN -> 0.
    const v = [Math.fround(0.5 / 255), Math.fround(1.5 / 255), -0.2, 1.7, NaN, 0.2];
    const data = new Float32Array(6 * 3);
    v.forEach((x, i) => { data[i] = x; });
    const img = tensorToImage({ data, shape: [1, 3, 2, 3] });
    expect(img).toMatchObject({ width: 3, height: 2, channels: 3 });
    expect(Array.from({ length: 6 }, (_, i) => img.data[i * 3])).toEqual([
      roundHalfEven(Math.fround(Math.fround(0.5 / 255) * 255)), roundHalfEven(Math.fround(Math.fround(1.5 / 255) * 255)), 0, 255, 0, 51,
    ]);
  });

  // A runner whose output tells which call produced it: every output pixel of call k is k.
  function countingRunner(scale: number, windowSize: number): SRRunner & { calls: number[][] } {
    let call = 0;
    const calls: number[][] = [];
    return {
      engine: 'onnx', scale, description: 'fake', calls,
      config: { ...presetConfig('swinir-light', scale), windowSize } as SwinIRConfig,
      async forward(input, shape) {
        calls.push([...shape]);
        const [n, c, h, w] = shape;
        const data = new Float32Array(n * c * h * w * scale * scale);
        const per = c * h * w * scale * scale;
        for (let b = 0; b < n; b++) data.fill(++call, b * per, (b + 1) * per);
        return { data, shape: [n, c, h * scale, w * scale] };
      },
      async dispose() {},
    };
  }

  test('tiling: official origins, overlap averaging, batching does not change the result', async () => {
    const input: NCHWArray = { data: new Float32Array(3 * 24 * 40), shape: [1, 3, 24, 40] };
    const one = countingRunner(2, 8);
    const out = await runTiled(one, input, { tile: 16, tileOverlap: 8 });
    // Origins: h range(0, 8, 8) + [8] = [0, 8]; w range(0, 24, 8) + [24] = [0, 8, 16, 24]: 8 tiles of 16x16.
    expect(one.calls).toEqual(Array(8).fill([1, 3, 16, 16]));
    const at = (y: number, x: number) => out.data[y * 80 + x];
    expect(at(0, 0)).toBe(1); // only tile 1 (row 0, col 0)
    expect(at(0, 16)).toBe(1.5); // tiles 1 and 2 (cols 0 and 8 cover x 8..15 of the input)
    expect(at(16, 16)).toBe(3.5); // tiles 1, 2, 5, 6
    expect(at(47, 79)).toBe(8);
    const batched = countingRunner(2, 8);
    const out3 = await runTiled(batched, input, { tile: 16, tileOverlap: 8, tileBatch: 3 });
    expect(batched.calls).toEqual([[3, 3, 16, 16], [3, 3, 16, 16], [2, 3, 16, 16]]);
    expect(out3.data).toEqual(out.data);
    await expect(runTiled(one, input, { tile: 12 })).rejects.toThrow(EngineError);
    await expect(runTiled(one, input, { tile: 16, tileOverlap: 16 })).rejects.toThrow(/overlap 16/);
  });
});

// The official test of the house checkpoints on Set5 (main_test_swinir.py, whole images) gave these PNGs.
describe.each([2, 4])('superResolve, house SwinIR-light x%i on Set5, vs the official SR PNGs', (scale) => {
  let runner: SRRunner;
  beforeAll(async () => {
    runner = await loadRunner(path.join(dataDir(), `weights/house/swinir_light_x${scale}_house.pth`), { engine: 'onnx', arch: 'swinir-light', scale });
  });
  afterAll(() => runner.dispose());

  test.each(['baby', 'bird', 'butterfly', 'head', 'woman'])('%s: >= 99.9% of values identical, none off by more than 1', async (name) => {
    const lr = await readImage(path.join(dataDir(), `benchmarks/Set5/LR_bicubic/X${scale}/${name}x${scale}.png`));
    const golden: Image = await readImage(path.join(goldenDir(), `house_x${scale}_set5/sr/${name}.png`));
    const sr = await superResolve(runner, lr);
    expect([sr.width, sr.height]).toEqual([golden.width, golden.height]);
    let same = 0, worst = 0;
    for (let i = 0; i < sr.data.length; i++) {
      const d = Math.abs(sr.data[i] - golden.data[i]);
      if (d === 0) same++;
      worst = Math.max(worst, d);
    }
    expect(worst).toBeLessThanOrEqual(1);
    expect(same / sr.data.length).toBeGreaterThanOrEqual(0.999);
  });
});
