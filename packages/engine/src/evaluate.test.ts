import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dataDir, goldenDir, imresize, readImage } from '@harmoq/data';
import { evaluate } from './evaluate';

// MATLAB bicubic upsampling is the golden files' own baseline, so the whole protocol (pairing,
// HR crop, border crop, Y conversion, averaging) is checked end to end without a model.
describe.each([2, 4])('evaluate with the bicubic upscaler, Set5 x%i', (scale) => {
  const golden = JSON.parse(fs.readFileSync(path.join(goldenDir(), `house_x${scale}_set5/results.json`), 'utf8'));

  test('matches the golden bicubic baseline per image and on average', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-eval-'));
    const report = await evaluate({
      dataset: 'Set5', scale, dataDir: dataDir(), saveSrDir: out,
      upscale: async (lr) => imresize(lr, scale),
    });
    expect(report.images.map((r) => r.name)).toEqual(golden.images.map((r: { name: string }) => r.name));
    for (const [i, row] of report.images.entries()) {
      const g = golden.images[i].bicubic;
      expect(Math.abs(row.psnr_y - g.psnr_y)).toBeLessThan(1e-6);
      expect(Math.abs(row.ssim_y - g.ssim_y)).toBeLessThan(1e-7);
      expect(Math.abs(row.psnr - g.psnr)).toBeLessThan(1e-6);
      expect(Math.abs(row.ssim - g.ssim)).toBeLessThan(1e-7);
    }
    expect(Math.abs(report.psnr_y - golden.bicubic_average.psnr_y)).toBeLessThan(1e-6);
    const saved = await readImage(path.join(out, 'bird.png'));
    expect(saved.width).toBe(golden.images.find((r: { name: string }) => r.name === 'bird').hr_crop_hw[1]);
    fs.rmSync(out, { recursive: true });
  });
});
