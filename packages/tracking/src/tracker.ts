import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TrackingError, isUnreachable } from './errors';
import { FileStore, type LocalRunInfo } from './file-store';
import { MlflowClient, type MlflowClientOptions } from './rest-client';
import { validateBatch } from './batch';
import { flattenParams } from './params';
import { resolveTrackingUri, DEFAULT_LOCAL_DIR, type TrackingTarget } from './uri';
import { END_STATUSES, TAGS, type EndStatus, type KeyValue, type LogBatch, type MetricPoint } from './types';
import { checkArtifactPath } from './rest-client';

export interface TrackerOptions {
  /** Where runs go; default MLFLOW_TRACKING_URI from env, else ./mlruns (see resolveTrackingUri). */
  trackingUri?: string;
  /**
   * The local store a run falls back to when the server cannot be reached; default ./mlruns. Runs there are
   * tagged `harmoq.sync=pending` for `syncToServer`.
   */
  fallbackDir?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Retry policy, timeouts, credentials and an injectable fetch for the server client. */
  client?: Omit<MlflowClientOptions, 'trackingUri'>;
  /** Epoch ms clock for start/end times and metric timestamps. */
  now?: () => number;
  userId?: string;
  /** `mlflow.source.name`: the entry point; default the script node was started with. */
  sourceName?: string;
  /** Told when a run leaves the server for the local store; default: one line on stderr. */
  onFallback?: (event: { error: TrackingError; serverUri: string; localRoot: string; runName: string }) => void;
  /** Injected for tests: how new local run ids are made. */
  newRunId?: () => string;
}

export interface StartRunOptions {
  experiment: string;
  /** Shown in the MLflow UI; default the cell key. */
  runName?: string;
  /** The cell key; every run carries it as the `harmoq.cellKey` tag, and sync matches runs by it. */
  cellKey: string;
  /** The resolved config: nested objects are flattened to dotted keys (flattenParams). */
  params?: Record<string, unknown>;
  tags?: Record<string, string>;
}

/** Where a run lives and how to write to it: the server (REST) or a local store folder. */
export interface RunSink {
  readonly location: 'server' | 'local';
  readonly runId: string;
  readonly experimentId: string;
  readonly artifactUri: string;
  logBatch(batch: LogBatch): Promise<void>;
  writeArtifact(relativePath: string, bytes: Uint8Array): Promise<void>;
  finish(status: EndStatus, endTime: number): Promise<void>;
}

class ServerSink implements RunSink {
  readonly location = 'server';
  constructor(
    private readonly client: MlflowClient,
    readonly runId: string,
    readonly experimentId: string,
    readonly artifactUri: string,
  ) {}
  async logBatch(batch: LogBatch): Promise<void> {
    await this.client.logBatch(this.runId, batch);
  }
  async writeArtifact(relativePath: string, bytes: Uint8Array): Promise<void> {
    await this.client.uploadArtifact(this.artifactUri, relativePath, bytes);
  }
  async finish(status: EndStatus, endTime: number): Promise<void> {
    await this.client.updateRun({ runId: this.runId, status, endTime });
  }
}

class LocalSink implements RunSink {
  readonly location = 'local';
  constructor(private readonly store: FileStore, private readonly info: LocalRunInfo) {}
  get runId(): string { return this.info.runId; }
  get experimentId(): string { return this.info.experimentId; }
  get artifactUri(): string { return this.info.artifactUri; }
  async logBatch(batch: LogBatch): Promise<void> {
    this.store.logBatch(this.info, batch);
  }
  async writeArtifact(relativePath: string, bytes: Uint8Array): Promise<void> {
    this.store.logArtifact(this.info, relativePath, bytes);
  }
  async finish(status: EndStatus, endTime: number): Promise<void> {
    this.store.updateRun(this.info, { status, endTime });
  }
}

/**
 * What was logged to a server run so far, so the run can move to the local store whole if the server goes
 * away midway. Dropped once the run is local.
 */
export interface Journal {
  experiment: string;
  runName: string;
  startTime: number;
  userId: string;
  params: KeyValue[];
  tags: Map<string, string>;
  metrics: MetricPoint[];
}

/**
 * The tracking facade the experiments use: one MLflow run per cell, on the server when MLFLOW_TRACKING_URI
 * names one and it answers, otherwise in the local ./mlruns store (marked for `syncToServer` when a server
 * was wanted but unreachable). Nothing logged is lost when the server fails midway: the run moves to the
 * local store with everything logged so far.
 */
export class Tracker {
  readonly target: TrackingTarget;
  private readonly options: TrackerOptions;
  private readonly now: () => number;
  private client?: MlflowClient;
  private readonly stores = new Map<string, FileStore>();
  private readonly serverExperiments = new Map<string, string>();
  /** Set by the first fallback: later runs of this tracker go straight to the local store (no retry wait per cell). */
  private serverDown?: TrackingError;
  private warned = false;

  constructor(options: TrackerOptions = {}) {
    this.options = options;
    const env = options.env ?? process.env;
    const cwd = options.cwd ?? process.cwd();
    this.target = resolveTrackingUri(options.trackingUri ?? env.MLFLOW_TRACKING_URI, cwd);
    this.now = options.now ?? Date.now;
    if (this.target.kind === 'server') {
      this.client = new MlflowClient({ ...options.client, env, trackingUri: this.target.uri });
    }
  }

  /** The folder local runs go to: the target itself, or the fallback for a server target. */
  get localRoot(): string {
    if (this.target.kind === 'local') return this.target.root;
    return path.resolve(this.options.cwd ?? process.cwd(), this.options.fallbackDir ?? DEFAULT_LOCAL_DIR);
  }

  localStore(root: string = this.localRoot): FileStore {
    let store = this.stores.get(root);
    if (!store) {
      store = new FileStore(root, { now: this.now, newRunId: this.options.newRunId });
      this.stores.set(root, store);
    }
    return store;
  }

  async startRun(options: StartRunOptions): Promise<TrackedRun> {
    if (typeof options.cellKey !== 'string' || !/^[\w.:-]{1,250}$/.test(options.cellKey)) {
      throw new TrackingError(`cell key '${options.cellKey}' must be 1 to 250 letters, digits, '_', '.', ':' or '-'`, {
        value: String(options.cellKey),
      });
    }
    const runName = options.runName ?? options.cellKey;
    const userId = this.options.userId ?? safeUserName();
    const params = Object.entries(flattenParams(options.params ?? {})).map(([key, value]) => ({ key, value }));
    const tags = new Map<string, string>([
      [TAGS.user, userId],
      [TAGS.sourceType, 'LOCAL'],
      [TAGS.sourceName, this.options.sourceName ?? path.basename(process.argv[1] ?? 'harmoq')],
      ...Object.entries(options.tags ?? {}),
      [TAGS.cellKey, options.cellKey],
      [TAGS.runName, runName],
    ]);
    // Bad keys or values fail here, the same way for either backend, before anything is written.
    validateBatch({ params, tags: [...tags].map(([key, value]) => ({ key, value })) });
    const journal: Journal = {
      experiment: options.experiment, runName, startTime: this.now(), userId, params, tags, metrics: [],
    };

    if (!this.client) {
      return new TrackedRun(this, this.startLocal(journal, new Map()), undefined, false);
    }
    if (this.serverDown) return new TrackedRun(this, this.fallBack(journal, this.serverDown, undefined), undefined, true);
    let serverRunId: string | undefined;
    try {
      let experimentId = this.serverExperiments.get(options.experiment);
      if (experimentId === undefined) {
        experimentId = await this.client.getOrCreateExperiment(options.experiment);
        this.serverExperiments.set(options.experiment, experimentId);
      }
      const run = await this.client.createRun({
        experimentId, runName, startTime: journal.startTime, userId,
        tags: [...tags].map(([key, value]) => ({ key, value })),
      });
      serverRunId = run.info.run_id;
      const sink = new ServerSink(this.client, run.info.run_id, experimentId, run.info.artifact_uri ?? '');
      if (params.length) await sink.logBatch({ params });
      return new TrackedRun(this, sink, journal, false);
    } catch (err) {
      if (!isUnreachable(err)) throw err;
      return new TrackedRun(this, this.fallBack(journal, err as TrackingError, serverRunId), undefined, true);
    }
  }

  /** @internal Moves a run to the local store with everything in its journal, tagged for sync. */
  fallBack(journal: Journal, error: TrackingError, serverRunId: string | undefined): RunSink {
    const serverUri = this.client!.trackingUri;
    const syncTags = new Map<string, string>([[TAGS.syncState, 'pending'], [TAGS.syncServerUri, serverUri]]);
    if (serverRunId) syncTags.set(TAGS.syncServerRunId, serverRunId);
    const sink = this.startLocal(journal, syncTags);
    this.serverDown = error;
    const notify = this.options.onFallback ?? ((e) => {
      if (this.warned) return;
      this.warned = true;
      process.stderr.write(
        `tracking: ${e.serverUri} unreachable (${e.error.message}); run '${e.runName}' kept in ${e.localRoot}, ` +
          `push it (and later runs of this process, kept there too) with 'npx harmoq tracking sync'\n`,
      );
    });
    notify({ error, serverUri, localRoot: this.localRoot, runName: journal.runName });
    return sink;
  }

  private startLocal(journal: Journal, extraTags: Map<string, string>): LocalSink {
    const store = this.localStore();
    const experimentId = store.getOrCreateExperiment(journal.experiment);
    const tags = new Map([...journal.tags, ...extraTags]);
    const info = store.createRun({
      experimentId, runName: journal.runName, startTime: journal.startTime, userId: journal.userId,
      tags: [...tags].map(([key, value]) => ({ key, value })),
    });
    const sink = new LocalSink(store, info);
    store.logBatch(info, { params: journal.params, metrics: journal.metrics });
    return sink;
  }

  /** @internal */
  timestamp(): number {
    return this.now();
  }
}

/** One MLflow run, as returned by Tracker.startRun. */
export class TrackedRun {
  private ended = false;

  /** @internal */
  constructor(
    private readonly tracker: Tracker,
    private sink: RunSink,
    /** Set while the run is on the server; what it would take to move it to the local store. */
    private journal: Journal | undefined,
    private fellBack: boolean,
  ) {}

  /** The run's id where it lives now (it changes if the run falls back from the server to the local store). */
  get runId(): string { return this.sink.runId; }
  get experimentId(): string { return this.sink.experimentId; }
  get artifactUri(): string { return this.sink.artifactUri; }
  get location(): 'server' | 'local' { return this.sink.location; }
  /** True when the run is local only because the server could not be reached; `syncToServer` will push it. */
  get pendingSync(): boolean { return this.fellBack; }

  /** Logs metric values at one step (default 0), timestamped now. */
  async logMetrics(values: Record<string, number>, step = 0): Promise<void> {
    const timestamp = this.tracker.timestamp();
    const metrics = Object.entries(values).map(([key, value]) => ({ key, value, timestamp, step }));
    await this.log({ metrics });
  }

  async logParams(params: Record<string, unknown>): Promise<void> {
    await this.log({ params: Object.entries(flattenParams(params)).map(([key, value]) => ({ key, value })) });
  }

  async setTags(tags: Record<string, string>): Promise<void> {
    await this.log({ tags: Object.entries(tags).map(([key, value]) => ({ key, value })) });
  }

  /**
   * Logs a file, a folder (recursively) or bytes as an artifact. `artifactPath` is the destination relative to
   * the run's artifact root: default the file or folder name; required for bytes.
   */
  async logArtifact(source: string | Uint8Array, artifactPath?: string): Promise<void> {
    this.assertOpen();
    const files: { rel: string; bytes: Uint8Array }[] = [];
    if (typeof source === 'string') {
      const dest = checkArtifactPath(artifactPath ?? path.basename(source));
      const stat = fs.statSync(source, { throwIfNoEntry: false });
      if (!stat) throw new TrackingError(`artifact source '${source}' does not exist`, { value: source });
      if (stat.isDirectory()) {
        for (const rel of listFiles(source)) files.push({ rel: `${dest}/${rel}`, bytes: fs.readFileSync(path.join(source, rel)) });
      } else files.push({ rel: dest, bytes: fs.readFileSync(source) });
    } else {
      if (artifactPath === undefined) throw new TrackingError('logArtifact(bytes) needs an artifactPath to name the file');
      files.push({ rel: checkArtifactPath(artifactPath), bytes: source });
    }
    for (const file of files) {
      await this.onSink((sink) => sink.writeArtifact(file.rel, file.bytes), true);
    }
  }

  /** Ends the run (default FINISHED) with the end time now. Later calls on this run are errors. */
  async end(status: EndStatus = 'FINISHED'): Promise<void> {
    if (!END_STATUSES.includes(status)) {
      throw new TrackingError(`run status '${status}' is not an end state`, { value: String(status), choices: END_STATUSES });
    }
    this.assertOpen();
    const endTime = this.tracker.timestamp();
    await this.onSink((sink) => sink.finish(status, endTime), true);
    this.ended = true;
    this.journal = undefined;
  }

  private async log(batch: LogBatch): Promise<void> {
    this.assertOpen();
    validateBatch(batch);
    if (this.journal) {
      this.journal.params.push(...(batch.params ?? []));
      for (const t of batch.tags ?? []) this.journal.tags.set(t.key, t.value);
      this.journal.metrics.push(...(batch.metrics ?? []));
    }
    // The journal already holds this batch, so a fallback replays it and it need not be repeated.
    await this.onSink((sink) => sink.logBatch(batch), false);
  }

  /** Runs an operation where the run lives; if the server is unreachable, moves the run local first. */
  private async onSink(op: (sink: RunSink) => Promise<void>, repeatAfterFallback: boolean): Promise<void> {
    try {
      await op(this.sink);
    } catch (err) {
      if (!(this.sink instanceof ServerSink) || !this.journal || !isUnreachable(err)) throw err;
      this.sink = this.tracker.fallBack(this.journal, err as TrackingError, this.sink.runId);
      this.journal = undefined;
      this.fellBack = true;
      if (repeatAfterFallback) await op(this.sink);
    }
  }

  private assertOpen(): void {
    if (this.ended) throw new TrackingError(`run ${this.runId} has already ended`, { value: this.runId });
  }
}

function safeUserName(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown';
  }
}

function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const d of fs.readdirSync(path.join(dir, prefix), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const rel = prefix ? `${prefix}/${d.name}` : d.name;
    if (d.isDirectory()) out.push(...listFiles(dir, rel));
    else if (d.isFile()) out.push(rel);
  }
  return out;
}
