import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { LIMITS, RUN_ID_PATTERN } from '../limits';
import { RUN_STATUSES, type KeyValue, type RunStatus } from '../types';

/**
 * An in-process stand-in for `mlflow server` (no MLflow can be installed here), holding its state in memory
 * and enforcing the REST contract of shared/docs/mlflow.md: the endpoints the client uses, MLflow's status
 * codes and `{error_code, message}` bodies, and the log-batch limits. Listens on 127.0.0.1 only. Metric
 * points are appended like MLflow's stores append them, so a client that logs a point twice is caught.
 *
 * Faults for the retry and resume tests: `failAfter(n, mode)` serves n more requests normally, then fails
 * every later one until `heal()`: 'reset' drops the connection unread, 'drop' processes the request and then
 * drops the connection (the client never learns it succeeded), 'unavailable' answers 503.
 */

export type FaultMode = 'reset' | 'drop' | 'unavailable';

export interface FakeMetric { key: string; value: number; timestamp: number; step: number }
export interface FakeRun {
  info: {
    run_id: string; run_uuid: string; run_name: string; experiment_id: string; user_id: string;
    status: RunStatus; start_time: number; end_time?: number; artifact_uri: string; lifecycle_stage: string;
  };
  metrics: Map<string, FakeMetric[]>;
  params: Map<string, string>;
  tags: Map<string, string>;
}
export interface FakeExperiment {
  experiment_id: string; name: string; artifact_location: string; lifecycle_stage: 'active' | 'deleted';
  creation_time: number; last_update_time: number; tags: Map<string, string>;
}
export interface RequestRecord { method: string; path: string; status: number | 'dropped' | 'reset' }

export interface FakeMlflowServer {
  /** `http://127.0.0.1:<port>` */
  readonly uri: string;
  readonly experiments: Map<string, FakeExperiment>;
  readonly runs: Map<string, FakeRun>;
  /** Uploaded artifacts by `<experiment_id>/<run_id>/artifacts/<path>`. */
  readonly artifacts: Map<string, Buffer>;
  readonly requests: RequestRecord[];
  failAfter(requests: number, mode: FaultMode): void;
  /** Fail only the next `count` requests, then serve normally again. */
  failNext(count: number, mode: FaultMode): void;
  heal(): void;
  /** Marks an experiment deleted (its name stays taken, as in MLflow until `mlflow gc`). */
  deleteExperiment(experimentId: string): void;
  close(): Promise<void>;
}

export interface FakeServerOptions {
  /** Prefix for new experiments' artifact locations; anything but 'mlflow-artifacts:' makes artifacts unproxied. */
  artifactRoot?: string;
  /** Clock for creation times (default: a fixed epoch so tests never depend on time). */
  now?: () => number;
}

class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}
const invalid = (message: string) => new ApiError(400, 'INVALID_PARAMETER_VALUE', message);
const notFound = (message: string) => new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', message);

const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

export async function startFakeMlflowServer(options: FakeServerOptions = {}): Promise<FakeMlflowServer> {
  const now = options.now ?? (() => 1_700_000_000_000);
  const artifactRoot = options.artifactRoot ?? 'mlflow-artifacts:';
  const experiments = new Map<string, FakeExperiment>();
  const runs = new Map<string, FakeRun>();
  const artifacts = new Map<string, Buffer>();
  const requests: RequestRecord[] = [];
  let nextExperimentId = 1;
  let nextRunNumber = 1;
  let fault: { after: number; remaining: number | undefined; mode: FaultMode } | undefined;

  const addExperiment = (id: string, name: string) => {
    const t = now();
    experiments.set(id, {
      experiment_id: id, name, artifact_location: `${artifactRoot}/${id}`, lifecycle_stage: 'active',
      creation_time: t, last_update_time: t, tags: new Map(),
    });
  };
  addExperiment('0', 'Default');

  const experimentJson = (e: FakeExperiment) => ({
    experiment_id: e.experiment_id, name: e.name, artifact_location: e.artifact_location,
    lifecycle_stage: e.lifecycle_stage, creation_time: e.creation_time, last_update_time: e.last_update_time,
    tags: [...e.tags].map(([key, value]) => ({ key, value })),
  });

  // MLflow leaves out empty lists and unset fields in its JSON.
  const runJson = (r: FakeRun) => {
    const latest = [...r.metrics.values()].map((points) =>
      points.reduce((best, p) => (compareLatest(p, best) > 0 ? p : best)),
    );
    const data: Record<string, unknown> = {};
    if (latest.length) data.metrics = latest.map(metricOut);
    if (r.params.size) data.params = [...r.params].map(([key, value]) => ({ key, value }));
    if (r.tags.size) data.tags = [...r.tags].map(([key, value]) => ({ key, value }));
    return { info: { ...r.info }, data, inputs: {} };
  };

  const getRun = (runId: unknown): FakeRun => {
    if (typeof runId !== 'string' || runId === '') throw invalid("Missing value for required parameter 'run_id'.");
    if (!RUN_ID_PATTERN.test(runId)) throw invalid(`Invalid run ID: '${runId}'`);
    const run = runs.get(runId);
    if (!run) throw notFound(`Run '${runId}' not found`);
    return run;
  };
  const activeRun = (runId: unknown): FakeRun => {
    const run = getRun(runId);
    if (run.info.lifecycle_stage !== 'active') {
      throw invalid(`The run ${run.info.run_id} must be in the 'active' state. Current state is ${run.info.lifecycle_stage}.`);
    }
    return run;
  };

  const setTag = (run: FakeRun, key: string, value: string) => {
    run.tags.set(key, value);
    if (key === 'mlflow.runName') run.info.run_name = value;
  };

  function handleApi(method: string, endpoint: string, query: URLSearchParams, body: Record<string, unknown>, rawLength: number): unknown {
    const route = `${method} ${endpoint}`;
    switch (route) {
      case 'GET experiments/get-by-name': {
        const name = query.get('experiment_name');
        if (!name) throw invalid("Missing value for required parameter 'experiment_name'.");
        const found = [...experiments.values()].find((e) => e.name === name && e.lifecycle_stage === 'active');
        if (!found) throw notFound(`Could not find experiment with name '${name}'`);
        return { experiment: experimentJson(found) };
      }
      case 'POST experiments/create': {
        const name = body.name;
        if (typeof name !== 'string' || name === '') throw invalid("Missing value for required parameter 'name'.");
        if (name.length > LIMITS.experimentNameLength) {
          throw invalid(`Experiment name exceeds the maximum length of ${LIMITS.experimentNameLength} characters`);
        }
        const clash = [...experiments.values()].find((e) => e.name === name);
        if (clash) {
          throw new ApiError(400, 'RESOURCE_ALREADY_EXISTS', clash.lifecycle_stage === 'deleted'
            ? `Experiment '${name}' already exists in deleted state.`
            : `Experiment '${name}' already exists.`);
        }
        const id = String(nextExperimentId++);
        addExperiment(id, name);
        for (const t of asKeyValues(body.tags, 'tags')) experiments.get(id)!.tags.set(t.key, t.value);
        return { experiment_id: id };
      }
      case 'POST runs/create': {
        const experimentId = typeof body.experiment_id === 'string' ? body.experiment_id : '0';
        const experiment = experiments.get(experimentId);
        if (!experiment) throw notFound(`Could not find experiment with ID ${experimentId}`);
        if (experiment.lifecycle_stage !== 'active') {
          throw new ApiError(400, 'INVALID_STATE', `Could not create run under non-active experiment with ID ${experimentId}.`);
        }
        const tags = asKeyValues(body.tags, 'tags');
        checkEntities({ tags });
        const nameTag = tags.find((t) => t.key === 'mlflow.runName')?.value;
        const runName = typeof body.run_name === 'string' && body.run_name ? body.run_name : nameTag ?? `run-${nextRunNumber}`;
        if (nameTag !== undefined && nameTag !== runName) {
          throw invalid(`Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values`);
        }
        const runId = (nextRunNumber++).toString(16).padStart(32, 'a');
        const run: FakeRun = {
          info: {
            run_id: runId, run_uuid: runId, run_name: runName, experiment_id: experimentId,
            user_id: typeof body.user_id === 'string' ? body.user_id : '',
            status: 'RUNNING', start_time: asInt(body.start_time ?? now(), 'start_time'),
            artifact_uri: `${experiment.artifact_location}/${runId}/artifacts`, lifecycle_stage: 'active',
          },
          metrics: new Map(), params: new Map(), tags: new Map(),
        };
        for (const t of tags) run.tags.set(t.key, t.value);
        run.tags.set('mlflow.runName', runName);
        runs.set(runId, run);
        return { run: runJson(run) };
      }
      case 'GET runs/get':
        return { run: runJson(getRun(query.get('run_id') ?? query.get('run_uuid') ?? undefined)) };
      case 'POST runs/update': {
        const run = activeRun(body.run_id ?? body.run_uuid);
        if (body.status !== undefined) {
          if (!RUN_STATUSES.includes(body.status as RunStatus)) throw invalid(`Invalid value ${String(body.status)} for parameter 'status'`);
          run.info.status = body.status as RunStatus;
        }
        if (body.end_time !== undefined) run.info.end_time = asInt(body.end_time, 'end_time');
        if (typeof body.run_name === 'string' && body.run_name) setTag(run, 'mlflow.runName', body.run_name);
        return { run_info: { ...run.info } };
      }
      case 'POST runs/set-tag': {
        const run = activeRun(body.run_id ?? body.run_uuid);
        if (typeof body.key !== 'string') throw invalid("Missing value for required parameter 'key'.");
        const value = typeof body.value === 'string' ? body.value : '';
        checkEntities({ tags: [{ key: body.key, value }] });
        setTag(run, body.key, value);
        return {};
      }
      case 'POST runs/log-batch': {
        if (rawLength > LIMITS.batchBodyBytes) {
          throw invalid(`Batched logging API requests must be at most ${LIMITS.batchBodyBytes} bytes, got a request of size ${rawLength}.`);
        }
        const run = activeRun(body.run_id);
        const params = asKeyValues(body.params, 'params');
        const tags = asKeyValues(body.tags, 'tags');
        const metrics = asMetrics(body.metrics);
        for (const [name, count, limit] of [
          ['metrics', metrics.length, LIMITS.metricsPerBatch], ['params', params.length, LIMITS.paramsPerBatch],
          ['tags', tags.length, LIMITS.tagsPerBatch],
          ['metrics, params, and tags', metrics.length + params.length + tags.length, LIMITS.entitiesPerBatch],
        ] as const) {
          if (count > limit) {
            throw invalid(`A batch logging request can contain at most ${limit} ${name}. Got ${count} ${name}. Please split up ${name} across multiple requests and try again.`);
          }
        }
        checkEntities({ params, tags, metrics });
        for (const p of params) {
          const old = run.params.get(p.key);
          if (old !== undefined && old !== p.value) {
            throw invalid(`Changing param values is not allowed. Param with key='${p.key}' was already logged with value='${old}' for run ID='${run.info.run_id}'. Attempted logging new value '${p.value}'.`);
          }
        }
        for (const p of params) run.params.set(p.key, p.value);
        for (const m of metrics) {
          const points = run.metrics.get(m.key) ?? [];
          points.push(m);
          run.metrics.set(m.key, points);
        }
        for (const t of tags) setTag(run, t.key, t.value);
        return {};
      }
      case 'POST runs/search':
        return searchRuns(body);
      case 'GET metrics/get-history': {
        const run = getRun(query.get('run_id') ?? query.get('run_uuid') ?? undefined);
        const key = query.get('metric_key');
        if (!key) throw invalid("Missing value for required parameter 'metric_key'.");
        const points = run.metrics.get(key) ?? [];
        const maxResults = Number(query.get('max_results') ?? 25000);
        const offset = decodePageToken(query.get('page_token') ?? undefined);
        const page = points.slice(offset, offset + maxResults);
        const out: Record<string, unknown> = {};
        if (page.length) out.metrics = page.map(metricOut);
        if (offset + maxResults < points.length) out.next_page_token = encodePageToken(offset + maxResults);
        return out;
      }
      default:
        throw new ApiError(404, 'ENDPOINT_NOT_FOUND', `No API endpoint ${method} ${endpoint}`);
    }
  }

  function searchRuns(body: Record<string, unknown>): unknown {
    const ids = body.experiment_ids;
    if (!Array.isArray(ids) || ids.length === 0) throw invalid("Missing value for required parameter 'experiment_ids'.");
    const maxResults = body.max_results === undefined ? 1000 : asInt(body.max_results, 'max_results');
    if (maxResults < 1 || maxResults > LIMITS.searchMaxResults) {
      throw invalid(`Invalid value for request parameter max_results. It must be at most ${LIMITS.searchMaxResults}, but got value ${maxResults}`);
    }
    const view = (body.run_view_type as string | undefined) ?? 'ACTIVE_ONLY';
    const clauses = parseFilter(typeof body.filter === 'string' ? body.filter : '');
    const matching = [...runs.values()]
      .filter((r) => ids.includes(r.info.experiment_id))
      .filter((r) => view === 'ALL' || (view === 'DELETED_ONLY') === (r.info.lifecycle_stage === 'deleted'))
      .filter((r) => clauses.every((c) => c(r)))
      .sort((a, b) => b.info.start_time - a.info.start_time || a.info.run_id.localeCompare(b.info.run_id));
    const offset = decodePageToken(typeof body.page_token === 'string' ? body.page_token : undefined);
    const page = matching.slice(offset, offset + maxResults);
    const out: Record<string, unknown> = {};
    if (page.length) out.runs = page.map(runJson);
    if (offset + maxResults < matching.length) out.next_page_token = encodePageToken(offset + maxResults);
    return out;
  }

  function handleArtifacts(method: string, rest: string, query: URLSearchParams, raw: Buffer): { status: number; body: unknown; bytes?: Buffer } {
    if (method === 'GET' && rest === '') {
      const dir = (query.get('path') ?? '').replace(/\/+$/, '');
      const prefix = dir ? `${dir}/` : '';
      const entries = new Map<string, { is_dir: boolean; file_size?: number }>();
      for (const [p, bytes] of artifacts) {
        if (!p.startsWith(prefix)) continue;
        const [head, ...tail] = p.slice(prefix.length).split('/');
        entries.set(head, tail.length ? { is_dir: true } : { is_dir: false, file_size: bytes.length });
      }
      const files = [...entries].map(([name, e]) => ({ path: name, ...e }));
      return { status: 200, body: files.length ? { files } : {} };
    }
    const artifactPath = decodeURIComponent(rest.replace(/^\//, ''));
    if (artifactPath.split('/').some((p) => p === '..' || p === '.' || p === '')) {
      throw invalid(`Invalid path: '${artifactPath}'`);
    }
    if (method === 'PUT') {
      artifacts.set(artifactPath, raw);
      return { status: 200, body: {} };
    }
    if (method === 'GET') {
      const bytes = artifacts.get(artifactPath);
      if (!bytes) throw notFound(`File not found: ${artifactPath}`);
      return { status: 200, body: undefined, bytes };
    }
    throw new ApiError(405, 'BAD_REQUEST', `${method} is not allowed on artifacts`);
  }

  function tripFault(): FaultMode | undefined {
    if (!fault) return undefined;
    if (fault.after > 0) {
      fault.after--;
      return undefined;
    }
    if (fault.remaining !== undefined) {
      fault.remaining--;
      const mode = fault.mode;
      if (fault.remaining <= 0) fault = undefined;
      return mode;
    }
    return fault.mode;
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REQUEST_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const method = req.method ?? 'GET';
      const record: RequestRecord = { method, path: url.pathname, status: 0 };
      requests.push(record);
      const mode = tripFault();
      if (mode === 'reset') {
        record.status = 'reset';
        req.socket.destroy();
        return;
      }
      if (mode === 'unavailable') {
        record.status = 503;
        sendJson(res, 503, { error_code: 'TEMPORARILY_UNAVAILABLE', message: 'The server is temporarily unavailable.' });
        return;
      }
      let status = 200;
      let payload: unknown = {};
      let bytes: Buffer | undefined;
      try {
        if (size > MAX_REQUEST_BYTES) throw new ApiError(413, 'REQUEST_LIMIT_EXCEEDED', `request of ${size} bytes is too large`);
        const raw = Buffer.concat(chunks);
        const api = /^\/(?:ajax-)?api\/2\.0\/mlflow\/(.+)$/.exec(url.pathname);
        const art = /^\/(?:ajax-)?api\/2\.0\/mlflow-artifacts\/artifacts(\/.*)?$/.exec(url.pathname);
        if (api) {
          let body: Record<string, unknown> = {};
          if (method === 'POST') {
            try {
              body = raw.length ? (JSON.parse(raw.toString('utf8')) as Record<string, unknown>) : {};
            } catch {
              throw new ApiError(400, 'MALFORMED_REQUEST', 'Malformed request: the body is not valid JSON');
            }
          }
          payload = handleApi(method, api[1], url.searchParams, body, raw.length);
        } else if (art) {
          const out = handleArtifacts(method, art[1] ?? '', url.searchParams, raw);
          status = out.status;
          payload = out.body;
          bytes = out.bytes;
        } else {
          throw new ApiError(404, 'ENDPOINT_NOT_FOUND', `No route for ${method} ${url.pathname}`);
        }
      } catch (err) {
        if (err instanceof ApiError) {
          status = err.status;
          payload = { error_code: err.code, message: err.message };
        } else {
          status = 500;
          payload = { error_code: 'INTERNAL_ERROR', message: String(err) };
        }
      }
      if (mode === 'drop') {
        record.status = 'dropped';
        req.socket.destroy();
        return;
      }
      record.status = status;
      if (bytes) {
        res.writeHead(status, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
        res.end(bytes);
      } else sendJson(res, status, payload);
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    uri: `http://127.0.0.1:${port}`,
    experiments, runs, artifacts, requests,
    failAfter(count, mode) {
      fault = { after: count, remaining: undefined, mode };
    },
    failNext(count, mode) {
      fault = { after: 0, remaining: count, mode };
    },
    heal() {
      fault = undefined;
    },
    deleteExperiment(experimentId) {
      const e = experiments.get(experimentId);
      if (!e) throw new Error(`no experiment ${experimentId}`);
      e.lifecycle_stage = 'deleted';
      for (const r of runs.values()) if (r.info.experiment_id === experimentId) r.info.lifecycle_stage = 'deleted';
    },
    close() {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function sendJson(res: http.ServerResponse, status: number, payload: unknown): void {
  const text = JSON.stringify(payload ?? {});
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function asInt(value: unknown, field: string): number {
  const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw invalid(`Invalid value ${String(value)} for parameter '${field}' supplied.`);
  return n;
}

function asKeyValues(value: unknown, field: string): KeyValue[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalid(`Invalid value ${JSON.stringify(value)} for parameter '${field}' supplied.`);
  return value.map((item) => {
    const kv = item as { key?: unknown; value?: unknown };
    if (typeof kv.key !== 'string') throw invalid(`Missing value for required parameter '${field}.key'.`);
    return { key: kv.key, value: kv.value === undefined || kv.value === null ? '' : String(kv.value) };
  });
}

function asMetrics(value: unknown): FakeMetric[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalid(`Invalid value ${JSON.stringify(value)} for parameter 'metrics' supplied.`);
  return value.map((item) => {
    const m = item as { key?: unknown; value?: unknown; timestamp?: unknown; step?: unknown };
    if (typeof m.key !== 'string') throw invalid("Missing value for required parameter 'metrics.key'.");
    let v: number;
    if (typeof m.value === 'number') v = m.value;
    else if (m.value === 'NaN') v = NaN;
    else if (m.value === 'Infinity') v = Infinity;
    else if (m.value === '-Infinity') v = -Infinity;
    else throw invalid(`Got invalid value ${JSON.stringify(m.value)} for metric '${m.key}'. Please specify value as a valid double (64-bit floating point)`);
    if (m.timestamp === undefined) throw invalid("Missing value for required parameter 'metrics.timestamp'.");
    const timestamp = asInt(m.timestamp, 'metrics.timestamp');
    return { key: m.key, value: v, timestamp, step: m.step === undefined ? 0 : asInt(m.step, 'metrics.step') };
  });
}

/**
 * The server's own validation (mlflow/utils/validation.py as mlflow.md summarises it), written apart from the
 * client's checks so the tests do not grade the client with its own code.
 */
function checkEntities(batch: { params?: KeyValue[]; tags?: KeyValue[]; metrics?: FakeMetric[] }): void {
  const checkName = (kind: string, key: string) => {
    const parts = key.split('/');
    if (!/^[\p{L}\p{N}_\/.\- :]*$/u.test(key)) {
      throw invalid(`Invalid ${kind} name: '${key}'. Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/).`);
    }
    if (key === '' || parts.some((p) => p === '' || p === '.' || p === '..')) {
      throw invalid(`Invalid ${kind} name: '${key}'. Names may be treated as files in certain cases, and must not resolve to other names when treated as such.`);
    }
    if (key.length > LIMITS.keyLength) {
      throw invalid(`${kind} name '${key}' had length ${key.length}, which exceeded length limit of ${LIMITS.keyLength}`);
    }
  };
  const seen = new Set<string>();
  for (const p of batch.params ?? []) {
    checkName('parameter', p.key);
    if (p.value.length > LIMITS.paramValueLength) {
      throw invalid(`Param value '${p.value.slice(0, 250)}' had length ${p.value.length}, which exceeded length limit of ${LIMITS.paramValueLength}`);
    }
    if (seen.has(p.key)) throw invalid(`Duplicate parameter keys have been submitted: ['${p.key}'].`);
    seen.add(p.key);
  }
  for (const t of batch.tags ?? []) {
    checkName('tag', t.key);
    if (t.value.length > LIMITS.tagValueLength) {
      throw invalid(`Tag value '${t.value.slice(0, 250)}' had length ${t.value.length}, which exceeded length limit of ${LIMITS.tagValueLength}`);
    }
  }
  for (const m of batch.metrics ?? []) {
    checkName('metric', m.key);
    if (m.timestamp < 0) throw invalid(`Got invalid timestamp ${m.timestamp} for metric '${m.key}'. Timestamp must be a nonnegative long (64-bit integer)`);
  }
}

function metricOut(m: FakeMetric) {
  const value = Number.isNaN(m.value) ? 'NaN' : m.value === Infinity ? 'Infinity' : m.value === -Infinity ? '-Infinity' : m.value;
  return { key: m.key, value, timestamp: m.timestamp, step: m.step };
}

/** MLflow's "latest" point: the largest (step, timestamp, value). */
function compareLatest(a: FakeMetric, b: FakeMetric): number {
  return a.step - b.step || a.timestamp - b.timestamp || a.value - b.value;
}

function encodePageToken(offset: number): string {
  return Buffer.from(JSON.stringify({ offset })).toString('base64');
}
function decodePageToken(token: string | undefined): number {
  if (!token) return 0;
  try {
    const { offset } = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as { offset: unknown };
    if (typeof offset === 'number' && Number.isInteger(offset) && offset >= 0) return offset;
  } catch {
    // fall through
  }
  throw invalid(`Invalid page token '${token}'`);
}

const ENTITIES = new Set(['tags', 'tag', 'params', 'param', 'metrics', 'metric', 'attributes', 'attribute', 'attr', 'run']);

/** The filter subset this project sends: `<entity>.<key> <op> <literal>` clauses joined by `and`. */
function parseFilter(filter: string): ((run: FakeRun) => boolean)[] {
  if (filter.trim() === '') return [];
  const clauses = filter.split(/\s+and\s+(?=(?:[^']*'[^']*')*[^']*$)/i);
  return clauses.map((clause) => {
    const m = /^\s*(\w+)\.(`[^`]+`|"[^"]+"|[\w.\-/:]+)\s*(<=|>=|!=|=|<|>)\s*('(?:[^']*)'|"(?:[^"]*)"|-?[\d.]+(?:e-?\d+)?)\s*$/i.exec(clause);
    if (!m) throw invalid(`Invalid filter '${filter}': could not parse '${clause.trim()}'`);
    const entity = m[1].toLowerCase();
    if (!ENTITIES.has(entity)) throw invalid(`Invalid entity type '${m[1]}' in filter '${filter}'`);
    const key = /^[`"]/.test(m[2]) ? m[2].slice(1, -1) : m[2];
    const op = m[3];
    const literal = m[4];
    const isString = /^['"]/.test(literal);
    const expected: string | number = isString ? literal.slice(1, -1) : Number(literal);
    const read = (run: FakeRun): string | number | undefined => {
      switch (entity) {
        case 'tags': case 'tag': return run.tags.get(key);
        case 'params': case 'param': return run.params.get(key);
        case 'metrics': case 'metric': {
          const points = run.metrics.get(key);
          return points?.reduce((best, p) => (compareLatest(p, best) > 0 ? p : best)).value;
        }
        default: {
          const v = (run.info as unknown as Record<string, unknown>)[key];
          return typeof v === 'string' || typeof v === 'number' ? v : undefined;
        }
      }
    };
    if ((entity.startsWith('tag') || entity.startsWith('param')) && !isString) {
      throw invalid(`Invalid filter '${filter}': ${entity} values must be quoted strings`);
    }
    return (run: FakeRun) => {
      const actual = read(run);
      if (actual === undefined) return false;
      switch (op) {
        case '=': return actual === expected;
        case '!=': return actual !== expected;
        case '<': return actual < expected;
        case '<=': return actual <= expected;
        case '>': return actual > expected;
        default: return actual >= expected;
      }
    };
  });
}
