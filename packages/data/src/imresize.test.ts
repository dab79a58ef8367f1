import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataError } from './errors';
import { modcrop, readImage, type Image } from './image';
import { imresize, imresizeFloat, type FloatImage } from './imresize';
import { dataDir, goldenDir } from './paths';

const SETS = ['Set5', 'Set14', 'B100'] as const;
const SCALES = [2, 3, 4] as const;

function differingSamples(a: Image, b: Image): number {
  if (a.width !== b.width || a.height !== b.height) return Number.POSITIVE_INFINITY;
  let count = 0;
  for (let i = 0; i < a.data.length; i++) if (a.data[i] !== b.data[i]) count++;
  return count;
}

// Every shipped LR file (Set5, Set14, B100 at x2, x3, x4: 357 files) from its modcropped HR, bit for bit.
describe.each(SETS)('imresize reproduces every %s LR_bicubic file', (set) => {
  test('x2, x3 and x4, 0 differing samples', async () => {
    const root = path.join(dataDir(), 'benchmarks', set);
    const names = fs.readdirSync(path.join(root, 'HR')).filter((f) => f.endsWith('.png')).map((f) => f.slice(0, -4));
    const mismatches: string[] = [];
    let checked = 0;
    for (const name of names) {
      const [hr, ...lrs] = await Promise.all([
        readImage(path.join(root, 'HR', `${name}.png`)),
        ...SCALES.map((s) => readImage(path.join(root, 'LR_bicubic', `X${s}`, `${name}x${s}.png`))),
      ]);
      SCALES.forEach((s, k) => {
        const diff = differingSamples(imresize(modcrop(hr, s), 1 / s), lrs[k]);
        checked++;
        if (diff !== 0) mismatches.push(`${name} x${s}: ${diff} samples differ`);
      });
    }
    expect(mismatches).toEqual([]);
    expect(checked).toBe({ Set5: 5, Set14: 14, B100: 100 }[set] * 3);
  });
});

test('imresize x2 and x4 up reproduces the golden MATLAB-bicubic upsampling of the Set5 LR files', async () => {
  for (const s of [2, 4]) {
    for (const name of ['baby', 'bird', 'butterfly', 'head', 'woman']) {
      const lr = await readImage(path.join(dataDir(), `benchmarks/Set5/LR_bicubic/X${s}/${name}x${s}.png`));
      const golden = await readImage(path.join(goldenDir(), `metrics/bicubic_x${s}/${name}.png`));
      const up = imresize(lr, s);
      expect([up.width, up.height]).toEqual([lr.width * s, lr.height * s]);
      expect(differingSamples(up, golden)).toBe(0);
    }
  }
});

test('a grey image down and up by 2 reproduces the golden grey round trip', async () => {
  const hr = await readImage(path.join(goldenDir(), 'metrics/gray/butterfly_hr_gray.png'));
  const golden = await readImage(path.join(goldenDir(), 'metrics/gray/butterfly_bicubic_x2_gray.png'));
  expect(differingSamples(imresize(imresize(hr, 0.5), 2), golden)).toBe(0);
});

test('output size is ceil(size * scale), robust to float noise in 1/3', () => {
  const image = (width: number, height: number): Image => ({ width, height, channels: 3, data: new Uint8Array(width * height * 3) });
  expect(imresize(image(255, 12), 1 / 3)).toMatchObject({ width: 85, height: 4 });
  expect(imresize(image(10, 7), 0.5)).toMatchObject({ width: 5, height: 4 });
  expect(imresize(image(3, 5), 1.5)).toMatchObject({ width: 5, height: 8 });
  expect(() => imresize(image(4, 4), 0)).toThrow(DataError);
  expect(() => imresize(image(4, 4), Number.NaN)).toThrow(/scale NaN/);
});

describe('imresizeFloat', () => {
  // Cubic convolution with a = -0.5 reproduces linear functions, and every scale used here samples
  // symmetrically around each output centre, so a ramp must come back exactly (to float error)
  // wherever the kernel does not reach the mirrored border.
  test.each([2, 3, 4, 1 / 2, 1 / 3, 1 / 4])('keeps a linear ramp linear away from the borders, scale %f', (scale) => {
    const width = 48;
    const height = 36;
    const channels = 2;
    const data = new Float64Array(width * height * channels);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        data[(y * width + x) * channels] = 3 * y + 5 * x;
        data[(y * width + x) * channels + 1] = 100 - 0.5 * y + 0.25 * x;
      }
    }
    const out = imresizeFloat({ width, height, channels, data }, scale);
    const reach = scale < 1 ? 2 / scale + 1 : 3; // kernel half-width in input pixels, plus a margin
    let checked = 0;
    let worst = 0;
    for (let y = 0; y < out.height; y++) {
      const v = (y + 1) / scale + 0.5 * (1 - 1 / scale) - 1; // 0-based input coordinate of output row y
      if (v < reach || v > height - 1 - reach) continue;
      for (let x = 0; x < out.width; x++) {
        const u = (x + 1) / scale + 0.5 * (1 - 1 / scale) - 1;
        if (u < reach || u > width - 1 - reach) continue;
        const at = (y * out.width + x) * channels;
        worst = Math.max(worst, Math.abs(out.data[at] - (3 * v + 5 * u)), Math.abs(out.data[at + 1] - (100 - 0.5 * v + 0.25 * u)));
        checked++;
      }
    }
    expect(worst).toBeLessThan(1e-9);
    expect(checked).toBeGreaterThan(20);
  });

  test('differs from the uint8 path only by its missing intermediate rounding, and keeps Float32Array', async () => {
    const hr = modcrop(await readImage(path.join(dataDir(), 'benchmarks/Set5/HR/bird.png')), 4);
    const floatIn: FloatImage = { ...hr, data: Float32Array.from(hr.data) };
    const floatOut = imresizeFloat(floatIn, 1 / 4);
    expect(floatOut.data).toBeInstanceOf(Float32Array);
    const uint8Out = imresize(hr, 1 / 4);
    let equal = 0;
    for (let i = 0; i < uint8Out.data.length; i++) {
      const rounded = Math.min(255, Math.max(0, Math.round(floatOut.data[i])));
      expect(Math.abs(rounded - uint8Out.data[i])).toBeLessThanOrEqual(1);
      if (rounded === uint8Out.data[i]) equal++;
    }
    // Most samples agree; some must not, or the uint8 path would not be rounding between its passes.
    const fraction = equal / uint8Out.data.length;
    expect(fraction).toBeGreaterThan(0.7);
    expect(fraction).toBeLessThan(1);
  });

  test('rejects data that does not match the size', () => {
    expect(() => imresizeFloat({ width: 2, height: 2, channels: 1, data: new Float64Array(3) }, 2)).toThrow(DataError);
  });
});
