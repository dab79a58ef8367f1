import * as fs from 'node:fs';
import * as path from 'node:path';
import { listBenchmark, loadPair, writePng, type Image } from '@harmoq/data';
import { calculateAll } from '@harmoq/metrics';

/** Per-image metrics, as the official test script prints them (Y channel and RGB, border crop = scale). */
export interface ImageMetrics {
  name: string;
  psnr_y: number;
  ssim_y: number;
  psnr: number;
  ssim: number;
}

/** The `harmoq eval --json` contract: dataset means at the top level, then one row per image. */
export interface EvalReport {
  dataset: string;
  scale: number;
  psnr_y: number;
  ssim_y: number;
  psnr: number;
  ssim: number;
  seconds: number;
  images: ImageMetrics[];
}

export interface EvaluateOptions {
  dataset: string;
  scale: number;
  dataDir: string;
  /** Super-resolves one LR image (uint8 HWC RGB) to the SR image the protocol scores. */
  upscale: (lr: Image, name: string) => Promise<Image>;
  /** Writes each SR image as `<dir>/<name>.png` (atomic), as `main_test_swinir.py` saves them. */
  saveSrDir?: string;
  /** Called after each image with the count done and the total. */
  onImage?: (done: number, total: number, row: ImageMetrics) => void;
}

/**
 * Scores an upscaler on a benchmark set with the official SwinIR protocol: HR cropped to LR*scale
 * (top-left), border crop = scale, dataset numbers = arithmetic mean of per-image numbers.
 * `seconds` counts only the upscaler, not PNG decoding or metrics.
 */
export async function evaluate(opts: EvaluateOptions): Promise<EvalReport> {
  const entries = listBenchmark(opts.dataset, opts.scale, opts.dataDir);
  if (opts.saveSrDir) fs.mkdirSync(opts.saveSrDir, { recursive: true });
  const images: ImageMetrics[] = [];
  let seconds = 0;
  for (const entry of entries) {
    const { hr, lr } = await loadPair(entry, opts.scale);
    const started = process.hrtime.bigint();
    const sr = await opts.upscale(lr, entry.name);
    seconds += Number(process.hrtime.bigint() - started) / 1e9;
    if (sr.width !== hr.width || sr.height !== hr.height) {
      throw new Error(`upscaler returned ${sr.width}x${sr.height} for ${entry.name}, expected ${hr.width}x${hr.height}`);
    }
    const m = calculateAll(sr, hr, opts.scale);
    const row = { name: entry.name, psnr_y: m.psnr_y, ssim_y: m.ssim_y, psnr: m.psnr, ssim: m.ssim };
    images.push(row);
    if (opts.saveSrDir) await writePng(path.join(opts.saveSrDir, `${entry.name}.png`), sr);
    opts.onImage?.(images.length, entries.length, row);
  }
  const mean = (k: keyof Omit<ImageMetrics, 'name'>) => images.reduce((a, r) => a + r[k], 0) / images.length;
  return {
    dataset: opts.dataset, scale: opts.scale,
    psnr_y: mean('psnr_y'), ssim_y: mean('ssim_y'), psnr: mean('psnr'), ssim: mean('ssim'),
    seconds, images,
  };
}
