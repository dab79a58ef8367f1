import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dataDir } from '@harmoq/data';
import { DEFAULT_SEED, resolveRequest } from '@harmoq/quant';
import { calibrateCell, cellKey, evalCell, type Cell } from './cells';
import { canonicalJson } from './hash';

const shared = dataDir();
const checkpoint = path.join(shared, 'weights/house/swinir_light_x4_house.pth');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-cells-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const request = () => resolveRequest({ method: 'minmax', wbits: 4, abits: 4, preset: 'quick' });
const cal = (over: Partial<Parameters<typeof calibrateCell>[0]> = {}) =>
  calibrateCell({ arch: 'swinir-light', scale: 4, checkpointPath: checkpoint, dataDir: shared, request: request(), ...over });

/** Every leaf of an object as [path, value]. */
function leaves(value: unknown, prefix: string[] = []): [string[], unknown][] {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => leaves(v, [...prefix, k]));
  }
  return [[prefix, value]];
}

function mutate(value: unknown): unknown {
  if (typeof value === 'number') return value + 1;
  if (typeof value === 'boolean') return !value;
  if (typeof value === 'string') return `${value}x`;
  if (Array.isArray(value)) return [...value, 1];
  return 'changed';
}

function withLeaf<T>(obj: T, at: string[], value: unknown): T {
  const copy = structuredClone(obj) as Record<string, unknown>;
  let node = copy;
  for (const k of at.slice(0, -1)) node = node[k] as Record<string, unknown>;
  node[at[at.length - 1]] = value;
  return copy as T;
}

describe('cell keys', () => {
  test('are stable: the same cell twice, and keys do not depend on object key order', () => {
    const a = cal();
    const b = cal();
    expect(b.key).toBe(a.key);
    expect(a.key).toMatch(/^cal-[0-9a-f]{24}$/);
    const reordered = { ...a, config: Object.fromEntries(Object.entries(a.config).reverse()) as Cell['config'] };
    expect(cellKey(reordered)).toBe(a.key);
    expect(canonicalJson({ b: 1, a: { d: 2, c: 3 } })).toBe('{"a":{"c":3,"d":2},"b":1}');
  });

  test('a pinned key: the hashing itself does not drift', () => {
    const parts = {
      kind: 'eval' as const,
      config: { kind: 'eval' as const, arch: 'swinir-light', scale: 2, checkpoint: 'a.pth', dataset: 'Set5', engine: 'onnx' as const, quant: null },
      inputs: { checkpoint: '0'.repeat(64) },
      code: { packages: ['@harmoq/engine@0.1.0'], sources: '1'.repeat(64), runtimes: { 'onnxruntime-node': '1.30.0' } },
      deps: [],
    };
    expect(cellKey(parts)).toBe(cellKey(structuredClone(parts)));
    // sha256 of the sorted-key JSON, as Python computes it: json.dumps(d, sort_keys=True, separators=(",", ":"))
    expect(cellKey(parts)).toBe('eval-825c5ae3ee2452e571aed500');
  });

  test('change with every config field, the checkpoint hash, the code version and the dependencies', () => {
    const base = cal();
    const seen = new Set([base.key]);
    const fields = leaves(base.config);
    expect(fields.length).toBeGreaterThan(15);
    for (const [at, value] of fields) {
      const key = cellKey({ ...base, config: withLeaf(base.config, at, mutate(value)) });
      expect({ field: at.join('.'), changed: !seen.has(key) }).toEqual({ field: at.join('.'), changed: true });
      seen.add(key);
    }
    for (const [at, value] of leaves(base.inputs).concat(leaves({ code: base.code }).map(([p, v]) => [p, v]))) {
      const parts = at[0] === 'code' ? { ...base, code: withLeaf(base.code, at.slice(1), mutate(value)) } : { ...base, inputs: withLeaf(base.inputs, at, mutate(value)) };
      expect(seen.has(cellKey(parts))).toBe(false);
      seen.add(cellKey(parts));
    }
    expect(seen.has(cellKey({ ...base, deps: ['cal-000000000000000000000000'] }))).toBe(false);
  });

  test('a different checkpoint file content changes the key; where the data lives does not', () => {
    const copy = path.join(tmp, 'swinir_light_x4_house.pth');
    const bytes = fs.readFileSync(checkpoint);
    fs.writeFileSync(copy, bytes);
    const fp = evalCell({ arch: 'swinir-light', scale: 4, checkpointPath: checkpoint, dataDir: shared, dataset: 'Set5' });
    expect(evalCell({ arch: 'swinir-light', scale: 4, checkpointPath: copy, dataDir: shared, dataset: 'Set5' }).key).toBe(fp.key);
    bytes[bytes.length - 100] ^= 1;
    fs.writeFileSync(copy, bytes);
    fs.utimesSync(copy, new Date(), new Date(Date.now() + 5000));
    expect(evalCell({ arch: 'swinir-light', scale: 4, checkpointPath: copy, dataDir: shared, dataset: 'Set5' }).key).not.toBe(fp.key);
    // The same files in another folder (symlinks): same key.
    const moved = path.join(tmp, 'data');
    fs.mkdirSync(path.join(moved, 'benchmarks'), { recursive: true });
    fs.symlinkSync(path.join(shared, 'benchmarks/Set5'), path.join(moved, 'benchmarks/Set5'));
    fs.symlinkSync(path.join(shared, 'calibration'), path.join(moved, 'calibration'));
    expect(evalCell({ arch: 'swinir-light', scale: 4, checkpointPath: checkpoint, dataDir: moved, dataset: 'Set5' }).key).toBe(fp.key);
    expect(cal({ dataDir: moved }).key).toBe(cal().key);
  });

  test('eval cells of a quantized model depend on their calibrate cell and change with it', () => {
    const c4 = cal();
    const c2 = cal({ request: resolveRequest({ method: 'minmax', wbits: 2, abits: 2, preset: 'quick', seed: DEFAULT_SEED }) });
    const e4 = evalCell({ arch: 'swinir-light', scale: 4, checkpointPath: checkpoint, dataDir: shared, dataset: 'Set5', quant: c4 });
    const e2 = evalCell({ arch: 'swinir-light', scale: 4, checkpointPath: checkpoint, dataDir: shared, dataset: 'Set5', quant: c2 });
    expect(e4.deps).toEqual([c4.key]);
    expect(e4.axes).toEqual({ scale: '4', method: 'minmax', bits: 'W4A4', dataset: 'Set5' });
    expect(e2.key).not.toBe(e4.key);
    expect(() => evalCell({ arch: 'swinir-light', scale: 4, checkpointPath: checkpoint, dataDir: shared, dataset: 'Set5', quant: e4 })).toThrow(/calibrate cell/);
  });
});
