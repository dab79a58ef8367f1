/** The tiny golden SwinIR (x2, pixelshuffledirect) and a small calibration set: the fixture of the calibration tests. */
import * as path from 'node:path';
import { calibrationPatches, dataDir, goldenDir, type CalibrationData } from '@harmoq/data';
import { checkArchitecture, initBackend, type SwinIRConfig } from '@harmoq/swinir';
import { loadStateDict, type StateDict } from '@harmoq/torch-io';

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
