import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { appendLineDurable, writeFileAtomic } from './index';

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atomic-fs-')); });
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

test('writes strings, bytes and chunk lists, leaving no temp file', () => {
  const target = path.join(dir, 'out.bin');
  writeFileAtomic(target, [new Uint8Array([1, 2]), new Uint8Array([3])]);
  expect([...fs.readFileSync(target)]).toEqual([1, 2, 3]);
  writeFileAtomic(target, 'hi');
  expect(fs.readFileSync(target, 'utf8')).toBe('hi');
  expect(fs.readdirSync(dir)).toEqual(['out.bin']);
});

test('a missing folder is an error, not created', () => {
  expect(() => writeFileAtomic(path.join(dir, 'no/such/out.bin'), 'x')).toThrow(/ENOENT/);
  expect(fs.readdirSync(dir)).toEqual([]);
});

test('a failed write keeps the old file and removes its temp file', () => {
  const target = path.join(dir, 'out.txt');
  writeFileAtomic(target, 'old');
  const tempDir = path.join(dir, 'missing-temp-dir');
  expect(() => writeFileAtomic(target, 'new', { tempDir })).toThrow(/ENOENT/);
  expect(fs.readFileSync(target, 'utf8')).toBe('old');
  expect(fs.readdirSync(dir)).toEqual(['out.txt']);
});

test('the temp file is made in tempDir, not beside the target', () => {
  fs.mkdirSync(path.join(dir, 'params'));
  const tempDir = path.join(dir, 'not-here');
  // The open of the temp file fails, and its path (in the error) shows where it was put.
  expect(() => writeFileAtomic(path.join(dir, 'params/x'), 'v', { tempDir })).toThrow(new RegExp(`open '${tempDir}/\\.x\\.`));
  fs.mkdirSync(tempDir);
  writeFileAtomic(path.join(dir, 'params/x'), 'v', { tempDir });
  expect(fs.readdirSync(path.join(dir, 'params'))).toEqual(['x']);
});

test('appendLineDurable appends', () => {
  const target = path.join(dir, 'm/loss');
  appendLineDurable(target, 'a\n');
  appendLineDurable(target, 'b\n');
  expect(fs.readFileSync(target, 'utf8')).toBe('a\nb\n');
});
