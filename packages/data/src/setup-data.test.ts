import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { readImage, type Image } from './image';
import { dataDir, repoRoot } from './paths';

// scripts/setup-data.mjs, run as users run it (through zx), against a base URL that cannot be reached and
// against a local HTTP mirror built from the shared data folder. No test touches the network.
const script = path.join(repoRoot(), 'scripts/setup-data.mjs');
const zxCli = require.resolve('zx/cli', { paths: [repoRoot()] });

function runSetup(args: string[], baseUrl: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [zxCli, script, ...args], {
      cwd: os.tmpdir(),
      env: { ...process.env, HARMOQ_DATA_BASE_URL: baseUrl },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-setup-data-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('an unreachable host fails fast with one line, exit 1, and writes nothing', async () => {
  // A port that was just free: connections to it are refused at once.
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));

  const target = path.join(tmp, 'unreachable');
  const { code, stdout, stderr } = await runSetup(['--data', target], `http://127.0.0.1:${port}`);
  expect(code).toBe(1);
  expect(stdout).toBe('');
  expect(stderr.trim().split('\n')).toHaveLength(1);
  expect(stderr).toContain(`cannot reach the host 127.0.0.1:${port}`);
  expect(stderr).toContain('set HARMOQ_DATA=../shared/data or copy the sets by hand');
  expect(fs.existsSync(target)).toBe(false);
});

test('scripts/data.sha256 lists exactly the benchmark lines of the shared SHA256SUMS', () => {
  const lines = (file: string) => fs.readFileSync(file, 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
  const shipped = lines(path.join(dataDir(), 'SHA256SUMS')).filter((l) => l.includes('  benchmarks/'));
  expect(lines(path.join(repoRoot(), 'scripts/data.sha256')).sort()).toEqual(shipped.sort());
  expect(shipped).toHaveLength(5 * 4 + 14 * 4 + 100 * 4);
});

/** 24-bit bottom-up BMP, the layout of the T91 source files. */
function encodeBmp(image: Image): Buffer {
  const stride = Math.ceil((image.width * 3) / 4) * 4;
  const out = Buffer.alloc(54 + stride * image.height);
  out.write('BM', 0, 'latin1');
  out.writeUInt32LE(out.length, 2);
  out.writeUInt32LE(54, 10);
  out.writeUInt32LE(40, 14);
  out.writeInt32LE(image.width, 18);
  out.writeInt32LE(image.height, 22);
  out.writeUInt16LE(1, 26);
  out.writeUInt16LE(24, 28);
  for (let y = 0; y < image.height; y++) {
    const row = 54 + (image.height - 1 - y) * stride;
    for (let x = 0; x < image.width; x++) {
      const p = (y * image.width + x) * 3;
      out[row + 3 * x] = image.data[p + 2];
      out[row + 3 * x + 1] = image.data[p + 1];
      out[row + 3 * x + 2] = image.data[p];
    }
  }
  return out;
}

describe('against a local mirror of the source repositories', () => {
  let server: http.Server;
  let baseUrl: string;
  const requested: string[] = [];
  let corrupt = '';
  beforeAll(async () => {
    // Maps <owner>/<repo>/<commit>/<path> back onto the shared data folder, as the script's source table does.
    const routes: [RegExp, (m: RegExpMatchArray) => Promise<Buffer>][] = [
      [/^\/Nitin-Mane\/SwinIR\/c24fb46[0-9a-f]+\/testsets\/Set5\/(.+)$/, async (m) => fs.readFileSync(path.join(dataDir(), 'benchmarks/Set5', m[1]))],
      [/^\/ryujaehun\/baseline\/c9e9947[0-9a-f]+\/benchmark\/(Set14|B100)\/(.+)$/, async (m) => fs.readFileSync(path.join(dataDir(), 'benchmarks', m[1], m[2]))],
      [/^\/jiny2001\/dcscn-super-resolution\/d382bc3[0-9a-f]+\/data\/yang91\/(t+\d+)\.bmp$/, async (m) => encodeBmp(await readImage(path.join(dataDir(), 'calibration', `${m[1]}.png`)))],
    ];
    server = http.createServer((req, res) => {
      const url = decodeURIComponent(req.url ?? '');
      requested.push(url);
      const route = routes.map(([re, load]) => [url.match(re), load] as const).find(([m]) => m);
      if (!route) return void res.writeHead(404).end();
      route[1](route[0]!).then(
        (body) => res.writeHead(200).end(url === corrupt ? Buffer.concat([body, Buffer.from('!')]) : body),
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));

  test('fetches, verifies and places all 508 files; the calibration BMPs become PNGs with the same pixels', async () => {
    const target = path.join(tmp, 'mirror-data');
    const { code, stdout, stderr } = await runSetup(['--data', target], baseUrl);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain('508 files');
    const files = listFiles(target).map((f) => path.relative(target, f)).sort();
    expect(files).toHaveLength(508);
    const shipped = fs.readFileSync(path.join(dataDir(), 'SHA256SUMS'), 'utf8').trim().split('\n').map((l) => l.slice(66)).sort();
    expect(files).toEqual(shipped);
    expect(requested.filter((u) => u.endsWith('.bmp'))).toHaveLength(32);
    for (const name of ['t1', 'tt25']) {
      const ours = await readImage(path.join(target, 'calibration', `${name}.png`));
      const shared = await readImage(path.join(dataDir(), 'calibration', `${name}.png`));
      expect(Buffer.from(ours.data).equals(Buffer.from(shared.data))).toBe(true);
    }
    const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
    expect(sha(path.join(target, 'benchmarks/Set14/HR/bridge.png'))).toBe(sha(path.join(dataDir(), 'benchmarks/Set14/HR/bridge.png')));

    // A corrupted download: exit 1 naming the file, the bad file is not placed, no temp file is left.
    const victim = 'benchmarks/Set5/LR_bicubic/X4/birdx4.png';
    fs.rmSync(path.join(target, victim));
    corrupt = '/Nitin-Mane/SwinIR/c24fb460d41e0d7e87b9c16854a4acdb01db5a82/testsets/Set5/LR_bicubic/X4/birdx4.png';
    const failed = await runSetup(['--data', target], baseUrl);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(new RegExp(`^setup-data: checksum mismatch for ${victim} from .*\\n$`));
    expect(fs.existsSync(path.join(target, victim))).toBe(false);
    expect(listFiles(target).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
