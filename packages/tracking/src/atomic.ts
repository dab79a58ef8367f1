import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Writes a file so a reader (or a process killed midway) sees either the old content or the new, never a
 * part: temp file, fsync, rename. `tempDir` must be on the same file system as the target; the file store
 * passes the run folder because MLflow reads every file under params/, metrics/ and tags/ as an entry, so a
 * temp file left there by a crash would show up as a bogus param.
 */
export function writeFileAtomic(target: string, data: string | Uint8Array, tempDir = path.dirname(target)): void {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const temp = path.join(tempDir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  writeAndSync(temp, 'wx', data);
  try {
    fs.renameSync(temp, target);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw err;
  }
}

/**
 * Appends one line with a single O_APPEND write, then fsyncs. A metric file is an append-only log that MLflow
 * itself appends to; one write() of a short line is not torn by killing the process, and rewriting the whole
 * file per point (temp + rename) would make a long calibration curve quadratic.
 */
export function appendLineDurable(target: string, line: string): void {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  writeAndSync(target, 'a', line);
}

function writeAndSync(file: string, flags: 'wx' | 'a', data: string | Uint8Array): void {
  const fd = fs.openSync(file, flags);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
