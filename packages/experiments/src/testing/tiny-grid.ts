/**
 * A tiny real grid for tests: the x2 stand-in checkpoint, one Set5 image (butterfly), the shared calibration
 * images, all symlinked into a temp data folder (nothing copied), and the baselines module narrowed by --set.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dataDir } from '@harmoq/data';

export interface TinyGrid {
  root: string;
  dataDir: string;
  resultsDir: string;
  trackingUri: string;
  /** --set overrides that narrow `baselines` to x2, minmax, the given bits, Set5, 4 calibration patches. */
  set: (bits?: string) => string[];
  cleanup: () => void;
}

export function tinyGrid(prefix = 'harmoq-exp-'): TinyGrid {
  const shared = dataDir();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const data = path.join(root, 'data');
  const link = (rel: string, target: string) => {
    fs.mkdirSync(path.dirname(path.join(data, rel)), { recursive: true });
    fs.symlinkSync(target, path.join(data, rel));
  };
  link('benchmarks/Set5/HR/butterfly.png', path.join(shared, 'benchmarks/Set5/HR/butterfly.png'));
  link('benchmarks/Set5/LR_bicubic/X2/butterflyx2.png', path.join(shared, 'benchmarks/Set5/LR_bicubic/X2/butterflyx2.png'));
  link('calibration', path.join(shared, 'calibration'));
  link('weights/house/swinir_light_x2_house.pth', path.join(shared, 'weights/house/swinir_light_x2_house.pth'));
  return {
    root,
    dataDir: data,
    resultsDir: path.join(root, 'results'),
    trackingUri: `file:${path.join(root, 'mlruns')}`,
    set: (bits = 'W4A4') => [
      'scales=2', 'methods=minmax', `bits=${bits}`, 'datasets=Set5',
      'quant.calibration.count=4', 'quant.calibration.heldOutCount=0',
    ],
    cleanup: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}
