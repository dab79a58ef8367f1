/**
 * Finished cells on disk: `<results>/cells/<key>/config.json` and the result file (qparams.json for a
 * calibrate cell, metrics.json for an eval cell). Both are written atomically and the result last, so a cell
 * is finished exactly when its result file exists; a folder with only config.json is a cell that was running
 * when its process died, and is redone.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '@harmoq/atomic-fs';
import type { EvalReport } from '@harmoq/engine';
import { readQParams, type QParams } from '@harmoq/quant';
import type { Cell, CellKind } from './cells';
import { ExperimentError } from './errors';

export const RESULT_FILES: Record<CellKind, string> = { calibrate: 'qparams.json', eval: 'metrics.json' };

/** What an eval cell stores: the `harmoq eval --json` object (plus method/bits when quantized) and the cell key. */
export interface EvalResult extends EvalReport {
  cell: string;
  model: string;
  weights_sha256: string;
  arch: string;
  engine: string;
  backend: string;
  threads: number;
  method?: string;
  wbits?: number;
  abits?: number;
}

export class CellStore {
  readonly root: string;

  /** `resultsDir` is the results folder; cells live in its `cells/` subfolder. */
  constructor(resultsDir: string) {
    this.root = path.join(path.resolve(resultsDir), 'cells');
  }

  dir(key: string): string {
    if (!/^[a-z]+-[0-9a-f]{24}$/.test(key)) throw new ExperimentError(`'${key}' is not a cell key`, { value: key });
    return path.join(this.root, key);
  }

  resultPath(cell: Pick<Cell, 'key' | 'kind'>): string {
    return path.join(this.dir(cell.key), RESULT_FILES[cell.kind]);
  }

  isDone(cell: Pick<Cell, 'key' | 'kind'>): boolean {
    return fs.existsSync(this.resultPath(cell));
  }

  /** Creates the cell's folder and writes config.json (atomically; rewriting it is harmless, it is the same cell). */
  begin(cell: Cell): string {
    const dir = this.dir(cell.key);
    fs.mkdirSync(dir, { recursive: true });
    const { paths: _machineSpecific, work: _estimate, ...keyed } = cell;
    writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(keyed, null, 2) + '\n');
    return dir;
  }

  /** Writes an eval cell's result; the cell is finished once this returns. */
  finishEval(cell: Cell, result: EvalResult): void {
    writeFileAtomic(this.resultPath(cell), JSON.stringify(result, null, 2) + '\n');
  }

  readEval(cell: Pick<Cell, 'key' | 'kind'>): EvalResult | undefined {
    if (!this.isDone(cell)) return undefined;
    return JSON.parse(fs.readFileSync(this.resultPath(cell), 'utf8')) as EvalResult;
  }

  readQParams(cell: Pick<Cell, 'key' | 'kind'>): QParams | undefined {
    if (!this.isDone(cell)) return undefined;
    return readQParams(this.resultPath(cell));
  }
}
