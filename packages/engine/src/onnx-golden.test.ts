import * as fs from 'node:fs';
import * as path from 'node:path';
import { goldenDir } from '@harmoq/data';
import { checkArchitecture, fromPythonConfig, type SiteHook } from '@harmoq/swinir';
import { loadStateDict, readNpyFile } from '@harmoq/torch-io';
import { createEngine, type OnnxGraphOptions } from './index';

// Official PyTorch outputs for every golden model fixture; the inputs are unpadded (19x27, 37x29), so the
// model's own reflect padding (check_image_size) and final crop are exercised.
const FIXTURES = [
  'tiny_pixelshuffledirect_x2', 'tiny_pixelshuffledirect_x3', 'tiny_pixelshuffledirect_x4',
  'tiny_pixelshuffle_x3', 'tiny_params_ema_x2', 'light_x2_random',
];

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function runFixture(name: string, graph?: OnnxGraphOptions, sites?: SiteHook): Promise<number> {
  const dir = path.join(goldenDir(), name);
  const { stateDict } = loadStateDict(path.join(dir, 'model.pth'));
  const config = checkArchitecture(stateDict, fromPythonConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'))));
  const input = readNpyFile(path.join(dir, 'input.npy'));
  const expected = readNpyFile(path.join(dir, 'output.npy'));
  const runner = await createEngine({ engine: 'onnx', config, stateDict, threads: 1, graph, sites });
  const out = await runner.forward(input.data as Float32Array, input.shape as [number, number, number, number]);
  await runner.dispose();
  expect(out.shape).toEqual(expected.shape);
  return maxAbsDiff(out.data, expected.data as Float32Array);
}

describe('ONNX SwinIR vs the official PyTorch outputs', () => {
  test.each(FIXTURES)('%s within 1e-4 (default graph)', async (name) => {
    expect(await runFixture(name)).toBeLessThanOrEqual(1e-4);
  });

  // The explicit-attention graph (the one quantization hooks use) with an identity hook on every site,
  // and the older roll + partition formulation, on the two fixtures with every stage kind.
  test.each(['tiny_pixelshuffledirect_x2', 'tiny_pixelshuffle_x3'])('%s: identity sites; roll + partition windows; fused attention with opset-20 Gelu', async (name) => {
    const seen: string[] = [];
    const identity: SiteHook = (site, tensor) => { seen.push(site); return tensor; };
    expect(await runFixture(name, undefined, identity)).toBeLessThanOrEqual(1e-4);
    expect(seen).toContain('layers.1.residual_group.blocks.1.attn.attn_map');
    expect(await runFixture(name, { attention: 'matmul', windowOrder: 'reshape', foldQScale: false })).toBeLessThanOrEqual(1e-4);
    expect(await runFixture(name, { attention: 'fused', gelu: 'gelu', biasMask: 'separate' })).toBeLessThanOrEqual(1e-4);
  });
});
