/**
 * Visual comparison crops for one benchmark image: HR, bicubic, the float model and each method's finished
 * calibration at one bit width, as separate PNGs and one labelled montage. Cells store metrics, not SR
 * images, so the SR images are recomputed here from the stored qparams (one small image per model); a
 * manifest records what the crops were made from, and a rerun with the same manifest does no inference.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from '@harmoq/atomic-fs';
import { imresize, listBenchmark, loadPair, type Image } from '@harmoq/data';
import { createEngine, defaultThreads, superResolve, type EngineOptions } from '@harmoq/engine';
import { checkQParamsFor, qparamsPlan, quantizedEngineOptions } from '@harmoq/quant';
import { checkArchitecture, expectedFor, type ArchName } from '@harmoq/swinir';
import { loadStateDict } from '@harmoq/torch-io';
import { canonicalJson } from '../hash';
import { ExperimentError } from '../errors';
import { CellStore } from '../store';
import { orderBits, type BaselinesSource } from '../tables/source';
import { methodLabel } from '../tables/table';
import { svgToPng } from './vega';

export interface CropOptions {
  /** Data folder holding benchmarks/ and the checkpoints. */
  dataDir: string;
  dataset?: string;
  image?: string;
  /** Default: the largest scale with a finished calibration. */
  scale?: number;
  /** Default: the lowest bit width with a finished calibration at that scale (where methods differ most). */
  bits?: string;
  /** Crop side in HR pixels. */
  size?: number;
  /** Nearest-neighbour magnification of each crop. */
  zoom?: number;
  threads?: number;
  log?: (line: string) => void;
}

interface CropSource {
  /** File stem and montage label. */
  name: string;
  label: string;
  /** The calibrate cell whose qparams made it, for quantized models. */
  cell: string | null;
}

/** The `size` x `size` window (stride size/4) with the most luminance variance: where detail is. */
export function detailBox(hr: Image, size: number): { x: number; y: number; size: number } {
  const s = Math.min(size, hr.width, hr.height);
  const stride = Math.max(1, Math.floor(s / 4));
  const luma = new Float64Array(hr.width * hr.height);
  for (let i = 0; i < luma.length; i++) luma[i] = 0.299 * hr.data[3 * i] + 0.587 * hr.data[3 * i + 1] + 0.114 * hr.data[3 * i + 2];
  let best = { x: 0, y: 0, variance: -1 };
  for (let y = 0; y + s <= hr.height; y += stride) {
    for (let x = 0; x + s <= hr.width; x += stride) {
      let sum = 0;
      let sq = 0;
      for (let yy = y; yy < y + s; yy++) {
        for (let xx = x; xx < x + s; xx++) {
          const v = luma[yy * hr.width + xx];
          sum += v;
          sq += v * v;
        }
      }
      const n = s * s;
      const variance = sq / n - (sum / n) ** 2;
      if (variance > best.variance + 1e-9) best = { x, y, variance };
    }
  }
  return { x: best.x, y: best.y, size: s };
}

/** Crops `box` out of `image` and magnifies it `zoom` times, nearest neighbour. */
export function cropZoom(image: Image, box: { x: number; y: number; size: number }, zoom: number): Image {
  const side = box.size * zoom;
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const src = 3 * ((box.y + Math.floor(y / zoom)) * image.width + box.x + Math.floor(x / zoom));
      data.set(image.data.subarray(src, src + 3), 3 * (y * side + x));
    }
  }
  return { width: side, height: side, channels: 3, data };
}

async function pngBytes(image: Image): Promise<Buffer> {
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).png().toBuffer();
}

/** The tiles side by side with their labels underneath (SVG rendered by resvg). */
function montage(tiles: readonly { label: string; png: Buffer }[], side: number): Buffer {
  const gap = 8;
  const labelHeight = 22;
  const width = tiles.length * side + (tiles.length + 1) * gap;
  const height = side + labelHeight + 2 * gap;
  const items = tiles.map((t, i) => {
    const x = gap + i * (side + gap);
    return `<image x="${x}" y="${gap}" width="${side}" height="${side}" href="data:image/png;base64,${t.png.toString('base64')}"/>` +
      `<text x="${x + side / 2}" y="${gap + side + 16}" text-anchor="middle" font-family="DejaVu Sans" font-size="14">${t.label.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</text>`;
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
    `<rect width="100%" height="100%" fill="white"/>${items.join('')}</svg>`;
  return svgToPng(svg, 1);
}

function findCheckpoint(dataDir: string, source: BaselinesSource, scale: number): string {
  if (source.checkpointTemplate) return path.resolve(dataDir, source.checkpointTemplate.replaceAll('{scale}', String(scale)));
  const name = source.checkpoints[scale];
  const walk = (dir: string): string | undefined => {
    if (!fs.existsSync(dir)) return undefined;
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const file = path.join(dir, entry.name);
      if (entry.isFile() && entry.name === name) return file;
      if (entry.isDirectory()) {
        const found = walk(file);
        if (found) return found;
      }
    }
    return undefined;
  };
  return walk(path.join(dataDir, 'weights')) ?? path.join(dataDir, 'weights', name);
}

/**
 * Writes `crops/<image>-x<scale>-<bits>-<model>.png` and `crops/<image>-x<scale>-<bits>.png` (the montage)
 * under `outDir`, and `crops/crops.json`. Returns the files, or [] when no calibration has finished.
 */
export async function comparisonCrops(source: BaselinesSource, resultsDir: string, outDir: string, options: CropOptions): Promise<string[]> {
  const log = options.log ?? (() => {});
  const dataset = options.dataset ?? 'Set5';
  const imageName = options.image ?? 'butterfly';
  const zoom = options.zoom ?? 3;
  const done = source.rows.filter((r) => r.method !== 'fp' && r.calibration?.status === 'done');
  const scale = options.scale ?? Math.max(...done.map((r) => r.scale), -Infinity);
  if (!Number.isFinite(scale)) return [];
  const bits = options.bits ?? orderBits(done.filter((r) => r.scale === scale).map((r) => r.bits)).at(-1);
  const quantized = done.filter((r) => r.scale === scale && r.bits === bits);
  if (bits === undefined || quantized.length === 0) return [];
  const rank = (m: string) => source.methods.indexOf(m);
  const models: CropSource[] = [
    { name: 'hr', label: 'HR', cell: null },
    { name: 'bicubic', label: 'Bicubic', cell: null },
    { name: 'fp', label: 'FP', cell: null },
    ...quantized.sort((a, b) => rank(a.method) - rank(b.method)).map((r) => ({ name: r.method, label: methodLabel(r.method), cell: r.calibration!.cell })),
  ];

  const entry = listBenchmark(dataset, scale, options.dataDir).find((e) => e.name === imageName);
  if (!entry) throw new ExperimentError(`no image '${imageName}' in ${dataset} under ${options.dataDir}`, { value: imageName });
  const { hr, lr } = await loadPair(entry, scale);
  const box = detailBox(hr, options.size ?? 16 * scale);
  const checkpointFile = findCheckpoint(options.dataDir, source, scale);
  const stem = `${imageName}-x${scale}-${bits}`;
  const cropDir = path.join(outDir, 'crops');
  const files = [...models.map((m) => path.join(cropDir, `${stem}-${m.name}.png`)), path.join(cropDir, `${stem}.png`)];
  const manifestFile = path.join(cropDir, 'crops.json');
  const manifest = canonicalJson({
    dataset, image: imageName, scale, bits, box, zoom, checkpoint: source.checkpoints[scale],
    models: models.map((m) => ({ name: m.name, cell: m.cell })),
  }) + '\n';
  if (fs.existsSync(manifestFile) && fs.readFileSync(manifestFile, 'utf8') === manifest && files.every((f) => fs.existsSync(f))) return [...files, manifestFile];

  const loaded = loadStateDict(checkpointFile);
  const arch = source.arch as ArchName;
  const config = checkArchitecture(loaded.stateDict, expectedFor({ arch, scale }), `${arch} x${scale}`, checkpointFile);
  const store = new CellStore(resultsDir);
  const threads = options.threads ?? defaultThreads();
  const images: Image[] = [];
  for (const model of models) {
    if (model.name === 'hr') images.push(hr);
    else if (model.name === 'bicubic') images.push(imresize(lr, scale));
    else {
      let engineOptions: Pick<EngineOptions, 'stateDict' | 'sites' | 'hook'> = { stateDict: loaded.stateDict };
      if (model.cell) {
        const qfile = store.resultPath({ key: model.cell, kind: 'calibrate' });
        const qparams = store.readQParams({ key: model.cell, kind: 'calibrate' })!;
        checkQParamsFor(qparams, { arch, scale, config, sha256: loaded.sha256, file: checkpointFile }, qfile);
        const { plan, bounds } = qparamsPlan(qparams, qfile);
        engineOptions = quantizedEngineOptions(plan, bounds, loaded.stateDict, 'onnx');
      }
      log(`crops: ${model.label} x${scale}${model.cell ? ` ${bits}` : ''} on ${dataset}/${imageName}`);
      const runner = await createEngine({ engine: 'onnx', config, threads, ...engineOptions });
      try {
        images.push(await superResolve(runner, lr));
      } finally {
        await runner.dispose();
      }
    }
  }
  fs.mkdirSync(cropDir, { recursive: true });
  const tiles: { label: string; png: Buffer }[] = [];
  for (let i = 0; i < models.length; i++) {
    const png = await pngBytes(cropZoom(images[i], box, zoom));
    writeFileAtomic(files[i], png);
    tiles.push({ label: models[i].label, png });
  }
  writeFileAtomic(files[models.length], montage(tiles, box.size * zoom));
  writeFileAtomic(manifestFile, manifest);
  return [...files, manifestFile];
}
