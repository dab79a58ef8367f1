import { z } from 'zod';

/** Run states; the file store writes them as the integers 1..5, REST/JSON uses the names. */
export const RUN_STATUSES = ['RUNNING', 'SCHEDULED', 'FINISHED', 'FAILED', 'KILLED'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
export const RUN_STATUS_CODE: Record<RunStatus, number> = { RUNNING: 1, SCHEDULED: 2, FINISHED: 3, FAILED: 4, KILLED: 5 };
/** The states a finished run can end in (`end(status)`). */
export type EndStatus = 'FINISHED' | 'FAILED' | 'KILLED';
export const END_STATUSES: readonly EndStatus[] = ['FINISHED', 'FAILED', 'KILLED'];

export type ViewType = 'ACTIVE_ONLY' | 'DELETED_ONLY' | 'ALL';

export interface KeyValue { key: string; value: string }
export interface MetricPoint { key: string; value: number; timestamp: number; step: number }
export interface LogBatch { metrics?: readonly MetricPoint[]; params?: readonly KeyValue[]; tags?: readonly KeyValue[] }

// proto3 JSON writes non-finite doubles as strings; a server may also send them that way.
const jsonDouble = z.union([
  z.number(),
  z.enum(['NaN', 'Infinity', '-Infinity']).transform((s) => (s === 'NaN' ? NaN : s === 'Infinity' ? Infinity : -Infinity)),
]);
// int64 fields may arrive as JSON strings from proto3 JSON encoders.
const jsonInt = z.union([z.number().int(), z.string().regex(/^-?\d+$/).transform(Number)]);

const keyValue = z.object({ key: z.string(), value: z.string().default('') });

export const experimentSchema = z.object({
  experiment_id: z.string(),
  name: z.string(),
  artifact_location: z.string().optional(),
  lifecycle_stage: z.string().optional(),
  creation_time: jsonInt.optional(),
  last_update_time: jsonInt.optional(),
  tags: z.array(keyValue).optional(),
});
export type Experiment = z.infer<typeof experimentSchema>;

export const runInfoSchema = z.object({
  run_id: z.string(),
  run_uuid: z.string().optional(),
  run_name: z.string().optional(),
  experiment_id: z.string(),
  user_id: z.string().optional(),
  status: z.enum(RUN_STATUSES).optional(),
  start_time: jsonInt.optional(),
  end_time: jsonInt.optional(),
  artifact_uri: z.string().optional(),
  lifecycle_stage: z.string().optional(),
});
export type RunInfo = z.infer<typeof runInfoSchema>;

export const metricSchema = z.object({
  key: z.string(),
  value: jsonDouble,
  timestamp: jsonInt,
  step: jsonInt.default(0),
});

export const runSchema = z.object({
  info: runInfoSchema,
  data: z
    .object({
      metrics: z.array(metricSchema).optional(),
      params: z.array(keyValue).optional(),
      tags: z.array(keyValue).optional(),
    })
    .default({}),
});
export type Run = z.infer<typeof runSchema>;

export const responses = {
  getExperiment: z.object({ experiment: experimentSchema }),
  createExperiment: z.object({ experiment_id: z.string() }),
  run: z.object({ run: runSchema }),
  updateRun: z.object({ run_info: runInfoSchema }),
  searchRuns: z.object({ runs: z.array(runSchema).optional(), next_page_token: z.string().optional() }),
  metricHistory: z.object({ metrics: z.array(metricSchema).optional(), next_page_token: z.string().optional() }),
  listArtifacts: z.object({
    files: z.array(z.object({ path: z.string(), is_dir: z.boolean().optional(), file_size: jsonInt.optional() })).optional(),
  }),
  error: z.object({ error_code: z.string(), message: z.string().optional() }),
} as const;

/** Tag names this package writes. */
export const TAGS = {
  /** The cell key: what makes a run idempotent across sync. */
  cellKey: 'harmoq.cellKey',
  /** On a local run: 'pending' while it waits for `tracking sync`, 'synced' after. */
  syncState: 'harmoq.sync',
  /** On a local run: the server and the server-side run it was synced to (or started on before falling back). */
  syncServerUri: 'harmoq.sync.serverUri',
  syncServerRunId: 'harmoq.sync.serverRunId',
  /** On a server run made by sync: the local run it came from. */
  syncSourceRunId: 'harmoq.sync.sourceRunId',
  runName: 'mlflow.runName',
  user: 'mlflow.user',
  sourceName: 'mlflow.source.name',
  sourceType: 'mlflow.source.type',
  gitCommit: 'mlflow.source.git.commit',
} as const;
