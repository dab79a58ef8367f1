/**
 * Runs one cell and stores its result: calibrate -> qparams.json, eval -> metrics.json. The same function
 * runs in the grid's process (--jobs 1), in a worker process (--jobs N) and under `harmoq cell`.
 */
import * as path from 'node:path';
import { createEngine, evaluate, superResolve, type EngineOptions } from '@harmoq/engine';
import {
  checkQParamsFor, qparamsPlan, quantizedEngineOptions, quantizeModel, restrictQuantization, writeQParams, type ProgressUpdate,
} from '@harmoq/quant';
import { checkArchitecture, expectedFor, type ArchName, type SwinIRConfig } from '@harmoq/swinir';
import { loadStateDict, type StateDict } from '@harmoq/torch-io';
import type { Cell } from './cells';
import { ExperimentError } from './errors';
import { runProbe, type ProbeResult } from './probe';
import { CellStore, RESULT_FILES, type EvalResult } from './store';

export interface ExecuteOptions {
  /** onnxruntime intra-op threads for this cell. */
  threads: number;
  /** Free text about the cell's progress (calibration step and loss, image n of m). */
  onProgress?: (info: string) => void;
}

interface LoadedModel {
  config: SwinIRConfig;
  stateDict: StateDict;
  sha256: string;
}

/** Loads the checkpoint and checks it is the file the cell was keyed on and the architecture it names. */
function loadModel(cell: Cell): LoadedModel {
  const file = cell.paths.checkpoint;
  const loaded = loadStateDict(file);
  if (loaded.sha256 !== cell.inputs.checkpoint) {
    throw new ExperimentError(
      `checkpoint '${file}' changed since the grid was expanded (sha256 ${loaded.sha256.slice(0, 12)}..., ` +
        `cell ${cell.key} expects ${cell.inputs.checkpoint.slice(0, 12)}...); rerun the grid`,
      { value: file, badInput: false },
    );
  }
  const { arch, scale } = cell.config;
  const config = checkArchitecture(loaded.stateDict, expectedFor({ arch: arch as ArchName, scale }), `${arch} x${scale}`, file);
  return { config, stateDict: loaded.stateDict, sha256: loaded.sha256 };
}

export async function executeCell(cell: Cell, store: CellStore, options: ExecuteOptions): Promise<void> {
  for (const dep of cell.deps) {
    const kind = dep.startsWith('cal-') ? 'calibrate' : 'eval';
    if (!store.isDone({ key: dep, kind })) {
      throw new ExperimentError(`cell ${cell.key} (${cell.label}) needs cell ${dep}, which has not finished`, { value: dep, badInput: false });
    }
  }
  const dir = store.begin(cell);
  const model = loadModel(cell);
  const config = cell.config;
  if (config.kind === 'calibrate') {
    const qparams = await quantizeModel(
      { arch: config.arch, config: model.config, stateDict: model.stateDict, checkpoint: { file: cell.paths.checkpoint, sha256: model.sha256 } },
      config.request,
      {
        dataDir: cell.paths.dataDir, threads: options.threads,
        onProgress: options.onProgress && ((u: ProgressUpdate) =>
          options.onProgress!(`${u.stage} ${u.step}/${u.total}${u.loss === undefined ? '' : ` loss ${u.loss.toExponential(3)}`}`)),
      },
    );
    await writeQParams(path.join(dir, RESULT_FILES.calibrate), qparams);
    return;
  }

  const identity = { cell: cell.key, model: config.checkpoint, weights_sha256: model.sha256, arch: config.arch, engine: config.engine };
  let engineOptions: Pick<EngineOptions, 'stateDict' | 'sites' | 'hook'> = { stateDict: model.stateDict };
  let quant: Pick<EvalResult, 'method' | 'wbits' | 'abits'> = {};
  if (config.quant !== null) {
    const qparams = store.readQParams({ key: config.quant, kind: 'calibrate' })!;
    const qfile = store.resultPath({ key: config.quant, kind: 'calibrate' });
    checkQParamsFor(qparams, { arch: config.arch, scale: config.scale, config: model.config, sha256: model.sha256, file: cell.paths.checkpoint }, qfile);
    const { plan, bounds } = qparamsPlan(qparams, qfile);
    quant = { method: qparams.method, wbits: qparams.wbits, abits: qparams.abits };
    if (config.probe) {
      const measured = await runProbe(
        { config: model.config, stateDict: model.stateDict, engine: config.engine, threads: options.threads },
        { dataset: config.dataset, scale: config.scale, dataDir: cell.paths.dataDir, probe: config.probe, plan, bounds, onProgress: options.onProgress },
      );
      const { backend, ...result } = measured;
      store.finishEval(cell, { ...identity, backend, threads: options.threads, ...result, ...quant } satisfies ProbeResult);
      return;
    }
    const roles = config.roles;
    const used = roles ? restrictQuantization(plan, bounds, model.stateDict, (s) => roles.includes(s.role)) : { plan, bounds, stateDict: model.stateDict };
    engineOptions = quantizedEngineOptions(used.plan, used.bounds, used.stateDict, config.engine);
  }
  const runner = await createEngine({ engine: config.engine, config: model.config, threads: options.threads, ...engineOptions });
  try {
    const report = await evaluate({
      dataset: config.dataset, scale: config.scale, dataDir: cell.paths.dataDir,
      upscale: (lr) => superResolve(runner, lr),
      onImage: options.onProgress && ((done, total, row) => options.onProgress!(`${done}/${total} ${row.name} ${row.psnr_y.toFixed(2)} dB`)),
    });
    store.finishEval(cell, { ...identity, backend: runner.description, threads: options.threads, ...report, ...quant });
  } finally {
    await runner.dispose();
  }
}
