/**
 * Calibration patches for post-training quantization: seeded random crops of the images in
 * `<data>/calibration/*.png`. Each HR crop (patchSize x scale square) is shrunk to the LR patch with the
 * MATLAB-exact uint8 `imresize`, then HR and LR get the same random flip/rotation (one of the 8 symmetries of
 * the square, as BasicSR's hflip + vflip + rot90 augmentation gives). Held-out patches come from different
 * images than the calibration patches, so a method can select a setting on data it was not calibrated on.
 * Everything random draws from `seededRng`; the same options give the same patches on every machine.
 */
import * as path from 'node:path';
import { listCalibration } from './benchmarks';
import { DataError } from './errors';
import { readImage, type Image } from './image';
import { imresize } from './imresize';
import { dataDir as defaultDataDir } from './paths';

/** A small seeded PRNG (mulberry32): 32-bit state, uniform floats in [0, 1). Never Math.random. */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** A new generator whose stream is determined by this one's seed and `stream` (independent sequences). */
  fork(stream: number): Rng;
  /** Fisher-Yates shuffle of a copy. */
  shuffle<T>(items: readonly T[]): T[];
  readonly seed: number;
}

/** Mixes a 32-bit value (the murmur3 finalizer), so nearby seeds give unrelated streams. */
function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export function seededRng(seed: number): Rng {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new DataError(`seed ${seed} must be an integer in 0..4294967295`, { value: String(seed) });
  }
  let state = mix32(seed ^ 0x9e3779b9);
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const rng: Rng = {
    seed,
    next,
    int: (n) => {
      if (!Number.isInteger(n) || n < 1) throw new DataError(`rng.int(${n}): n must be a positive integer`);
      return Math.floor(next() * n);
    },
    fork: (stream) => seededRng(mix32((seed ^ mix32(stream + 1)) >>> 0)),
    shuffle: (items) => {
      const out = [...items];
      for (let i = out.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [out[i], out[j]] = [out[j], out[i]];
      }
      return out;
    },
  };
  return rng;
}

export interface CalibrationPatchOptions {
  /** Upscale factor: the HR crop is patchSize * scale pixels square. */
  scale: number;
  /** LR patch side in pixels. */
  patchSize: number;
  /** Number of calibration patches. */
  count: number;
  /** Number of held-out patches (0: no held-out set). */
  heldOutCount: number;
  /** Share of the usable images reserved for held-out patches (at least one image each side). Default 0.25. */
  heldOutFraction?: number;
  seed: number;
  /** Random flips and 90-degree rotations (default true). */
  augment?: boolean;
  /** Data folder holding `calibration/` (default: dataDir()). */
  dataDir?: string;
}

/** Where one patch came from. `transform` bit 0: horizontal flip, bit 1: vertical flip, bit 2: transpose. */
export interface PatchSource {
  file: string;
  x: number;
  y: number;
  transform: number;
}

/** Patches as float32 NCHW batches in 0..1 (LR: the model input; HR: its ground truth). */
export interface PatchSet {
  lr: Float32Array;
  lrShape: [number, number, number, number];
  hr: Float32Array;
  hrShape: [number, number, number, number];
  sources: PatchSource[];
}

/** Everything needed to regenerate the patches, as recorded in a qparams file. */
export interface CalibrationDescription {
  folder: string;
  calibrationFiles: string[];
  heldOutFiles: string[];
  seed: number;
  scale: number;
  patchSize: number;
  count: number;
  heldOutCount: number;
  heldOutFraction: number;
  augment: boolean;
  resize: 'matlab-imresize-uint8';
}

export interface CalibrationData {
  calibration: PatchSet;
  heldOut: PatchSet;
  description: CalibrationDescription;
}

function checkCount(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new DataError(`${name} ${value} must be an integer >= ${min}`, { value: String(value) });
  }
}

/** One of the 8 symmetries of a square HWC image. */
export function transformSquare(image: Image, transform: number): Image {
  const n = image.width;
  if (image.height !== n) throw new DataError(`transformSquare needs a square image, got ${image.width}x${image.height}`);
  if (transform === 0) return image;
  const hflip = (transform & 1) !== 0, vflip = (transform & 2) !== 0, transpose = (transform & 4) !== 0;
  const out = new Uint8Array(image.data.length);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      let sx = hflip ? n - 1 - x : x;
      let sy = vflip ? n - 1 - y : y;
      if (transpose) [sx, sy] = [sy, sx];
      const d = (y * n + x) * 3, s = (sy * n + sx) * 3;
      out[d] = image.data[s];
      out[d + 1] = image.data[s + 1];
      out[d + 2] = image.data[s + 2];
    }
  }
  return { width: n, height: n, channels: 3, data: out };
}

function crop(image: Image, x: number, y: number, size: number): Image {
  const data = new Uint8Array(size * size * 3);
  for (let r = 0; r < size; r++) {
    const src = ((y + r) * image.width + x) * 3;
    data.set(image.data.subarray(src, src + size * 3), r * size * 3);
  }
  return { width: size, height: size, channels: 3, data };
}

/** Writes an HWC uint8 image as plane-major float32 /255 at batch index `n`. */
function writeNchw(image: Image, out: Float32Array, n: number): void {
  const hw = image.width * image.height;
  const base = n * 3 * hw;
  for (let i = 0; i < hw; i++) {
    for (let c = 0; c < 3; c++) out[base + c * hw + i] = image.data[i * 3 + c] / 255;
  }
}

function cutPatches(
  images: { file: string; image: Image }[], count: number, patchSize: number, scale: number, augment: boolean, rng: Rng,
): PatchSet {
  const hp = patchSize * scale;
  const lr = new Float32Array(count * 3 * patchSize * patchSize);
  const hr = new Float32Array(count * 3 * hp * hp);
  const sources: PatchSource[] = [];
  for (let k = 0; k < count; k++) {
    const { file, image } = images[rng.int(images.length)];
    const x = rng.int(image.width - hp + 1);
    const y = rng.int(image.height - hp + 1);
    const transform = augment ? rng.int(8) : 0;
    const hrPatch = crop(image, x, y, hp);
    const lrPatch = imresize(hrPatch, 1 / scale);
    writeNchw(transformSquare(hrPatch, transform), hr, k);
    writeNchw(transformSquare(lrPatch, transform), lr, k);
    sources.push({ file, x, y, transform });
  }
  return { lr, lrShape: [count, 3, patchSize, patchSize], hr, hrShape: [count, 3, hp, hp], sources };
}

/**
 * Cuts the calibration and held-out patches. Images smaller than the HR crop are skipped; the usable ones
 * are shuffled with the seed and split by image. Calibration and held-out patches draw from separate
 * streams, so changing the held-out count leaves the calibration patches unchanged.
 */
export async function calibrationPatches(options: CalibrationPatchOptions): Promise<CalibrationData> {
  const { scale, patchSize, count, heldOutCount, seed } = options;
  const augment = options.augment ?? true;
  const fraction = options.heldOutFraction ?? 0.25;
  checkCount('scale', scale, 1);
  checkCount('patch size', patchSize, 1);
  checkCount('calibration patch count', count, 1);
  checkCount('held-out patch count', heldOutCount, 0);
  if (!(fraction > 0 && fraction < 1)) throw new DataError(`held-out fraction ${fraction} must be in (0, 1)`, { value: String(fraction) });
  const rng = seededRng(seed);
  const root = options.dataDir ?? defaultDataDir();
  const files = listCalibration(root);
  const hp = patchSize * scale;
  const images = await Promise.all(files.map(async (f) => ({ file: path.basename(f), image: await readImage(f) })));
  const usable = images.filter(({ image }) => image.width >= hp && image.height >= hp);
  const needed = heldOutCount > 0 ? 2 : 1;
  if (usable.length < needed) {
    const largest = images.reduce((a, b) => (Math.min(b.image.width, b.image.height) > Math.min(a.image.width, a.image.height) ? b : a));
    throw new DataError(
      `only ${usable.length} calibration image(s) in '${path.join(root, 'calibration')}' are at least ${hp}x${hp} ` +
        `(patch ${patchSize} x scale ${scale}); ${needed} needed. The largest is ${largest.file} ` +
        `${largest.image.width}x${largest.image.height}: use a smaller patch size`,
      { value: String(patchSize) },
    );
  }
  const order = rng.fork(0).shuffle(usable);
  const heldImages = heldOutCount > 0 ? Math.min(usable.length - 1, Math.max(1, Math.round(fraction * usable.length))) : 0;
  const heldOutSet = order.slice(0, heldImages);
  const calibrationSet = order.slice(heldImages);
  const byName = (a: { file: string }, b: { file: string }) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0);
  heldOutSet.sort(byName);
  calibrationSet.sort(byName);
  return {
    calibration: cutPatches(calibrationSet, count, patchSize, scale, augment, rng.fork(1)),
    heldOut: cutPatches(heldOutSet, heldOutCount, patchSize, scale, augment, rng.fork(2)),
    description: {
      folder: path.resolve(root, 'calibration'),
      calibrationFiles: calibrationSet.map((i) => i.file),
      heldOutFiles: heldOutSet.map((i) => i.file),
      seed, scale, patchSize, count, heldOutCount, heldOutFraction: fraction, augment,
      resize: 'matlab-imresize-uint8',
    },
  };
}
