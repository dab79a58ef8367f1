import * as fs from 'node:fs';
import * as path from 'node:path';

/** The repository root: the nearest ancestor whose package.json declares workspaces. */
export function repoRoot(from: string = __dirname): string {
  let dir = path.resolve(from);
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, 'utf8')).workspaces) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no workspace root above ${from}`);
    dir = parent;
  }
}

/** Where benchmark sets, calibration images and weights live: --data, else HARMOQ_DATA, else ../shared/data. */
export function dataDir(explicit?: string): string {
  if (explicit) return path.resolve(explicit);
  if (process.env.HARMOQ_DATA) return path.resolve(process.env.HARMOQ_DATA);
  return path.resolve(repoRoot(), '../shared/data');
}

/** Golden PyTorch fixtures for parity tests: HARMOQ_GOLDEN, else ../shared/golden. */
export function goldenDir(): string {
  if (process.env.HARMOQ_GOLDEN) return path.resolve(process.env.HARMOQ_GOLDEN);
  return path.resolve(repoRoot(), '../shared/golden');
}
