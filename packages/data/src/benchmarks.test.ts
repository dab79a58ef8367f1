import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BENCHMARKS, benchmarkName, listBenchmark, listCalibration, loadPair } from './benchmarks';
import { DataError } from './errors';
import { modcrop, readImage, writePng, type Image } from './image';
import { imresize } from './imresize';
import { dataDir } from './paths';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-data-bench-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A deterministic test image whose pixels differ from one another. */
function pattern(width: number, height: number): Image {
  return { width, height, channels: 3, data: Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 37 + (i >> 5)) & 255) };
}

describe('listBenchmark', () => {
  test('Set5 and Set14 list their images in sorted order, with the shipped LR files', () => {
    const set5 = listBenchmark('Set5', 2, dataDir());
    expect(set5.map((e) => e.name)).toEqual(['baby', 'bird', 'butterfly', 'head', 'woman']);
    expect(set5[0]).toEqual({
      name: 'baby',
      hrPath: path.join(dataDir(), 'benchmarks/Set5/HR/baby.png'),
      lrPath: path.join(dataDir(), 'benchmarks/Set5/LR_bicubic/X2/babyx2.png'),
    });
    const set14 = listBenchmark('set14', 4); // names are case-insensitive; the data folder defaults to dataDir()
    expect(set14.map((e) => e.name)).toEqual([
      'baboon', 'barbara', 'bridge', 'coastguard', 'comic', 'face', 'flowers',
      'foreman', 'lenna', 'man', 'monarch', 'pepper', 'ppt3', 'zebra',
    ]);
    expect(set14.every((e) => e.lrPath?.endsWith(`${e.name}x4.png`) && fs.existsSync(e.lrPath))).toBe(true);
  });

  test('B100 has 100 images at every scale, in byte order', () => {
    for (const scale of [2, 3, 4]) {
      const names = listBenchmark('B100', scale).map((e) => e.name);
      expect(names).toHaveLength(100);
      expect(names.slice(0, 2)).toEqual(['101085', '101087']);
      expect(names.at(-1)).toBe('97033');
      expect([...names].sort()).toEqual(names); // the ids are ASCII, where JS and Python order agree
    }
  });

  test('sorts like Python sorted() (byte order: digits, upper case, underscore, lower case)', async () => {
    const root = path.join(tmp, 'order');
    const hrDir = path.join(root, 'benchmarks/Set5/HR');
    fs.mkdirSync(hrDir, { recursive: true });
    for (const name of ['a', '_x', 'B', '9', '10', 'é']) await writePng(path.join(hrDir, `${name}.png`), pattern(4, 4));
    fs.writeFileSync(path.join(hrDir, 'README.txt'), 'not an image');
    fs.writeFileSync(path.join(hrDir, '.hidden.png'), '');
    expect(listBenchmark('Set5', 2, root).map((e) => e.name)).toEqual(['10', '9', 'B', '_x', 'a', 'é']);
  });

  test('an unknown name lists the choices; a bad scale is refused', () => {
    const err = (() => {
      try {
        listBenchmark('Set55', 2);
      } catch (e) {
        return e;
      }
    })() as DataError;
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toBe("unknown dataset 'Set55' (choices: Set5, Set14, B100, Urban100, Manga109)");
    expect(err.choices).toEqual(Object.keys(BENCHMARKS));
    expect(benchmarkName('urban100')).toBe('Urban100');
    expect(() => listBenchmark('Set5', 1.5)).toThrow(/scale 1.5 must be an integer >= 2/);
  });

  test('a missing set names the folder searched and where to get it', () => {
    const empty = path.join(tmp, 'empty-data');
    fs.mkdirSync(empty);
    expect(() => listBenchmark('Urban100', 2, empty)).toThrow(DataError);
    expect(() => listBenchmark('Urban100', 2, empty)).toThrow(path.join(empty, 'benchmarks/Urban100/HR'));
    expect(() => listBenchmark('Urban100', 2, empty)).toThrow(/ryujaehun\/baseline/);
    expect(() => listBenchmark('Manga109', 4, empty)).toThrow(/LR images are made with imresize/);
    expect(() => listBenchmark('Set5', 4, empty)).toThrow(/HARMOQ_DATA=\.\.\/shared\/data|setup-data/);
  });
});

describe('Manga109 naming and generated LR images', () => {
  let root: string;
  beforeAll(async () => {
    root = path.join(tmp, 'manga');
    const hrDir = path.join(root, 'benchmarks/Manga109/HR');
    const lrDir = path.join(root, 'benchmarks/Manga109/LR_bicubic/X2');
    fs.mkdirSync(hrDir, { recursive: true });
    fs.mkdirSync(lrDir, { recursive: true });
    for (const name of ['Alpha', 'Beta', 'Gamma']) await writePng(path.join(hrDir, `${name}.png`), pattern(11, 9));
    await writePng(path.join(lrDir, 'Alpha_LRBI_x2.png'), pattern(5, 4)); // 2DQuant naming
    await writePng(path.join(lrDir, 'Betax2.png'), pattern(5, 4)); // EDSR naming
  });

  test('finds _LRBI_x<s> and <name>x<s> LR files; no file gives lrPath null', () => {
    const entries = listBenchmark('Manga109', 2, root);
    expect(entries.map((e) => [e.name, e.lrPath && path.basename(e.lrPath)])).toEqual([
      ['Alpha', 'Alpha_LRBI_x2.png'],
      ['Beta', 'Betax2.png'],
      ['Gamma', null],
    ]);
    expect(listBenchmark('Manga109', 3, root).every((e) => e.lrPath === null)).toBe(true);
  });

  test('loadPair makes a missing LR with imresize from the cropped HR', async () => {
    const gamma = listBenchmark('Manga109', 3, root)[2];
    const pair = await loadPair(gamma, 3);
    expect(pair.lrGenerated).toBe(true);
    expect([pair.hr.width, pair.hr.height, pair.lr.width, pair.lr.height]).toEqual([9, 9, 3, 3]);
    expect(pair.lr).toEqual(imresize(modcrop(pattern(11, 9), 3), 1 / 3));
  });

  test('loadPair refuses an LR file whose size is not HR/s, naming it', async () => {
    const entry = { name: 'Alpha', hrPath: path.join(root, 'benchmarks/Manga109/HR/Alpha.png'), lrPath: path.join(root, 'bad-lr.png') };
    await writePng(entry.lrPath, pattern(5, 5));
    await expect(loadPair(entry, 2)).rejects.toThrow(`LR image '${entry.lrPath}' is 5x5, expected 5x4`);
  });
});

describe('loadPair on the shipped sets', () => {
  test('Set5 woman at x3: HR cropped top-left to 228x342, LR read from its file', async () => {
    const entry = listBenchmark('Set5', 3).find((e) => e.name === 'woman')!;
    const pair = await loadPair(entry, 3);
    expect(pair.lrGenerated).toBe(false);
    expect([pair.hr.width, pair.hr.height, pair.lr.width, pair.lr.height]).toEqual([228, 342, 76, 114]);
    const full = await readImage(entry.hrPath);
    expect(Buffer.from(pair.hr.data).equals(Buffer.from(full.data.subarray(0, 228 * 342 * 3)))).toBe(true);
    expect(pair.lr).toEqual(await readImage(entry.lrPath!));
  });

  test('without its LR file, a pair gets the same LR as the shipped file (bit-exact imresize)', async () => {
    const entry = listBenchmark('Set14', 3).find((e) => e.name === 'comic')!;
    const shipped = await loadPair(entry, 3);
    const generated = await loadPair({ ...entry, lrPath: null }, 3);
    expect(generated.lrGenerated).toBe(true);
    expect(generated.hr).toEqual(shipped.hr);
    expect(generated.lr).toEqual(shipped.lr);
  });
});

test('listCalibration lists the 32 calibration PNGs; a folder without them is a DataError', () => {
  const files = listCalibration();
  expect(files).toHaveLength(32);
  expect(files.map((f) => path.basename(f)).slice(0, 4)).toEqual(['t1.png', 't12.png', 't15.png', 't18.png']);
  expect(() => listCalibration(tmp)).toThrow(path.join(tmp, 'calibration'));
});
