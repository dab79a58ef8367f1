/**
 * The code version a cell is keyed on: the version of every package that computes it, a hash of their
 * sources (tests and test helpers excluded) and the versions of the numeric runtimes. A content hash, not the
 * git commit: a commit says nothing about an uncommitted tree, and an unrelated commit (docs, another
 * package) must not invalidate finished cells.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from '@harmoq/data';
import { sha256Hex } from './hash';

/** Third-party packages whose version can change the numbers. */
const RUNTIMES = ['onnxruntime-node', '@tensorflow/tfjs', '@tensorflow/tfjs-backend-wasm', 'sharp'] as const;

export interface CodeVersion {
  /** `@harmoq/<name>@<version>` per package. */
  packages: string[];
  /** sha256 over the packages' source files (path and content). */
  sources: string;
  runtimes: Record<string, string>;
}

function sourceFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const name = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      if (entry.name !== 'testing' && !entry.name.startsWith('.')) out.push(...sourceFiles(dir, name));
    } else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) {
      out.push(name);
    }
  }
  return out;
}

/** An installed package's version; its package.json is found from its entry point (some export no ./package.json). */
function installedVersion(name: string): string {
  try {
    let dir = path.dirname(require.resolve(name));
    for (;;) {
      const file = path.join(dir, 'package.json');
      if (fs.existsSync(file)) {
        const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name && pkg.version) return pkg.version;
      }
      const parent = path.dirname(dir);
      if (parent === dir) return 'unknown';
      dir = parent;
    }
  } catch {
    return 'absent';
  }
}

export function runtimeVersions(): Record<string, string> {
  return Object.fromEntries(RUNTIMES.map((name) => [name, installedVersion(name)]));
}

const memo = new Map<string, CodeVersion>();

/**
 * The code version of the named workspace packages (e.g. ['engine', 'swinir']) plus single files (paths
 * relative to the repository root, for a package of which only a part computes results); memoized per process.
 */
export function codeVersion(packageNames: readonly string[], files: readonly string[] = [], root: string = repoRoot()): CodeVersion {
  const names = [...new Set(packageNames)].sort();
  const memoKey = `${root}\0${names.join(',')}\0${files.join(',')}`;
  const cached = memo.get(memoKey);
  if (cached) return cached;
  const packages: string[] = [];
  const lines: string[] = [];
  for (const name of names) {
    const dir = path.join(root, 'packages', name);
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name: string; version: string };
    packages.push(`${pkg.name}@${pkg.version}`);
    for (const file of sourceFiles(path.join(dir, 'src')).sort()) {
      lines.push(`${name}/src/${file} ${sha256Hex(fs.readFileSync(path.join(dir, 'src', file)))}`);
    }
  }
  for (const file of [...files].sort()) lines.push(`${file} ${sha256Hex(fs.readFileSync(path.join(root, file)))}`);
  const version = { packages, sources: sha256Hex(lines.join('\n')), runtimes: runtimeVersions() };
  memo.set(memoKey, version);
  return version;
}
