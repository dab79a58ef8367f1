import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { goldenDir } from '@harmoq/data';
import { checkArchitecture, type ActivationHook, type SiteHook, type SwinIRConfig } from '@harmoq/swinir';
import { loadStateDict, readNpyFile, type StateDict } from '@harmoq/torch-io';
import { createEngine } from './index';

// Rewrites at the named sites must act on the same tensors in both engines.
describe('ONNX graph sites', () => {
  let stateDict: StateDict;
  let config: SwinIRConfig;
  const input = () => readNpyFile(path.join(goldenDir(), 'tiny_pixelshuffledirect_x2/input.npy'));
  const shape = [1, 3, 19, 27] as const;
  beforeAll(() => {
    stateDict = loadStateDict(path.join(goldenDir(), 'tiny_pixelshuffledirect_x2/model.pth')).stateDict;
    config = checkArchitecture(stateDict, { imgSize: 16 });
  });

  function maxAbsDiff(a: Float32Array, b: Float32Array): number {
    let m = 0;
    for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
    return m;
  }

  test('activation sites scale the same tensors as the tfjs reference hooks', async () => {
    // A distinct factor per site, so a site at the wrong place or a missed site shows up.
    const factors = new Map<string, number>();
    const factor = (site: string) => {
      if (!factors.has(site)) factors.set(site, 1 + 0.05 * ((factors.size % 7) - 3));
      return factors.get(site)!;
    };
    const onnxSites: SiteHook = (site, tensor, g) =>
      site.endsWith('.weight') ? tensor : g.op('Mul', [tensor, g.scalar(factor(site))]);
    const tfjsHook: ActivationHook = (site, x) => tf.mul(x, factor(site));
    const x = input().data as Float32Array;
    const onnx = await createEngine({ engine: 'onnx', config, stateDict, threads: 1, sites: onnxSites });
    const tfjs = await createEngine({ engine: 'tfjs', config, stateDict, backend: 'wasm', hook: tfjsHook });
    const plain = await createEngine({ engine: 'onnx', config, stateDict, threads: 1 });
    const [a, b, c] = [await onnx.forward(x, shape), await tfjs.forward(x, shape), await plain.forward(x, shape)];
    expect(factors.size).toBeGreaterThan(30);
    expect(maxAbsDiff(a.data, b.data)).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(a.data, c.data)).toBeGreaterThan(1e-2); // the rewrite did something
    await Promise.all([onnx.dispose(), tfjs.dispose(), plain.dispose()]);
  });

  test('weight sites carry the weights: zeroing fc2 through the hook equals zeroed fc2 weights', async () => {
    const zeroFc2: SiteHook = (site, tensor, g) => (site.endsWith('.mlp.fc2.weight') ? g.op('Mul', [tensor, g.scalar(0)]) : tensor);
    const zeroed: StateDict = new Map(stateDict);
    for (const [key, t] of stateDict) {
      if (key.endsWith('.mlp.fc2.weight')) zeroed.set(key, { ...t, data: new Float32Array(t.data.length) });
    }
    const x = input().data as Float32Array;
    const hooked = await createEngine({ engine: 'onnx', config, stateDict, threads: 1, sites: zeroFc2 });
    const edited = await createEngine({ engine: 'onnx', config, stateDict: zeroed, threads: 1 });
    const plain = await createEngine({ engine: 'onnx', config, stateDict, threads: 1 });
    const [a, b, c] = [await hooked.forward(x, shape), await edited.forward(x, shape), await plain.forward(x, shape)];
    expect(maxAbsDiff(a.data, b.data)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(a.data, c.data)).toBeGreaterThan(1e-3);
    await Promise.all([hooked.dispose(), edited.dispose(), plain.dispose()]);
  });

  test('rewritten weights go through the run-time per-head layout and the unfolded q scale', async () => {
    const passThrough: SiteHook = (site, tensor, g) => (site.endsWith('.weight') ? g.op('Identity', [tensor]) : tensor);
    const x = input().data as Float32Array;
    const hooked = await createEngine({ engine: 'onnx', config, stateDict, threads: 1, sites: passThrough });
    const expected = readNpyFile(path.join(goldenDir(), 'tiny_pixelshuffledirect_x2/output.npy')).data as Float32Array;
    expect(maxAbsDiff((await hooked.forward(x, shape)).data, expected)).toBeLessThanOrEqual(1e-4);
    await hooked.dispose();
  });
});
