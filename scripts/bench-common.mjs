// Helpers the bench scripts share.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Writes `value` as pretty JSON: temp file in the same folder, fsync, rename (a killed run leaves the old file). */
export function writeJsonAtomic(file, value) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  fs.writeSync(fd, JSON.stringify(value, null, 2) + '\n');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}
