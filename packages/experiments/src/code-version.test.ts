import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { METHOD_NAMES } from '@harmoq/quant';
import { methodSource } from './cells';
import { codeVersion, importClosure } from './code-version';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-code-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function tree(files: Record<string, string>): string {
  const root = fs.mkdtempSync(path.join(tmp, 'tree-'));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), text);
  }
  return root;
}

describe('importClosure', () => {
  const files = {
    'p/src/a.ts': "import { b } from './b';\nimport type { T } from './types';\nimport * as fs from 'node:fs';\nexport const a = b;",
    'p/src/b.ts': "export { c } from './dir';\nimport '@harmoq/data';\nexport const b = 1;",
    'p/src/dir/index.ts': "export const c = require('../c');",
    'p/src/c.ts': "export const lazy = () => import('./d');",
    'p/src/d.ts': 'export const d = 4;',
    'p/src/types.ts': 'export type T = number;',
    'p/src/registry.ts': "import { a } from './a';\nimport { other } from './other';",
    'p/src/other.ts': 'export const other = 2;',
    'p/src/unused.ts': 'export const unused = 3;',
  };

  test('follows static, re-export, side-effect, require and dynamic imports, and nothing unimported', () => {
    const root = tree(files);
    expect(importClosure(['p/src/a.ts'], { wholePackages: ['data'], root })).toEqual(
      ['p/src/a.ts', 'p/src/b.ts', 'p/src/c.ts', 'p/src/d.ts', 'p/src/dir/index.ts', 'p/src/types.ts'],
    );
  });

  test('does not enter a cut file, so a registry does not pull in every entry it lists', () => {
    const root = tree(files);
    const closure = importClosure(['p/src/registry.ts', 'p/src/a.ts'], { cut: ['p/src/registry.ts'], wholePackages: ['data'], root });
    expect(closure).not.toContain('p/src/other.ts');
    expect(closure).not.toContain('p/src/registry.ts');
    expect(closure).toContain('p/src/d.ts');
  });

  test('refuses a workspace import that is neither followed nor hashed whole, and an unresolvable import', () => {
    const root = tree(files);
    expect(() => importClosure(['p/src/a.ts'], { wholePackages: ['engine'], root })).toThrow(/imports @harmoq\/data.*engine/);
    const broken = tree({ 'p/src/x.ts': "import { y } from './missing';" });
    expect(() => importClosure(['p/src/x.ts'], { wholePackages: [], root: broken })).toThrow(/cannot resolve import '\.\/missing' of p\/src\/x\.ts/);
  });

  test('the hash changes with a file in the closure and not with one outside it', () => {
    const pkg = { 'packages/q/package.json': '{"name":"@harmoq/q","version":"1.0.0"}', 'packages/q/src/index.ts': '' };
    // Each tree is its own root: codeVersion memoizes per root, and hashes paths relative to it.
    const sources = (extra: Record<string, string>) => {
      const root = tree({ ...files, ...pkg, ...extra });
      return codeVersion(['q'], importClosure(['p/src/a.ts'], { wholePackages: ['data'], root }), root).sources;
    };
    const base = sources({});
    expect(sources({ 'p/src/unused.ts': 'export const unused = 30;' })).toBe(base);
    expect(sources({ 'p/src/other.ts': 'export const other = 20;' })).toBe(base);
    expect(sources({ 'p/src/d.ts': 'export const d = 5;' })).not.toBe(base);
  });
});

describe('methodSource', () => {
  test('every registered method has exactly one source file, each its own', () => {
    const sources = METHOD_NAMES.map((name) => methodSource(name));
    expect(new Set(sources).size).toBe(METHOD_NAMES.length);
    for (const file of sources) expect(file).toMatch(/^packages\/quant\/src\/methods\/[\w-]+\.ts$/);
    expect(methodSource('2dquant')).toBe('packages/quant/src/methods/twodquant.ts');
  });

  test('an unknown method names the file it looked for', () => {
    expect(() => methodSource('nosuch')).toThrow(/method 'nosuch'.*name: 'nosuch',.*found none/);
  });
});
