/** Test helpers for the CLI: run it in-process and capture what it printed, and a temp folder per test file. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from '../main';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `harmoq ...argv` in this process (jest spies on stdout/stderr) and returns its exit code and output. */
export async function harmoq(...argv: string[]): Promise<CliResult> {
  let stdout = '', stderr = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += String(s)), true));
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((s) => ((stderr += String(s)), true));
  try {
    return { code: await run(argv), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

/** A fresh temp folder, removed after the file's tests. */
export function tempFolder(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}
