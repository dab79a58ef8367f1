/** restrictQuantization on the tiny golden SwinIR: all kept = the full plan, none kept = float, one role = that role only. */
import { createEngine } from '@harmoq/engine';
import { initBackend, toFloat32, type SwinIRConfig } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { ConfigError } from './errors';
import type { BoundsMap, QuantPlan } from './plan';
import { quantizedEngineOptions } from './quantize';
import { restrictQuantization } from './restrict';
import type { QuantSite } from './sites';
import { calibrateTiny, tinyGolden } from './testing/tiny-model';

let stateDict: StateDict;
let config: SwinIRConfig;
let input: Float32Array;
let plan: QuantPlan;
let bounds: BoundsMap;
let fp: Float32Array;
let full: Float32Array;

async function output(p: QuantPlan | null, b: BoundsMap | null, sd: StateDict): Promise<Float32Array> {
  const options = p && b ? quantizedEngineOptions(p, b, sd, 'onnx') : { stateDict: sd };
  const runner = await createEngine({ engine: 'onnx', config, threads: 1, ...options });
  try {
    return (await runner.forward(input, [1, 3, 19, 27])).data;
  } finally {
    await runner.dispose();
  }
}

async function restricted(keep: (s: QuantSite) => boolean): Promise<Float32Array> {
  const r = restrictQuantization(plan, bounds, stateDict, keep);
  return output(r.plan, r.bounds, r.stateDict);
}

const meanDiff = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + Math.abs(v - b[i]), 0) / a.length;

beforeAll(async () => {
  await initBackend('wasm');
  ({ stateDict, config, input } = tinyGolden());
  ({ plan, bounds } = await calibrateTiny({ stateDict, config }, 'minmax', 3));
  fp = await output(null, null, stateDict);
  full = await output(plan, bounds, stateDict);
}, 60_000);

describe('restrictQuantization', () => {
  test('every quantizer kept computes the full plan (fused qkv, summation order aside); none kept is float', async () => {
    const all = await restricted(() => true);
    expect(meanDiff(full, fp)).toBeGreaterThan(1e-3);
    expect(meanDiff(all, full)).toBeLessThan(meanDiff(full, fp) / 1000);
    expect(await restricted(() => false)).toEqual(fp);
  }, 60_000);

  test('weights only: the kept weight slices are quantized in the state dict, no activation quantizer remains', async () => {
    const r = restrictQuantization(plan, bounds, stateDict, (s) => s.role === 'weight');
    expect(r.plan.sites).toEqual([]);
    const key = 'layers.0.residual_group.blocks.1.attn.qkv.weight';
    const before = toFloat32(stateDict.get(key)!), after = toFloat32(r.stateDict.get(key)!);
    const e = config.embedDim;
    // The v rows (2e..3e) take few distinct values: 2^3 levels of the v slice's own grid.
    const vLevels = new Set(after.subarray(2 * e * e, 3 * e * e));
    expect(vLevels.size).toBeLessThanOrEqual(8);
    expect(meanDiff(after, before)).toBeGreaterThan(0);
    expect(toFloat32(stateDict.get(key)!)).toBe(before); // the checkpoint is not modified
    const out = await output(r.plan, r.bounds, r.stateDict);
    expect(meanDiff(out, fp)).toBeGreaterThan(1e-4);
  }, 60_000);

  test('activations only: weights untouched, the split qkv inputs become one fused quantizer', async () => {
    const r = restrictQuantization(plan, bounds, stateDict, (s) => s.role === 'activation');
    expect(r.plan.siteSet.qkvSplit).toBe(false);
    expect(r.plan.sites.every((s) => s.role === 'activation')).toBe(true);
    const block = 'layers.0.residual_group.blocks.0.attn.qkv';
    expect(r.plan.byId.has(`${block}.input`)).toBe(true);
    expect(r.bounds.get(`${block}.input`)).toEqual(bounds.get(`${block}.q.input`));
    for (const [key, t] of r.stateDict) expect(t.data).toBe(stateDict.get(key)!.data);
    const weightsOnly = await restricted((s) => s.role === 'weight');
    const activationsOnly = await output(r.plan, r.bounds, r.stateDict);
    expect(meanDiff(activationsOnly, fp)).toBeGreaterThan(1e-4);
    expect(meanDiff(activationsOnly, weightsOnly)).toBeGreaterThan(1e-4);
  }, 60_000);

  test('one site alone changes the output; a qkv input part alone or unequal part bounds are refused', async () => {
    const site = 'layers.1.residual_group.blocks.0.mlp.fc2.input';
    expect(meanDiff(await restricted((s) => s.id === site), fp)).toBeGreaterThan(0);
    const block = 'layers.0.residual_group.blocks.0.attn.qkv';
    expect(() => restrictQuantization(plan, bounds, stateDict, (s) => s.id === `${block}.q.input`)).toThrow(ConfigError);
    expect(() => restrictQuantization(plan, bounds, stateDict, (s) => s.id === `${block}.q.input`)).toThrow(/keep all three or none/);
    const unequal: BoundsMap = new Map(bounds);
    const k = bounds.get(`${block}.k.input`)!;
    unequal.set(`${block}.k.input`, { lower: [k.lower[0] / 2], upper: [k.upper[0] / 2] });
    expect(() => restrictQuantization(plan, unequal, stateDict, (s) => s.id.startsWith(block))).toThrow(/different bounds/);
  }, 60_000);
});
