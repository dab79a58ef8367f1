import { MlflowClient, filterString } from './rest-client';
import { TrackingError } from './errors';
import { startFakeMlflowServer, type FakeMlflowServer } from './testing/fake-mlflow-server';
import type { MetricPoint } from './types';

let server: FakeMlflowServer;
let delays: number[];
let client: MlflowClient;

beforeEach(async () => {
  server = await startFakeMlflowServer();
  delays = [];
  client = new MlflowClient({ trackingUri: server.uri, env: {}, sleep: async (ms) => { delays.push(ms); } });
});
afterEach(() => server.close());

/** What the server answers to a raw request, for checks the client would refuse to send. */
async function raw(method: string, endpoint: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${server.uri}/api/2.0/mlflow/${endpoint}`, {
    method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function rejection(promise: Promise<unknown>): Promise<TrackingError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(TrackingError);
    return err as TrackingError;
  }
  throw new Error('expected a rejection');
}

const points = (n: number, key = 'loss'): MetricPoint[] =>
  Array.from({ length: n }, (_, i) => ({ key, value: i / 7, timestamp: 1_700_000_000_000 + i, step: i }));

describe('experiments', () => {
  test('get-by-name: undefined when absent (404 RESOURCE_DOES_NOT_EXIST), the experiment when present', async () => {
    expect(await client.getExperimentByName('asymmetry')).toBeUndefined();
    expect(server.requests.at(-1)).toMatchObject({ method: 'GET', path: '/api/2.0/mlflow/experiments/get-by-name', status: 404 });
    const id = await client.createExperiment('asymmetry', { tags: [{ key: 'project', value: 'harmoq' }] });
    const exp = await client.getExperimentByName('asymmetry');
    expect(exp).toMatchObject({ experiment_id: id, name: 'asymmetry', artifact_location: `mlflow-artifacts:/${id}`, lifecycle_stage: 'active' });
    expect(exp!.tags).toEqual([{ key: 'project', value: 'harmoq' }]);
  });

  test('a duplicate name is 400 RESOURCE_ALREADY_EXISTS, carried on the error', async () => {
    await client.createExperiment('main');
    const err = await rejection(client.createExperiment('main'));
    expect(err.errorCode).toBe('RESOURCE_ALREADY_EXISTS');
    expect(err.httpStatus).toBe(400);
    expect(err.unreachable).toBe(false);
    expect(err.message).toContain("Experiment 'main' already exists.");
    expect(server.requests.filter((r) => r.path.endsWith('experiments/create'))).toHaveLength(2); // not retried
  });

  test('getOrCreateExperiment: creates once, then finds; loses a creation race gracefully', async () => {
    const id = await client.getOrCreateExperiment('sensitivity');
    expect(await client.getOrCreateExperiment('sensitivity')).toBe(id);
    expect(server.experiments.size).toBe(2); // Default + sensitivity

    // Another client creates the experiment between our look-up and our create.
    let raced = false;
    const racing = new MlflowClient({
      trackingUri: server.uri, env: {},
      fetch: async (input, init) => {
        if (!raced && String(input).includes('experiments/create')) {
          raced = true;
          await client.createExperiment('components');
        }
        return fetch(input, init);
      },
    });
    const racedId = await racing.getOrCreateExperiment('components');
    expect(racedId).toBe((await client.getExperimentByName('components'))!.experiment_id);
  });

  test('a deleted experiment blocks its name with an error that says so', async () => {
    const id = await client.createExperiment('old');
    server.deleteExperiment(id);
    const err = await rejection(client.getOrCreateExperiment('old'));
    expect(err.errorCode).toBe('RESOURCE_ALREADY_EXISTS');
    expect(err.message).toMatch(/deleted.*mlflow gc/);
  });

  test('experiment names are checked before sending', async () => {
    await expect(client.createExperiment('')).rejects.toThrow(TrackingError);
    await expect(client.createExperiment('x'.repeat(501))).rejects.toThrow(/1 to 500/);
    expect(server.requests).toHaveLength(0);
  });
});

describe('runs', () => {
  let experimentId: string;
  beforeEach(async () => { experimentId = await client.createExperiment('main'); });

  test('create, get, update, set-tag', async () => {
    const run = await client.createRun({
      experimentId, runName: 'cell-1', startTime: 1_700_000_000_000, userId: 'alice', tags: [{ key: 'harmoq.cellKey', value: 'k1' }],
    });
    expect(run.info).toMatchObject({ experiment_id: experimentId, run_name: 'cell-1', status: 'RUNNING', user_id: 'alice', start_time: 1_700_000_000_000 });
    expect(run.info.artifact_uri).toBe(`mlflow-artifacts:/${experimentId}/${run.info.run_id}/artifacts`);
    expect(run.data.tags).toEqual(expect.arrayContaining([{ key: 'harmoq.cellKey', value: 'k1' }, { key: 'mlflow.runName', value: 'cell-1' }]));

    await client.setTag(run.info.run_id, 'backend', 'wasm');
    const info = await client.updateRun({ runId: run.info.run_id, status: 'FINISHED', endTime: 1_700_000_005_000 });
    expect(info).toMatchObject({ status: 'FINISHED', end_time: 1_700_000_005_000 });
    const again = await client.getRun(run.info.run_id);
    expect(again.data.tags).toEqual(expect.arrayContaining([{ key: 'backend', value: 'wasm' }]));
    expect(again.info.status).toBe('FINISHED');
  });

  test('an unknown run is 404 RESOURCE_DOES_NOT_EXIST', async () => {
    const err = await rejection(client.getRun('ffffffffffffffffffffffffffffffff'));
    expect(err.errorCode).toBe('RESOURCE_DOES_NOT_EXIST');
    expect(err.httpStatus).toBe(404);
    expect(err.message).toContain("Run 'ffffffffffffffffffffffffffffffff' not found");
    const missingExperiment = await rejection(client.createRun({ experimentId: '999', startTime: 0 }));
    expect(missingExperiment.errorCode).toBe('RESOURCE_DOES_NOT_EXIST');
  });

  test('log-batch over the limits goes out as several requests, each accepted, nothing lost', async () => {
    const run = await client.createRun({ experimentId, startTime: 0 });
    const id = run.info.run_id;
    const params = Array.from({ length: 250 }, (_, i) => ({ key: `cfg.p${i}`, value: String(i) }));
    const tags = Array.from({ length: 150 }, (_, i) => ({ key: `t${i}`, value: 'x'.repeat(8000) }));
    const metrics = [...points(2500), ...points(10, 'Set5/psnr')];
    const before = server.requests.length;
    const sent = await client.logBatch(id, { params, tags, metrics });
    const batches = server.requests.slice(before);
    expect(batches).toHaveLength(sent);
    expect(batches.every((r) => r.path.endsWith('runs/log-batch') && r.status === 200)).toBe(true);
    // Greedy, in order: 100 | 100 params | 50 params + 100 tags (800 kB) | 50 tags + 950 metrics | 1000 | 560 metrics.
    expect(sent).toBe(6);
    const stored = server.runs.get(id)!;
    expect(stored.params.size).toBe(250);
    expect(stored.tags.get('t149')).toHaveLength(8000);
    expect(stored.metrics.get('loss')).toHaveLength(2500);
    expect(stored.metrics.get('loss')!.map((m) => m.step)).toEqual(Array.from({ length: 2500 }, (_, i) => i));
    expect(stored.metrics.get('Set5/psnr')).toHaveLength(10);
  });

  test('the server itself refuses oversized batches with MLflow error bodies', async () => {
    const { info } = await client.createRun({ experimentId, startTime: 0 });
    const tooManyMetrics = await raw('POST', 'runs/log-batch', { run_id: info.run_id, metrics: points(1001) });
    expect(tooManyMetrics.status).toBe(400);
    expect(tooManyMetrics.json).toEqual({
      error_code: 'INVALID_PARAMETER_VALUE',
      message: 'A batch logging request can contain at most 1000 metrics. Got 1001 metrics. Please split up metrics across multiple requests and try again.',
    });
    const tooManyParams = await raw('POST', 'runs/log-batch', {
      run_id: info.run_id, params: Array.from({ length: 101 }, (_, i) => ({ key: `p${i}`, value: '1' })),
    });
    expect(tooManyParams.status).toBe(400);
    expect(tooManyParams.json.message).toContain('at most 100 params');
    const tooManyEntities = await raw('POST', 'runs/log-batch', {
      run_id: info.run_id, metrics: points(950), tags: Array.from({ length: 51 }, (_, i) => ({ key: `t${i}`, value: '1' })),
    });
    expect(tooManyEntities.json.message).toContain('at most 1000 metrics, params, and tags');
    const tooBig = await raw('POST', 'runs/log-batch', {
      run_id: info.run_id,
      tags: Array.from({ length: 100 }, (_, i) => ({ key: `t${i}`, value: 'x'.repeat(8000) })),
      params: Array.from({ length: 100 }, (_, i) => ({ key: `p${i}`, value: 'x'.repeat(6000) })),
    });
    expect(tooBig.status).toBe(400);
    expect(tooBig.json.message).toMatch(/must be at most 1000000 bytes/);
    const badKey = await raw('POST', 'runs/log-batch', { run_id: info.run_id, params: [{ key: '../escape', value: '1' }] });
    expect(badKey).toMatchObject({ status: 400, json: { error_code: 'INVALID_PARAMETER_VALUE' } });
    const longValue = await raw('POST', 'runs/log-batch', { run_id: info.run_id, params: [{ key: 'p', value: 'x'.repeat(6001) }] });
    expect(longValue.json.message).toContain('exceeded length limit of 6000');
    expect(server.runs.get(info.run_id)!.params.size).toBe(0); // every refused batch left nothing behind
  });

  test('params are immutable: the same value again is fine, another value is 400 INVALID_PARAMETER_VALUE', async () => {
    const { info } = await client.createRun({ experimentId, startTime: 0 });
    await client.logBatch(info.run_id, { params: [{ key: 'bits', value: '4' }] });
    await client.logBatch(info.run_id, { params: [{ key: 'bits', value: '4' }] });
    const err = await rejection(client.logBatch(info.run_id, { params: [{ key: 'bits', value: '8' }] }));
    expect(err.errorCode).toBe('INVALID_PARAMETER_VALUE');
    expect(err.message).toContain("Param with key='bits' was already logged with value='4'");
  });

  test('bad keys are refused by the client before any request', async () => {
    const { info } = await client.createRun({ experimentId, startTime: 0 });
    const before = server.requests.length;
    await expect(client.logBatch(info.run_id, { metrics: [{ key: 'a//b', value: 1, timestamp: 0, step: 0 }] })).rejects.toThrow(/'a\/\/b'/);
    await expect(client.setTag(info.run_id, 'x'.repeat(251), 'v')).rejects.toThrow(/251 characters/);
    expect(server.requests.length).toBe(before);
  });

  test('non-finite metric values travel as proto3 JSON strings and come back as numbers', async () => {
    const { info } = await client.createRun({ experimentId, startTime: 0 });
    await client.logBatch(info.run_id, { metrics: [
      { key: 'a', value: NaN, timestamp: 1, step: 0 }, { key: 'a', value: Infinity, timestamp: 2, step: 1 },
      { key: 'a', value: -Infinity, timestamp: 3, step: 2 }, { key: 'a', value: 0.1, timestamp: 4, step: 3 },
    ] });
    const history = await client.getMetricHistory(info.run_id, 'a');
    expect(history.map((m) => m.value)).toEqual([NaN, Infinity, -Infinity, 0.1]);
    expect(history.map((m) => m.step)).toEqual([0, 1, 2, 3]);
    expect(await client.getMetricHistory(info.run_id, 'never-logged')).toEqual([]);
  });

  test('search by tag filter, newest first, across pages', async () => {
    for (let i = 0; i < 5; i++) {
      await client.createRun({ experimentId, startTime: 1000 + i, tags: [{ key: 'harmoq.cellKey', value: i % 2 ? 'odd' : 'even' }] });
    }
    const filter = `tags.\`harmoq.cellKey\` = ${filterString('even')}`;
    const page1 = await client.searchRuns({ experimentIds: [experimentId], filter, maxResults: 2 });
    expect(page1.runs.map((r) => r.info.start_time)).toEqual([1004, 1002]);
    expect(page1.nextPageToken).toBeDefined();
    const all = await client.searchAllRuns({ experimentIds: [experimentId], filter, maxResults: 2 });
    expect(all.map((r) => r.info.start_time)).toEqual([1004, 1002, 1000]);
    const none = await client.searchRuns({ experimentIds: [experimentId], filter: "tags.`harmoq.cellKey` = 'none'" });
    expect(none).toEqual({ runs: [], nextPageToken: undefined });
    expect(() => filterString("it's")).toThrow(TrackingError);
    await expect(client.searchRuns({ experimentIds: [experimentId], maxResults: 50001 })).rejects.toThrow(/out of range/);
    const bad = await rejection(client.searchRuns({ experimentIds: [experimentId], filter: 'nonsense' }));
    expect(bad.errorCode).toBe('INVALID_PARAMETER_VALUE');
  });

  test('a search that never stops paging is cut off', async () => {
    const endless = new MlflowClient({
      trackingUri: server.uri, env: {},
      fetch: async () => new Response(JSON.stringify({ runs: [], next_page_token: 'more' }), { status: 200 }),
    });
    await expect(endless.searchAllRuns({ experimentIds: ['0'] }, 5)).rejects.toThrow(/after 5/);
  });
});

describe('artifacts through mlflow-artifacts', () => {
  test('PUT, list, download', async () => {
    const experimentId = await client.createExperiment('main');
    const { info } = await client.createRun({ experimentId, startTime: 0 });
    const uri = info.artifact_uri!;
    await client.uploadArtifact(uri, 'config.json', Buffer.from('{"bits":4}'));
    await client.uploadArtifact(uri, 'crops/baby x4.png', new Uint8Array([1, 2, 3]));
    expect(server.artifacts.get(`${experimentId}/${info.run_id}/artifacts/crops/baby x4.png`)).toEqual(Buffer.from([1, 2, 3]));
    const put = server.requests.find((r) => r.method === 'PUT');
    expect(put!.path).toBe(`/api/2.0/mlflow-artifacts/artifacts/${experimentId}/${info.run_id}/artifacts/config.json`);
    expect(await client.listArtifacts(uri)).toEqual(expect.arrayContaining([
      { path: 'config.json', isDir: false, fileSize: 10 }, { path: 'crops', isDir: true, fileSize: undefined },
    ]));
    expect(await client.listArtifacts(uri, 'crops')).toEqual([{ path: 'crops/baby x4.png', isDir: false, fileSize: 3 }]);
    const res = await fetch(`${server.uri}/api/2.0/mlflow-artifacts/artifacts/${experimentId}/${info.run_id}/artifacts/config.json`);
    expect(await res.text()).toBe('{"bits":4}');
  });

  test('bad paths and unproxied artifact stores are errors naming the value', async () => {
    await expect(client.uploadArtifact('mlflow-artifacts:/1/r/artifacts', '../x', new Uint8Array())).rejects.toThrow(/'\.\.\/x'/);
    const err = await rejection(client.uploadArtifact('s3://bucket/1/r/artifacts', 'a.txt', new Uint8Array()));
    expect(err.value).toBe('s3://bucket/1/r/artifacts');
    expect(server.requests).toHaveLength(0);
  });
});

describe('retries and errors', () => {
  test('5xx is retried with doubling backoff, then succeeds', async () => {
    server.failNext(2, 'unavailable');
    expect(await client.getExperimentByName('Default')).toMatchObject({ experiment_id: '0' });
    expect(delays).toEqual([250, 500]);
    expect(server.requests.map((r) => r.status)).toEqual([503, 503, 200]);
  });

  test('a reset connection is retried like a 5xx', async () => {
    server.failNext(3, 'reset');
    expect(await client.getExperimentByName('Default')).toBeDefined();
    expect(delays).toEqual([250, 500, 1000]);
  });

  test('retries are bounded: after the last try the error says the server is unreachable', async () => {
    server.failAfter(0, 'unavailable');
    const err = await rejection(client.createExperiment('x'));
    expect(err.unreachable).toBe(true);
    expect(err.httpStatus).toBe(503);
    expect(err.errorCode).toBe('TEMPORARILY_UNAVAILABLE');
    expect(server.requests).toHaveLength(4);
    expect(delays).toEqual([250, 500, 1000]);

    const capped = new MlflowClient({
      trackingUri: server.uri, env: {}, retry: { attempts: 7, baseDelayMs: 100, maxDelayMs: 800 },
      sleep: async (ms) => { delays.push(ms); },
    });
    delays = [];
    await rejection(capped.getRun('ab'));
    expect(delays).toEqual([100, 200, 400, 800, 800, 800]);
  });

  test('a lost answer is not resent when resending would duplicate: metric batches and run creation', async () => {
    const experimentId = await client.createExperiment('main');
    const { info } = await client.createRun({ experimentId, startTime: 0 });
    server.failNext(1, 'drop'); // processed, then the connection is cut
    const err = await rejection(client.logBatch(info.run_id, { metrics: [{ key: 'm', value: 1, timestamp: 1, step: 0 }] }));
    expect(err.unreachable).toBe(true);
    expect(err.message).toContain('not resent');
    expect(server.runs.get(info.run_id)!.metrics.get('m')).toHaveLength(1);

    server.failNext(1, 'drop');
    await client.logBatch(info.run_id, { params: [{ key: 'p', value: '1' }], tags: [{ key: 't', value: '1' }] }); // idempotent: resent
    expect(server.runs.get(info.run_id)!.params.get('p')).toBe('1');

    server.failNext(1, 'reset');
    await rejection(client.createRun({ experimentId, startTime: 0 }));
    expect(delays).toEqual([250]);
  });

  test('a refused connection is resent even for a metric batch (nothing reached the server)', async () => {
    let calls = 0;
    const refusing = new MlflowClient({
      trackingUri: server.uri, env: {}, sleep: async () => {},
      fetch: async (input, init) => {
        if (++calls <= 2) {
          throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
        }
        return fetch(input, init);
      },
    });
    const experimentId = await client.createExperiment('main');
    const { info } = await client.createRun({ experimentId, startTime: 0 });
    await refusing.logBatch(info.run_id, { metrics: [{ key: 'm', value: 1, timestamp: 1, step: 0 }] });
    expect(calls).toBe(3);
    expect(server.runs.get(info.run_id)!.metrics.get('m')).toHaveLength(1);
  });

  test('4xx is not retried', async () => {
    await rejection(client.getRun('ab'));
    expect(server.requests).toHaveLength(1);
    expect(delays).toEqual([]);
  });

  test('connection refused: unreachable after the retries', async () => {
    const closed = await startFakeMlflowServer();
    const uri = closed.uri;
    await closed.close();
    const offline = new MlflowClient({ trackingUri: uri, env: {}, retry: { attempts: 2 }, sleep: async () => {} });
    const err = await rejection(offline.getExperimentByName('x'));
    expect(err.unreachable).toBe(true);
    expect(err.message).toContain(uri);
    expect(err.httpStatus).toBeUndefined();
  });

  test('credentials from the environment become an Authorization header', async () => {
    const seen: (string | null)[] = [];
    const spy: typeof fetch = async (input, init) => {
      seen.push(new Headers(init?.headers).get('authorization'));
      return fetch(input, init);
    };
    await new MlflowClient({ trackingUri: server.uri, fetch: spy, env: { MLFLOW_TRACKING_TOKEN: 't0k' } }).getExperimentByName('Default');
    await new MlflowClient({
      trackingUri: server.uri, fetch: spy, env: { MLFLOW_TRACKING_USERNAME: 'u', MLFLOW_TRACKING_PASSWORD: 'p' },
    }).getExperimentByName('Default');
    expect(seen).toEqual(['Bearer t0k', `Basic ${Buffer.from('u:p').toString('base64')}`]);
  });

  test('an answer of the wrong shape is an error, not a crash later', async () => {
    const odd = new MlflowClient({
      trackingUri: server.uri, env: {}, fetch: async () => new Response('{"experiment": {"name": 3}}', { status: 200 }),
    });
    await expect(odd.getExperimentByName('x')).rejects.toThrow(/unexpected shape/);
  });

  test('only http(s) URIs make a client', () => {
    expect(() => new MlflowClient({ trackingUri: 'file:///tmp/mlruns' })).toThrow(/http:\/\/ or https:\/\//);
  });
});
