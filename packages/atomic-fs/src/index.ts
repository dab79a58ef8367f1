import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

export interface AtomicWriteOptions {
  /**
   * Where the temp file goes (default: the target's folder). It must be on the target's file system, since
   * rename is atomic only within one. The MLflow store passes the run folder because MLflow reads every file
   * under params/, metrics/ and tags/ as an entry, so a temp file left there by a crash would show up.
   */
  tempDir?: string;
}

/**
 * Writes `data` to `target` so that a crash or kill leaves either the old file or the complete new one:
 * temp file, fsync, rename, then fsync of the folder where the platform allows it. The folder must exist.
 */
export function writeFileAtomic(
  target: string,
  data: string | Uint8Array | readonly Uint8Array[],
  options: AtomicWriteOptions = {},
): void {
  const dir = path.dirname(path.resolve(target));
  const temp = path.join(options.tempDir ?? dir, `.${path.basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    writeAndSync(temp, 'wx', data);
    fs.renameSync(temp, target);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw err;
  }
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Folder fsync is not supported everywhere (some network file systems); the rename itself is done.
  }
}

/**
 * Appends one line with a single O_APPEND write, then fsyncs. For append-only logs (MLflow metric files):
 * one write() of a short line is not torn by killing the process, and rewriting the whole file per line
 * (temp + rename) would make a long log quadratic.
 */
export function appendLineDurable(target: string, line: string): void {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  writeAndSync(target, 'a', line);
}

function writeAndSync(file: string, flags: 'wx' | 'a', data: string | Uint8Array | readonly Uint8Array[]): void {
  const fd = fs.openSync(file, flags);
  try {
    const chunks = typeof data === 'string' || data instanceof Uint8Array ? [data] : data;
    for (const chunk of chunks) fs.writeFileSync(fd, chunk);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
