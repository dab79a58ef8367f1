/**
 * PTQ4ViT and NoisyQuant end to end on the x2 stand-in checkpoint (SwinIR-light, house weights) with a tiny
 * calibration set: the bounds they return carry their quantizer forms where the papers put them, survive a
 * qparams file, and the ONNX and tfjs engines run them alike.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dataDir } from '@harmoq/data';
import { createEngine } from '@harmoq/engine';
import { checkArchitecture, expectedFor, initBackend, type SwinIRConfig } from '@harmoq/swinir';
import { loadStateDict, type StateDict } from '@harmoq/torch-io';
import { resolveRequest } from '../config';
import type { BoundsMap, QuantPlan } from '../plan';
import { qparamsPlan, readQParams, writeQParams, type QParams } from '../qparams';
import { quantizeModel, quantizedEngineOptions } from '../quantize';
import { stepSize } from '../quantizer';
import { siteWeight } from '../sites';
import { twinChannel } from '../twin';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-vitptq-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let stateDict: StateDict;
let config: SwinIRConfig;
const tiny = ['count=2', 'patchSize=16', 'heldOutCount=0'];

beforeAll(async () => {
  await initBackend('wasm');
  stateDict = loadStateDict(path.join(dataDir(), 'weights/house/swinir_light_x2_house.pth')).stateDict;
  config = checkArchitecture(stateDict, expectedFor({ arch: 'swinir-light', scale: 2 }));
});

async function calibrate(method: string, set: string[]): Promise<{ qp: QParams; plan: QuantPlan; bounds: BoundsMap }> {
  const request = resolveRequest({ method, wbits: 4, abits: 4, set: [...tiny, ...set] });
  const qp = await quantizeModel({ arch: 'swinir-light', config, stateDict, checkpoint: { file: 'w.pth', sha256: '0'.repeat(64) } }, request, {
    dataDir: dataDir(), threads: 1,
  });
  const file = path.join(tmp, `${method}.json`);
  await writeQParams(file, qp);
  const back = readQParams(file);
  expect(back.bounds).toEqual(qp.bounds);
  return { qp, ...qparamsPlan(back, file) };
}

/** Max |onnx - tfjs| and mean |onnx - float| on one 24x24 calibration-like input. */
async function engines(plan: QuantPlan, bounds: BoundsMap): Promise<{ engineDiff: number; quantDiff: number }> {
  const shape = [1, 3, 24, 24] as const;
  const input = Float32Array.from({ length: 3 * 24 * 24 }, (_, i) => 0.5 + 0.4 * Math.sin(i * 0.37) * Math.cos(i * 0.011));
  const run = async (options: Parameters<typeof createEngine>[0]) => {
    const runner = await createEngine(options);
    try {
      return (await runner.forward(input, shape)).data;
    } finally {
      await runner.dispose();
    }
  };
  const onnx = await run({ engine: 'onnx', config, threads: 1, ...quantizedEngineOptions(plan, bounds, stateDict, 'onnx') });
  const tfjs = await run({ engine: 'tfjs', config, backend: 'wasm', ...quantizedEngineOptions(plan, bounds, stateDict, 'tfjs') });
  const fp = await run({ engine: 'onnx', config, stateDict, threads: 1 });
  let engineDiff = 0, quantDiff = 0;
  onnx.forEach((v, i) => {
    engineDiff = Math.max(engineDiff, Math.abs(v - tfjs[i]));
    quantDiff += Math.abs(v - fp[i]) / onnx.length;
  });
  return { engineDiff, quantDiff };
}

test('ptq4vit: twin-uniform at every attention map and fc2 input, uniform elsewhere; engines agree', async () => {
  const { qp, plan, bounds } = await calibrate('ptq4vit', ['candidates=8', 'rows=64', 'windows=2', 'rounds=1', 'patches=2']);
  expect(qp.method).toBe('ptq4vit');
  for (const site of plan.sites) {
    const b = bounds.get(site.id)!;
    if (site.id.endsWith('.attn.attn_map')) {
      // Post-softmax: the coarse grid covers [0, 1) with step 1/2^(b-1); the fine one is 2^-m of it.
      expect(b.twin?.signed).toBe(false);
      expect(twinChannel(b.twin!, 0, 4).coarse).toBe(1 / 8);
    } else if (site.id.endsWith('.mlp.fc2.input')) {
      // Post-GELU: the negative range [-8 d1, 0] is the calibration minimum, never below GELU's -0.17.
      expect(b.twin?.signed).toBe(true);
      expect(-8 * b.twin!.fine[0]).toBeGreaterThanOrEqual(-0.1701);
      expect(b.twin!.fine[0]).toBeGreaterThan(0);
    } else {
      expect(b.twin).toBeUndefined();
    }
  }
  // The search moves: not every Linear keeps its full range (candidate 0).
  const shrunk = plan.sites.filter((s) => s.kind === 'linear_weight').filter((s) => bounds.get(s.id)!.upper[0] < Math.max(...siteWeight(s, stateDict)) * 0.999);
  expect(shrunk.length).toBeGreaterThan(0);
  const { engineDiff, quantDiff } = await engines(plan, bounds);
  expect(quantDiff).toBeGreaterThan(1e-4);
  expect(engineDiff).toBeLessThan(1e-4);
}, 120_000);

test('noisyquant: noise only at Linear inputs, one value per feature within half the chosen amplitude; engines agree', async () => {
  const { plan, bounds } = await calibrate('noisyquant', ['rows=128', 'steps=20', 'patches=2']);
  const { bounds: plain } = await calibrate('dobi', ['steps=20']);
  let noisy = 0;
  for (const site of plan.sites) {
    const b = bounds.get(site.id)!;
    if (!b.noise) {
      expect(b).toEqual(plain.get(site.id)); // A = 0 keeps DOBI's bounds exactly
      continue;
    }
    noisy++;
    expect(site.kind).toBe('linear_input');
    expect(b.noise).toHaveLength(site.channels);
    // |N| <= A/2 with A at most 1.5 steps of the base (DOBI) quantizer.
    const base = plain.get(site.id)!;
    const maxNoise = Math.max(...b.noise.map(Math.abs));
    expect(maxNoise).toBeLessThanOrEqual(0.75 * stepSize(base.lower[0], base.upper[0], 4) * (1 + 1e-6));
    expect(maxNoise).toBeGreaterThan(0);
  }
  expect(noisy).toBeGreaterThan(0);
  const { engineDiff, quantDiff } = await engines(plan, bounds);
  expect(quantDiff).toBeGreaterThan(1e-4);
  expect(engineDiff).toBeLessThan(1e-4);
}, 120_000);
