import { parseArgs } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TrackingError, isUnreachable } from './errors';
import { FileStore, type LocalRun } from './file-store';
import { MlflowClient, filterString, type MlflowClientOptions } from './rest-client';
import { formatPythonFloat } from './pyfloat';
import { resolveTrackingUri, DEFAULT_LOCAL_DIR } from './uri';
import { TAGS, type KeyValue, type MetricPoint, type Run } from './types';

export interface SyncOptions {
  /** Push every local run that has a cell key, not only those marked pending by a fallback. */
  all?: boolean;
  /** Also push runs still marked RUNNING (by default they are left: a live process may still write to them). */
  includeRunning?: boolean;
  client?: Omit<MlflowClientOptions, 'trackingUri'>;
  /** Told about each run as it is handled. */
  onRun?: (outcome: SyncOutcome) => void;
}

export type SyncOutcome =
  | { kind: 'synced'; localRunId: string; experiment: string; cellKey: string; serverRunId: string; created: boolean; writes: number }
  | { kind: 'skipped'; localRunId: string; experiment: string; reason: string }
  | { kind: 'failed'; localRunId: string; experiment: string; error: string };

export interface SyncReport {
  synced: Extract<SyncOutcome, { kind: 'synced' }>[];
  skipped: Extract<SyncOutcome, { kind: 'skipped' }>[];
  failed: Extract<SyncOutcome, { kind: 'failed' }>[];
  /** True when the server stopped answering and the remaining runs were not tried; rerun to finish. */
  aborted: boolean;
}

/** Local-only bookkeeping tags, never copied to the server. */
const LOCAL_ONLY_TAGS = new Set<string>([TAGS.syncState, TAGS.syncServerUri, TAGS.syncServerRunId]);

/**
 * Pushes local runs to a tracking server, idempotently by cell key: a run is first looked for on the server
 * (by the server run id a fallback recorded, else by its `harmoq.cellKey` tag), then only what the server
 * lacks is sent: params and tags it does not hold, metric points missing from its history (compared as
 * (timestamp, step, value) multisets, so a batch that landed before a dropped connection is not logged
 * twice), artifacts missing or of another size, and the end status. The local run is marked synced last.
 * Killed at any point, a rerun finishes the job without duplicates. A cell that already has a FINISHED run on
 * the server from elsewhere is not pushed again.
 */
export async function syncToServer(localDir: string, serverUri: string, options: SyncOptions = {}): Promise<SyncReport> {
  const target = resolveTrackingUri(serverUri);
  if (target.kind !== 'server') {
    throw new TrackingError(`sync needs a tracking server URI, got '${serverUri}'`, { value: serverUri, choices: ['http://...', 'https://...'] });
  }
  const root = path.resolve(localDir);
  if (!fs.existsSync(root)) throw new TrackingError(`local tracking folder '${root}' does not exist`, { value: root });
  const store = new FileStore(root);
  const client = new MlflowClient({ ...options.client, trackingUri: target.uri });
  const report: SyncReport = { synced: [], skipped: [], failed: [], aborted: false };
  const record = (outcome: SyncOutcome) => {
    if (outcome.kind === 'synced') report.synced.push(outcome);
    else if (outcome.kind === 'skipped') report.skipped.push(outcome);
    else report.failed.push(outcome);
    options.onRun?.(outcome);
  };
  const experimentIds = new Map<string, string>();

  for (const experiment of store.listExperiments()) {
    for (const info of store.listRuns(experiment.experimentId)) {
      if (info.lifecycleStage !== 'active') continue;
      const local = store.readRun(info);
      const state = local.tags[TAGS.syncState];
      const base = { localRunId: info.runId, experiment: experiment.name };
      if (state === 'synced' && local.tags[TAGS.syncServerUri] === client.trackingUri) {
        record({ kind: 'skipped', ...base, reason: 'already synced' });
        continue;
      }
      if (!options.all && state !== 'pending') continue;
      const cellKey = local.tags[TAGS.cellKey];
      if (!cellKey) {
        record({ kind: 'skipped', ...base, reason: `no ${TAGS.cellKey} tag to match it by` });
        continue;
      }
      if (info.status === 'RUNNING' && !options.includeRunning) {
        record({ kind: 'skipped', ...base, reason: 'still RUNNING (pass includeRunning to push it anyway)' });
        continue;
      }
      try {
        let experimentId = experimentIds.get(experiment.name);
        if (experimentId === undefined) {
          experimentId = await client.getOrCreateExperiment(experiment.name);
          experimentIds.set(experiment.name, experimentId);
        }
        record(await syncRun(client, store, local, experimentId, cellKey, experiment.name));
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        record({ kind: 'failed', ...base, error: message });
        if (isUnreachable(err)) {
          report.aborted = true;
          return report;
        }
      }
    }
  }
  return report;
}

async function syncRun(
  client: MlflowClient, store: FileStore, local: LocalRun, experimentId: string, cellKey: string, experiment: string,
): Promise<SyncOutcome> {
  const localRunId = local.info.runId;
  let target = await findRecordedRun(client, local);
  if (!target) {
    const candidates = await client.searchAllRuns({
      experimentIds: [experimentId],
      filter: `tags.\`${TAGS.cellKey}\` = ${filterString(cellKey)}`,
      runViewType: 'ACTIVE_ONLY',
    });
    target =
      candidates.find((r) => tagOf(r, TAGS.syncSourceRunId) === localRunId) ??
      // The Tracker creates its server run with the local run's start time; if that create's answer was lost,
      // the server holds an unfinished run of this cell, from no sync, started at that very millisecond.
      candidates.find((r) => tagOf(r, TAGS.syncSourceRunId) === undefined && r.info.status !== 'FINISHED' &&
        r.info.start_time === local.info.startTime);
    if (!target) {
      const finished = candidates.find((r) => r.info.status === 'FINISHED');
      if (finished) {
        markSynced(store, local, client.trackingUri, finished.info.run_id);
        return { kind: 'skipped', localRunId, experiment, reason: `cell ${cellKey} is already on the server as run ${finished.info.run_id}` };
      }
    }
  }
  let writes = 0; // requests that change the server: create, log-batch, artifact PUT, update
  const created = target === undefined;
  if (!target) {
    // The cell key and source id go in with the create, so a rerun finds this run even if we die right after.
    target = await client.createRun({
      experimentId,
      runName: local.info.runName || undefined,
      startTime: local.info.startTime,
      userId: local.info.userId || undefined,
      tags: [{ key: TAGS.cellKey, value: cellKey }, { key: TAGS.syncSourceRunId, value: localRunId }],
    });
    writes++;
  }
  const serverRunId = target.info.run_id;

  const serverParams = new Map((target.data.params ?? []).map((p) => [p.key, p.value]));
  const serverTags = new Map((target.data.tags ?? []).map((t) => [t.key, t.value]));
  const params: KeyValue[] = Object.entries(local.params)
    .filter(([key, value]) => serverParams.get(key) !== value)
    .map(([key, value]) => ({ key, value }));
  const wantedTags: Record<string, string> = { ...local.tags, [TAGS.syncSourceRunId]: localRunId };
  const tags: KeyValue[] = Object.entries(wantedTags)
    .filter(([key, value]) => !LOCAL_ONLY_TAGS.has(key) && serverTags.get(key) !== value)
    .map(([key, value]) => ({ key, value }));
  const serverMetricKeys = new Set((target.data.metrics ?? []).map((m) => m.key));
  const metrics = created ? local.metrics : await missingPoints(client, serverRunId, local.metrics, serverMetricKeys);
  if (params.length || tags.length || metrics.length) writes += await client.logBatch(serverRunId, { params, tags, metrics });

  if (local.artifacts.length) {
    const artifactUri = target.info.artifact_uri ?? '';
    const onServer = created ? new Map<string, number | undefined>() : await listAllArtifacts(client, artifactUri);
    const dir = store.artifactDir(local.info);
    for (const rel of local.artifacts) {
      const file = path.join(dir, ...rel.split('/'));
      if (onServer.has(rel) && onServer.get(rel) === fs.statSync(file).size) continue;
      await client.uploadArtifact(artifactUri, rel, fs.readFileSync(file));
      writes++;
    }
  }

  const { status, endTime } = local.info;
  if (status !== 'RUNNING' && (target.info.status !== status || (target.info.end_time ?? null) !== endTime)) {
    await client.updateRun({ runId: serverRunId, status, endTime: endTime ?? undefined });
    writes++;
  }
  markSynced(store, local, client.trackingUri, serverRunId);
  return { kind: 'synced', localRunId, experiment, cellKey, serverRunId, created, writes };
}

/** The server run this local run was started on or synced to before, if the server still has it. */
async function findRecordedRun(client: MlflowClient, local: LocalRun): Promise<Run | undefined> {
  const runId = local.tags[TAGS.syncServerRunId];
  if (!runId || local.tags[TAGS.syncServerUri] !== client.trackingUri) return undefined;
  try {
    const run = await client.getRun(runId);
    return run.info.lifecycle_stage === 'deleted' ? undefined : run;
  } catch (err) {
    if (err instanceof TrackingError && err.errorCode === 'RESOURCE_DOES_NOT_EXIST') return undefined;
    throw err;
  }
}

function pointId(m: MetricPoint): string {
  return `${m.key}\u0000${m.timestamp}\u0000${m.step}\u0000${formatPythonFloat(m.value)}`;
}

/** Local points the server's history lacks, counted as multisets (a point logged twice locally is sent twice). */
async function missingPoints(
  client: MlflowClient, runId: string, localPoints: readonly MetricPoint[], serverKeys: ReadonlySet<string>,
): Promise<MetricPoint[]> {
  const have = new Map<string, number>();
  for (const key of new Set(localPoints.map((m) => m.key))) {
    if (!serverKeys.has(key)) continue;
    for (const m of await client.getMetricHistory(runId, key)) have.set(pointId(m), (have.get(pointId(m)) ?? 0) + 1);
  }
  return localPoints.filter((m) => {
    const id = pointId(m);
    const count = have.get(id) ?? 0;
    if (count === 0) return true;
    have.set(id, count - 1);
    return false;
  });
}

/** Every artifact file under a run's artifact root with its size, walking folders (bounded). */
async function listAllArtifacts(client: MlflowClient, artifactUri: string, maxEntries = 10000): Promise<Map<string, number | undefined>> {
  const files = new Map<string, number | undefined>();
  const pending = [''];
  let seen = 0;
  while (pending.length) {
    const dir = pending.pop()!;
    for (const entry of await client.listArtifacts(artifactUri, dir)) {
      if (++seen > maxEntries) throw new TrackingError(`more than ${maxEntries} artifacts under ${artifactUri}`, { value: artifactUri });
      if (entry.isDir) pending.push(entry.path);
      else files.set(entry.path, entry.fileSize);
    }
  }
  return files;
}

function markSynced(store: FileStore, local: LocalRun, serverUri: string, serverRunId: string): void {
  store.logBatch(local.info, {
    tags: [
      { key: TAGS.syncServerUri, value: serverUri },
      { key: TAGS.syncServerRunId, value: serverRunId },
      { key: TAGS.syncState, value: 'synced' },
    ],
  });
}

function tagOf(run: Run, key: string): string | undefined {
  return run.data.tags?.find((t) => t.key === key)?.value;
}

export interface SyncCommandIo {
  stdout?: (line: string) => void;
  stderr?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  client?: Omit<MlflowClientOptions, 'trackingUri'>;
}

export const SYNC_USAGE =
  'usage: harmoq tracking sync [--from <mlruns folder>] [--to <http(s)://server>] [--all] [--include-running]\n' +
  '  --from             local store to push (default ./mlruns)\n' +
  '  --to               tracking server (default MLFLOW_TRACKING_URI)\n' +
  '  --all              push every local run with a cell key, not only those left by an unreachable server\n' +
  '  --include-running  also push runs still marked RUNNING';

/**
 * `harmoq tracking sync` as a function of its arguments (after `sync`): prints one line per run and a summary,
 * returns the exit code: 0 done, 1 some run failed or the server stopped answering (rerun to finish), 2 bad usage.
 */
export async function syncCommandMain(args: readonly string[], io: SyncCommandIo = {}): Promise<number> {
  const out = io.stdout ?? ((line: string) => process.stdout.write(`${line}\n`));
  const err = io.stderr ?? ((line: string) => process.stderr.write(`${line}\n`));
  const env = io.env ?? process.env;
  const cwd = io.cwd ?? process.cwd();
  let values: { from?: string; to?: string; all?: boolean; 'include-running'?: boolean; help?: boolean };
  try {
    values = parseArgs({
      args: [...args],
      options: {
        from: { type: 'string' }, to: { type: 'string' }, all: { type: 'boolean' },
        'include-running': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    err(`harmoq tracking sync: ${e instanceof Error ? e.message : String(e)}`);
    err(SYNC_USAGE);
    return 2;
  }
  if (values.help) {
    out(SYNC_USAGE);
    return 0;
  }
  const to = values.to ?? env.MLFLOW_TRACKING_URI;
  if (!to || !/^https?:\/\//i.test(to)) {
    err(`harmoq tracking sync: no tracking server: pass --to http(s)://... or set MLFLOW_TRACKING_URI (got '${to ?? ''}')`);
    return 2;
  }
  const from = path.resolve(cwd, values.from ?? DEFAULT_LOCAL_DIR);
  try {
    const report = await syncToServer(from, to, {
      all: values.all, includeRunning: values['include-running'], client: io.client,
      onRun: (o) => {
        if (o.kind === 'synced') out(`synced  ${o.experiment} ${o.cellKey} -> ${o.serverRunId}${o.created ? ' (new)' : ' (resumed)'}`);
        else if (o.kind === 'skipped') out(`skipped ${o.experiment} ${o.localRunId}: ${o.reason}`);
        else err(`failed  ${o.experiment} ${o.localRunId}: ${o.error}`);
      },
    });
    out(`${report.synced.length} synced, ${report.skipped.length} skipped, ${report.failed.length} failed` +
      (report.aborted ? ' (server stopped answering; rerun to finish)' : ''));
    return report.failed.length || report.aborted ? 1 : 0;
  } catch (e) {
    err(`harmoq tracking sync: ${e instanceof Error ? e.message : String(e)}`);
    return e instanceof TrackingError && !e.unreachable && e.errorCode === undefined ? 2 : 1;
  }
}
