/**
 * Sensitivity probes: the float model and then each unit's quantizers alone (the rest float, from one qparams
 * file) on a benchmark set's images or their center crops, scored with the official protocol (Y channel and RGB,
 * border = scale). The float reference is rerun in every cell, on the same crops, so a cell's drops never mix
 * with another cell's images or code.
 */
import { createEngine, superResolve, type EngineName, type EngineOptions, type ImageMetrics } from '@harmoq/engine';
import { listBenchmark, loadPair, type Image, type ImagePair } from '@harmoq/data';
import { calculateAll } from '@harmoq/metrics';
import { quantizedEngineOptions, restrictQuantization, type BoundsMap, type QuantPlan } from '@harmoq/quant';
import type { SwinIRConfig } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import type { ProbeSpec } from './cells';
import { ExperimentError } from './errors';
import type { EvalResult } from './store';

type Means = Omit<ImageMetrics, 'name'>;

export interface ProbeUnitResult extends Means {
  name: string;
  sites: string[];
  seconds: number;
}

/** A probe cell's metrics.json: the float model's means on the probed images at the top level, then one row per unit. */
export interface ProbeResult extends EvalResult {
  crop: number | null;
  units: ProbeUnitResult[];
}

/** `image`'s w x h window at (x, y). */
function window(image: Image, x: number, y: number, w: number, h: number): Image {
  const data = new Uint8Array(w * h * 3);
  for (let row = 0; row < h; row++) {
    const src = ((y + row) * image.width + x) * 3;
    data.set(image.data.subarray(src, src + w * 3), row * w * 3);
  }
  return { width: w, height: h, channels: 3, data };
}

/** The LR center crop (at most `crop` pixels a side) and the HR pixels it maps to. */
export function centerCrop(pair: ImagePair, scale: number, crop: number | null): ImagePair {
  if (crop === null) return pair;
  const w = Math.min(crop, pair.lr.width), h = Math.min(crop, pair.lr.height);
  const x = Math.floor((pair.lr.width - w) / 2), y = Math.floor((pair.lr.height - h) / 2);
  return { ...pair, lr: window(pair.lr, x, y, w, h), hr: window(pair.hr, x * scale, y * scale, w * scale, h * scale) };
}

interface ProbeModel {
  config: SwinIRConfig;
  stateDict: StateDict;
  engine: EngineName;
  threads: number;
}

async function scoreImages(
  model: ProbeModel, options: Pick<EngineOptions, 'stateDict' | 'sites' | 'hook'>, images: readonly { name: string; pair: ImagePair }[], scale: number,
): Promise<Means & { seconds: number; images: ImageMetrics[]; backend: string }> {
  const runner = await createEngine({ engine: model.engine, config: model.config, threads: model.threads, ...options });
  const rows: ImageMetrics[] = [];
  const started = process.hrtime.bigint();
  try {
    for (const { name, pair } of images) {
      const m = calculateAll(await superResolve(runner, pair.lr), pair.hr, scale);
      rows.push({ name, psnr_y: m.psnr_y, ssim_y: m.ssim_y, psnr: m.psnr, ssim: m.ssim });
    }
  } finally {
    await runner.dispose();
  }
  const mean = (k: keyof Means) => rows.reduce((a, r) => a + r[k], 0) / rows.length;
  return {
    psnr_y: mean('psnr_y'), ssim_y: mean('ssim_y'), psnr: mean('psnr'), ssim: mean('ssim'),
    seconds: Number(process.hrtime.bigint() - started) / 1e9, images: rows, backend: runner.description,
  };
}

export interface ProbeRun {
  dataset: string;
  scale: number;
  dataDir: string;
  probe: ProbeSpec;
  plan: QuantPlan;
  bounds: BoundsMap;
  onProgress?: (info: string) => void;
}

export type ProbeMeasurement = Pick<ProbeResult, 'dataset' | 'scale' | keyof Means | 'seconds' | 'images' | 'crop' | 'units' | 'backend'>;

/** The float reference and each unit alone (the result without the cell's identity fields). */
export async function runProbe(model: ProbeModel, run: ProbeRun): Promise<ProbeMeasurement> {
  const images = await Promise.all(listBenchmark(run.dataset, run.scale, run.dataDir).map(async (entry) => ({
    name: entry.name, pair: centerCrop(await loadPair(entry, run.scale), run.scale, run.probe.crop),
  })));
  const known = new Set(run.plan.sites.map((s) => s.id));
  for (const unit of run.probe.units) {
    const unknown = unit.sites.find((id) => !known.has(id));
    if (unknown) throw new ExperimentError(`probe unit '${unit.name}': '${unknown}' is not a quantizer of the qparams file`, { value: unknown, badInput: false });
  }
  const reference = await scoreImages(model, { stateDict: model.stateDict }, images, run.scale);
  const units: ProbeUnitResult[] = [];
  for (const unit of run.probe.units) {
    const sites = new Set(unit.sites);
    const r = restrictQuantization(run.plan, run.bounds, model.stateDict, (s) => sites.has(s.id));
    const scored = await scoreImages(model, quantizedEngineOptions(r.plan, r.bounds, r.stateDict, model.engine), images, run.scale);
    units.push({ name: unit.name, sites: unit.sites, psnr_y: scored.psnr_y, ssim_y: scored.ssim_y, psnr: scored.psnr, ssim: scored.ssim, seconds: scored.seconds });
    run.onProgress?.(`${units.length}/${run.probe.units.length} ${unit.name} ${(reference.psnr_y - scored.psnr_y).toFixed(3)} dB`);
  }
  return { dataset: run.dataset, scale: run.scale, ...reference, crop: run.probe.crop, units };
}
