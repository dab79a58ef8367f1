import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { TrackingError } from './errors';
import { appendLineDurable, writeFileAtomic } from './atomic';
import { EXPERIMENT_ID_PATTERN, validateExperimentName, validateKey, validateRunId } from './limits';
import { validateBatch } from './batch';
import { formatPythonFloat, parsePythonFloat } from './pyfloat';
import { emitYamlMap, parseYamlMap, type YamlMap } from './yaml';
import { RUN_STATUSES, RUN_STATUS_CODE, TAGS, type KeyValue, type LogBatch, type MetricPoint, type RunStatus } from './types';
import { checkArtifactPath } from './rest-client';

/**
 * MLflow's `./mlruns` file store (shared/docs/mlflow.md, section 1), written so `mlflow ui` (2.x, and 3.x up to
 * 3.12; 3.13+ with MLFLOW_ALLOW_FILE_STORE=true) shows the runs: experiment and run folders with PyYAML-style
 * meta.yaml, one file per param and tag, append-only metric logs, artifacts under the run. Also read back by
 * `syncToServer`. Files are replaced atomically through temp files kept in the run (or experiment) folder,
 * never inside params/, metrics/ or tags/, where MLflow would read a leftover as an entry.
 */

export const DEFAULT_EXPERIMENT_ID = '0';
const TRASH = '.trash';
const META = 'meta.yaml';
/** Folders at the root and inside an experiment that are not experiments or runs. */
const NOT_EXPERIMENTS = new Set([TRASH, 'models']);
const NOT_RUNS = new Set(['tags', 'datasets', 'traces', 'models']);

export interface LocalExperiment {
  experimentId: string;
  name: string;
  artifactLocation: string;
  lifecycleStage: string;
  creationTime: number | null;
  lastUpdateTime: number | null;
}

export interface LocalRunInfo {
  runId: string;
  experimentId: string;
  runName: string;
  userId: string;
  status: RunStatus;
  startTime: number;
  endTime: number | null;
  artifactUri: string;
  lifecycleStage: string;
}

export interface LocalRun {
  info: LocalRunInfo;
  params: Record<string, string>;
  tags: Record<string, string>;
  /** Every logged point, per key in file order, keys sorted. */
  metrics: MetricPoint[];
  /** Artifact paths relative to the run's artifact root, sorted. */
  artifacts: string[];
}

export type RunRef = Pick<LocalRunInfo, 'experimentId' | 'runId'>;

export interface FileStoreOptions {
  /** Epoch ms for creation and update times. */
  now?: () => number;
  /** New run ids; default uuid4 as 32 hex characters, as MLflow makes them. */
  newRunId?: () => string;
}

export interface CreateLocalRun {
  experimentId: string;
  runName?: string;
  startTime: number;
  userId?: string;
  tags?: readonly KeyValue[];
}

export class FileStore {
  readonly root: string;
  private readonly now: () => number;
  private readonly newRunId: () => string;

  constructor(root: string, options: FileStoreOptions = {}) {
    this.root = path.resolve(root);
    this.now = options.now ?? Date.now;
    this.newRunId = options.newRunId ?? (() => randomUUID().replace(/-/g, ''));
  }

  /** Creates the root as MLflow does when it is new: the Default experiment '0' and `.trash`. */
  ensureRoot(): void {
    if (!fs.existsSync(this.root)) {
      fs.mkdirSync(this.root, { recursive: true });
      this.writeExperiment(DEFAULT_EXPERIMENT_ID, 'Default');
    } else if (!fs.statSync(this.root).isDirectory()) {
      throw new TrackingError(`tracking folder '${this.root}' exists and is not a folder`, { value: this.root });
    }
    fs.mkdirSync(path.join(this.root, TRASH), { recursive: true });
  }

  // ---- experiments ----

  listExperiments(view: 'active' | 'all' = 'active'): LocalExperiment[] {
    const out: LocalExperiment[] = [];
    const scan = (dir: string) => {
      for (const id of subfolders(dir)) {
        if (NOT_EXPERIMENTS.has(id)) continue;
        const meta = readMeta(path.join(dir, id));
        if (!meta) continue;
        const experiment = experimentFromMeta(meta);
        if (experiment.experimentId === id) out.push(experiment);
      }
    };
    scan(this.root);
    if (view === 'all') scan(path.join(this.root, TRASH));
    return out.sort((a, b) => a.experimentId.localeCompare(b.experimentId));
  }

  getExperiment(experimentId: string): LocalExperiment {
    const meta = EXPERIMENT_ID_PATTERN.test(experimentId) ? readMeta(path.join(this.root, experimentId)) : undefined;
    if (!meta) {
      throw new TrackingError(`no experiment '${experimentId}' in ${this.root}`, { errorCode: 'RESOURCE_DOES_NOT_EXIST', value: experimentId });
    }
    return experimentFromMeta(meta);
  }

  getExperimentByName(name: string): LocalExperiment | undefined {
    return this.listExperiments().find((e) => e.name === name);
  }

  /**
   * The experiment of that name, created when missing. A new experiment's id is derived from its name, so
   * parallel workers that create the same experiment at once write the same folder instead of two
   * experiments with one name.
   */
  getOrCreateExperiment(name: string): string {
    validateExperimentName(name);
    this.ensureRoot();
    const existing = this.getExperimentByName(name);
    if (existing) return existing.experimentId;
    const deleted = this.listExperiments('all').find((e) => e.name === name);
    if (deleted) {
      throw new TrackingError(
        `experiment '${name}' is deleted in ${this.root} (${TRASH}/${deleted.experimentId}); restore it or remove it with 'mlflow gc'`,
        { errorCode: 'RESOURCE_ALREADY_EXISTS', value: name },
      );
    }
    let id = experimentIdForName(name);
    const taken = readMeta(path.join(this.root, id)) ?? readMeta(path.join(this.root, TRASH, id));
    // Same name: a parallel worker created it between our look-up and now. Another name: a hash clash.
    if (taken?.name === name) return id;
    if (taken) id = experimentIdForName(`${name}\0${randomBytes(8).toString('hex')}`);
    this.writeExperiment(id, name);
    return id;
  }

  private writeExperiment(id: string, name: string): void {
    const dir = path.join(this.root, id);
    fs.mkdirSync(dir, { recursive: true });
    const t = this.now();
    writeFileAtomic(path.join(dir, META), emitYamlMap({
      artifact_location: pathToFileURL(dir).href,
      creation_time: t,
      experiment_id: id,
      last_update_time: t,
      lifecycle_stage: 'active',
      name,
    }));
  }

  // ---- runs ----

  createRun(request: CreateLocalRun): LocalRunInfo {
    const experiment = this.getExperiment(request.experimentId);
    if (experiment.lifecycleStage !== 'active') {
      throw new TrackingError(`experiment '${experiment.name}' (${experiment.experimentId}) is deleted`, {
        errorCode: 'INVALID_STATE', value: experiment.experimentId,
      });
    }
    const tags = [...(request.tags ?? [])];
    validateBatch({ tags });
    const nameTag = tags.find((t) => t.key === TAGS.runName)?.value;
    const runName = request.runName ?? nameTag;
    if (runName === undefined || runName === '') {
      throw new TrackingError('a run needs a name (runName)', { value: String(runName) });
    }
    if (nameTag === undefined) tags.push({ key: TAGS.runName, value: runName });
    else if (nameTag !== runName) {
      throw new TrackingError(`run name '${runName}' differs from the ${TAGS.runName} tag '${nameTag}'`, { value: runName });
    }
    const runId = this.newRunId();
    validateRunId(runId);
    const info: LocalRunInfo = {
      runId,
      experimentId: experiment.experimentId,
      runName,
      userId: request.userId ?? '',
      status: 'RUNNING',
      startTime: request.startTime,
      endTime: null,
      artifactUri: `${this.experimentArtifactRoot(experiment)}/${runId}/artifacts`,
      lifecycleStage: 'active',
    };
    const dir = this.runDir(info);
    fs.mkdirSync(dir, { recursive: true });
    this.writeRunMeta(info);
    for (const sub of ['metrics', 'params', 'artifacts']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    for (const t of tags) this.writeEntry(info, 'tags', t.key, t.value);
    return info;
  }

  /**
   * The experiment's artifact_location, except when it is a file: URI of a folder that no longer exists
   * (a store copied from another machine keeps its old absolute paths): then this store's experiment folder.
   */
  private experimentArtifactRoot(experiment: LocalExperiment): string {
    const location = experiment.artifactLocation.replace(/\/+$/, '');
    if (location.startsWith('file:') && !fs.existsSync(fileURLToPath(location))) {
      return pathToFileURL(path.join(this.root, experiment.experimentId)).href;
    }
    return location;
  }

  getRunInfo(ref: RunRef): LocalRunInfo {
    validateRunId(ref.runId);
    const meta = readMeta(this.runDir(ref));
    if (!meta) {
      throw new TrackingError(`no run '${ref.runId}' in experiment '${ref.experimentId}' of ${this.root}`, {
        errorCode: 'RESOURCE_DOES_NOT_EXIST', value: ref.runId,
      });
    }
    return runInfoFromMeta(meta);
  }

  /** Runs of an experiment whose meta.yaml is readable and names this experiment (as MLflow lists them). */
  listRuns(experimentId: string): LocalRunInfo[] {
    const dir = path.join(this.root, experimentId);
    const out: LocalRunInfo[] = [];
    for (const name of subfolders(dir)) {
      if (NOT_RUNS.has(name)) continue;
      const meta = readMeta(path.join(dir, name));
      if (!meta) continue;
      const info = runInfoFromMeta(meta);
      if (info.experimentId === experimentId && info.runId === name) out.push(info);
    }
    return out.sort((a, b) => a.startTime - b.startTime || a.runId.localeCompare(b.runId));
  }

  logBatch(ref: RunRef, batch: LogBatch): void {
    validateBatch(batch);
    const info = this.activeRunInfo(ref);
    for (const p of batch.params ?? []) {
      const file = path.join(this.runDir(info), 'params', ...p.key.split('/'));
      if (fs.existsSync(file)) {
        const old = fs.readFileSync(file, 'utf8');
        if (old !== p.value) {
          throw new TrackingError(
            `param '${p.key}' was already logged as '${old}' for run ${info.runId}; params cannot change (new value '${p.value}')`,
            { errorCode: 'INVALID_PARAMETER_VALUE', value: p.key },
          );
        }
        continue;
      }
      this.writeEntry(info, 'params', p.key, p.value);
    }
    const byKey = new Map<string, string>();
    for (const m of batch.metrics ?? []) {
      byKey.set(m.key, (byKey.get(m.key) ?? '') + `${m.timestamp} ${formatPythonFloat(m.value)} ${m.step}\n`);
    }
    for (const [key, lines] of byKey) appendLineDurable(path.join(this.runDir(info), 'metrics', ...key.split('/')), lines);
    for (const t of batch.tags ?? []) this.setTagUnchecked(info, t.key, t.value);
  }

  setTag(ref: RunRef, key: string, value: string): void {
    validateBatch({ tags: [{ key, value }] });
    this.setTagUnchecked(this.activeRunInfo(ref), key, value);
  }

  private setTagUnchecked(info: LocalRunInfo, key: string, value: string): void {
    this.writeEntry(info, 'tags', key, value);
    // MLflow keeps run_name and the mlflow.runName tag in step.
    if (key === TAGS.runName && info.runName !== value) {
      info.runName = value;
      this.writeRunMeta(info);
    }
  }

  updateRun(ref: RunRef, update: { status?: RunStatus; endTime?: number | null; runName?: string }): LocalRunInfo {
    const info = this.activeRunInfo(ref);
    if (update.status !== undefined) info.status = update.status;
    if (update.endTime !== undefined) info.endTime = update.endTime;
    if (update.runName !== undefined && update.runName !== '') {
      info.runName = update.runName;
      this.writeEntry(info, 'tags', TAGS.runName, update.runName);
    }
    this.writeRunMeta(info);
    return info;
  }

  /** Writes bytes to `<artifact_uri>/<relativePath>`; the run's artifact URI must be a local file: URI. */
  logArtifact(ref: RunRef, relativePath: string, bytes: Uint8Array): string {
    const info = this.activeRunInfo(ref);
    const root = this.artifactDir(info);
    const target = path.join(root, ...checkArtifactPath(relativePath).split('/'));
    writeFileAtomic(target, bytes, { tempDir: this.runDir(info) });
    return target;
  }

  /**
   * Where a run's artifacts are on disk: its artifact_uri, which must be a file: URI, or the run's own
   * artifacts/ folder when that URI names a folder that does not exist here (a store copied from elsewhere).
   */
  artifactDir(info: LocalRunInfo): string {
    if (!info.artifactUri.startsWith('file:')) {
      throw new TrackingError(`run ${info.runId} keeps artifacts at '${info.artifactUri}', which is not a local folder`, {
        value: info.artifactUri, choices: ['file://...'],
      });
    }
    const recorded = fileURLToPath(info.artifactUri);
    const own = path.join(this.runDir(info), 'artifacts');
    return fs.existsSync(recorded) || !fs.existsSync(own) ? recorded : own;
  }

  /** Everything in a run: info, params, tags, every metric point, artifact paths. */
  readRun(ref: RunRef): LocalRun {
    const info = this.getRunInfo(ref);
    const dir = this.runDir(info);
    const params: Record<string, string> = {};
    for (const key of entryKeys(path.join(dir, 'params'))) params[key] = fs.readFileSync(path.join(dir, 'params', key), 'utf8');
    const tags: Record<string, string> = {};
    for (const key of entryKeys(path.join(dir, 'tags'))) tags[key] = fs.readFileSync(path.join(dir, 'tags', key), 'utf8');
    const metrics: MetricPoint[] = [];
    for (const key of entryKeys(path.join(dir, 'metrics'))) {
      metrics.push(...parseMetricLines(key, fs.readFileSync(path.join(dir, 'metrics', key), 'utf8')));
    }
    const artifacts = info.artifactUri.startsWith('file:') ? entryKeys(this.artifactDir(info)) : [];
    return { info, params, tags, metrics, artifacts };
  }

  private activeRunInfo(ref: RunRef): LocalRunInfo {
    const info = this.getRunInfo(ref);
    if (info.lifecycleStage !== 'active') {
      throw new TrackingError(`run ${info.runId} is deleted; it cannot be logged to`, { errorCode: 'INVALID_STATE', value: info.runId });
    }
    return info;
  }

  private runDir(ref: RunRef): string {
    return path.join(this.root, ref.experimentId, ref.runId);
  }

  private writeEntry(info: LocalRunInfo, folder: 'params' | 'tags', key: string, value: string): void {
    validateKey(folder === 'params' ? 'param' : 'tag', key);
    writeFileAtomic(path.join(this.runDir(info), folder, ...key.split('/')), value, { tempDir: this.runDir(info) });
  }

  private writeRunMeta(info: LocalRunInfo): void {
    const meta: YamlMap = {
      artifact_uri: info.artifactUri,
      deleted_time: null,
      end_time: info.endTime,
      entry_point_name: '',
      experiment_id: info.experimentId,
      lifecycle_stage: info.lifecycleStage,
      run_id: info.runId,
      run_name: info.runName,
      run_uuid: info.runId,
      source_name: '',
      source_type: 4,
      source_version: '',
      start_time: info.startTime,
      status: RUN_STATUS_CODE[info.status],
      tags: [],
      user_id: info.userId,
    };
    writeFileAtomic(path.join(this.runDir(info), META), emitYamlMap(meta));
  }
}

/** Large integer ids like MLflow's (up to 19 digits), from the experiment name rather than at random. */
export function experimentIdForName(name: string): string {
  const digest = createHash('sha256').update(name, 'utf8').digest();
  return (digest.readBigUInt64BE(0) & 0x7fffffffffffffffn).toString();
}

/**
 * The points of one metric file: `<timestamp> <value> [<step>]` per line. A last line without its newline is
 * a write still in progress and is left out.
 */
export function parseMetricLines(key: string, text: string): MetricPoint[] {
  const lines = text.split('\n');
  lines.pop(); // '' after the final newline, or an unfinished line
  return lines
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const parts = line.trim().split(' ');
      if (parts.length !== 2 && parts.length !== 3) {
        throw new TrackingError(`metric '${key}' has a malformed line '${line}' (expected 2 or 3 fields)`, { value: key });
      }
      return {
        key,
        timestamp: Number(parts[0]),
        value: parsePythonFloat(parts[1]),
        step: parts.length === 3 ? Number(parts[2]) : 0,
      };
    });
}

function subfolders(dir: string): string[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch {
    return [];
  }
}

/** Every file under a folder as a '/'-joined relative path (keys with '/' are sub-folders), sorted. */
function entryKeys(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (sub: string) => {
    for (const d of fs.readdirSync(path.join(dir, sub), { withFileTypes: true })) {
      const rel = sub ? `${sub}/${d.name}` : d.name;
      if (d.isDirectory()) walk(rel);
      else if (d.isFile()) out.push(rel);
    }
  };
  walk('');
  return out.sort();
}

function readMeta(dir: string): YamlMap | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, META), 'utf8');
  } catch {
    return undefined;
  }
  return parseYamlMap(text);
}

function str(value: unknown): string {
  return value === null || value === undefined ? '' : String(value);
}
function numOrNull(value: unknown): number | null {
  return typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : null;
}

function experimentFromMeta(meta: YamlMap): LocalExperiment {
  return {
    experimentId: str(meta.experiment_id), // older files hold an int
    name: str(meta.name),
    artifactLocation: str(meta.artifact_location),
    lifecycleStage: str(meta.lifecycle_stage) || 'active',
    creationTime: numOrNull(meta.creation_time),
    lastUpdateTime: numOrNull(meta.last_update_time),
  };
}

function runInfoFromMeta(meta: YamlMap): LocalRunInfo {
  const code = typeof meta.status === 'number' ? meta.status : RUN_STATUS_CODE.RUNNING;
  const status = RUN_STATUSES.find((s) => RUN_STATUS_CODE[s] === code) ?? 'RUNNING';
  const runId = str(meta.run_id) || str(meta.run_uuid);
  return {
    runId,
    experimentId: str(meta.experiment_id),
    runName: str(meta.run_name),
    userId: str(meta.user_id),
    status,
    startTime: numOrNull(meta.start_time) ?? 0,
    endTime: numOrNull(meta.end_time),
    artifactUri: str(meta.artifact_uri),
    lifecycleStage: str(meta.lifecycle_stage) || 'active',
  };
}
