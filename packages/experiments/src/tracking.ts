/**
 * One MLflow run per finished cell, through @harmoq/tracking's Tracker (./mlruns by default, a server with
 * MLFLOW_TRACKING_URI, local fallback when it is down). Idempotent by cell key: before logging, the runs that
 * already exist for the experiment are listed (locally, and on the server when one is used) and a cell with a
 * FINISHED run is not logged again, so reruns, resumed grids and `harmoq cell` never duplicate a run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { MlflowClient, TAGS, isUnreachable, filterString, type Tracker } from '@harmoq/tracking';
import type { Cell } from './cells';
import type { CellStore } from './store';

/** Cell keys that have a FINISHED run in the experiment, wherever the tracker writes. */
export async function trackedCellKeys(tracker: Tracker, experiment: string): Promise<Set<string>> {
  const keys = new Set<string>();
  // Local runs count in either mode: a fallback run waits there for `tracking sync`.
  const store = tracker.localStore();
  const local = fs.existsSync(store.root) ? store.getExperimentByName(experiment) : undefined;
  if (local) {
    for (const info of store.listRuns(local.experimentId)) {
      if (info.status !== 'FINISHED' || info.lifecycleStage !== 'active') continue;
      const key = store.readRun(info).tags[TAGS.cellKey];
      if (key) keys.add(key);
    }
  }
  if (tracker.target.kind === 'server') {
    try {
      const client = new MlflowClient({ trackingUri: tracker.target.uri });
      const exp = await client.getExperimentByName(experiment);
      if (exp) {
        const runs = await client.searchAllRuns({
          experimentIds: [exp.experiment_id], filter: `attributes.status = ${filterString('FINISHED')}`, maxResults: 1000,
        });
        for (const run of runs) {
          const key = run.data.tags?.find((t) => t.key === TAGS.cellKey)?.value;
          if (key) keys.add(key);
        }
      }
    } catch (err) {
      // An unreachable server means runs go to the local store, which was read above.
      if (!isUnreachable(err)) throw err;
    }
  }
  return keys;
}

export interface CellRunContext {
  experiment: string;
  preset: string;
  commit: string | null;
}

/** Logs a finished cell as one run: params = the flattened config, its metrics, tags, config + result artifacts. */
export async function logCellRun(tracker: Tracker, cell: Cell, store: CellStore, ctx: CellRunContext): Promise<void> {
  const tags: Record<string, string> = {
    'harmoq.kind': cell.kind,
    'harmoq.preset': ctx.preset,
    'harmoq.machine': `${os.platform()}-${os.arch()} ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}`,
    ...Object.fromEntries(Object.entries(cell.axes).map(([k, v]) => [`harmoq.${k}`, v])),
  };
  if (ctx.commit) tags[TAGS.gitCommit] = ctx.commit;
  const metrics: Record<string, number> = {};
  if (cell.kind === 'eval') {
    const r = store.readEval(cell)!;
    tags['harmoq.backend'] = r.backend;
    for (const k of ['psnr_y', 'ssim_y', 'psnr', 'ssim', 'seconds'] as const) metrics[`${r.dataset}/${k}`] = r[k];
  } else {
    metrics.calibration_seconds = store.readQParams(cell)!.seconds;
  }
  // MLflow param names allow no '@' (npm scopes).
  const runtimes = Object.fromEntries(Object.entries(cell.code.runtimes).map(([k, v]) => [k.replace(/^@/, ''), v]));
  const run = await tracker.startRun({
    experiment: ctx.experiment, runName: cell.label, cellKey: cell.key,
    params: { ...cell.config, axes: cell.axes, inputs: cell.inputs, code: { ...cell.code, runtimes } }, tags,
  });
  try {
    await run.logMetrics(metrics);
    await run.logArtifact(`${store.dir(cell.key)}/config.json`, 'config.json');
    await run.logArtifact(store.resultPath(cell));
    await run.end('FINISHED');
  } catch (err) {
    await run.end('FAILED').catch(() => {});
    throw err;
  }
}
