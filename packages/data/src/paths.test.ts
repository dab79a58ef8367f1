import * as fs from 'node:fs';
import * as path from 'node:path';
import { dataDir, goldenDir, repoRoot } from './paths';

test('repoRoot finds the workspace root and the shared folders exist beside it', () => {
  const root = repoRoot();
  expect(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).name).toBe('harmoq-ts');
  expect(fs.existsSync(path.join(goldenDir(), 'README.md'))).toBe(true);
  expect(fs.existsSync(path.join(dataDir(), 'MANIFEST.md'))).toBe(true);
});

test('an explicit data folder wins over HARMOQ_DATA', () => {
  expect(dataDir('/tmp/x')).toBe('/tmp/x');
});
