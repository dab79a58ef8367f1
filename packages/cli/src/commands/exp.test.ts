import * as fs from 'node:fs';
import * as path from 'node:path';
import { harmoq, tempFolder } from '../testing/harmoq';

const tmp = tempFolder('harmoq-exp-cli-');


describe('harmoq exp / cell / tracking: bad input is one line and exit 2', () => {
  test.each([
    // The choices grow with the registry.
    [['exp', 'nope'], /^harmoq: unknown experiment 'nope' \(choices: baselines, main(, [a-z-]+)*\)$/],
    [['exp', 'baselines', '--dry-run', '--only', 'methd=minmax'], "harmoq: unknown --only key 'methd' (did you mean 'method'? keys: scale, method, dataset, bits)"],
    [['exp', 'main', '--dry-run', '--only', 'scale=3'], "harmoq: --only scale='3' is not in this grid (values: 4, 2)"],
    [['exp', 'main', '--dry-run', '--set', 'bits=W9A9'], /^harmoq: --set bits=W9A9: bits\.0: Invalid option: expected one of "W2A2"/],
    [['exp', 'main', '--jobs', '0'], "harmoq: --jobs '0' must be a positive integer"],
    [['cell', 'main', '-1'], "harmoq: cell index '-1' must be a non-negative integer"],
    [['cell', 'main', '9999', '--results', tmp], /^harmoq: cell index 9999 is out of range \(0\.\.\d+ for baselines\)$/],
    [['tracking', 'sync', '--to', 'ftp://x'], /bad usage/],
    [['exp', 'main', '--emit', 'pbs'], "harmoq: --emit 'pbs' is not valid (choices: slurm)"],
    [['exp', 'main', '--slurm-time', '1:00'], 'harmoq: --slurm-time needs --emit (choices: slurm)'],
    [['exp', 'main', '--emit', 'slurm', '--jobs', '2'], 'harmoq: --jobs cannot be combined with --emit (the batch setup runs the cells and builds the tables)'],
    [['exp', 'main', '--emit', 'slurm', '--out', `${tmp}/setup`, '--results', tmp, '--slurm-time', '90m'],
      "harmoq: --slurm-time '90m' is not a Slurm time (formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, UNLIMITED)"],
    [['exp', 'main', '--emit', 'slurm', '--out', `${tmp}/setup`, '--results', tmp, '--slurm', 'dependency=afterok:1'],
      /^harmoq: --slurm 'dependency=afterok:1': 'dependency' cannot be set this way \(set by submit\.sh; written by the setup: array, dependency, /],
    [['exp', 'main', '--emit', 'slurm', '--out', `${tmp}/setup`, '--results', tmp, '--slurm-cpus', 'two'], "harmoq: --slurm-cpus 'two' must be a positive integer"],
    [['cell', 'main', '0', '--results', tmp, '--expect-key', 'eval-000000000000000000000000'],
      /^harmoq: cell index 0 of baselines is now eval-[0-9a-f]{24} \(eval Set5 x4 fp\), not eval-0{24}: the code, data or options changed since the batch setup was written; emit it again$/],
  ])('%j', async (argv, message) => {
    const r = await harmoq(...argv);
    expect(r.code).toBe(2);
    const last = r.stderr.trim().split('\n').pop()!;
    if (typeof message === 'string') expect(last).toBe(message);
    else expect(last).toMatch(message);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('--dry-run lists the selected cells with their index, state and key, and writes nothing', async () => {
    const r = await harmoq('exp', 'main', '--dry-run', '--results', tmp, '--only', 'method=fp', '--only', 'scale=4');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines.slice(0, 3).map((l) => l.replace(/eval-[0-9a-f]{24}/, 'KEY'))).toEqual([
      '   0  todo  KEY  eval Set5 x4 fp', '   1  todo  KEY  eval Set14 x4 fp', '   2  todo  KEY  eval B100 x4 fp',
    ]);
    expect(lines[3]).toMatch(/^baselines: 3 cells selected of \d+, 0 done, 3 to run$/);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('--emit slurm writes the setup for the selected cells and says how to submit it', async () => {
    const out = path.join(tmp, 'emitted');
    const results = path.join(tmp, 'emit-results');
    const r = await harmoq('exp', 'main', '--emit', 'slurm', '--out', out, '--results', results, '--only', 'method=fp', '--only', 'scale=4', '--slurm-cpus', '2', '--no-tracking');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `baselines: wrote ${out}/{cell.sbatch,tables.sbatch,cells.tsv,submit.sh}: 3 cells to run (0 of 3 finished) in 1 array job, then the tables\n` +
      `submit with: bash ${out}/submit.sh   (logs in ${out}/logs/)\n`,
    );
    expect(fs.readFileSync(path.join(out, 'submit.sh'), 'utf8')).toContain('job0=$(submit --array=0-2 "$here/cell.sbatch")');
    expect(fs.readFileSync(path.join(out, 'cell.sbatch'), 'utf8')).toContain(`--only method=fp --only scale=4 --results ${results} --threads 2 --no-tracking\n`);
    expect(fs.existsSync(results)).toBe(false);
    fs.rmSync(out, { recursive: true });
  });

  test('--tables-only runs no cell, writes the tables, and exits 1 naming the cells without a result', async () => {
    const results = path.join(tmp, 'tables-only');
    const r = await harmoq('exp', 'main', '--tables-only', '--results', results, '--only', 'method=fp', '--only', 'scale=4', '--only', 'dataset=Set5');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^baselines: 0 of 1 selected cells finished; wrote .*baselines\.json/);
    expect(r.stderr.trim().split('\n').pop()).toMatch(/^harmoq: 1 of 1 selected cells have no result: eval-[0-9a-f]{24} \(eval Set5 x4 fp\)$/);
    expect(fs.readdirSync(path.join(results, 'baselines', 'tables'))).toContain('baselines-x4.md');
    expect(fs.existsSync(path.join(results, 'cells'))).toBe(false);
    fs.rmSync(results, { recursive: true });
  });
});
