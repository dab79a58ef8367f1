import * as path from 'node:path';
import { goldenDir, seededRng } from '@harmoq/data';
import { expectedShapes, isBufferKey, presetConfig, forwardTiled as tfjsForwardTiled, type SwinIRConfig } from '@harmoq/swinir';
import { loadStateDict, type StateDict } from '@harmoq/torch-io';
import { EngineError, createEngine, runTiled, type SRRunner } from './index';

// Seeded so failures reproduce: normals by Box-Muller on the shared seeded generator.
function rng(seed: number): () => number {
  const uniform = seededRng(seed);
  return () => Math.sqrt(-2 * Math.log(1 - uniform.next())) * Math.cos(2 * Math.PI * uniform.next());
}

/** Random weights of the official shapes: fan-in scaled weights, LayerNorm gains near 1, visible biases. */
function randomStateDict(config: SwinIRConfig, seed: number): StateDict {
  const randn = rng(seed);
  const sd: StateDict = new Map();
  for (const [key, shape] of expectedShapes(config)) {
    if (isBufferKey(key)) continue;
    const size = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length >= 2 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    const isNormGain = /norm\d?\.weight$/.test(key);
    const scale = key.endsWith('bias_table') ? 1 : shape.length >= 2 ? 1 / Math.sqrt(fanIn) : 0.1;
    sd.set(key, { dtype: 'float32', shape, data: Float32Array.from({ length: size }, () => (isNormGain ? 1 : 0) + scale * randn()) });
  }
  return sd;
}

const tiny = { inChans: 3, imgSize: 16, windowSize: 4, imgRange: 1, mlpRatio: 2, qkvBias: true, qkScale: null, patchNorm: true, ape: false };
const CONFIGS: Record<string, SwinIRConfig> = {
  // Classical head, 2^n upsample, 3conv residual (LeakyReLU 0.2), img_range 255, no qkv bias.
  'pixelshuffle x2, 3conv, img_range 255': {
    ...tiny, upscale: 2, imgRange: 255, qkvBias: false, depths: [2], embedDim: 16, numHeads: [2], upsampler: 'pixelshuffle', resiConnection: '3conv',
  },
  'nearest+conv x4, two RSTBs with different heads': {
    ...tiny, upscale: 4, depths: [1, 2], embedDim: 12, numHeads: [3, 2], upsampler: 'nearest+conv', resiConnection: '1conv',
  },
  "'' (denoising), 1 channel, qk_scale 0.25": {
    ...tiny, inChans: 1, upscale: 1, qkScale: 0.25, depths: [2], embedDim: 8, numHeads: [2], upsampler: '', resiConnection: '1conv',
  },
  // img_size <= window: the official blocks never shift.
  'pixelshuffledirect x3, img_size 4 = window, mlp_ratio 1.5, no patch norm': {
    ...tiny, imgSize: 4, windowSize: 4, mlpRatio: 1.5, patchNorm: false, upscale: 3, depths: [2], embedDim: 12, numHeads: [4], upsampler: 'pixelshuffledirect', resiConnection: '1conv',
  },
};

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function randomInput(shape: [number, number, number, number], seed: number): Float32Array {
  const randn = rng(seed);
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => Math.min(1, Math.max(0, 0.5 + 0.3 * randn())));
}

async function pair(config: SwinIRConfig, stateDict: StateDict): Promise<[SRRunner, SRRunner]> {
  return [
    await createEngine({ engine: 'onnx', config, stateDict, threads: 1 }),
    await createEngine({ engine: 'tfjs', config, stateDict, backend: 'wasm' }),
  ];
}

describe.each(Object.entries(CONFIGS))('ONNX vs the tfjs reference: %s', (_name, config) => {
  let onnx: SRRunner, tfjs: SRRunner;
  beforeAll(async () => { [onnx, tfjs] = await pair(config, randomStateDict(config, 7)); });
  afterAll(async () => { await onnx.dispose(); await tfjs.dispose(); });

  // Odd sizes (reflect padding inside the model), a batch of 2, an exact window multiple, the smallest valid sizes.
  test.each([[2, 13, 21], [1, 8, 16], [1, 5, 5], [1, 3, 7]])('batch %i, %ix%i within 1e-4', async (n, h, w) => {
    const shape: [number, number, number, number] = [n, config.inChans, h, w];
    const x = randomInput(shape, h * 100 + w);
    const [a, b] = [await onnx.forward(x, shape), await tfjs.forward(x, shape)];
    const s = onnx.scale;
    expect(a.shape).toEqual([n, config.inChans, h * s, w * s]);
    expect(b.shape).toEqual(a.shape);
    expect(maxAbsDiff(a.data, b.data)).toBeLessThanOrEqual(1e-4);
  });

  test('inputs too small to reflect-pad are refused by both, as by F.pad', async () => {
    const shape: [number, number, number, number] = [1, config.inChans, 1, 6];
    const x = randomInput(shape, 1);
    await expect(onnx.forward(x, shape)).rejects.toThrow(EngineError);
    await expect(tfjs.forward(x, shape)).rejects.toThrow(/too small/);
  });
});

describe('ONNX vs the tfjs reference: absolute position embedding', () => {
  const config: SwinIRConfig = {
    ...tiny, imgSize: 8, ape: true, upscale: 2, depths: [2], embedDim: 8, numHeads: [2], upsampler: 'pixelshuffledirect', resiConnection: '1conv',
  };
  test('inputs padding to img_size^2 tokens match; others are refused', async () => {
    const [onnx, tfjs] = await pair(config, randomStateDict(config, 11));
    for (const shape of [[2, 3, 8, 8], [1, 3, 5, 7]] as [number, number, number, number][]) {
      const x = randomInput(shape, shape[2]);
      expect(maxAbsDiff((await onnx.forward(x, shape)).data, (await tfjs.forward(x, shape)).data)).toBeLessThanOrEqual(1e-4);
    }
    await expect(onnx.forward(randomInput([1, 3, 13, 21], 1), [1, 3, 13, 21])).rejects.toThrow(/ape=true needs 64 tokens/);
    await onnx.dispose();
    await tfjs.dispose();
  });
});

describe('ONNX vs the tfjs reference: golden tiny classical x3, tiled', () => {
  test('runTiled (ONNX, batched tiles) matches the reference forwardTiled within 1e-4', async () => {
    const { stateDict } = loadStateDict(path.join(goldenDir(), 'tiny_pixelshuffle_x3/model.pth'));
    const config: SwinIRConfig = {
      ...presetConfig('swinir-classical', 3), imgSize: 16, windowSize: 4, depths: [2, 2], embedDim: 12, numHeads: [2, 2],
    };
    const [onnx, tfjs] = await pair(config, stateDict);
    const input = { data: randomInput([1, 3, 20, 28], 3), shape: [1, 3, 20, 28] as [number, number, number, number] };
    const a = await runTiled(onnx, input, { tile: 12, tileOverlap: 4, tileBatch: 4 });
    const b = tfjsForwardTiled((tfjs as unknown as { model: Parameters<typeof tfjsForwardTiled>[0] }).model, input, { tile: 12, overlap: 4 });
    expect(a.shape).toEqual([1, 3, 60, 84]);
    expect(maxAbsDiff(a.data, b.data)).toBeLessThanOrEqual(1e-4);
    await onnx.dispose();
    await tfjs.dispose();
  });
});
