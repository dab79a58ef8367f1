import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Tracker } from './tracker';
import { FileStore } from './file-store';
import { resolveTrackingUri } from './uri';
import { flattenParams } from './params';
import { syncToServer } from './sync';
import { TrackingError } from './errors';
import { TAGS } from './types';
import { startFakeMlflowServer, type FakeMlflowServer } from './testing/fake-mlflow-server';

let tmp: string;
let clock: number;
const now = () => (clock += 1000);
const noSleep = { sleep: async () => {} };
/** A fetch that never reaches anything, as when the server host is down. */
const downFetch: typeof fetch = async () => {
  throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
};

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tracking-tracker-'));
  clock = 1_700_000_000_000;
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function onlyRun(root: string) {
  const store = new FileStore(root);
  const runs = store.listExperiments().flatMap((e) => store.listRuns(e.experimentId).map((r) => ({ e, r })));
  expect(runs).toHaveLength(1);
  return { experiment: runs[0].e, run: store.readRun(runs[0].r) };
}

describe('tracking URI', () => {
  test.each([
    [undefined, { kind: 'local', root: '/w/mlruns' }],
    ['', { kind: 'local', root: '/w/mlruns' }],
    ['http://127.0.0.1:5000/', { kind: 'server', uri: 'http://127.0.0.1:5000' }],
    ['https://mlflow.example.org/prefix', { kind: 'server', uri: 'https://mlflow.example.org/prefix' }],
    ['file:///data/mlruns', { kind: 'local', root: '/data/mlruns' }],
    ['file:runs/here', { kind: 'local', root: '/w/runs/here' }],
    ['other/mlruns', { kind: 'local', root: '/w/other/mlruns' }],
    ['/abs/mlruns', { kind: 'local', root: '/abs/mlruns' }],
  ])('%p', (raw, expected) => {
    expect(resolveTrackingUri(raw, '/w')).toEqual(expected);
  });
  test('database and Databricks URIs are refused with the choices', () => {
    expect(() => resolveTrackingUri('sqlite:///mlflow.db', '/w')).toThrow(/'sqlite' scheme/);
    expect(() => resolveTrackingUri('postgresql://u@h/db', '/w')).toThrow(/'postgresql' scheme/);
    expect(() => resolveTrackingUri('databricks', '/w')).toThrow(/'databricks'/);
    expect(() => new Tracker({ trackingUri: 'sqlite:///x.db' })).toThrow(/choices|scheme/);
  });
});

test('flattenParams: dotted keys, text leaves, sorted', () => {
  expect(flattenParams({ model: { depth: 6, window: 8, name: 'swinir' }, bits: 4, scales: [2, 3], fast: true, seed: null, note: undefined, empty: {} })).toEqual({
    bits: '4', empty: '{}', fast: 'true', 'model.depth': '6', 'model.name': 'swinir', 'model.window': '8', scales: '[2,3]', seed: 'null',
  });
  expect(Object.keys(flattenParams({ b: 1, a: { z: 1, c: 2 } }))).toEqual(['a.c', 'a.z', 'b']);
  expect(flattenParams({ at: new Date(0) })).toEqual({ at: '1970-01-01T00:00:00.000Z' });
  expect(flattenParams({})).toEqual({});
});

describe('local store (the default)', () => {
  test('a run with params, metrics, artifacts and the cell key lands in ./mlruns', async () => {
    const tracker = new Tracker({ cwd: tmp, env: {}, now, userId: 'alice', sourceName: 'harmoq' });
    expect(tracker.target).toEqual({ kind: 'local', root: path.join(tmp, 'mlruns') });
    const run = await tracker.startRun({
      experiment: 'asymmetry', runName: 'minmax w4 x2', cellKey: 'c0ffee',
      params: { model: { depth: 6 }, bits: 4 }, tags: { backend: 'wasm', [TAGS.gitCommit]: 'a'.repeat(40) },
    });
    expect(run.location).toBe('local');
    expect(run.pendingSync).toBe(false);
    await run.logMetrics({ 'Set5/psnr': 32.25, 'Set5/ssim': 0.9 });
    await run.logMetrics({ calib_loss: 0.5 }, 1);
    await run.logMetrics({ calib_loss: 0.25 }, 2);
    await run.logArtifact(Buffer.from('{"bits":4}'), 'config.json');
    const cropDir = path.join(tmp, 'crops');
    fs.mkdirSync(path.join(cropDir, 'x2'), { recursive: true });
    fs.writeFileSync(path.join(cropDir, 'x2', 'baby.png'), 'png');
    await run.logArtifact(cropDir);
    const single = path.join(tmp, 'metrics.json');
    fs.writeFileSync(single, '{}');
    await run.logArtifact(single, 'results/metrics.json');
    await run.end();

    const { experiment, run: stored } = onlyRun(path.join(tmp, 'mlruns'));
    expect(experiment.name).toBe('asymmetry');
    expect(stored.info).toMatchObject({ runName: 'minmax w4 x2', status: 'FINISHED', userId: 'alice', startTime: 1_700_000_001_000 });
    expect(stored.info.endTime).toBeGreaterThan(stored.info.startTime);
    expect(stored.params).toEqual({ bits: '4', 'model.depth': '6' });
    expect(stored.tags).toEqual({
      backend: 'wasm', [TAGS.gitCommit]: 'a'.repeat(40), [TAGS.cellKey]: 'c0ffee', [TAGS.runName]: 'minmax w4 x2',
      [TAGS.user]: 'alice', [TAGS.sourceType]: 'LOCAL', [TAGS.sourceName]: 'harmoq',
    });
    expect(stored.metrics.map((m) => [m.key, m.value, m.step])).toEqual([
      ['Set5/psnr', 32.25, 0], ['Set5/ssim', 0.9, 0], ['calib_loss', 0.5, 1], ['calib_loss', 0.25, 2],
    ]);
    expect(stored.artifacts).toEqual(['config.json', 'crops/x2/baby.png', 'results/metrics.json']);
    await expect(run.logMetrics({ late: 1 })).rejects.toThrow(/already ended/);
  });

  test('MLFLOW_TRACKING_URI=file:... picks another folder', async () => {
    const tracker = new Tracker({ cwd: tmp, env: { MLFLOW_TRACKING_URI: 'file:elsewhere' }, now });
    const run = await tracker.startRun({ experiment: 'e', cellKey: 'k' });
    await run.end('KILLED');
    expect(onlyRun(path.join(tmp, 'elsewhere')).run.info).toMatchObject({ status: 'KILLED', runName: 'k' });
  });

  test('bad input fails before anything is written', async () => {
    const tracker = new Tracker({ cwd: tmp, env: {}, now });
    await expect(tracker.startRun({ experiment: 'e', cellKey: "it's" })).rejects.toThrow(/cell key/);
    await expect(tracker.startRun({ experiment: 'e', cellKey: 'k', params: { 'bad!key': 1 } })).rejects.toThrow(/'bad!key'/);
    await expect(tracker.startRun({ experiment: 'e', cellKey: 'k', tags: { t: 'x'.repeat(8001) } })).rejects.toThrow(TrackingError);
    expect(fs.existsSync(path.join(tmp, 'mlruns'))).toBe(false);
    const run = await tracker.startRun({ experiment: 'e', cellKey: 'k' });
    await expect(run.logArtifact(new Uint8Array(1))).rejects.toThrow(/needs an artifactPath/);
    await expect(run.end('RUNNING' as 'FINISHED')).rejects.toThrow(/not an end state/);
  });
});

describe('tracking server', () => {
  let server: FakeMlflowServer;
  beforeEach(async () => { server = await startFakeMlflowServer(); });
  afterEach(() => server.close());

  test('MLFLOW_TRACKING_URI=http://... sends the run to the server and nothing to disk', async () => {
    const tracker = new Tracker({ cwd: tmp, env: { MLFLOW_TRACKING_URI: server.uri }, now, userId: 'bob', client: noSleep });
    const run = await tracker.startRun({ experiment: 'main', cellKey: 'k1', params: { bits: 4 }, tags: { preset: 'quick' } });
    expect(run.location).toBe('server');
    await run.logMetrics({ psnr: 30.5 });
    await run.logArtifact(Buffer.from('cfg'), 'config.json');
    await run.end();
    const stored = server.runs.get(run.runId)!;
    expect(stored.info).toMatchObject({ status: 'FINISHED', user_id: 'bob', run_name: 'k1' });
    expect(Object.fromEntries(stored.params)).toEqual({ bits: '4' });
    expect(stored.tags.get(TAGS.cellKey)).toBe('k1');
    expect(stored.tags.get('preset')).toBe('quick');
    expect(stored.metrics.get('psnr')!.map((m) => m.value)).toEqual([30.5]);
    expect(server.artifacts.get(`${run.experimentId}/${run.runId}/artifacts/config.json`)!.toString()).toBe('cfg');
    expect(fs.existsSync(path.join(tmp, 'mlruns'))).toBe(false);
  });

  test('a server refusal (4xx) is an error, not a silent fallback', async () => {
    const tracker = new Tracker({ cwd: tmp, env: { MLFLOW_TRACKING_URI: server.uri }, now, client: noSleep });
    const run = await tracker.startRun({ experiment: 'main', cellKey: 'k1', params: { bits: 4 } });
    await expect(run.logParams({ bits: 8 })).rejects.toMatchObject({ errorCode: 'INVALID_PARAMETER_VALUE', httpStatus: 400 });
    expect(run.location).toBe('server');
    expect(fs.existsSync(path.join(tmp, 'mlruns'))).toBe(false);
  });
});

describe('offline fallback', () => {
  test('server unreachable at start: the run goes to ./mlruns marked for sync', async () => {
    const fallbacks: string[] = [];
    let attempts = 0;
    const tracker = new Tracker({
      cwd: tmp, env: { MLFLOW_TRACKING_URI: 'http://127.0.0.1:9' }, now,
      client: { fetch: (input, init) => { attempts++; return downFetch(input, init); }, ...noSleep },
      onFallback: (e) => fallbacks.push(e.error.message),
    });
    const run = await tracker.startRun({ experiment: 'main', cellKey: 'k1', params: { bits: 4 } });
    expect(run.location).toBe('local');
    expect(run.pendingSync).toBe(true);
    await run.logMetrics({ psnr: 31 });
    await run.end();
    expect(fallbacks).toHaveLength(1);
    expect(fallbacks[0]).toMatch(/unreachable.*ECONNREFUSED/);
    const { run: stored } = onlyRun(path.join(tmp, 'mlruns'));
    expect(stored.tags[TAGS.syncState]).toBe('pending');
    expect(stored.tags[TAGS.syncServerUri]).toBe('http://127.0.0.1:9');
    expect(stored.tags[TAGS.syncServerRunId]).toBeUndefined();
    expect(stored.params).toEqual({ bits: '4' });
    expect(stored.info.status).toBe('FINISHED');
    expect(attempts).toBe(4); // the default retry policy, then no more

    // Later runs of the same tracker go straight to the local store, without waiting on retries again.
    const second = await tracker.startRun({ experiment: 'main', cellKey: 'k2' });
    expect(second.pendingSync).toBe(true);
    expect(attempts).toBe(4);
    expect(fallbacks).toHaveLength(2);
  });

  test('server lost midway: the run moves local whole, and sync puts it back without duplicates', async () => {
    const server = await startFakeMlflowServer();
    try {
      const tracker = new Tracker({
        cwd: tmp, env: { MLFLOW_TRACKING_URI: server.uri }, now, client: noSleep, onFallback: () => {},
      });
      const run = await tracker.startRun({ experiment: 'main', cellKey: 'cell-7', params: { bits: 4 }, tags: { preset: 'quick' } });
      const serverRunId = run.runId;
      for (let step = 0; step < 3; step++) await run.logMetrics({ calib_loss: 1 / (step + 1) }, step);
      await run.logArtifact(Buffer.from('early'), 'early.txt');

      server.failAfter(0, 'drop'); // the next log-batch lands on the server but its answer is lost
      await run.logMetrics({ calib_loss: 0.2 }, 3);
      expect(run.location).toBe('local');
      expect(run.pendingSync).toBe(true);
      await run.logMetrics({ calib_loss: 0.1 }, 4);
      await run.logArtifact(Buffer.from('late'), 'late.txt');
      await run.end('FINISHED');

      const { run: local } = onlyRun(path.join(tmp, 'mlruns'));
      expect(local.tags[TAGS.syncServerRunId]).toBe(serverRunId);
      expect(local.metrics.map((m) => m.step)).toEqual([0, 1, 2, 3, 4]); // everything, including what went online
      expect(local.params).toEqual({ bits: '4' });
      expect(local.tags.preset).toBe('quick');

      server.heal();
      const report = await syncToServer(path.join(tmp, 'mlruns'), server.uri, { client: noSleep });
      expect(report.failed).toEqual([]);
      expect(report.synced).toEqual([expect.objectContaining({ serverRunId, created: false, cellKey: 'cell-7' })]);
      expect(server.runs.size).toBe(1);
      const stored = server.runs.get(serverRunId)!;
      // Step 3 reached the server before the connection dropped: it is there once, not twice.
      expect(stored.metrics.get('calib_loss')!.map((m) => m.step).sort()).toEqual([0, 1, 2, 3, 4]);
      expect(stored.info.status).toBe('FINISHED');
      expect(stored.info.end_time).toBe(local.info.endTime);
      expect([...server.artifacts.keys()].sort()).toEqual([
        `${stored.info.experiment_id}/${serverRunId}/artifacts/early.txt`, `${stored.info.experiment_id}/${serverRunId}/artifacts/late.txt`,
      ]);
      expect(stored.tags.get(TAGS.syncState)).toBeUndefined(); // local bookkeeping stays local
    } finally {
      await server.close();
    }
  });
});
