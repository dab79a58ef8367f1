import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { craftPng } from './craft-png';
import { DataError } from './errors';
import { cropTopLeft, modcrop, readImage, writePng, type Image } from './image';
import { dataDir } from './paths';

const set14 = (name: string) => path.join(dataDir(), 'benchmarks/Set14/HR', `${name}.png`);
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-data-image-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function readCrafted(name: string, png: Buffer): Promise<number[]> {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, png);
  const image = await readImage(file);
  return [...image.data];
}

describe('readImage', () => {
  test('Set14 bridge (a 1-channel PNG) reads as 3 equal channels holding the stored grey values', async () => {
    const image = await readImage(set14('bridge'));
    const grey = await sharp(set14('bridge')).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    expect(grey.info.channels).toBe(1);
    expect([image.width, image.height, image.channels]).toEqual([grey.info.width, grey.info.height, 3]);
    for (let p = 0; p < grey.data.length; p++) {
      const v = grey.data[p];
      if (image.data[3 * p] !== v || image.data[3 * p + 1] !== v || image.data[3 * p + 2] !== v) {
        throw new Error(`pixel ${p}: ${image.data.subarray(3 * p, 3 * p + 3).join(',')} vs grey ${v}`);
      }
    }
    expect(new Set(grey.data).size).toBe(64); // bridge uses 64 grey levels: a constant image would not pass
  });

  test('an RGB PNG keeps R, G, B in that order', async () => {
    expect(await readCrafted('rgb.png', craftPng({ width: 2, height: 1, colorType: 2, bitDepth: 8, samples: [1, 2, 3, 250, 128, 0] })))
      .toEqual([1, 2, 3, 250, 128, 0]);
  });

  test('16-bit samples keep their high byte (v >> 8), grey and RGB', async () => {
    const samples16 = [0x1234, 0xffff, 0x00ff, 0x80ff, 0x7fff, 0x0100];
    const high = samples16.map((v) => v >> 8);
    expect(await readCrafted('rgb16.png', craftPng({ width: 2, height: 1, colorType: 2, bitDepth: 16, samples: samples16 }))).toEqual(high);
    expect(await readCrafted('grey16.png', craftPng({ width: 6, height: 1, colorType: 0, bitDepth: 16, samples: samples16 })))
      .toEqual(high.flatMap((v) => [v, v, v]));
  });

  test('alpha is dropped, not composited (grey+alpha, RGBA, palette with tRNS)', async () => {
    expect(await readCrafted('ga.png', craftPng({ width: 2, height: 1, colorType: 4, bitDepth: 8, samples: [10, 0, 200, 128] })))
      .toEqual([10, 10, 10, 200, 200, 200]);
    expect(await readCrafted('rgba.png', craftPng({ width: 1, height: 1, colorType: 6, bitDepth: 8, samples: [10, 20, 30, 0] })))
      .toEqual([10, 20, 30]);
    const palette = craftPng({
      width: 2, height: 1, colorType: 3, bitDepth: 8, samples: [1, 0], palette: [1, 2, 3, 250, 251, 252], transparency: [255, 7],
    });
    expect(await readCrafted('palette.png', palette)).toEqual([250, 251, 252, 1, 2, 3]);
  });

  test('a truncated PNG, a text file and a missing file give a DataError naming the file', async () => {
    const truncated = path.join(tmp, 'truncated.png');
    fs.writeFileSync(truncated, fs.readFileSync(set14('bridge')).subarray(0, 4000));
    const text = path.join(tmp, 'notes.png');
    fs.writeFileSync(text, 'not an image');
    for (const file of [truncated, text, path.join(tmp, 'missing.png')]) {
      const err = await readImage(file).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(DataError);
      expect((err as DataError).message).toContain(file);
    }
  });
});

describe('writePng', () => {
  test('round trip of a benchmark image and of seeded random pixels is bit-exact', async () => {
    const original = await readImage(path.join(dataDir(), 'benchmarks/Set5/HR/butterfly.png'));
    let seed = 12345;
    const noise = new Uint8Array(37 * 23 * 3).map(() => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; // LCG: seeded, reproducible
      return seed >>> 24;
    });
    for (const image of [original, { width: 37, height: 23, channels: 3, data: noise } as Image]) {
      const file = path.join(tmp, `roundtrip-${image.width}.png`);
      await writePng(file, image);
      const back = await readImage(file);
      expect([back.width, back.height]).toEqual([image.width, image.height]);
      expect(Buffer.compare(Buffer.from(back.data), Buffer.from(image.data))).toBe(0);
    }
  });

  test('leaves no temp file behind, and a write into a missing folder is a DataError that creates nothing', async () => {
    const image: Image = { width: 2, height: 2, channels: 3, data: new Uint8Array(12).fill(7) };
    const dir = fs.mkdtempSync(path.join(tmp, 'atomic-'));
    await writePng(path.join(dir, 'a.png'), image);
    await writePng(path.join(dir, 'a.png'), { ...image, data: new Uint8Array(12).fill(9) });
    expect(fs.readdirSync(dir)).toEqual(['a.png']);
    expect([...(await readImage(path.join(dir, 'a.png'))).data]).toEqual(new Array(12).fill(9));
    await expect(writePng(path.join(dir, 'nope', 'b.png'), image)).rejects.toThrow(DataError);
    expect(fs.readdirSync(dir)).toEqual(['a.png']);
  });

  test('refuses an image whose data does not match its size', async () => {
    const bad = { width: 3, height: 2, channels: 3, data: new Uint8Array(17) } as Image;
    await expect(writePng(path.join(tmp, 'bad.png'), bad)).rejects.toThrow(/17 bytes for 3x2x3/);
    expect(fs.existsSync(path.join(tmp, 'bad.png'))).toBe(false);
  });
});

test('modcrop and cropTopLeft keep the top-left part', () => {
  const data = Uint8Array.from({ length: 5 * 4 * 3 }, (_, i) => i);
  const image: Image = { width: 5, height: 4, channels: 3, data };
  const cropped = modcrop(image, 2);
  expect([cropped.width, cropped.height]).toEqual([4, 4]);
  expect([...cropped.data.subarray(0, 12)]).toEqual([...data.subarray(0, 12)]);
  expect([...cropped.data.subarray(12, 15)]).toEqual([...data.subarray(15, 18)]); // row 1 starts at pixel 5
  expect(modcrop(image, 3)).toMatchObject({ width: 3, height: 3 });
  expect(() => cropTopLeft(image, 6, 1)).toThrow(DataError);
  expect(() => modcrop(image, 6)).toThrow(/smaller than the scale 6/);
});
