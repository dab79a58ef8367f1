// scripts/get-weights.mjs is the one place that downloads weights; these tests run it against an unreachable
// address and a local HTTP server (never the internet), with a scratch lock file instead of weights.lock.json.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const REPO_ROOT = path.resolve(__dirname, '../../..');
const SCRIPT = path.join(REPO_ROOT, 'scripts/get-weights.mjs');
const ZX_CLI = path.join(path.dirname(require.resolve('zx/package.json')), 'build/cli.js');
// The release files the script must fetch: SwinIR-S (lightweight) x2/x3/x4 and SwinIR-M (classical) x2/x4.
const FILES = [
  ...['x2', 'x3', 'x4'].map((scale) => `002_lightSR_DIV2K_s64w8_SwinIR-S_${scale}.pth`),
  ...['x2', 'x4'].map((scale) => `001_classicalSR_DF2K_s64w8_SwinIR-M_${scale}.pth`),
];

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runScript(args: string[], env: Record<string, string>): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [ZX_CLI, SCRIPT, ...args],
      { env: { ...process.env, HARMOQ_DATA: '', ...env }, timeout: 30_000, cwd: REPO_ROOT },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Every file below `dir`, relative to it. */
function listFiles(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((entry) => fs.statSync(path.join(dir, entry)).isFile())
    .sort();
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

let scratch: string;
let lockFile: string;
beforeEach(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'get-weights-'));
  lockFile = path.join(scratch, 'weights.lock.json');
  fs.copyFileSync(path.join(REPO_ROOT, 'weights.lock.json'), lockFile);
});
afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

it('the committed lock lists the five official checkpoints', () => {
  const lock = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'weights.lock.json'), 'utf8'));
  expect(Object.keys(lock.files)).toEqual(FILES);
  expect(lock.source).toBe('https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/');
});

it('fails with one clear line, exit code 1 and no partial file when the server is unreachable', async () => {
  const lockBefore = fs.readFileSync(lockFile, 'utf8');
  const data = path.join(scratch, 'data');
  const result = await runScript(['--data', data], { HARMOQ_WEIGHTS_BASE_URL: 'http://127.0.0.1:9/', HARMOQ_WEIGHTS_LOCK: lockFile });
  expect(result.code).toBe(1);
  const lines = result.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain(`cannot download http://127.0.0.1:9/${FILES[0]}`);
  expect(lines[0]).toContain('HARMOQ_DATA');
  expect(lines[0]).toContain('copy the file there by hand');
  expect(fs.existsSync(data)).toBe(false); // not even the empty folders it made
  expect(listFiles(scratch)).toEqual(['weights.lock.json']);
  expect(fs.readFileSync(lockFile, 'utf8')).toBe(lockBefore);
});

describe('against a local server', () => {
  let server: http.Server;
  let baseUrl: string;
  const served = new Map<string, Buffer>();
  const cutOff = new Set<string>(); // names whose connection drops halfway through the body
  const requests: string[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const name = decodeURIComponent((req.url ?? '').slice(1));
      requests.push(name);
      const body = served.get(name);
      if (!body) {
        res.writeHead(404).end();
        return;
      }
      if (cutOff.has(name)) {
        res.writeHead(200, { 'content-length': body.length });
        res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
        return;
      }
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => {
    requests.length = 0;
    cutOff.clear();
    FILES.forEach((name, i) => served.set(name, Buffer.from(`checkpoint ${i} `.repeat(1000 + i))));
  });

  it('records sha256 on the first download, verifies later, and refuses a changed file', async () => {
    const data = path.join(scratch, 'data');
    const env = { HARMOQ_WEIGHTS_BASE_URL: baseUrl, HARMOQ_WEIGHTS_LOCK: lockFile };

    const first = await runScript(['--data', data], env);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(listFiles(data)).toEqual(FILES.map((name) => `weights/official/${name}`).sort());
    const lock = JSON.parse(fs.readFileSync(lockFile, 'utf8'));
    for (const name of FILES) {
      expect(lock.files[name]).toEqual({ bytes: served.get(name)!.length, sha256: sha256(served.get(name)!) });
      expect(fs.readFileSync(path.join(data, 'weights/official', name)).equals(served.get(name)!)).toBe(true);
    }

    // Present and matching the lock: verified without downloading again.
    requests.length = 0;
    const second = await runScript(['--data', data], env);
    expect([second.code, second.stderr]).toEqual([0, '']);
    expect(requests).toEqual([]);
    expect(second.stdout).toContain(`${FILES[0]}: present, sha256 verified`);

    // The release file changed: the download is refused and nothing replaces the missing file.
    const victim = FILES[2];
    fs.rmSync(path.join(data, 'weights/official', victim));
    served.set(victim, Buffer.from('tampered'.repeat(10)));
    const third = await runScript([], { ...env, HARMOQ_DATA: data }); // the data folder from HARMOQ_DATA this time
    expect(third.code).toBe(1);
    expect(third.stderr.trim().split('\n')).toHaveLength(1);
    expect(third.stderr).toContain(`${baseUrl}${victim} gave 80 bytes, but weights.lock.json pins ${lock.files[victim].bytes}`);
    expect(listFiles(data)).toEqual(FILES.filter((n) => n !== victim).map((name) => `weights/official/${name}`).sort());
    expect(JSON.parse(fs.readFileSync(lockFile, 'utf8'))).toEqual(lock);
  });

  it('reports an HTTP error with the URL', async () => {
    served.delete(FILES[0]);
    const data = path.join(scratch, 'data');
    const result = await runScript(['--data', data], { HARMOQ_WEIGHTS_BASE_URL: baseUrl, HARMOQ_WEIGHTS_LOCK: lockFile });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`cannot download ${baseUrl}${FILES[0]} (HTTP 404 Not Found)`);
    expect(fs.existsSync(data)).toBe(false);
  });

  it('leaves no partial file when the connection drops mid-download', async () => {
    cutOff.add(FILES[1]);
    const data = path.join(scratch, 'data');
    const result = await runScript(['--data', data], { HARMOQ_WEIGHTS_BASE_URL: baseUrl, HARMOQ_WEIGHTS_LOCK: lockFile });
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain(`${baseUrl}${FILES[1]}`);
    // The first file finished and was pinned; the second left nothing behind.
    expect(listFiles(data)).toEqual([`weights/official/${FILES[0]}`]);
    const lock = JSON.parse(fs.readFileSync(lockFile, 'utf8'));
    expect(lock.files[FILES[0]].sha256).toBe(sha256(served.get(FILES[0])!));
    expect(lock.files[FILES[1]]).toEqual({ bytes: null, sha256: null });
  });
});
