import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fc from 'fast-check';
import type { Cell } from './cells';
import { ExperimentError } from './errors';
import { Tracker } from '@harmoq/tracking';
import { resolveGrid, runOneCell, type ResolvedGrid } from './run';
import { arraySpec, emitSlurm, jobTrackingUri, planSlurm, sbatchDirectives, shellQuote, slurmScripts, type SlurmPlan } from './slurm';
import { CellStore, CLAIM_FILE, RESULT_FILES } from './store';
import { trackedCellKeys } from './tracking';
import { tinyGrid, type TinyGrid } from './testing/tiny-grid';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-slurm-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A toy grid: two calibrations, their evals, a float eval, and a cell two levels down (needs both evals). */
function toyGrid(): ResolvedGrid {
  const cell = (key: string, label: string, deps: string[] = []) => ({ key, label, deps }) as unknown as Cell;
  const selected = [
    cell('eval-fp', 'eval fp'),
    cell('cal-a', 'calibrate a'),
    cell('eval-a1', 'eval a1', ['cal-a']),
    cell('cal-b', 'calibrate b'),
    cell('eval-a2', 'eval a2', ['cal-a']),
    cell('eval-b1', 'eval b1', ['cal-b']),
    cell('eval-ab', 'eval ab', ['eval-a1', 'eval-b1']),
  ];
  return { module: { name: 'toy' }, selected, cells: selected } as unknown as ResolvedGrid;
}

/** The ExperimentError `fn` throws (fails the test if it throws nothing or something else). */
function thrown(fn: () => unknown): ExperimentError {
  let error: unknown;
  try { fn(); } catch (err) { error = err; }
  expect(error).toBeInstanceOf(ExperimentError);
  return error as ExperimentError;
}

/** Writes `name` as an executable that logs its arguments (one per line), runs `body`, then ends the entry with a blank line in `<dir>/<name>.log`. */
function fakeCommand(dir: string, name: string, body = '', exit = 'exit 0'): void {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  fs.writeFileSync(file, `#!/bin/bash\nprintf '%s\\n' "$@" >> "${dir}/${name}.log"\n${body}\necho >> "${dir}/${name}.log"\n${exit}\n`);
  fs.chmodSync(file, 0o755);
}

const calls = (dir: string, name: string) => fs.readFileSync(path.join(dir, `${name}.log`), 'utf8').split('\n\n').filter((c) => c !== '').map((c) => c.split('\n'));

describe('planSlurm: one array job per set of unfinished dependencies', () => {
  test('cells wait for exactly the tasks that compute their dependencies, in dependency order', () => {
    const plan = planSlurm(toyGrid(), () => false);
    expect(plan.groups).toEqual([
      { indices: [0, 1, 3], after: [] },
      { indices: [2, 4], after: [1] },
      { indices: [5], after: [3] },
      { indices: [6], after: [2, 5] },
    ]);
    expect(plan).toMatchObject({ experiment: 'toy', selected: 7, done: 0 });
  });

  test('finished cells are left out, and a finished dependency is no longer waited for', () => {
    const plan = planSlurm(toyGrid(), (i) => i === 0 || i === 1 || i === 2);
    expect(plan.groups).toEqual([{ indices: [3, 4], after: [] }, { indices: [5], after: [3] }, { indices: [6], after: [5] }]);
    expect([...plan.cells.keys()]).toEqual([3, 4, 5, 6]);
    expect(plan.done).toBe(3);
    expect(planSlurm(toyGrid(), () => true).groups).toEqual([]);
  });
});

describe('sbatch options', () => {
  test('arraySpec compresses runs, sorted and unique', () => {
    expect(arraySpec([5, 0, 1, 2, 9, 3, 3, 10])).toBe('0-3,5,9-10');
    expect(arraySpec([7])).toBe('7');
  });

  test('valid options become #SBATCH lines; cpus default 4', () => {
    expect(sbatchDirectives({ partition: 'gpu,cpu', time: '1-02:00:00', mem: '8G', extra: ['account=proj', 'exclusive'] })).toEqual([
      '--partition=gpu,cpu', '--time=1-02:00:00', '--cpus-per-task=4', '--mem=8G', '--account=proj', '--exclusive',
    ]);
    expect(sbatchDirectives({ time: '90', cpus: 2 })).toEqual(['--time=90', '--cpus-per-task=2']);
  });

  test.each([
    [{ time: '90m' }, "--slurm-time '90m' is not a Slurm time (formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, UNLIMITED)"],
    [{ mem: '8GB' }, "--slurm-mem '8GB' is not a Slurm memory size (a number of MB, or with a unit: K, M, G, T, e.g. 8G)"],
    [{ partition: 'a b' }, "--slurm-partition 'a b' is not a partition name (letters, digits, _ . -; several: a,b)"],
    [{ cpus: 0 }, "--slurm-cpus '0' must be a positive integer"],
    [{ extra: ['Account=x'] }, "--slurm 'Account=x' is not key=value with an sbatch long option as key (e.g. account=proj, qos=long, exclusive)"],
    [{ extra: ['comment=a b'] }, "--slurm 'comment=a b': the value must be non-empty, without spaces, quotes, backslashes or '#'"],
  ])('%j is refused with one line naming it', (options, message) => {
    expect(thrown(() => sbatchDirectives(options)).message).toBe(message);
  });

  test('options the setup writes itself are refused, naming them', () => {
    const err = thrown(() => sbatchDirectives({ extra: ['array=0-3'] }));
    expect(err.message).toMatch(/^--slurm 'array=0-3': 'array' cannot be set this way \(set by submit\.sh; written by the setup: array, dependency, .*time, cpus-per-task, mem, ntasks\)$/);
    expect(err.choices).toContain('dependency');
    expect(thrown(() => sbatchDirectives({ extra: ['time=5'] })).message).toMatch(/use --slurm-time/);
  });

  test('shellQuote survives bash for any string', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }).filter((s) => !s.includes('\0')), (value) => {
      const r = spawnSync('bash', ['-c', `printf '%s' ${shellQuote(value)}`], { encoding: 'utf8' });
      expect(r.stdout).toBe(value);
    }), { numRuns: 60 });
    expect(shellQuote('scale=4')).toBe('scale=4');
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
  });

  test('a local tracking store goes to the jobs as an absolute file: URI, a server as given, unset as nothing', () => {
    expect(jobTrackingUri('mlruns-x', '/data/run')).toBe('file:///data/run/mlruns-x');
    expect(jobTrackingUri('file:rel', '/a')).toBe('file:///a/rel');
    expect(jobTrackingUri('http://host:5000/')).toBe('http://host:5000');
    expect(jobTrackingUri(undefined)).toBeUndefined();
  });
});

describe('the scripts, run with fake sbatch and npx', () => {
  const root = path.join(tmp, 'toy');
  const outDir = path.join(root, 'setup');
  const bin = path.join(root, 'bin');
  const odd = "method=a b'c\"$x";
  let files: Record<string, string>;
  let plan: SlurmPlan;

  beforeAll(() => {
    plan = planSlurm(toyGrid(), () => false);
    files = slurmScripts({
      plan, outDir, repoDir: path.join(root, 'repo dir'),
      flags: { preset: 'quick', only: [odd], set: ['quant.calibration.count=8'], dataDir: '/data/x', resultsDir: '/res', threads: 3, tracking: true, trackingUri: 'http://mlflow:5000' },
      slurm: { cpus: 2, time: '30:00', extra: ['account=proj'] },
    });
    fs.mkdirSync(path.join(root, 'repo dir'), { recursive: true });
    fs.mkdirSync(outDir, { recursive: true });
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(outDir, name), text);
    // sbatch prints "<id>;<cluster>" with --parsable on a multi-cluster setup; the ids count from 41.
    fakeCommand(bin, 'sbatch', 'n=$(cat "$(dirname "$0")/n" 2>/dev/null || echo 41); echo $((n + 1)) > "$(dirname "$0")/n"; echo "$n;cl"');
    fakeCommand(bin, 'npx', 'pwd >> "$(dirname "$0")/npx.log"; env | grep -E "^(HARMOQ_DATA|MLFLOW_TRACKING_URI)=" | sort >> "$(dirname "$0")/npx.log"',
      // `harmoq exp --tables-only` exits with NPX_EXP_EXIT (a selected cell without a result: 1).
      '[ "$2" = exp ] && exit ${NPX_EXP_EXIT:-0}; exit 0');
  });

  test('every script is valid bash', () => {
    for (const name of ['cell.sbatch', 'tables.sbatch', 'submit.sh']) {
      const r = spawnSync('bash', ['-n', path.join(outDir, name)], { encoding: 'utf8' });
      expect({ name, stderr: r.stderr }).toEqual({ name, stderr: '' });
    }
  });

  test('#SBATCH lines: name, options, a log per task', () => {
    const directives = (text: string) => text.split('\n').filter((l) => l.startsWith('#SBATCH'));
    expect(directives(files['cell.sbatch'])).toEqual([
      '#SBATCH --job-name=harmoq-toy', '#SBATCH --time=30:00', '#SBATCH --cpus-per-task=2', '#SBATCH --account=proj',
      `#SBATCH --output=${outDir}/logs/%x-%A_%a.out`,
    ]);
    expect(directives(files['tables.sbatch'])).toContain(`#SBATCH --output=${outDir}/logs/%x-%j.out`);
  });

  test('submit.sh chains the arrays on the exact tasks they need and the tables on every array', () => {
    const r = spawnSync('bash', [path.join(outDir, 'submit.sh')], { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const cell = path.join(outDir, 'cell.sbatch');
    expect(calls(bin, 'sbatch')).toEqual([
      ['--parsable', '--array=0-1,3', cell],
      ['--parsable', '--array=2,4', '--dependency=afterok:41_1', '--kill-on-invalid-dep=yes', cell],
      ['--parsable', '--array=5', '--dependency=afterok:41_3', '--kill-on-invalid-dep=yes', cell],
      ['--parsable', '--array=6', '--dependency=afterok:42_2:43_5', '--kill-on-invalid-dep=yes', cell],
      ['--parsable', '--dependency=afterany:41:42:43:44', path.join(outDir, 'tables.sbatch')],
    ]);
    expect(fs.readFileSync(path.join(outDir, 'jobs.txt'), 'utf8')).toBe('41\n42\n43\n44\n45\n');
    expect(r.stdout).toContain('cells 2,4: job 42');
    expect(fs.existsSync(path.join(outDir, 'logs'))).toBe(true);
  });

  test('an array task runs `harmoq cell` for its index and key, in the repo, with the options as given', () => {
    fs.rmSync(path.join(bin, 'npx.log'), { force: true });
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${bin}:${process.env.PATH}`, SLURM_ARRAY_TASK_ID: '5' };
    delete env.HARMOQ_DATA;
    const r = spawnSync('bash', [path.join(outDir, 'cell.sbatch')], { encoding: 'utf8', env });
    expect(r.status).toBe(0);
    expect(calls(bin, 'npx')[0]).toEqual([
      'harmoq', 'cell', 'toy', '5', '--expect-key', 'eval-b1', '--preset', 'quick', '--only', odd,
      '--set', 'quant.calibration.count=8', '--results', '/res', '--threads', '3',
      path.join(root, 'repo dir'), 'HARMOQ_DATA=/data/x', 'MLFLOW_TRACKING_URI=http://mlflow:5000',
    ]);
    const noTask = spawnSync('bash', [path.join(outDir, 'cell.sbatch')], { encoding: 'utf8', env: { ...env, SLURM_ARRAY_TASK_ID: '' } });
    expect(noTask.status).not.toBe(0);
    expect(noTask.stderr).toMatch(/cell\.sbatch is an array job: submit it with submit\.sh/);
  });

  test('the tables job writes the rows with exp --tables-only, then runs harmoq tables, and fails if the first did', () => {
    fs.rmSync(path.join(bin, 'npx.log'), { force: true });
    const r = spawnSync('bash', [path.join(outDir, 'tables.sbatch')], { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    expect(r.status).toBe(0);
    const [exp, tables] = calls(bin, 'npx');
    expect(exp.slice(0, 4)).toEqual(['harmoq', 'exp', 'toy', '--tables-only']);
    expect(exp).toContain(odd);
    expect(tables.slice(0, 4)).toEqual(['harmoq', 'tables', '--results', '/res']);

    fs.rmSync(path.join(bin, 'npx.log'), { force: true });
    const failed = spawnSync('bash', [path.join(outDir, 'tables.sbatch')], { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, NPX_EXP_EXIT: '1' } });
    expect(failed.status).toBe(1);
    expect(calls(bin, 'npx').map((c) => c[1])).toEqual(['exp', 'tables']);
  });
});

describe('emitSlurm on a real grid', () => {
  // Made in beforeAll: a describe whose tests are filtered out (-t) runs no hooks, and would leave it behind.
  let tiny: TinyGrid;
  beforeAll(() => { tiny = tinyGrid('harmoq-slurm-grid-'); });
  afterAll(() => tiny.cleanup());

  test('writes the setup for the unfinished cells only, keeps logs/ on a re-emit, and the setup is complete', () => {
    const grid = resolveGrid({ name: 'baselines', set: tiny.set(), dataDir: tiny.dataDir });
    expect(grid.selected.map((c) => c.label)).toEqual(['eval Set5 x2 fp', 'calibrate x2 minmax W4A4', 'eval Set5 x2 minmax W4A4']);
    const outDir = path.join(tiny.root, 'setup');
    const flags = { set: tiny.set(), resultsDir: tiny.resultsDir, tracking: false };
    const first = emitSlurm({ grid, flags, slurm: {}, outDir, repoDir: tiny.root });
    expect(first.files.map((f) => path.basename(f))).toEqual(['cell.sbatch', 'tables.sbatch', 'cells.tsv', 'submit.sh']);
    expect(first.plan.groups).toEqual([{ indices: [0, 1], after: [] }, { indices: [2], after: [1] }]);
    const cellScript = fs.readFileSync(path.join(outDir, 'cell.sbatch'), 'utf8');
    for (const [i, c] of grid.selected.entries()) expect(cellScript).toContain(`  [${i}]=${c.key}\n`);
    expect(cellScript).toContain('--no-tracking');
    expect(cellScript).not.toContain('HARMOQ_DATA');
    expect(fs.statSync(path.join(outDir, 'submit.sh')).mode & 0o111).not.toBe(0);

    // The float eval finishes: a re-emit leaves it out and keeps the logs of the first submission.
    fs.writeFileSync(path.join(outDir, 'logs', 'old.out'), 'x');
    const store = new CellStore(tiny.resultsDir);
    fs.mkdirSync(store.dir(grid.selected[0].key), { recursive: true });
    fs.writeFileSync(path.join(store.dir(grid.selected[0].key), RESULT_FILES.eval), '{}');
    const second = emitSlurm({ grid, flags, slurm: {}, outDir, repoDir: tiny.root });
    expect(second.plan.groups).toEqual([{ indices: [1], after: [] }, { indices: [2], after: [1] }]);
    expect(fs.readFileSync(path.join(outDir, 'cells.tsv'), 'utf8').split('\n').map((l) => l.split('\t')[0])).toEqual(['index', '1', '2', '']);
    expect(fs.readdirSync(path.join(outDir, 'logs'))).toEqual(['old.out']);
    expect(fs.readdirSync(outDir).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    expect(thrown(() => emitSlurm({ grid, flags, slurm: {}, outDir: path.join(tiny.root, 'a b'), repoDir: tiny.root })).message)
      .toMatch(/^--out '.*\/a b': the path must have no spaces/);
  });
});

describe('runOneCell, what every array task runs', () => {
  // Made in beforeAll: a describe whose tests are filtered out (-t) runs no hooks, and would leave it behind.
  let tiny: TinyGrid;
  beforeAll(() => { tiny = tinyGrid('harmoq-slurm-cell-'); });
  afterAll(() => tiny.cleanup());

  test('two tasks given the same cell at once: it is computed once and logged once; a third says it is finished', async () => {
    const options = { name: 'baselines', set: tiny.set(), dataDir: tiny.dataDir, resultsDir: tiny.resultsDir, index: 0, threads: 1 };
    const tracker = () => new Tracker({ trackingUri: tiny.trackingUri });
    const waited: number[] = [];
    const [a, b] = await Promise.all([
      runOneCell({ ...options, tracker: tracker() }),
      runOneCell({ ...options, tracker: tracker(), claim: { pollMs: 50, onWait: (h) => waited.push(h.pid) } }),
    ]);
    expect([a.ran, b.ran].sort()).toEqual([false, true]);
    expect(a.cell.key).toBe(b.cell.key);
    expect(waited).toEqual([process.pid]);
    const again = await runOneCell({ ...options, tracker: tracker(), expectKey: a.cell.key });
    expect(again).toMatchObject({ ran: false, seconds: 0 });

    const store = tracker().localStore();
    const experiment = store.getExperimentByName('baselines')!;
    const runs = store.listRuns(experiment.experimentId).map((info) => store.readRun(info).tags['harmoq.cellKey']);
    expect(runs).toEqual([a.cell.key]);
    expect([...(await trackedCellKeys(tracker(), 'baselines'))]).toEqual([a.cell.key]);
    expect(fs.existsSync(path.join(new CellStore(tiny.resultsDir).dir(a.cell.key), CLAIM_FILE))).toBe(false);
  }, 60000);
});

