import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { FileStore, experimentIdForName, parseMetricLines } from './file-store';
import { TrackingError } from './errors';
import { pythonWithYaml } from './testing/python';

const python = pythonWithYaml();
const withPython = python ? test : test.skip;

let tmp: string;
let root: string;
let clock: number;
let runCounter: number;
const now = () => clock;
const newRunId = () => `${(++runCounter).toString(16).padStart(8, '0')}${'c'.repeat(24)}`;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tracking-store-'));
  root = path.join(tmp, 'mlruns');
  clock = 1_700_000_000_000;
  runCounter = 0;
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

const read = (...parts: string[]) => fs.readFileSync(path.join(root, ...parts), 'utf8');
/** Every file under the root, relative, sorted. */
function tree(dir = root, prefix = ''): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const rel = prefix ? `${prefix}/${d.name}` : d.name;
    return d.isDirectory() ? [`${rel}/`, ...tree(path.join(dir, d.name), rel)] : [rel];
  }).sort();
}

describe('layout and file contents (mlflow.md section 1)', () => {
  test('a new root gets the Default experiment 0 and .trash', () => {
    new FileStore(root, { now }).ensureRoot();
    expect(tree()).toEqual(['.trash/', '0/', '0/meta.yaml']);
    expect(read('0', 'meta.yaml')).toBe(
      `artifact_location: ${pathToFileURL(path.join(root, '0')).href}\n` +
        'creation_time: 1700000000000\n' +
        "experiment_id: '0'\n" +
        'last_update_time: 1700000000000\n' +
        'lifecycle_stage: active\n' +
        'name: Default\n',
    );
  });

  test('an experiment and a run, file by file', () => {
    const store = new FileStore(root, { now, newRunId });
    const experimentId = store.getOrCreateExperiment('asymmetry');
    expect(experimentId).toBe(experimentIdForName('asymmetry'));
    expect(experimentId).toMatch(/^\d{15,19}$/);
    expect(read(experimentId, 'meta.yaml')).toBe(
      `artifact_location: ${pathToFileURL(path.join(root, experimentId)).href}\n` +
        'creation_time: 1700000000000\n' +
        `experiment_id: '${experimentId}'\n` +
        'last_update_time: 1700000000000\n' +
        'lifecycle_stage: active\n' +
        'name: asymmetry\n',
    );

    clock += 1000;
    const run = store.createRun({
      experimentId, runName: 'minmax w4a4 x2', startTime: clock, userId: 'alice',
      tags: [{ key: 'harmoq.cellKey', value: 'ab12' }, { key: 'mlflow.source.git.commit', value: 'f'.repeat(40) }],
    });
    const runDir = [experimentId, run.runId];
    const artifactUri = `${pathToFileURL(path.join(root, experimentId)).href}/${run.runId}/artifacts`;
    expect(run.artifactUri).toBe(artifactUri);
    expect(read(...runDir, 'meta.yaml')).toBe(
      `artifact_uri: ${artifactUri}\n` +
        'deleted_time: null\n' +
        'end_time: null\n' +
        "entry_point_name: ''\n" +
        `experiment_id: '${experimentId}'\n` +
        'lifecycle_stage: active\n' +
        `run_id: ${run.runId}\n` +
        'run_name: minmax w4a4 x2\n' +
        `run_uuid: ${run.runId}\n` +
        "source_name: ''\n" +
        'source_type: 4\n' +
        "source_version: ''\n" +
        'start_time: 1700000001000\n' +
        'status: 1\n' +
        'tags: []\n' +
        'user_id: alice\n',
    );

    store.logBatch(run, {
      params: [{ key: 'bits', value: '4' }, { key: 'model/depth', value: '6' }],
      metrics: [
        { key: 'Set5/psnr', value: 32.5, timestamp: 1_700_000_002_000, step: 0 },
        { key: 'calib_loss', value: 1e-5, timestamp: 1_700_000_002_001, step: 1 },
        { key: 'calib_loss', value: 3, timestamp: 1_700_000_002_002, step: 2 },
      ],
      tags: [{ key: 'backend', value: 'wasm' }],
    });
    store.logBatch(run, { metrics: [{ key: 'calib_loss', value: NaN, timestamp: 1_700_000_002_003, step: 3 }] });
    store.logArtifact(run, 'crops/baby.png', new Uint8Array([137, 80]));
    clock += 5000;
    store.updateRun(run, { status: 'FINISHED', endTime: clock });

    const r = run.runId;
    expect(tree()).toEqual([
      '.trash/', '0/', '0/meta.yaml', `${experimentId}/`, `${experimentId}/${r}/`,
      `${experimentId}/${r}/artifacts/`, `${experimentId}/${r}/artifacts/crops/`, `${experimentId}/${r}/artifacts/crops/baby.png`,
      `${experimentId}/${r}/meta.yaml`,
      `${experimentId}/${r}/metrics/`, `${experimentId}/${r}/metrics/Set5/`, `${experimentId}/${r}/metrics/Set5/psnr`,
      `${experimentId}/${r}/metrics/calib_loss`,
      `${experimentId}/${r}/params/`, `${experimentId}/${r}/params/bits`, `${experimentId}/${r}/params/model/`,
      `${experimentId}/${r}/params/model/depth`,
      `${experimentId}/${r}/tags/`, `${experimentId}/${r}/tags/backend`, `${experimentId}/${r}/tags/harmoq.cellKey`,
      `${experimentId}/${r}/tags/mlflow.runName`, `${experimentId}/${r}/tags/mlflow.source.git.commit`,
      `${experimentId}/meta.yaml`,
    ].sort());
    expect(read(...runDir, 'params', 'bits')).toBe('4');
    expect(read(...runDir, 'params', 'model', 'depth')).toBe('6');
    expect(read(...runDir, 'tags', 'backend')).toBe('wasm');
    expect(read(...runDir, 'tags', 'mlflow.runName')).toBe('minmax w4a4 x2');
    expect(read(...runDir, 'metrics', 'Set5', 'psnr')).toBe('1700000002000 32.5 0\n');
    expect(read(...runDir, 'metrics', 'calib_loss')).toBe('1700000002001 1e-05 1\n1700000002002 3.0 2\n1700000002003 nan 3\n');
    expect(fs.readFileSync(path.join(root, ...runDir, 'artifacts', 'crops', 'baby.png'))).toEqual(Buffer.from([137, 80]));
    const meta = read(...runDir, 'meta.yaml');
    expect(meta).toContain('end_time: 1700000006000\n');
    expect(meta).toContain('status: 3\n');
  });

  test('reads back everything it wrote', () => {
    const store = new FileStore(root, { now, newRunId });
    const experimentId = store.getOrCreateExperiment('main');
    const run = store.createRun({ experimentId, runName: 'r', startTime: 5, tags: [{ key: 'a/b', value: 'c' }] });
    const metrics = [
      { key: 'm', value: 0.1, timestamp: 7, step: 0 }, { key: 'm', value: -Infinity, timestamp: 8, step: 1 },
      { key: 'x/y', value: 12345678901234567, timestamp: 9, step: -2 },
    ];
    store.logBatch(run, { params: [{ key: 'p', value: 'multi\nline' }], metrics });
    store.logArtifact(run, 'config.json', Buffer.from('{}'));
    store.updateRun(run, { status: 'KILLED', endTime: 10 });
    const back = store.readRun(run);
    expect(back.info).toEqual({ ...run, status: 'KILLED', endTime: 10 });
    expect(back.params).toEqual({ p: 'multi\nline' });
    expect(back.tags).toEqual({ 'a/b': 'c', 'mlflow.runName': 'r' });
    expect(back.metrics).toEqual(metrics);
    expect(back.artifacts).toEqual(['config.json']);
    expect(store.listRuns(experimentId).map((i) => i.runId)).toEqual([run.runId]);
    expect(store.listExperiments().map((e) => e.name)).toEqual(['Default', 'main']);
  });
});

describe('rules the store shares with MLflow', () => {
  test('params are immutable; the same value again is accepted', () => {
    const store = new FileStore(root, { now, newRunId });
    const run = store.createRun({ experimentId: store.getOrCreateExperiment('e'), runName: 'r', startTime: 0 });
    store.logBatch(run, { params: [{ key: 'bits', value: '4' }] });
    store.logBatch(run, { params: [{ key: 'bits', value: '4' }] });
    expect(() => store.logBatch(run, { params: [{ key: 'bits', value: '8' }] })).toThrow(/'bits' was already logged as '4'/);
  });

  test('renaming through the mlflow.runName tag keeps meta.yaml in step', () => {
    const store = new FileStore(root, { now, newRunId });
    const run = store.createRun({ experimentId: store.getOrCreateExperiment('e'), runName: 'old', startTime: 0 });
    store.setTag(run, 'mlflow.runName', 'new');
    expect(read(run.experimentId, run.runId, 'meta.yaml')).toContain('run_name: new\n');
    expect(store.getRunInfo(run).runName).toBe('new');
  });

  test('bad keys, artifact paths and ids are refused by name', () => {
    const store = new FileStore(root, { now, newRunId });
    const run = store.createRun({ experimentId: store.getOrCreateExperiment('e'), runName: 'r', startTime: 0 });
    expect(() => store.logBatch(run, { params: [{ key: '../../escape', value: '1' }] })).toThrow(/'\.\.\/\.\.\/escape'/);
    expect(() => store.logArtifact(run, '../x', new Uint8Array())).toThrow(TrackingError);
    expect(() => store.getRunInfo({ experimentId: run.experimentId, runId: '../x' })).toThrow(/invalid run id/);
    expect(() => store.getExperiment('nope')).toThrow(/no experiment 'nope'/);
    expect(fs.existsSync(path.join(tmp, 'escape'))).toBe(false);
  });

  test('no temp files are left in params/, metrics/ or tags/ (MLflow would read them as entries)', () => {
    const store = new FileStore(root, { now, newRunId });
    const run = store.createRun({ experimentId: store.getOrCreateExperiment('e'), runName: 'r', startTime: 0 });
    for (let i = 0; i < 20; i++) {
      store.logBatch(run, { params: [{ key: `p${i}`, value: 'v' }], tags: [{ key: `t/${i}`, value: 'v' }], metrics: [{ key: 'm', value: i, timestamp: i, step: i }] });
    }
    store.logArtifact(run, 'a.bin', new Uint8Array(10));
    expect(tree().filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  test('a metric line cut short by a crash is skipped; a malformed one is an error', () => {
    expect(parseMetricLines('m', '1 0.5 0\n2 0.25 1\n3 0.1')).toEqual([
      { key: 'm', timestamp: 1, value: 0.5, step: 0 }, { key: 'm', timestamp: 2, value: 0.25, step: 1 },
    ]);
    expect(parseMetricLines('m', '1 0.5\n')).toEqual([{ key: 'm', timestamp: 1, value: 0.5, step: 0 }]);
    expect(() => parseMetricLines('m', '1 2 3 4\n')).toThrow(/malformed/);
  });
});

test('a store moved to another folder still reads its artifacts', () => {
  const store = new FileStore(root, { now, newRunId });
  const run = store.createRun({ experimentId: store.getOrCreateExperiment('e'), runName: 'r', startTime: 0 });
  store.logArtifact(run, 'a/b.txt', Buffer.from('x'));
  const moved = path.join(tmp, 'moved');
  fs.renameSync(root, moved);
  const again = new FileStore(moved);
  const back = again.readRun(run);
  expect(back.artifacts).toEqual(['a/b.txt']);
  expect(again.artifactDir(back.info)).toBe(path.join(moved, run.experimentId, run.runId, 'artifacts'));
});

describe('experiments', () => {
  test('the id comes from the name, so parallel workers creating one experiment write one folder', () => {
    const a = new FileStore(root, { now });
    const elsewhere = new FileStore(path.join(tmp, 'other'), { now });
    const id = a.getOrCreateExperiment('main');
    expect(elsewhere.getOrCreateExperiment('main')).toBe(id);
    expect(new FileStore(root, { now }).getOrCreateExperiment('main')).toBe(id);
    expect(a.getOrCreateExperiment('main x2')).not.toBe(id);
    expect(a.listExperiments().filter((e) => e.name === 'main')).toHaveLength(1);
  });

  test('an id clash with another name falls back to another id', () => {
    const store = new FileStore(root, { now });
    store.ensureRoot();
    const id = experimentIdForName('wanted');
    fs.mkdirSync(path.join(root, id));
    fs.writeFileSync(path.join(root, id, 'meta.yaml'), `experiment_id: '${id}'\nname: squatter\nlifecycle_stage: active\n`);
    const got = store.getOrCreateExperiment('wanted');
    expect(got).not.toBe(id);
    expect(store.getExperiment(got).name).toBe('wanted');
  });

  test('reads experiments MLflow wrote: int ids, random ids, a deleted one in .trash blocks its name', () => {
    fs.mkdirSync(path.join(root, '.trash', '7'), { recursive: true });
    fs.mkdirSync(path.join(root, '3'), { recursive: true });
    fs.mkdirSync(path.join(root, 'models'), { recursive: true });
    fs.writeFileSync(path.join(root, '3', 'meta.yaml'), 'artifact_location: file:///x/3\nexperiment_id: 3\nlifecycle_stage: active\nname: legacy\n');
    fs.writeFileSync(path.join(root, '.trash', '7', 'meta.yaml'), "experiment_id: '7'\nlifecycle_stage: deleted\nname: gone\n");
    const store = new FileStore(root, { now });
    expect(store.getOrCreateExperiment('legacy')).toBe('3');
    expect(() => store.getOrCreateExperiment('gone')).toThrow(/deleted.*\.trash\/7/);
    // A run in an experiment whose recorded artifact folder does not exist here keeps its artifacts in the store.
    const run = store.createRun({ experimentId: '3', runName: 'r', startTime: 0 });
    expect(run.artifactUri).toBe(`${pathToFileURL(path.join(root, '3')).href}/${run.runId}/artifacts`);
  });
});

withPython('PyYAML reads the meta files with the types MLflow expects', () => {
  const store = new FileStore(root, { now, newRunId: () => '12345678901234567890123456789012' });
  const experimentId = store.getOrCreateExperiment('main');
  const run = store.createRun({ experimentId, runName: '2024-01-02', startTime: 1, userId: '' });
  store.updateRun(run, { status: 'FAILED', endTime: 2 });
  const metas = [path.join(root, experimentId, 'meta.yaml'), path.join(root, experimentId, run.runId, 'meta.yaml')];
  const loaded = python!(
    'import json,sys,yaml\n' +
      'out=[]\n' +
      'for p in json.load(sys.stdin):\n' +
      '  d=yaml.safe_load(open(p))\n' +
      '  out.append({k: [type(v).__name__, v if not isinstance(v, list) else len(v)] for k, v in d.items()})\n' +
      'print(json.dumps(out))',
    metas,
  ) as Record<string, [string, unknown]>[];
  expect(loaded[0]).toMatchObject({ experiment_id: ['str', experimentId], name: ['str', 'main'], creation_time: ['int', 1_700_000_000_000] });
  expect(loaded[1]).toMatchObject({
    run_id: ['str', run.runId], run_uuid: ['str', run.runId], experiment_id: ['str', experimentId], run_name: ['str', '2024-01-02'],
    status: ['int', 4], start_time: ['int', 1], end_time: ['int', 2], deleted_time: ['NoneType', null], source_type: ['int', 4],
    tags: ['list', 0], user_id: ['str', ''], lifecycle_stage: ['str', 'active'],
  });
});
