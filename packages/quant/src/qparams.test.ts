import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dataDir, goldenDir } from '@harmoq/data';
import { checkArchitecture, type SwinIRConfig } from '@harmoq/swinir';
import { loadStateDict, type StateDict } from '@harmoq/torch-io';
import { resolveRequest } from './config';
import { CalibrationError, ConfigError } from './errors';
import { checkQParamsFor, qparamsPlan, readQParams, writeQParams, type QParams } from './qparams';
import { quantizeModel } from './quantize';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-qparams-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let stateDict: StateDict;
let config: SwinIRConfig;
let qparams: QParams;
const sha = 'ab'.repeat(32);
const identity = () => ({ arch: 'tiny', scale: 2, config, sha256: sha, file: 'model.pth' });

beforeAll(async () => {
  stateDict = loadStateDict(path.join(goldenDir(), 'tiny_pixelshuffledirect_x2/model.pth')).stateDict;
  config = checkArchitecture(stateDict, { imgSize: 16 });
  const request = resolveRequest({ method: 'dobi', wbits: 3, abits: 4, seed: 11, set: ['count=3', 'patchSize=16', 'heldOutCount=1', 'search=paper'] });
  qparams = await quantizeModel({ arch: 'tiny', config, stateDict, checkpoint: { file: '/x/model.pth', sha256: sha } }, request, { dataDir: dataDir(), threads: 1 });
});

function writeJson(name: string, value: unknown): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, JSON.stringify(value));
  return file;
}

describe('qparams files', () => {
  test('record the run: method, options, bits, model, checkpoint, calibration data, code version, bounds per site', () => {
    expect(qparams).toMatchObject({
      format: 'harmoq-qparams', version: 3, method: 'dobi', options: { search: 'paper', steps: 100 }, preset: 'quick', seed: 11, wbits: 3, abits: 4,
      model: { arch: 'tiny', scale: 2, checkpoint: { file: 'model.pth', sha256: sha } },
      calibration: { count: 3, patchSize: 16, heldOutCount: 1, seed: 11, scale: 2, augment: true, resize: 'matlab-imresize-uint8' },
      code: { package: '@harmoq/quant' },
    });
    expect(qparams.model.config).toEqual(config);
    expect(qparams.calibration.calibrationFiles.length).toBeGreaterThan(0);
    expect(qparams.calibration.calibrationFiles[0].sha256).toMatch(/^[0-9a-f]{64}$/);
    const held = new Set(qparams.calibration.heldOutFiles.map((f) => f.name));
    expect(qparams.calibration.calibrationFiles.some((f) => held.has(f.name))).toBe(false);
    expect(Object.keys(qparams.bounds)).toHaveLength(4 * 16);
    expect(qparams.code.git === null || /^[0-9a-f]{40}$/.test(qparams.code.git)).toBe(true);
  });

  test('round-trip through an atomic write; bounds come back exactly (float32 values in JSON)', async () => {
    const file = path.join(tmp, 'dobi.json');
    await writeQParams(file, qparams);
    expect(fs.readdirSync(tmp).filter((f) => f.includes('.tmp'))).toEqual([]);
    const back = readQParams(file);
    expect(back).toEqual(qparams);
    const { plan, bounds } = qparamsPlan(back, file);
    expect(plan.sites).toHaveLength(64);
    expect(bounds.get('layers.0.residual_group.blocks.1.attn.attn_map')).toEqual(qparams.bounds['layers.0.residual_group.blocks.1.attn.attn_map']);
    expect(fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.includes('"lower"'))).toHaveLength(64);
  });

  test('unknown keys, another version, non-JSON and missing or extra sites are refused by name', () => {
    expect(() => readQParams(writeJson('extra.json', { ...qparams, comment: 'hi' }))).toThrow(/unknown key 'comment'/);
    expect(() => readQParams(writeJson('nested.json', { ...qparams, calibration: { ...qparams.calibration, patchsize: 3 } })))
      .toThrow(/calibration: unknown key 'patchsize'/);
    expect(() => readQParams(writeJson('v4.json', { ...qparams, version: 4 }))).toThrow(/version 4 \(supported: 1, 2, 3\)/);
    expect(readQParams(writeJson('v1.json', { ...qparams, version: 1 })).version).toBe(1); // version 1: bounds without noise/twin
    expect(readQParams(writeJson('v2.json', { ...qparams, version: 2 })).version).toBe(2);
    const weights = { file: 'w.safetensors', sha256: 'ef'.repeat(32), tensors: ['conv_first.weight'] };
    expect(() => readQParams(writeJson('v2-weights.json', { ...qparams, version: 2, weights }))).toThrow(/weight overrides need qparams version 3/);
    // A version-3 file whose sidecar is missing is refused when its plan is made, naming the file it needs.
    const noSidecar = writeJson('v3-weights.json', { ...qparams, weights });
    expect(() => qparamsPlan(readQParams(noSidecar), noSidecar)).toThrow(/needs its weight file '.*w\.safetensors'/);
    const site = 'layers.0.residual_group.blocks.0.mlp.fc1.input';
    const noisy = { ...qparams.bounds, [site]: { ...qparams.bounds[site], noise: [0.1] } };
    expect(() => readQParams(writeJson('v1-noise.json', { ...qparams, version: 1, bounds: noisy }))).toThrow(/noise and twin bounds need qparams version 2/);
    expect(() => qparamsPlan({ ...qparams, bounds: noisy }, 'f.json')).toThrow(/1 noise values at quantizer '.*fc1\.input', expected one per input feature \(12\) in 'f.json'/);
    expect(() => readQParams(writeJson('other.json', { hello: 1 }))).toThrow(/is not a qparams file/);
    const notJson = path.join(tmp, 'broken.json');
    fs.writeFileSync(notJson, '{"format": "harmoq-qparams", ');
    expect(() => readQParams(notJson)).toThrow(/is not JSON/);
    const { ['layers.0.residual_group.blocks.0.attn.q']: _dropped, ...fewer } = qparams.bounds;
    expect(() => qparamsPlan({ ...qparams, bounds: fewer }, 'f.json')).toThrow(/no bounds for quantizer 'layers.0.residual_group.blocks.0.attn.q' in 'f.json'/);
    expect(() => qparamsPlan({ ...qparams, bounds: { ...qparams.bounds, 'conv_first.input': { lower: [0], upper: [1] } } }, 'f.json'))
      .toThrow(/'conv_first.input', which is not a quantizer of site set '2dquant'/);
    const inverted = { ...qparams.bounds, 'layers.0.residual_group.blocks.0.attn.q': { lower: [1], upper: [-1] } };
    expect(() => qparamsPlan({ ...qparams, bounds: inverted }, 'f.json')).toThrow(ConfigError);
  });

  test('applying it to another arch, scale, config or checkpoint is refused, naming both values', () => {
    expect(() => checkQParamsFor(qparams, identity(), 'q.json')).not.toThrow();
    expect(() => checkQParamsFor(qparams, { ...identity(), arch: 'swinir-light' }, 'q.json')).toThrow(/is for arch tiny, but the model is swinir-light/);
    expect(() => checkQParamsFor(qparams, { ...identity(), scale: 4 }, 'q.json')).toThrow(/is for scale x2, but the model is x4/);
    expect(() => checkQParamsFor(qparams, { ...identity(), config: { ...config, embedDim: 16 } }, 'q.json')).toThrow(/embedDim 12 vs 16/);
    expect(() => checkQParamsFor(qparams, { ...identity(), sha256: 'cd'.repeat(32), file: 'other.pth' }, 'q.json'))
      .toThrow(/calibrated on checkpoint model.pth \(sha256 abababababab\.\.\.\), but the model is other.pth \(sha256 cdcdcdcdcdcd\.\.\.\)/);
  });

  test('a write that fails validation leaves the old file in place', async () => {
    const file = path.join(tmp, 'keep.json');
    await writeQParams(file, qparams);
    const before = fs.readFileSync(file, 'utf8');
    await expect(writeQParams(file, { ...qparams, wbits: 'four' } as unknown as QParams)).rejects.toThrow();
    expect(fs.readFileSync(file, 'utf8')).toBe(before);
  });

  test('NaN in the float activations stops calibration, naming the site and the step', async () => {
    const poisoned: StateDict = new Map(stateDict);
    const key = 'layers.1.residual_group.blocks.0.norm2.bias';
    const t = stateDict.get(key)!;
    const data = Float32Array.from(t.data as Float32Array);
    data[3] = NaN;
    poisoned.set(key, { ...t, data });
    const request = resolveRequest({ method: 'minmax', wbits: 4, abits: 4, set: ['count=2', 'patchSize=16', 'heldOutCount=0'] });
    const run = quantizeModel({ arch: 'tiny', config, stateDict: poisoned, checkpoint: { file: 'x.pth', sha256: sha } }, request, { dataDir: dataDir(), threads: 1 });
    await expect(run).rejects.toThrow(CalibrationError);
    await expect(run).rejects.toThrow(/non-finite value NaN in the float activations at 'layers.1.residual_group.blocks.0.mlp.fc1' \(calibration step 0/);
  });
});
