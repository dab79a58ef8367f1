import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { calibrationPatches, seededRng, transformSquare, type CalibrationPatchOptions } from './calibration';
import { DataError } from './errors';
import { readImage, writePng, type Image } from './image';
import { imresize } from './imresize';
import { dataDir } from './paths';

const base: CalibrationPatchOptions = { scale: 2, patchSize: 16, count: 6, heldOutCount: 3, seed: 7 };

describe('seededRng', () => {
  test('the same seed gives the same stream; different seeds and forks differ', () => {
    const a = seededRng(42), b = seededRng(42), c = seededRng(43);
    const xs = Array.from({ length: 20 }, () => a.next());
    expect(Array.from({ length: 20 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 20 }, () => c.next())).not.toEqual(xs);
    const f1 = seededRng(42).fork(1), f2 = seededRng(42).fork(2);
    expect(f1.next()).not.toBe(f2.next());
  });

  test('int(n) is uniform enough and in range; shuffle is a permutation', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 1, max: 50 }), (seed, n) => {
      const rng = seededRng(seed);
      for (let i = 0; i < 50; i++) {
        const v = rng.int(n);
        if (!(Number.isInteger(v) && v >= 0 && v < n)) return false;
      }
      const items = Array.from({ length: n }, (_, i) => i);
      return [...rng.shuffle(items)].sort((x, y) => x - y).join() === items.join();
    }));
    const rng = seededRng(1);
    const counts = new Array(10).fill(0);
    for (let i = 0; i < 20000; i++) counts[rng.int(10)]++;
    for (const c of counts) expect(Math.abs(c - 2000)).toBeLessThan(200);
  });

  test('bad seeds are refused', () => {
    expect(() => seededRng(-1)).toThrow(DataError);
    expect(() => seededRng(1.5)).toThrow(/seed 1.5/);
  });
});

describe('transformSquare', () => {
  const img: Image = { width: 2, height: 2, channels: 3, data: Uint8Array.from([1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]) };
  const firstChannel = (i: Image) => [0, 1, 2, 3].map((p) => i.data[p * 3]);
  test('the 8 transforms are the 8 distinct symmetries of the square', () => {
    const all = Array.from({ length: 8 }, (_, t) => firstChannel(transformSquare(img, t)).join());
    expect(new Set(all).size).toBe(8);
    expect(firstChannel(transformSquare(img, 1))).toEqual([2, 1, 4, 3]); // horizontal flip
    expect(firstChannel(transformSquare(img, 2))).toEqual([3, 4, 1, 2]); // vertical flip
    expect(firstChannel(transformSquare(img, 4))).toEqual([1, 3, 2, 4]); // transpose
  });
});

describe('calibrationPatches on the shared calibration images', () => {
  test('deterministic for a seed; another seed gives other patches', async () => {
    const a = await calibrationPatches(base);
    const b = await calibrationPatches(base);
    expect(Array.from(a.calibration.lr)).toEqual(Array.from(b.calibration.lr));
    expect(a.calibration.sources).toEqual(b.calibration.sources);
    expect(a.heldOut.sources).toEqual(b.heldOut.sources);
    const c = await calibrationPatches({ ...base, seed: 8 });
    expect(c.calibration.sources).not.toEqual(a.calibration.sources);
  });

  test('held-out patches come from other images; changing their count keeps the calibration patches', async () => {
    const a = await calibrationPatches(base);
    const { calibrationFiles, heldOutFiles } = a.description;
    expect(heldOutFiles.length).toBeGreaterThan(0);
    expect(calibrationFiles.filter((f) => heldOutFiles.includes(f))).toEqual([]);
    for (const s of a.calibration.sources) expect(calibrationFiles).toContain(s.file);
    for (const s of a.heldOut.sources) expect(heldOutFiles).toContain(s.file);
    const more = await calibrationPatches({ ...base, heldOutCount: 5 });
    expect(more.calibration.sources).toEqual(a.calibration.sources);
    expect(more.heldOut.sources.slice(0, 3)).toEqual(a.heldOut.sources);
  });

  test('each LR patch is the MATLAB imresize of its HR crop, with the recorded flip/rotation', async () => {
    const a = await calibrationPatches({ ...base, scale: 3, patchSize: 10, count: 4 });
    const p = 10, hp = 30;
    expect(a.calibration.lrShape).toEqual([4, 3, p, p]);
    expect(a.calibration.hrShape).toEqual([4, 3, hp, hp]);
    for (let k = 0; k < 4; k++) {
      const src = a.calibration.sources[k];
      const full = await readImage(path.join(dataDir(), 'calibration', src.file));
      const hrData = new Uint8Array(hp * hp * 3);
      for (let r = 0; r < hp; r++) hrData.set(full.data.subarray(((src.y + r) * full.width + src.x) * 3, ((src.y + r) * full.width + src.x + hp) * 3), r * hp * 3);
      const hr: Image = { width: hp, height: hp, channels: 3, data: hrData };
      const lr = transformSquare(imresize(hr, 1 / 3), src.transform);
      const hrT = transformSquare(hr, src.transform);
      for (let c = 0; c < 3; c++) {
        for (let i = 0; i < p * p; i++) {
          expect(a.calibration.lr[(k * 3 + c) * p * p + i]).toBe(Math.fround(lr.data[i * 3 + c] / 255));
        }
        for (let i = 0; i < hp * hp; i += 37) expect(a.calibration.hr[(k * 3 + c) * hp * hp + i]).toBe(Math.fround(hrT.data[i * 3 + c] / 255));
      }
    }
    expect(new Set(a.calibration.sources.map((s) => s.transform)).size).toBeGreaterThan(1);
  });

  test('without augmentation every transform is the identity', async () => {
    const a = await calibrationPatches({ ...base, augment: false });
    expect(a.calibration.sources.every((s) => s.transform === 0)).toBe(true);
    expect(a.description.augment).toBe(false);
  });

  test('a patch larger than every image, a bad count and an empty folder are DataErrors naming the value', async () => {
    await expect(calibrationPatches({ ...base, patchSize: 300 })).rejects.toThrow(/at least 600x600.*largest is/);
    await expect(calibrationPatches({ ...base, count: 0 })).rejects.toThrow(/calibration patch count 0/);
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-calib-'));
    try {
      await expect(calibrationPatches({ ...base, dataDir: empty })).rejects.toThrow(/no calibration \.png files/);
      // One usable image cannot be split into calibration and held-out images.
      fs.mkdirSync(path.join(empty, 'calibration'));
      await writePng(path.join(empty, 'calibration', 'a.png'), { width: 40, height: 40, channels: 3, data: new Uint8Array(40 * 40 * 3) });
      await expect(calibrationPatches({ ...base, dataDir: empty })).rejects.toThrow(DataError);
      const only = await calibrationPatches({ ...base, heldOutCount: 0, dataDir: empty });
      expect(only.heldOut.sources).toEqual([]);
      expect(only.calibration.sources).toHaveLength(base.count);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });
});
