/**
 * Finished cells on disk: `<results>/cells/<key>/config.json` and the result file (qparams.json for a
 * calibrate cell, metrics.json for an eval cell). Both are written atomically and the result last, so a cell
 * is finished exactly when its result file exists; a folder with only config.json is a cell that was running
 * when its process died, and is redone.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from '@harmoq/atomic-fs';
import type { EvalReport } from '@harmoq/engine';
import { readQParams, type QParams } from '@harmoq/quant';
import type { Cell, CellKind } from './cells';
import { ExperimentError } from './errors';

/** The claim file in a running cell's folder (see `CellStore.withClaim`). */
export const CLAIM_FILE = 'running.lock';

/** Who holds a cell's claim. */
export interface ClaimHolder {
  host: string;
  pid: number;
  token: string;
  /** Epoch ms. */
  started: number;
}

export interface ClaimOptions {
  /** How often a waiting process looks again (ms). */
  pollMs?: number;
  /** How often the holder touches the claim file (ms). */
  heartbeatMs?: number;
  /** A claim from another host untouched this long is abandoned (its holder died without releasing it). */
  staleMs?: number;
  /** Told once when this process starts waiting for another holder. */
  onWait?: (holder: ClaimHolder) => void;
}

const CLAIM_DEFAULTS = { pollMs: 2000, heartbeatMs: 30000, staleMs: 10 * 60000 };

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

  /**
   * Runs `work` while holding the cell's claim, so two processes (two Slurm tasks given the same cell, or
   * `harmoq exp` beside a cluster run on the same results folder) never compute one cell at once: results are
   * renamed into place atomically, but a calibration writes two files (the qparams sidecar, then
   * qparams.json), and two interleaved writers could pair one run's qparams with the other's sidecar. The
   * claim is a file created with O_EXCL (atomic on local and NFSv3+ file systems) naming host, pid and a
   * token. Another process waits while the holder lives, then claims it itself. A holder is dead when it is on this host and its pid is gone, or when its heartbeat
   * (the file's mtime) is older than `staleMs`. `work` should check `isDone` first: the waiting is over
   * when the other process finished the cell.
   */
  async withClaim<T>(cell: Pick<Cell, 'key' | 'kind'>, work: () => Promise<T>, options: ClaimOptions = {}): Promise<T> {
    const opts = { ...CLAIM_DEFAULTS, ...options };
    const file = path.join(this.dir(cell.key), CLAIM_FILE);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const me: ClaimHolder = { host: os.hostname(), pid: process.pid, token: randomBytes(8).toString('hex'), started: Date.now() };
    let told = false;
    for (;;) {
      if (tryCreate(file, me)) break;
      const holder = readHolder(file);
      if (holder === 'gone') continue;
      if (isAbandoned(file, holder, opts.staleMs)) {
        breakClaim(file, holder);
        continue;
      }
      if (!told && holder) opts.onWait?.(holder);
      told = true;
      await new Promise((resolve) => setTimeout(resolve, opts.pollMs));
    }
    const heartbeat = setInterval(() => {
      try {
        const now = new Date();
        fs.utimesSync(file, now, now);
      } catch {
        // A missing file is noticed by nobody but us; the result still lands atomically.
      }
    }, opts.heartbeatMs);
    heartbeat.unref();
    try {
      return await work();
    } finally {
      clearInterval(heartbeat);
      // Only our own claim is removed: if it was broken as abandoned, the file is someone else's now.
      const current = readHolder(file);
      if (current && current !== 'gone' && current.token === me.token) fs.rmSync(file, { force: true });
    }
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

/** Creates the claim file exclusively; false when it exists. */
function tryCreate(file: string, holder: ClaimHolder): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    fs.writeSync(fd, JSON.stringify(holder) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

/** The holder, null while its creator has not written it yet, 'gone' when the file was just removed. */
function readHolder(file: string): ClaimHolder | null | 'gone' {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw err;
  }
  try {
    return JSON.parse(text) as ClaimHolder;
  } catch {
    return null;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isAbandoned(file: string, holder: ClaimHolder | null, staleMs: number): boolean {
  if (holder && holder.host === os.hostname() && !pidAlive(holder.pid)) return true;
  try {
    return Date.now() - fs.statSync(file).mtimeMs > staleMs;
  } catch {
    return false;
  }
}

/**
 * Removes an abandoned claim. It is moved aside first and checked: if another process replaced it in the
 * meantime (it broke the same claim and took a fresh one), that fresh claim is put back.
 */
function breakClaim(file: string, abandoned: ClaimHolder | null): void {
  const aside = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.abandoned`;
  try {
    fs.renameSync(file, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const moved = readHolder(aside);
  const sameClaim = abandoned === null ? moved === null : moved !== null && moved !== 'gone' && moved.token === abandoned.token;
  if (!sameClaim && moved !== 'gone') {
    try {
      fs.linkSync(aside, file);
    } catch {
      // Someone claimed the cell in between; their claim stands.
    }
  }
  fs.rmSync(aside, { force: true });
}
