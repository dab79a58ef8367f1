/**
 * MLflow tracking without MLflow's Python: a typed REST client, the ./mlruns file store `mlflow ui` reads, a
 * Tracker facade (one run per experiment cell, local fallback when the server is down) and an idempotent sync
 * of local runs to a server. See docs/tracking.md.
 */
export { TrackingError, isUnreachable } from './errors';
export {
  RUN_STATUSES, END_STATUSES, TAGS,
  type RunStatus, type EndStatus, type ViewType, type KeyValue, type MetricPoint, type LogBatch,
  type Experiment, type Run, type RunInfo,
} from './types';
export { LIMITS, validateKey } from './limits';
export { splitBatch, type BatchChunk } from './batch';
export {
  MlflowClient, DEFAULT_RETRY, filterString,
  type MlflowClientOptions, type RetryPolicy, type CreateRunRequest, type UpdateRunRequest, type SearchRunsRequest,
  type ArtifactEntry,
} from './rest-client';
export {
  FileStore, DEFAULT_EXPERIMENT_ID, experimentIdForName,
  type FileStoreOptions, type LocalExperiment, type LocalRun, type LocalRunInfo, type RunRef, type CreateLocalRun,
} from './file-store';
export { resolveTrackingUri, DEFAULT_LOCAL_DIR, type TrackingTarget } from './uri';
export { flattenParams } from './params';
export { Tracker, TrackedRun, type TrackerOptions, type StartRunOptions } from './tracker';
export {
  syncToServer, syncCommandMain, SYNC_USAGE,
  type SyncOptions, type SyncOutcome, type SyncReport, type SyncCommandIo,
} from './sync';
export { formatPythonFloat } from './pyfloat';
/** Test double for code that talks to a tracking server (other packages' tests included). */
export {
  startFakeMlflowServer,
  type FakeMlflowServer, type FakeServerOptions, type FaultMode, type FakeRun, type FakeExperiment,
} from './testing/fake-mlflow-server';
