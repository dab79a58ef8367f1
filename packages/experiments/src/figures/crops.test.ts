import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { listBenchmark, loadPair, type Image } from '@harmoq/data';
import { runExperiment } from '../run';
import { buildTables } from '../tables/build';
import { tinyGrid } from '../testing/tiny-grid';
import { cropZoom, detailBox } from './crops';

const tiny = tinyGrid('harmoq-crops-');
afterAll(() => tiny.cleanup());

function solid(width: number, height: number, at: (x: number, y: number) => number): Image {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.fill(at(x, y), 3 * (y * width + x), 3 * (y * width + x) + 3);
  return { width, height, channels: 3, data };
}

describe('crop helpers', () => {
  test('detailBox finds the textured window; cropZoom magnifies nearest-neighbour', () => {
    // Flat gray except a checkerboard in x 40..55, y 8..23.
    const image = solid(64, 32, (x, y) => (x >= 40 && x < 56 && y >= 8 && y < 24 ? ((x + y) % 2) * 255 : 128));
    expect(detailBox(image, 16)).toEqual({ x: 40, y: 8, size: 16 });
    const zoomed = cropZoom(image, { x: 40, y: 8, size: 2 }, 3);
    expect([zoomed.width, zoomed.height]).toEqual([6, 6]);
    const px = (img: Image, x: number, y: number) => img.data[3 * (y * img.width + x)];
    expect([px(zoomed, 0, 0), px(zoomed, 2, 2), px(zoomed, 3, 0), px(zoomed, 5, 5)]).toEqual([0, 0, 255, 0]);
  });
});

describe('comparison crops from a real grid (x2, minmax W4A4, Set5 butterfly)', () => {
  test('HR / bicubic / FP / minmax crops and a montage from the stored qparams; a rerun does no inference and writes the same bytes', async () => {
    await runExperiment({
      name: 'baselines', set: tiny.set(), dataDir: tiny.dataDir, resultsDir: tiny.resultsDir, tracker: null,
      log: () => {}, progressStream: { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream,
    });
    // `harmoq exp` itself leaves the paper tables and figures (no crops: those are `harmoq tables`' job).
    const tex = fs.readFileSync(path.join(tiny.resultsDir, 'baselines/tables/baselines-x2.tex'), 'utf8');
    expect(tex).toMatch(/^MinMax & W4A4 & [0-9.]+ & 0\.[0-9]{4} \\\\$/m);
    expect(fs.existsSync(path.join(tiny.resultsDir, 'baselines/figures/psnr-bits-x2-Set5.png'))).toBe(true);
    expect(fs.existsSync(path.join(tiny.resultsDir, 'baselines/crops'))).toBe(false);
    const lines: string[] = [];
    const build = () => buildTables({ resultsDir: tiny.resultsDir, crops: { dataDir: tiny.dataDir, threads: 2 }, log: (l) => lines.push(l) });
    const [report] = await build();
    expect(report.origin).toBe(path.join('baselines', 'baselines.json'));
    expect(report.cropsSkipped).toBeUndefined();
    const cropDir = path.join(tiny.resultsDir, 'baselines', 'crops');
    expect(fs.readdirSync(cropDir).sort()).toEqual([
      'butterfly-x2-W4A4-bicubic.png', 'butterfly-x2-W4A4-fp.png', 'butterfly-x2-W4A4-hr.png', 'butterfly-x2-W4A4-minmax.png',
      'butterfly-x2-W4A4.png', 'crops.json',
    ]);
    expect(lines.filter((l) => l.startsWith('crops:'))).toHaveLength(2);

    const manifest = JSON.parse(fs.readFileSync(path.join(cropDir, 'crops.json'), 'utf8'));
    const { hr } = await loadPair(listBenchmark('Set5', 2, tiny.dataDir)[0], 2);
    const read = async (name: string) => sharp(path.join(cropDir, name)).raw().toBuffer({ resolveWithObject: true });
    const hrCrop = await read('butterfly-x2-W4A4-hr.png');
    expect([hrCrop.info.width, hrCrop.info.height]).toEqual([manifest.box.size * 3, manifest.box.size * 3]);
    expect(Buffer.from(hrCrop.data)).toEqual(Buffer.from(cropZoom(hr, manifest.box, 3).data));
    const bicubic = await read('butterfly-x2-W4A4-bicubic.png');
    expect(Buffer.compare(bicubic.data, hrCrop.data)).not.toBe(0);
    const montage = await sharp(path.join(cropDir, 'butterfly-x2-W4A4.png')).metadata();
    expect(montage.width).toBeGreaterThan(4 * manifest.box.size * 3);

    const bytes = () => Object.fromEntries(fs.readdirSync(cropDir).map((f) => [f, fs.readFileSync(path.join(cropDir, f)).toString('base64')]));
    const before = bytes();
    lines.length = 0;
    await build();
    expect(lines).toEqual([]);
    expect(bytes()).toEqual(before);
  });
});
