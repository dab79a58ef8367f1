import type { z } from 'zod';
import { TrackingError } from './errors';
import { LIMITS, validateExperimentName, validateKey, validateRunId, validateTagValue } from './limits';
import { metricToJson, splitBatch, validateBatch } from './batch';
import {
  responses, type Experiment, type KeyValue, type LogBatch, type MetricPoint, type Run, type RunInfo,
  type RunStatus, type ViewType,
} from './types';

export interface RetryPolicy {
  /** Tries in all, the first included. */
  attempts: number;
  /** Delay before the second try; doubles each time, up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}
export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, baseDelayMs: 250, maxDelayMs: 4000 };

export interface MlflowClientOptions {
  /** `http(s)://host[:port][/prefix]`, the address `mlflow server` listens on. */
  trackingUri: string;
  retry?: Partial<RetryPolicy>;
  /** Per-request limit; a request that takes longer counts as a connection error (retried). */
  timeoutMs?: number;
  /** Injected for tests; defaults to the global fetch and setTimeout. */
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  /** Credentials, else MLFLOW_TRACKING_TOKEN (bearer) or MLFLOW_TRACKING_USERNAME / _PASSWORD (basic) from env. */
  token?: string;
  username?: string;
  password?: string;
  env?: NodeJS.ProcessEnv;
}

export interface CreateRunRequest {
  experimentId: string;
  runName?: string;
  /** Epoch ms. */
  startTime: number;
  userId?: string;
  tags?: readonly KeyValue[];
}

export interface UpdateRunRequest {
  runId: string;
  status?: RunStatus;
  endTime?: number;
  runName?: string;
}

export interface SearchRunsRequest {
  experimentIds: readonly string[];
  filter?: string;
  runViewType?: ViewType;
  maxResults?: number;
  orderBy?: readonly string[];
  pageToken?: string;
}

export interface ArtifactEntry { path: string; isDir: boolean; fileSize?: number }

type Query = Record<string, string | number | undefined>;

/**
 * A value as a search-filter string literal. MLflow's filter parser has no dependable escape for quotes,
 * so values that contain one are refused rather than half-escaped.
 */
export function filterString(value: string): string {
  if (/['\\]/.test(value)) {
    throw new TrackingError(`cannot search for '${value}': quotes and backslashes have no escape in MLflow filters`, { value });
  }
  return `'${value}'`;
}

/**
 * A typed client for the parts of MLflow's REST API this project uses (shared/docs/mlflow.md, section 2).
 * Failed requests are retried with exponential backoff when the failure says nothing about the request itself
 * (connection refused or reset, timeout, 429, 5xx), a bounded number of times; any other status is thrown at
 * once as a TrackingError with MLflow's `error_code` and message.
 */
export class MlflowClient {
  readonly trackingUri: string;
  private readonly retry: RetryPolicy;
  private readonly timeoutMs: number;
  private readonly fetchFn: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly authorization?: string;

  constructor(options: MlflowClientOptions) {
    if (!/^https?:\/\//i.test(options.trackingUri)) {
      throw new TrackingError(`MLflow server URI '${options.trackingUri}' must start with http:// or https://`, {
        value: options.trackingUri, choices: ['http://', 'https://'],
      });
    }
    this.trackingUri = options.trackingUri.replace(/\/+$/, '');
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    if (!Number.isInteger(this.retry.attempts) || this.retry.attempts < 1) {
      throw new TrackingError(`retry attempts must be a positive integer, got ${this.retry.attempts}`);
    }
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.fetchFn = options.fetch ?? fetch;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    const env = options.env ?? process.env;
    const token = options.token ?? env.MLFLOW_TRACKING_TOKEN;
    const username = options.username ?? env.MLFLOW_TRACKING_USERNAME;
    const password = options.password ?? env.MLFLOW_TRACKING_PASSWORD;
    if (token) this.authorization = `Bearer ${token}`;
    else if (username !== undefined && password !== undefined) {
      this.authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
    }
  }

  // ---- experiments ----

  /** The active experiment of that name, or undefined when there is none (404). */
  async getExperimentByName(name: string): Promise<Experiment | undefined> {
    validateExperimentName(name);
    try {
      const res = await this.call('GET', 'experiments/get-by-name', responses.getExperiment, { query: { experiment_name: name } });
      return res.experiment;
    } catch (err) {
      if (err instanceof TrackingError && err.errorCode === 'RESOURCE_DOES_NOT_EXIST') return undefined;
      throw err;
    }
  }

  async createExperiment(name: string, options: { artifactLocation?: string; tags?: readonly KeyValue[] } = {}): Promise<string> {
    validateExperimentName(name);
    const body: Record<string, unknown> = { name };
    if (options.artifactLocation !== undefined) body.artifact_location = options.artifactLocation;
    if (options.tags?.length) body.tags = options.tags;
    const res = await this.call('POST', 'experiments/create', responses.createExperiment, { body });
    return res.experiment_id;
  }

  /** The id of the experiment of that name, created when missing; a concurrent creator wins the race harmlessly. */
  async getOrCreateExperiment(name: string): Promise<string> {
    const existing = await this.getExperimentByName(name);
    if (existing) return existing.experiment_id;
    try {
      return await this.createExperiment(name);
    } catch (err) {
      if (!(err instanceof TrackingError && err.errorCode === 'RESOURCE_ALREADY_EXISTS')) throw err;
      const raced = await this.getExperimentByName(name);
      if (raced) return raced.experiment_id;
      throw new TrackingError(
        `experiment '${name}' exists but is deleted on ${this.trackingUri}: restore it or purge it with 'mlflow gc'`,
        { errorCode: err.errorCode, httpStatus: err.httpStatus, value: name, cause: err },
      );
    }
  }

  // ---- runs ----

  async createRun(request: CreateRunRequest): Promise<Run> {
    const body: Record<string, unknown> = { experiment_id: request.experimentId, start_time: request.startTime };
    if (request.runName !== undefined) body.run_name = request.runName;
    if (request.userId !== undefined) body.user_id = request.userId;
    if (request.tags?.length) {
      for (const t of request.tags) {
        validateKey('tag', t.key);
        validateTagValue(t.key, t.value);
      }
      body.tags = request.tags;
    }
    const res = await this.call('POST', 'runs/create', responses.run, { body, idempotent: false });
    return res.run;
  }

  async getRun(runId: string): Promise<Run> {
    validateRunId(runId);
    const res = await this.call('GET', 'runs/get', responses.run, { query: { run_id: runId } });
    return res.run;
  }

  async updateRun(request: UpdateRunRequest): Promise<RunInfo> {
    validateRunId(request.runId);
    const body: Record<string, unknown> = { run_id: request.runId };
    if (request.status !== undefined) body.status = request.status;
    if (request.endTime !== undefined) body.end_time = request.endTime;
    if (request.runName !== undefined) body.run_name = request.runName;
    const res = await this.call('POST', 'runs/update', responses.updateRun, { body });
    return res.run_info;
  }

  async setTag(runId: string, key: string, value: string): Promise<void> {
    validateRunId(runId);
    validateKey('tag', key);
    validateTagValue(key, value);
    await this.call('POST', 'runs/set-tag', null, { body: { run_id: runId, key, value } });
  }

  /**
   * Logs metrics, params and tags, split into as many log-batch requests as the server's limits need.
   * Returns the number of requests sent.
   */
  async logBatch(runId: string, batch: LogBatch): Promise<number> {
    validateRunId(runId);
    validateBatch(batch);
    const chunks = splitBatch(runId, batch);
    for (const chunk of chunks) {
      const body: Record<string, unknown> = { run_id: runId };
      if (chunk.metrics.length) body.metrics = chunk.metrics.map(metricToJson);
      if (chunk.params.length) body.params = chunk.params;
      if (chunk.tags.length) body.tags = chunk.tags;
      // Metric points are appended, so a batch resent after a lost answer would log them twice.
      await this.call('POST', 'runs/log-batch', null, { body, idempotent: chunk.metrics.length === 0 });
    }
    return chunks.length;
  }

  async searchRuns(request: SearchRunsRequest): Promise<{ runs: Run[]; nextPageToken?: string }> {
    const maxResults = request.maxResults ?? 1000;
    if (!Number.isInteger(maxResults) || maxResults < 1 || maxResults > LIMITS.searchMaxResults) {
      throw new TrackingError(`max_results ${maxResults} is out of range (1 to ${LIMITS.searchMaxResults})`);
    }
    const body: Record<string, unknown> = { experiment_ids: request.experimentIds, max_results: maxResults };
    if (request.filter) body.filter = request.filter;
    if (request.runViewType) body.run_view_type = request.runViewType;
    if (request.orderBy?.length) body.order_by = request.orderBy;
    if (request.pageToken) body.page_token = request.pageToken;
    const res = await this.call('POST', 'runs/search', responses.searchRuns, { body });
    return { runs: res.runs ?? [], nextPageToken: res.next_page_token || undefined };
  }

  /** Every page of a search, up to maxPages (so a server that keeps handing out tokens cannot loop us forever). */
  async searchAllRuns(request: Omit<SearchRunsRequest, 'pageToken'>, maxPages = 100): Promise<Run[]> {
    const runs: Run[] = [];
    let pageToken: string | undefined;
    for (let page = 0; page < maxPages; page++) {
      const res = await this.searchRuns({ ...request, pageToken });
      runs.push(...res.runs);
      if (!res.nextPageToken) return runs;
      pageToken = res.nextPageToken;
    }
    throw new TrackingError(`runs/search still had more pages after ${maxPages}; narrow the filter`, { value: request.filter });
  }

  /** Every logged point of one metric (metrics/get-history), in the server's order. */
  async getMetricHistory(runId: string, key: string, maxPages = 1000): Promise<MetricPoint[]> {
    validateRunId(runId);
    validateKey('metric', key);
    const points: MetricPoint[] = [];
    let pageToken: string | undefined;
    for (let page = 0; page < maxPages; page++) {
      const res = await this.call('GET', 'metrics/get-history', responses.metricHistory, {
        query: { run_id: runId, metric_key: key, max_results: 25000, page_token: pageToken },
      });
      for (const m of res.metrics ?? []) points.push({ key: m.key, value: m.value, timestamp: m.timestamp, step: m.step });
      if (!res.next_page_token) return points;
      pageToken = res.next_page_token;
    }
    throw new TrackingError(`metric history of '${key}' still had more pages after ${maxPages}`, { value: key });
  }

  // ---- artifacts ----

  /**
   * Uploads bytes to `<artifact_uri>/<relativePath>` through the server's artifact proxy (PUT on
   * mlflow-artifacts). A run whose artifact_uri is a file: or cloud URI is not proxied by the server, and the
   * client cannot reach that storage from here: that is an error naming the URI.
   */
  async uploadArtifact(artifactUri: string, relativePath: string, bytes: Uint8Array): Promise<void> {
    const url = this.artifactUrl(artifactUri, checkArtifactPath(relativePath));
    await this.send('PUT', url, null, { raw: bytes });
  }

  /** One folder of a run's artifacts (not recursive); paths come back relative to the artifact root. */
  async listArtifacts(artifactUri: string, dir = ''): Promise<ArtifactEntry[]> {
    const root = proxiedArtifactPath(artifactUri);
    if (root === undefined) throw unproxied(artifactUri);
    const full = dir ? `${root}/${checkArtifactPath(dir)}` : root;
    const url = `${this.trackingUri}/api/2.0/mlflow-artifacts/artifacts?path=${encodeURIComponent(full)}`;
    const res = await this.send('GET', url, responses.listArtifacts, {});
    // The server answers with base names; give them back relative to the run's artifact root.
    return (res.files ?? []).map((f) => ({
      path: dir ? `${dir}/${f.path.split('/').pop()}` : f.path.split('/').pop()!,
      isDir: f.is_dir ?? false,
      fileSize: f.file_size,
    }));
  }

  private artifactUrl(artifactUri: string, relativePath: string): string {
    const encoded = relativePath.split('/').map(encodeURIComponent).join('/');
    if (/^https?:\/\//i.test(artifactUri)) return `${artifactUri.replace(/\/+$/, '')}/${encoded}`;
    const root = proxiedArtifactPath(artifactUri);
    if (root === undefined) throw unproxied(artifactUri);
    const rootEncoded = root.split('/').map(encodeURIComponent).join('/');
    return `${this.trackingUri}/api/2.0/mlflow-artifacts/artifacts/${rootEncoded}/${encoded}`;
  }

  // ---- transport ----

  private async call<S extends z.ZodType>(
    method: 'GET' | 'POST', endpoint: string, schema: S | null,
    options: { query?: Query; body?: unknown; idempotent?: boolean },
  ): Promise<z.infer<S>> {
    let url = `${this.trackingUri}/api/2.0/mlflow/${endpoint}`;
    if (options.query) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(options.query)) if (v !== undefined) params.set(k, String(v));
      url += `?${params.toString()}`;
    }
    return this.send(method, url, schema, { json: options.body }, options.idempotent ?? true);
  }

  /**
   * One request with the retry policy. A request that is not idempotent is resent after a transport error only
   * when the connection was never made (refused, no route, no such host): after a reset or a timeout the
   * server may have acted on it, and the caller must look before trying again (the sync does).
   */
  private async send<S extends z.ZodType>(
    method: string, url: string, schema: S | null, payload: { json?: unknown; raw?: Uint8Array }, idempotent = true,
  ): Promise<z.infer<S>> {
    const headers: Record<string, string> = {};
    let body: string | Uint8Array | undefined;
    if (payload.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(payload.json);
    } else if (payload.raw !== undefined) {
      headers['content-type'] = 'application/octet-stream';
      body = payload.raw;
    }
    if (this.authorization) headers.authorization = this.authorization;
    const what = `${method} ${url.replace(this.trackingUri, '')}`;
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= this.retry.attempts;
      let response: Response;
      let text: string;
      try {
        response = await this.fetchFn(url, { method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
        text = await response.text();
      } catch (err) {
        const resendable = idempotent || neverConnected(err);
        if (!last && resendable) {
          await this.sleep(this.backoff(attempt));
          continue;
        }
        const reason = describeTransportError(err);
        const tries = resendable ? `${attempt} tries` : 'not resent: the server may have acted on it';
        throw new TrackingError(`MLflow server ${this.trackingUri} unreachable (${what}, ${tries}): ${reason}`, {
          unreachable: true, value: this.trackingUri, cause: err,
        });
      }
      if (response.ok) return parseBody(schema, text, what);
      const error = parseError(text);
      const retryable = response.status === 429 || response.status >= 500;
      if (retryable && !last) {
        await this.sleep(this.backoff(attempt, response.headers.get('retry-after')));
        continue;
      }
      const code = error?.error_code ?? `HTTP_${response.status}`;
      const message = error?.message ?? text.slice(0, 300);
      throw new TrackingError(
        `MLflow ${what} failed: ${response.status} ${code}: ${message}${retryable ? ` (${attempt} tries)` : ''}`,
        { errorCode: error?.error_code, httpStatus: response.status, unreachable: retryable },
      );
    }
  }

  private backoff(attempt: number, retryAfter?: string | null): number {
    const seconds = retryAfter ? Number(retryAfter) : NaN;
    if (Number.isFinite(seconds) && seconds >= 0) return Math.min(this.retry.maxDelayMs, seconds * 1000);
    return Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
  }
}

function parseBody<S extends z.ZodType>(schema: S | null, text: string, what: string): z.infer<S> {
  let json: unknown = {};
  if (text.trim() !== '') {
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new TrackingError(`MLflow ${what} answered with non-JSON: ${text.slice(0, 120)}`, { cause: err });
    }
  }
  if (schema === null) return json as z.infer<S>;
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new TrackingError(`MLflow ${what} answered in an unexpected shape: ${parsed.error.message.slice(0, 300)}`);
  }
  return parsed.data;
}

function parseError(text: string): { error_code: string; message?: string } | undefined {
  try {
    const parsed = responses.error.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Error codes that mean the request never left this machine. */
const NOT_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

function errorCodes(err: unknown, depth = 0): string[] {
  if (!err || typeof err !== 'object' || depth > 5) return [];
  const own = 'code' in err && typeof err.code === 'string' ? [err.code] : [];
  const nested = err instanceof AggregateError ? err.errors.flatMap((e) => errorCodes(e, depth + 1)) : [];
  return [...own, ...nested, ...errorCodes((err as { cause?: unknown }).cause, depth + 1)];
}

function neverConnected(err: unknown): boolean {
  const codes = errorCodes(err);
  return codes.length > 0 && codes.every((c) => NOT_CONNECTED.has(c));
}

function describeTransportError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.name === 'TimeoutError') return 'timed out';
  const codes = errorCodes(err);
  return codes.length ? `${err.message} (${[...new Set(codes)].join(', ')})` : err.message;
}

/** The `<experiment_id>/<run_id>/artifacts` part of a proxied artifact URI, or undefined for other schemes. */
export function proxiedArtifactPath(artifactUri: string): string | undefined {
  const match = /^mlflow-artifacts:(?:\/\/[^/]*)?\/?(.*)$/.exec(artifactUri);
  return match ? match[1].replace(/\/+$/, '') : undefined;
}

function unproxied(artifactUri: string): TrackingError {
  return new TrackingError(
    `artifact_uri '${artifactUri}' is not served by the tracking server; start it with artifact proxying ` +
      `(the default since MLflow 2.0, '--serve-artifacts') so artifacts can be uploaded`,
    { value: artifactUri, choices: ['mlflow-artifacts:/...', 'http(s)://...'] },
  );
}

/** Artifact paths are relative, '/'-separated, with no empty, '.' or '..' parts. */
export function checkArtifactPath(relativePath: string): string {
  const parts = relativePath.split('/');
  if (relativePath === '' || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new TrackingError(`artifact path '${relativePath}' must be relative, '/'-separated, without '.', '..' or empty parts`, {
      value: relativePath,
    });
  }
  return relativePath;
}
