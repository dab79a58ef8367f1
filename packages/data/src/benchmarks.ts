import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataError } from './errors';
import { cropTopLeft, readImage, type Image } from './image';
import { imresize } from './imresize';
import { dataDir as defaultDataDir } from './paths';

/** One benchmark set: where it lives under `<data>/benchmarks/` and how its LR files are named. */
export interface BenchmarkSpec {
  /** Folder under `<data>/benchmarks`; holds `HR/` and `LR_bicubic/X<s>/`. */
  readonly folder: string;
  /** Candidate LR file names for an HR file stem, first match wins. */
  readonly lrNames: (stem: string, scale: number, ext: string) => readonly string[];
  /** Where to get the set when it is missing (shown in the error). */
  readonly source: string;
}

const edsrLayout = (stem: string, scale: number, ext: string) => [`${stem}x${scale}${ext}`];
const sharedSource = 'it ships in the shared data folder (HARMOQ_DATA=../shared/data), or run `npx zx scripts/setup-data.mjs`';

/** The benchmark sets, by the names the CLI and the experiments use. */
export const BENCHMARKS = {
  Set5: { folder: 'Set5', lrNames: edsrLayout, source: sharedSource },
  Set14: { folder: 'Set14', lrNames: edsrLayout, source: sharedSource },
  B100: { folder: 'B100', lrNames: edsrLayout, source: sharedSource },
  Urban100: {
    folder: 'Urban100',
    lrNames: edsrLayout,
    source:
      'copy benchmark/Urban100 (HR and LR_bicubic, EDSR layout, img001.png / img001x2.png) from GitHub ryujaehun/baseline ' +
      'at commit c9e99474f11e14db836b378f00068287b0eccd43 (about 200 MB); LR files that are missing are made with imresize',
  },
  Manga109: {
    folder: 'Manga109',
    // 2DQuant names its LR files <name>_LRBI_x<s>; the EDSR-style <name>x<s> is accepted too.
    lrNames: (stem: string, scale: number, ext: string) => [`${stem}_LRBI_x${scale}${ext}`, `${stem}x${scale}${ext}`],
    source:
      'copy the HR images into HR/ (e.g. CManga109/ of GitHub majedelhelou/denoising_datasets at commit ' +
      '58234876fef6f1b56306705c78dfd40cdb837b86); no LR copy is published, the LR images are made with imresize',
  },
} as const satisfies Record<string, BenchmarkSpec>;

export type BenchmarkName = keyof typeof BENCHMARKS;

/** One image of a benchmark set. `lrPath` is null when no LR file exists; `loadPair` then makes it. */
export interface BenchmarkEntry {
  readonly name: string;
  readonly hrPath: string;
  readonly lrPath: string | null;
}

/** Resolves a set name (case-insensitive) or throws a DataError listing the choices. */
export function benchmarkName(name: string): BenchmarkName {
  const choices = Object.keys(BENCHMARKS) as BenchmarkName[];
  const found = choices.find((c) => c.toLowerCase() === name.toLowerCase());
  if (!found) throw new DataError(`unknown dataset '${name}' (choices: ${choices.join(', ')})`, { value: name, choices });
  return found;
}

function checkScale(scale: number): void {
  if (!Number.isInteger(scale) || scale < 2) {
    throw new DataError(`scale ${scale} must be an integer >= 2 (e.g. 2, 3, 4)`, { value: String(scale) });
  }
}

/** Python's sorted() on str compares code points, which is UTF-8 byte order. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * The images of a set at one scale, in the order of the official test (`sorted(glob(HR/*))`). Only `.png`
 * files are listed (every known set is PNG); dotfiles are skipped.
 */
export function listBenchmark(name: string, scale: number, dataDir: string = defaultDataDir()): BenchmarkEntry[] {
  const set = benchmarkName(name);
  checkScale(scale);
  const spec: BenchmarkSpec = BENCHMARKS[set];
  const setDir = path.join(dataDir, 'benchmarks', spec.folder);
  const hrDir = path.join(setDir, 'HR');
  const hrFiles = fs.existsSync(hrDir)
    ? fs.readdirSync(hrDir).filter((f) => !f.startsWith('.') && path.extname(f).toLowerCase() === '.png')
    : [];
  if (hrFiles.length === 0) {
    throw new DataError(`dataset ${set} not found: no HR .png files in '${hrDir}'. To get it: ${spec.source}`, { value: hrDir });
  }
  const lrDir = path.join(setDir, 'LR_bicubic', `X${scale}`);
  return hrFiles
    .map((file) => path.join(hrDir, file))
    .sort(byteOrder)
    .map((hrPath) => {
      const ext = path.extname(hrPath);
      const stem = path.basename(hrPath, ext);
      const lrPath = spec.lrNames(stem, scale, ext).map((f) => path.join(lrDir, f)).find((p) => fs.existsSync(p));
      return { name: stem, hrPath, lrPath: lrPath ?? null };
    });
}

/** An HR/LR pair ready for scoring. `hr` is cropped top-left to `lr` x scale. */
export interface ImagePair {
  readonly hr: Image;
  readonly lr: Image;
  /** True when no LR file existed and `lr` was made with MATLAB-exact imresize from the cropped HR. */
  readonly lrGenerated: boolean;
}

/**
 * Reads one pair: the HR image cropped top-left to (floor(W/s)*s, floor(H/s)*s), as the official test crops
 * its ground truth, and the LR image (or, with no LR file, `imresize(croppedHr, 1/s)`). Throws a DataError
 * when the LR size is not HR/s.
 */
export async function loadPair(entry: BenchmarkEntry, scale: number): Promise<ImagePair> {
  checkScale(scale);
  const full = await readImage(entry.hrPath);
  const width = Math.floor(full.width / scale) * scale;
  const height = Math.floor(full.height / scale) * scale;
  if (width === 0 || height === 0) {
    throw new DataError(`HR image '${entry.hrPath}' (${full.width}x${full.height}) is smaller than the scale ${scale}`);
  }
  const hr = cropTopLeft(full, width, height);
  if (entry.lrPath === null) return { hr, lr: imresize(hr, 1 / scale), lrGenerated: true };
  const lr = await readImage(entry.lrPath);
  if (lr.width * scale !== width || lr.height * scale !== height) {
    throw new DataError(
      `LR image '${entry.lrPath}' is ${lr.width}x${lr.height}, expected ${width / scale}x${height / scale} ` +
        `(HR '${entry.hrPath}' ${full.width}x${full.height} / ${scale})`,
      { value: entry.lrPath },
    );
  }
  return { hr, lr, lrGenerated: false };
}

/** The calibration images (`<data>/calibration/*.png`), sorted by byte order of their paths. */
export function listCalibration(dataDir: string = defaultDataDir()): string[] {
  const dir = path.join(dataDir, 'calibration');
  const files = fs.existsSync(dir)
    ? fs.readdirSync(dir).filter((f) => !f.startsWith('.') && path.extname(f).toLowerCase() === '.png')
    : [];
  if (files.length === 0) {
    throw new DataError(`no calibration .png files in '${dir}'; run \`npx zx scripts/setup-data.mjs\` or set HARMOQ_DATA=../shared/data`, {
      value: dir,
    });
  }
  return files.map((f) => path.join(dir, f)).sort(byteOrder);
}
