import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sha256File } from '@harmoq/torch-io';

/** JSON with object keys sorted at every level, so equal values always hash equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return v;
  });
}

export function sha256Hex(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * sha256 of a file, memoized per process by path, size and mtime: a grid hashes the same checkpoint and
 * benchmark files for many cells.
 */
const fileHashes = new Map<string, string>();
export function fileSha256(file: string): string {
  const abs = path.resolve(file);
  const st = fs.statSync(abs);
  const memo = `${abs}\0${st.size}\0${st.mtimeMs}`;
  let hash = fileHashes.get(memo);
  if (!hash) {
    hash = sha256File(abs);
    fileHashes.set(memo, hash);
  }
  return hash;
}

/** One hash for a set of files: their names (relative to `root`) and contents, in sorted order. */
export function filesDigest(root: string, files: readonly string[]): string {
  const entries = files.map((f) => `${path.relative(root, f).split(path.sep).join('/')} ${fileSha256(f)}`).sort();
  return sha256Hex(entries.join('\n'));
}
