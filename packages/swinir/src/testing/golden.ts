// Test-only helpers: where the shared fixtures are and how to read a golden fixture folder.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadStateDict, readNpyFile, type StateDict } from '@harmoq/torch-io';
import { fromPythonConfig, type SwinIRConfig } from '../config';
import type { NCHWArray } from '../model';

/** ../shared/golden (or HARMOQ_GOLDEN); swinir sits below @harmoq/data, so it resolves the path itself. */
export function goldenDir(): string {
  return process.env.HARMOQ_GOLDEN ? path.resolve(process.env.HARMOQ_GOLDEN) : path.resolve(__dirname, '../../../../../shared/golden');
}

/** ../shared/data (or HARMOQ_DATA). */
export function dataDir(): string {
  return process.env.HARMOQ_DATA ? path.resolve(process.env.HARMOQ_DATA) : path.resolve(__dirname, '../../../../../shared/data');
}

/** Every model fixture of golden README section A. */
export const MODEL_FIXTURES = [
  'tiny_pixelshuffledirect_x2',
  'tiny_pixelshuffledirect_x3',
  'tiny_pixelshuffledirect_x4',
  'tiny_pixelshuffle_x3',
  'tiny_params_ema_x2',
  'light_x2_random',
] as const;

export interface StageMeta {
  name: string;
  file: string | null;
  shape: number[];
  mean: number;
  std: number;
  max_abs: number;
  sum: number;
  first8: number[];
  last8: number[];
}

export interface Fixture {
  name: string;
  dir: string;
  config: SwinIRConfig;
  stateDict: () => StateDict;
  input: () => NCHWArray;
  output: () => NCHWArray;
  stages: StageMeta[];
  stageArray: (stage: StageMeta) => NCHWArray;
}

function asNCHW(file: string): NCHWArray {
  const t = readNpyFile(file);
  if (t.dtype !== 'float32' || t.shape.length !== 4) throw new Error(`${file}: expected 4-d float32, got ${t.dtype} [${t.shape}]`);
  return { data: t.data as Float32Array, shape: t.shape as [number, number, number, number] };
}

export function fixture(name: string): Fixture {
  const dir = path.join(goldenDir(), name);
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8')) as { stages: StageMeta[] };
  return {
    name,
    dir,
    config: fromPythonConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'))),
    stateDict: () => loadStateDict(path.join(dir, 'model.pth')).stateDict,
    input: () => asNCHW(path.join(dir, 'input.npy')),
    output: () => asNCHW(path.join(dir, 'output.npy')),
    stages: meta.stages,
    stageArray: (stage) => asNCHW(path.join(dir, stage.file!)),
  };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** float64 statistics as the golden meta.json records them (std unbiased, torch's default). */
export function stats(data: Float32Array): { mean: number; std: number; maxAbs: number; sum: number } {
  let sum = 0;
  let maxAbs = 0;
  for (const v of data) {
    sum += v;
    maxAbs = Math.max(maxAbs, Math.abs(v));
  }
  const mean = sum / data.length;
  let sq = 0;
  for (const v of data) sq += (v - mean) ** 2;
  return { mean, std: Math.sqrt(sq / (data.length - 1)), maxAbs, sum };
}
