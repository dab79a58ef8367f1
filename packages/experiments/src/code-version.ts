/**
 * The code version a cell is keyed on: the version of every package that computes it, a hash of their
 * sources (tests and test helpers excluded) and the versions of the numeric runtimes. A content hash, not the
 * git commit: a commit says nothing about an uncommitted tree, and an unrelated commit (docs, another
 * package) must not invalidate finished cells. Where one package holds many independent pieces (the PTQ
 * methods of @harmoq/quant), `importClosure` narrows it to the files a cell's entry points really import, so
 * work on one method leaves the other methods' cells valid.
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

/** `from '...'`, `import('...')` and `require('...')` specifiers of a TypeScript file (type-only imports too). */
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm;

function resolveRelative(fromFile: string, spec: string, root: string): string {
  const base = path.join(path.dirname(fromFile), spec);
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts')]) {
    if (fs.existsSync(path.join(root, candidate))) return candidate.split(path.sep).join('/');
  }
  throw new Error(`code version: cannot resolve import '${spec}' of ${fromFile} (looked for ${base}.ts and ${base}/index.ts)`);
}

/**
 * The files (repository-relative, sorted) reachable from `entries` through relative imports. `cut` files are
 * not entered: a registry that imports every method would otherwise pull all of them into every cell, and the
 * method a cell runs is named as an entry instead. A workspace import (`@harmoq/x`) is not followed; it must be
 * one of `wholePackages`, which the caller hashes whole, or the closure would miss code that computes results.
 */
export function importClosure(
  entries: readonly string[], options: { cut?: readonly string[]; wholePackages: readonly string[]; root?: string },
): string[] {
  const root = options.root ?? repoRoot();
  const cut = new Set(options.cut ?? []);
  const seen = new Set<string>();
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file) || cut.has(file)) continue;
    if (!fs.existsSync(path.join(root, file))) throw new Error(`code version: entry ${file} does not exist under ${root}`);
    seen.add(file);
    for (const match of fs.readFileSync(path.join(root, file), 'utf8').matchAll(IMPORT)) {
      const spec = match[1];
      if (spec.startsWith('.')) {
        queue.push(resolveRelative(file, spec, root));
      } else if (spec.startsWith('@harmoq/')) {
        const name = spec.slice('@harmoq/'.length).split('/')[0];
        if (!options.wholePackages.includes(name)) {
          throw new Error(`code version: ${file} imports ${spec}, which is neither followed nor hashed whole (${options.wholePackages.join(', ')})`);
        }
      }
    }
  }
  return [...seen].sort();
}
