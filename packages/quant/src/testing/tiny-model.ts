/** The tiny golden SwinIR (x2, pixelshuffledirect) and a small calibration set: the fixture of the calibration tests. */
import * as path from 'node:path';
import { calibrationPatches, dataDir, goldenDir, type CalibrationData } from '@harmoq/data';
import { checkArchitecture, initBackend, type SwinIRConfig } from '@harmoq/swinir';
import { loadStateDict, readNpyFile, type StateDict } from '@harmoq/torch-io';
import { resolveRequest } from '../config';
import type { BoundsMap, QuantPlan } from '../plan';
import { qparamsPlan } from '../qparams';
import { quantizeModel } from '../quantize';

export interface TinyFixture {
  stateDict: StateDict;
  config: SwinIRConfig;
  data: CalibrationData;
}

/** 4 calibration and 2 held-out 16x16 patches (seed 5), wasm backend initialised. */
export async function tinyFixture(): Promise<TinyFixture> {
  await initBackend('wasm');
  const stateDict = loadStateDict(path.join(goldenDir(), 'tiny_pixelshuffledirect_x2/model.pth')).stateDict;
  const config = checkArchitecture(stateDict, { imgSize: 16 });
  const data = await calibrationPatches({ scale: 2, patchSize: 16, count: 4, heldOutCount: 2, seed: 5, dataDir: dataDir() });
  return { stateDict, config, data };
}

/** The tiny golden model with its golden input (1x3x19x27), as the engine-agreement tests use it. */
export interface TinyGolden {
  stateDict: StateDict;
  config: SwinIRConfig;
  input: Float32Array;
}

export function tinyGolden(): TinyGolden {
  const dir = path.join(goldenDir(), 'tiny_pixelshuffledirect_x2');
  const stateDict = loadStateDict(path.join(dir, 'model.pth')).stateDict;
  return {
    stateDict,
    config: checkArchitecture(stateDict, { imgSize: 16 }),
    input: readNpyFile(path.join(dir, 'input.npy')).data as Float32Array,
  };
}

/** Bounds for the tiny model through the real pipeline (quantizeModel, qparams round trip) on 4 small patches. */
export async function calibrateTiny(
  model: Pick<TinyGolden, 'stateDict' | 'config'>, method: string, bits: number, set: string[] = [],
): Promise<{ plan: QuantPlan; bounds: BoundsMap }> {
  const request = resolveRequest({ method, wbits: bits, abits: bits, set: ['count=4', 'patchSize=16', 'heldOutCount=2', ...set] });
  const qp = await quantizeModel({ arch: 'tiny', config: model.config, stateDict: model.stateDict, checkpoint: { file: 'model.pth', sha256: '0'.repeat(64) } }, request, {
    dataDir: dataDir(), threads: 1,
  });
  return qparamsPlan(qp);
}
