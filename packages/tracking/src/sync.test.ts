import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Tracker } from './tracker';
import { FileStore } from './file-store';
import { syncCommandMain, syncToServer } from './sync';
import { TAGS } from './types';
import { startFakeMlflowServer, type FakeMlflowServer, type FaultMode } from './testing/fake-mlflow-server';

const noSleep = { sleep: async () => {}, retry: { attempts: 2 } };
const downFetch: typeof fetch = async () => {
  throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
};

let tmp: string;
let fixture: string;
let servers: FakeMlflowServer[];

async function newServer(): Promise<FakeMlflowServer> {
  const s = await startFakeMlflowServer();
  servers.push(s);
  return s;
}

/**
 * A local store as an offline grid leaves it: two finished cells and a failed one pushed by a fallback
 * (pending), one run still RUNNING (pending), and a run made with no server in mind (not pending).
 */
async function buildFixture(root: string): Promise<void> {
  let clock = 1_700_000_000_000;
  const offline = new Tracker({
    cwd: tmp, trackingUri: 'http://127.0.0.1:9', fallbackDir: root, env: {}, now: () => (clock += 1000), userId: 'alice',
    sourceName: 'harmoq', client: { fetch: downFetch, ...noSleep }, onFallback: () => {},
  });
  const cells: [string, string, 'FINISHED' | 'FAILED'][] = [['asymmetry', 'cell-a', 'FINISHED'], ['asymmetry', 'cell-b', 'FAILED'], ['main', 'cell-c', 'FINISHED']];
  for (const [experiment, cellKey, status] of cells) {
    const run = await offline.startRun({
      experiment, cellKey, runName: `${cellKey} x2`, params: { bits: 4, model: { depth: 6 }, cell: cellKey }, tags: { preset: 'quick' },
    });
    for (let step = 0; step < 3; step++) await run.logMetrics({ calib_loss: 1 / (step + 1) }, step);
    await run.logMetrics({ 'Set5/psnr': 30 + cellKey.length / 10, 'Set5/ssim': 0.91 });
    await run.logArtifact(Buffer.from(JSON.stringify({ cellKey })), 'config.json');
    await run.logArtifact(Buffer.from(cellKey.repeat(3)), 'crops/x2/baby.png');
    await run.end(status);
  }
  const still = await offline.startRun({ experiment: 'main', cellKey: 'cell-running' });
  await still.logMetrics({ calib_loss: 9 });
  const plain = new Tracker({ cwd: tmp, trackingUri: `file:${root}`, env: {}, now: () => (clock += 1000) });
  const local = await plain.startRun({ experiment: 'main', cellKey: 'cell-local', params: { bits: 8 } });
  await local.end();
}

beforeAll(async () => {
  // tmpfs where there is one: the matrix below makes ~1000 fsyncs, which a busy disk turns into seconds.
  const scratch = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  tmp = fs.mkdtempSync(path.join(scratch, 'tracking-sync-'));
  fixture = path.join(tmp, 'fixture');
  await buildFixture(fixture);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeEach(() => { servers = []; });
afterEach(async () => { await Promise.all(servers.map((s) => s.close())); });

let copies = 0;
function copyFixture(): string {
  const dir = path.join(tmp, `copy-${++copies}`);
  fs.cpSync(fixture, dir, { recursive: true });
  return dir;
}

/** Everything the server holds, without its own ids: what a correct sync must produce, however interrupted. */
function snapshot(server: FakeMlflowServer) {
  return [...server.runs.values()]
    .map((r) => ({
      experiment: server.experiments.get(r.info.experiment_id)!.name,
      info: { ...r.info, run_id: undefined, run_uuid: undefined, artifact_uri: undefined, experiment_id: undefined },
      params: Object.fromEntries([...r.params].sort()),
      tags: Object.fromEntries([...r.tags].sort()),
      metrics: Object.fromEntries([...r.metrics].sort().map(([k, pts]) => [k, pts.map((p) => [p.step, p.timestamp, p.value]).sort()])),
      artifacts: Object.fromEntries(
        [...server.artifacts]
          .filter(([p]) => p.startsWith(`${r.info.experiment_id}/${r.info.run_id}/artifacts/`))
          .map(([p, b]) => [p.split('/artifacts/')[1], b.toString()])
          .sort(),
      ),
    }))
    .sort((a, b) => (a.tags[TAGS.cellKey] < b.tags[TAGS.cellKey] ? -1 : 1));
}

test('pushes the pending runs, everything in them, and marks them synced', async () => {
  const server = await newServer();
  const local = copyFixture();
  const report = await syncToServer(local, server.uri, { client: noSleep });
  expect(report.failed).toEqual([]);
  expect(report.aborted).toBe(false);
  expect(report.synced.map((s) => s.cellKey).sort()).toEqual(['cell-a', 'cell-b', 'cell-c']);
  expect(report.synced.every((s) => s.created)).toBe(true);
  expect(report.skipped.map((s) => s.reason)).toEqual([expect.stringMatching(/still RUNNING/)]);

  const snap = snapshot(server);
  expect(snap.map((r) => [r.experiment, r.tags[TAGS.cellKey], r.info.status])).toEqual([
    ['asymmetry', 'cell-a', 'FINISHED'], ['asymmetry', 'cell-b', 'FAILED'], ['main', 'cell-c', 'FINISHED'],
  ]);
  const store = new FileStore(local);
  const localA = store.listExperiments().flatMap((e) => store.listRuns(e.experimentId)).map((i) => store.readRun(i))
    .find((r) => r.tags[TAGS.cellKey] === 'cell-a')!;
  const a = snap[0];
  expect(a.params).toEqual(localA.params);
  expect(a.info).toMatchObject({ run_name: 'cell-a x2', start_time: localA.info.startTime, end_time: localA.info.endTime, user_id: 'alice' });
  expect(a.tags).toEqual({
    ...Object.fromEntries(Object.entries(localA.tags).filter(([k]) => !k.startsWith('harmoq.sync'))),
    [TAGS.syncSourceRunId]: localA.info.runId,
  });
  expect(a.metrics.calib_loss).toHaveLength(3);
  expect(a.metrics['Set5/psnr']).toEqual([[0, localA.metrics.find((m) => m.key === 'Set5/psnr')!.timestamp, 30.6]]);
  expect(a.artifacts).toEqual({ 'config.json': '{"cellKey":"cell-a"}', 'crops/x2/baby.png': 'cell-acell-acell-a' });
  expect(localA.tags[TAGS.syncState]).toBe('synced');
  expect(localA.tags[TAGS.syncServerRunId]).toBe(report.synced.find((s) => s.cellKey === 'cell-a')!.serverRunId);
  expect(snap.some((r) => r.tags[TAGS.cellKey] === 'cell-local')).toBe(false); // not pending: not pushed
});

test('syncing twice duplicates nothing; neither does syncing a copy that lost its marks', async () => {
  const server = await newServer();
  const local = copyFixture();
  const unsynced = copyFixture();
  await syncToServer(local, server.uri, { client: noSleep });
  const first = snapshot(server);
  const requestsAfterFirst = server.requests.length;

  const second = await syncToServer(local, server.uri, { client: noSleep });
  expect(second.synced).toEqual([]);
  expect(second.skipped.filter((s) => s.reason === 'already synced')).toHaveLength(3);
  expect(server.requests.length).toBe(requestsAfterFirst); // marked runs need no request at all

  // The same runs from a copy made before the first sync: found on the server by cell key and source run.
  const third = await syncToServer(unsynced, server.uri, { client: noSleep });
  expect(third.failed).toEqual([]);
  expect(third.synced.map((s) => [s.created, s.writes])).toEqual([[false, 0], [false, 0], [false, 0]]);
  expect(snapshot(server)).toEqual(first);
});

test('--all also pushes runs that never tried a server; RUNNING ones only on request', async () => {
  const server = await newServer();
  const local = copyFixture();
  const report = await syncToServer(local, server.uri, { client: noSleep, all: true, includeRunning: true });
  expect(report.synced.map((s) => s.cellKey).sort()).toEqual(['cell-a', 'cell-b', 'cell-c', 'cell-local', 'cell-running']);
  expect(snapshot(server).find((r) => r.tags[TAGS.cellKey] === 'cell-running')!.info.status).toBe('RUNNING');
});

test('a cell that already has a FINISHED run on the server is not pushed again', async () => {
  const server = await newServer();
  const elsewhere = copyFixture();
  await syncToServer(elsewhere, server.uri, { client: noSleep });
  // Another machine ran the same cells; its local runs have other ids.
  const other = path.join(tmp, 'other-machine');
  await buildFixture(other);
  const report = await syncToServer(other, server.uri, { client: noSleep });
  expect(report.synced.map((s) => s.cellKey)).toEqual(['cell-b']); // FAILED on the server: another attempt is new data
  expect(report.skipped.filter((s) => /already on the server/.test(s.reason))).toHaveLength(2);
  expect(snapshot(server).filter((r) => r.tags[TAGS.cellKey] === 'cell-a')).toHaveLength(1);
});

describe('interrupted at every request, a rerun finishes with the same server state', () => {
  let reference: ReturnType<typeof snapshot>;
  let cleanRequests: number;
  beforeAll(async () => {
    servers = [];
    const server = await newServer();
    await syncToServer(copyFixture(), server.uri, { client: noSleep });
    reference = snapshot(server);
    cleanRequests = server.requests.length;
    await server.close();
  });

  test.each<FaultMode>(['reset', 'drop', 'unavailable'])('%s', async (mode) => {
    expect(cleanRequests).toBeGreaterThan(15);
    for (let n = 0; n <= cleanRequests; n++) {
      const server = await newServer();
      const local = copyFixture();
      server.failAfter(n, mode);
      const interrupted = await syncToServer(local, server.uri, { client: noSleep });
      expect(interrupted.aborted || interrupted.failed.length > 0).toBe(n < cleanRequests);
      server.heal();
      const rerun = await syncToServer(local, server.uri, { client: noSleep });
      expect({ n, failed: rerun.failed, aborted: rerun.aborted }).toEqual({ n, failed: [], aborted: false });
      expect({ n, state: snapshot(server) }).toEqual({ n, state: reference });
      await server.close();
      servers.pop();
    }
  });
});

describe('syncCommandMain (harmoq tracking sync)', () => {
  const capture = () => {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { stdout: (l: string) => out.push(l), stderr: (l: string) => err.push(l), client: noSleep } };
  };

  test('pushes, prints one line per run and a summary, exits 0', async () => {
    const server = await newServer();
    const local = copyFixture();
    const c = capture();
    const code = await syncCommandMain(['--from', local], { ...c.io, env: { MLFLOW_TRACKING_URI: server.uri } });
    expect(code).toBe(0);
    expect(c.out.filter((l) => l.startsWith('synced  '))).toHaveLength(3);
    expect(c.out.at(-1)).toBe('3 synced, 1 skipped, 0 failed');
    const again = capture();
    expect(await syncCommandMain(['--from', local, '--to', server.uri], again.io)).toBe(0);
    expect(again.out.at(-1)).toBe('0 synced, 4 skipped, 0 failed');
  });

  test('defaults to ./mlruns under the working folder', async () => {
    const server = await newServer();
    const cwd = path.join(tmp, 'cwd');
    fs.cpSync(fixture, path.join(cwd, 'mlruns'), { recursive: true });
    const c = capture();
    expect(await syncCommandMain(['--to', server.uri], { ...c.io, cwd, env: {} })).toBe(0);
    expect(server.runs.size).toBe(3);
  });

  test('usage errors exit 2, a server that stops answering exits 1', async () => {
    const c = capture();
    expect(await syncCommandMain(['--bogus'], { ...c.io, env: {} })).toBe(2);
    expect(c.err[0]).toMatch(/--bogus/);
    expect(await syncCommandMain([], { ...c.io, env: {} })).toBe(2);
    expect(c.err.at(-1)).toMatch(/no tracking server/);
    expect(await syncCommandMain(['--to', 'http://127.0.0.1:9', '--from', path.join(tmp, 'nope')], { ...c.io, env: {} })).toBe(2);
    expect(await syncCommandMain(['--help'], c.io)).toBe(0);
    expect(c.out.at(-1)).toMatch(/^usage: harmoq tracking sync/);

    const server = await newServer();
    server.failAfter(3, 'unavailable');
    const down = capture();
    expect(await syncCommandMain(['--from', copyFixture(), '--to', server.uri], down.io)).toBe(1);
    expect(down.out.at(-1)).toMatch(/server stopped answering; rerun to finish/);
  });
});
