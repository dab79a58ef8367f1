import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { StateDict } from '@harmoq/torch-io';
import { numel } from '@harmoq/torch-io';
import { expectedShapes, isBufferKey, relativePositionIndex } from './architecture';
import type { SwinIRConfig } from './config';
import { initBackend } from './backend';
import { SwinIRError } from './errors';
import { loadSwinIR } from './load';
import { SwinIRModel, pixelShuffle, type NCHWArray, type SiteKind } from './model';
import { MODEL_FIXTURES, fixture, goldenDir, maxAbsDiff, stats } from './testing/golden';

beforeAll(async () => {
  expect(await initBackend('wasm')).toBe('wasm');
});

describe.each(MODEL_FIXTURES)('parity with the official PyTorch model: %s', (name) => {
  const fx = fixture(name);
  let model: SwinIRModel;
  let result: ReturnType<SwinIRModel['forward']>;

  beforeAll(() => {
    model = new SwinIRModel(fx.stateDict(), fx.config);
    result = model.forward(fx.input(), { stages: true });
  });
  afterAll(() => model.dispose());

  it('output.npy within 1e-4', () => {
    const expected = fx.output();
    expect(result.shape).toEqual(expected.shape);
    expect(maxAbsDiff(result.data, expected.data)).toBeLessThanOrEqual(1e-4);
  });

  it('captures every stage meta.json lists, in forward order, with its shape', () => {
    const listed = new Set(fx.stages.map((s) => s.name));
    expect([...result.stages!.keys()].filter((k) => listed.has(k))).toEqual(fx.stages.map((s) => s.name));
    for (const stage of fx.stages) expect([stage.name, result.stages!.get(stage.name)!.shape]).toEqual([stage.name, stage.shape]);
  });

  const withFile = fx.stages.filter((s) => s.file !== null);
  if (withFile.length) {
    it.each(withFile.map((s) => [s.name, s] as const))('stage %s matches its .npy within 1e-4', (_stage, stage) => {
      expect(maxAbsDiff(result.stages!.get(stage.name)!.data, fx.stageArray(stage).data)).toBeLessThanOrEqual(1e-4);
    });
  }

  it.each(fx.stages.map((s) => [s.name, s] as const))('stage %s matches the meta.json statistics', (_stage, stage) => {
    const got = result.stages!.get(stage.name)!.data;
    const s = stats(got);
    // Observed: mean/std within 3e-8, max_abs and first/last8 within 4e-6.
    expect(Math.abs(s.mean - stage.mean)).toBeLessThanOrEqual(1e-6);
    expect(Math.abs(s.std - stage.std)).toBeLessThanOrEqual(1e-6);
    expect(Math.abs(s.sum - stage.sum)).toBeLessThanOrEqual(1e-6 * got.length);
    expect(Math.abs(s.maxAbs - stage.max_abs)).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(got.subarray(0, 8), stage.first8)).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(got.subarray(got.length - 8), stage.last8)).toBeLessThanOrEqual(1e-4);
  });
});

describe('SwinIRModel (tiny x2 fixture)', () => {
  const fx = fixture('tiny_pixelshuffledirect_x2');
  let model: SwinIRModel;
  let input: NCHWArray;
  let reference: NCHWArray;

  beforeAll(() => {
    model = new SwinIRModel(fx.stateDict());
    input = fx.input();
    reference = model.forward(input);
  });
  afterAll(() => model.dispose());

  it('infers the config when none is given', () => {
    expect(model.config).toEqual(fx.config);
  });

  it('forward leaves no tensors behind', () => {
    model.forward(input); // warm the mask cache
    const before = tf.memory().numTensors;
    model.forward(input, { stages: true });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a batch of two equals two single forwards', () => {
    const [, c, h, w] = input.shape;
    const second = Float32Array.from(input.data, (v) => 1 - v);
    const batch = new Float32Array(2 * c * h * w);
    batch.set(input.data);
    batch.set(second, c * h * w);
    const out = model.forward({ data: batch, shape: [2, c, h, w] });
    const single2 = model.forward({ data: second, shape: [1, c, h, w] });
    const half = out.data.length / 2;
    expect(out.shape).toEqual([2, 3, 2 * h, 2 * w]);
    expect(maxAbsDiff(out.data.subarray(0, half), reference.data)).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(out.data.subarray(half), single2.data)).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(single2.data, reference.data)).toBeGreaterThan(0.1);
  });

  it('handles sizes that are already window multiples and odd sizes', () => {
    for (const [h, w] of [[8, 12], [5, 7], [17, 4]]) {
      const data = Float32Array.from({ length: 3 * h * w }, (_, i) => ((i * 7919) % 101) / 100);
      const out = model.forward({ data, shape: [1, 3, h, w] });
      expect(out.shape).toEqual([1, 3, 2 * h, 2 * w]);
      expect(out.data.every(Number.isFinite)).toBe(true);
    }
  });

  it('refuses inputs it cannot reflect-pad and wrong shapes, naming them', () => {
    expect(() => model.forward({ data: new Float32Array(3 * 2 * 9), shape: [1, 3, 2, 9] })).toThrow(
      'input 2x9 is too small to reflect-pad to a multiple of window 4');
    expect(() => model.forward({ data: new Float32Array(16), shape: [1, 1, 4, 4] })).toThrow(SwinIRError);
    expect(() => model.forward({ data: new Float32Array(5), shape: [1, 3, 4, 4] })).toThrow('input has 5 values');
  });

  it('hooks see every site once, in forward order, with PyTorch shapes', () => {
    const seen: { site: string; kind: SiteKind; shape: number[] }[] = [];
    const out = model.forward(input, { hook: (site, t, kind) => { seen.push({ site, kind, shape: t.shape }); } });
    expect(maxAbsDiff(out.data, reference.data)).toBe(0);
    expect(seen.map(({ site, kind }) => ({ site, kind }))).toEqual(model.hookSites());
    const shapeOf = (site: string) => seen.find((s) => s.site === site)!.shape;
    // 20x28 padded: 5*7 = 35 windows of 16 tokens, 2 heads of 6 channels.
    const p = 'layers.1.residual_group.blocks.1';
    expect(shapeOf(`${p}.attn.qkv`)).toEqual([35, 16, 12]);
    expect(shapeOf(`${p}.attn.q`)).toEqual([35, 2, 16, 6]);
    expect(shapeOf(`${p}.attn.attn_map`)).toEqual([35, 2, 16, 16]);
    expect(shapeOf(`${p}.attn.proj`)).toEqual([35, 16, 12]);
    expect(shapeOf(`${p}.mlp.fc1`)).toEqual([1, 560, 12]);
    expect(shapeOf(`${p}.mlp.fc2`)).toEqual([1, 560, 24]);
    expect(shapeOf('upsample.0')).toEqual([1, 20, 28, 12]);
  });

  it('hook values are the PyTorch activations: attn_map = softmax(q @ k^T + relative bias), q pre-scaled', () => {
    const p = 'layers.0.residual_group.blocks.0.attn'; // unshifted: no mask
    const kept: Record<string, tf.Tensor> = {};
    model.forward(input, {
      hook: (site, t) => {
        if (site.startsWith(`${p}.`)) kept[site.slice(p.length + 1)] = tf.keep(t.clone());
      },
    });
    const { q, k, attn_map: attnMap } = kept;
    const [bw, heads, n] = attnMap.shape;
    const recomputed = tf.tidy(() => {
      const table = model.param(`${p}.relative_position_bias_table`);
      const bias = tf.reshape(tf.transpose(tf.gather(table, tf.tensor1d(relativePositionIndex(4), 'int32'))), [heads, n, n]);
      return tf.softmax(tf.add(tf.matMul(q.reshape([bw * heads, n, -1]), k.reshape([bw * heads, n, -1]), false, true).reshape([bw, heads, n, n]), bias));
    });
    expect(maxAbsDiff(recomputed.dataSync(), attnMap.dataSync())).toBeLessThanOrEqual(1e-6);
    // Without the head_dim**-0.5 (6**-0.5) scale on q the map would differ.
    const unscaled = tf.tidy(() => tf.softmax(tf.matMul(tf.mul(q, Math.sqrt(6)).reshape([bw * heads, n, -1]), k.reshape([bw * heads, n, -1]), false, true)));
    expect(maxAbsDiff(unscaled.dataSync(), attnMap.dataSync())).toBeGreaterThan(1e-3);
    [recomputed, unscaled, ...Object.values(kept)].forEach((t) => t.dispose());
  });

  it('a hook can replace an activation, and gradients flow through it (finite differences)', () => {
    const site = 'layers.1.residual_group.blocks.0.attn.attn_map';
    const x = tf.tensor4d(input.data, input.shape).transpose([0, 2, 3, 1]) as tf.Tensor4D;
    const hook = (alpha: tf.Tensor) => (s: string, t: tf.Tensor) => (s === site ? tf.mul(t, alpha) : undefined);
    const objective = (alpha: tf.Tensor): tf.Tensor => tf.sum(tf.square(model.apply(x, { hook: hook(alpha) })));
    const analytic = tf.tidy(() => tf.grad(objective)(tf.scalar(1)).dataSync()[0]);
    // Central difference, with the objective summed in float64 so float32 rounding does not swamp it.
    const objective64 = (alpha: number) => {
      const out = tf.tidy(() => model.apply(x, { hook: hook(tf.scalar(alpha)) }));
      let acc = 0;
      for (const v of out.dataSync()) acc += v * v;
      out.dispose();
      return acc;
    };
    const eps = 1e-2;
    const numeric = (objective64(1 + eps) - objective64(1 - eps)) / (2 * eps);
    expect(Math.abs(analytic)).toBeGreaterThan(1e-2);
    expect(Math.abs(analytic - numeric)).toBeLessThanOrEqual(1e-2 * Math.abs(numeric)); // seen: 0.7228 vs 0.7240
    // Zeroing the attention of one block changes the image.
    const zeroed = model.forward(input, { hook: (s, t) => (s === site ? tf.zerosLike(t) : undefined) });
    expect(maxAbsDiff(zeroed.data, reference.data)).toBeGreaterThan(1e-3);
    x.dispose();
  });

  it('gradients reach the input through every op (wasm)', () => {
    const x = tf.tensor4d(input.data, input.shape).transpose([0, 2, 3, 1]) as tf.Tensor4D;
    const g = tf.tidy(() => tf.grad((inp: tf.Tensor) => tf.sum(model.apply(inp as tf.Tensor4D)))(x));
    expect(g.shape).toEqual(x.shape);
    const values = g.dataSync();
    expect(values.every(Number.isFinite)).toBe(true);
    expect(values.some((v) => v !== 0)).toBe(true);
    g.dispose();
    x.dispose();
  });

  it('weight gradients on wasm (custom conv filter gradient) equal the cpu backend ones', async () => {
    const keys = ['conv_first.weight', 'layers.0.conv.weight', 'upsample.0.weight', 'layers.1.residual_group.blocks.1.attn.qkv.weight',
      'layers.1.residual_group.blocks.1.attn.relative_position_bias_table', 'norm.bias'];
    const x = tf.tensor4d(input.data, input.shape).transpose([0, 2, 3, 1]) as tf.Tensor4D;
    const gradsOn = async (backend: 'wasm' | 'cpu') => {
      await initBackend(backend);
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(model.apply(x))) as tf.Scalar, keys.map((k) => model.param(k)));
      const out = keys.map((k) => grads[model.param(k).name].dataSync() as Float32Array);
      value.dispose();
      Object.values(grads).forEach((g) => g.dispose());
      return out;
    };
    const cpu = await gradsOn('cpu');
    const wasm = await gradsOn('wasm');
    keys.forEach((key, i) => {
      const scale = Math.max(...cpu[i].map(Math.abs));
      expect([key, scale > 0]).toEqual([key, true]);
      expect([key, maxAbsDiff(wasm[i], cpu[i]) / scale]).toEqual([key, expect.any(Number)]);
      expect(maxAbsDiff(wasm[i], cpu[i])).toBeLessThanOrEqual(1e-4 * scale);
    });
    x.dispose();
  });

  it('a weight hook replaces weights like setParam does, without touching the parameters', () => {
    const module = 'layers.0.residual_group.blocks.1.attn.qkv';
    const seen: string[] = [];
    const hooked = model.forward(input, {
      weightHook: (m, w) => {
        seen.push(m);
        return m === module ? tf.mul(w, 0.5) : undefined;
      },
    });
    expect(seen).toContain('conv_first');
    expect(seen).toContain('upsample.0');
    expect(seen.filter((m) => m === module)).toHaveLength(1);
    const key = `${module}.weight`;
    const original = model.param(key).dataSync().slice() as Float32Array;
    model.setParam(key, original.map((v) => v * 0.5));
    const viaParam = model.forward(input);
    model.setParam(key, original);
    expect(maxAbsDiff(hooked.data, viaParam.data)).toBe(0);
    expect(maxAbsDiff(hooked.data, reference.data)).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(model.forward(input).data, reference.data)).toBe(0);
  });

  it('rejects a hook that changes the shape', () => {
    expect(() => model.forward(input, { hook: (s, t) => (s.endsWith('mlp.fc1') ? tf.reshape(t, [-1]) : undefined) })).toThrow(
      /hook at layers\.0\.residual_group\.blocks\.0\.mlp\.fc1 returned shape \[6720\], expected \[1, 560, 12\]/);
  });

  it('setParam changes the output; restoring the weights restores it exactly', () => {
    const key = 'layers.0.residual_group.blocks.0.mlp.fc1.weight';
    const original = model.param(key).dataSync().slice() as Float32Array;
    model.setParam(key, original.map((v) => v * 2));
    expect(maxAbsDiff(model.forward(input).data, reference.data)).toBeGreaterThan(1e-4);
    model.setParam(key, original);
    expect(maxAbsDiff(model.forward(input).data, reference.data)).toBe(0);
  });
});

describe('variants without golden fixtures (shape and invariants only)', () => {
  /** Seeded uniform weights in [-0.05, 0.05); buffers left out so the model recomputes them. */
  function randomStateDict(config: SwinIRConfig, seed: number): StateDict {
    let state = seed >>> 0;
    const next = () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state / 2 ** 32 - 0.5;
    };
    const sd: StateDict = new Map();
    for (const [key, shape] of expectedShapes(config)) {
      if (isBufferKey(key)) continue;
      sd.set(key, { dtype: 'float32', shape, data: Float32Array.from({ length: numel(shape) }, () => 0.1 * next()) });
    }
    return sd;
  }
  const base = fixture('tiny_pixelshuffledirect_x2').config;
  const variants: [string, SwinIRConfig][] = [
    ['classical x2', { ...base, upsampler: 'pixelshuffle', upscale: 2 }],
    ['classical x4 (two PixelShuffle(2) stages)', { ...base, upsampler: 'pixelshuffle', upscale: 4 }],
    ['nearest+conv x4', { ...base, upsampler: 'nearest+conv', upscale: 4 }],
    ['3conv, one channel', { ...base, resiConnection: '3conv', inChans: 1 }],
    ['denoising', { ...base, upsampler: '', upscale: 1 }],
  ];
  it.each(variants)('%s: output shape, finite values, no leaked tensors', (_name, config) => {
    const model = new SwinIRModel(randomStateDict(config, 7), config);
    const c = config.inChans;
    const data = Float32Array.from({ length: c * 9 * 13 }, (_, i) => ((i * 37) % 17) / 17);
    model.forward({ data, shape: [1, c, 9, 13] });
    const before = tf.memory().numTensors;
    const out = model.forward({ data, shape: [1, c, 9, 13] });
    expect(tf.memory().numTensors).toBe(before);
    expect(out.shape).toEqual([1, c, 9 * config.upscale, 13 * config.upscale]);
    expect(out.data.every(Number.isFinite)).toBe(true);
    model.dispose();
  });

  it('denoising with a zero conv_last returns the input exactly (x + conv_last(res), then / range + mean)', () => {
    const config: SwinIRConfig = { ...base, upsampler: '', upscale: 1, imgRange: 1 };
    const sd = randomStateDict(config, 3);
    sd.set('conv_last.weight', { dtype: 'float32', shape: [3, 12, 3, 3], data: new Float32Array(324) });
    sd.set('conv_last.bias', { dtype: 'float32', shape: [3], data: new Float32Array(3) });
    const model = new SwinIRModel(sd, config);
    const data = Float32Array.from({ length: 3 * 8 * 8 }, (_, i) => (i % 11) / 10);
    expect(maxAbsDiff(model.forward({ data, shape: [1, 3, 8, 8] }).data, data)).toBeLessThanOrEqual(1e-6);
    model.dispose();
  });

  it('absolute_pos_embed works at img_size and is refused at other sizes', () => {
    const config: SwinIRConfig = { ...base, ape: true };
    const model = new SwinIRModel(randomStateDict(config, 5), config);
    expect(model.forward({ data: new Float32Array(3 * 16 * 16).fill(0.5), shape: [1, 3, 16, 16] }).shape).toEqual([1, 3, 32, 32]);
    expect(() => model.forward({ data: new Float32Array(3 * 8 * 8), shape: [1, 3, 8, 8] })).toThrow(
      'absolute_pos_embed needs a 16x16 padded input, got 8x8');
    model.dispose();
  });
});

describe('pixelShuffle', () => {
  it('is nn.PixelShuffle: output (c, y*r+i, x*r+j) = input (c*r*r + i*r + j, y, x)', () => {
    const [h, w, r, c] = [2, 3, 3, 2];
    const channels = c * r * r;
    const nhwc = Float32Array.from({ length: h * w * channels }, (_, k) => k);
    const out = tf.tidy(() => pixelShuffle(tf.tensor4d(nhwc, [1, h, w, channels]), r).arraySync())[0];
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) {
      for (let ch = 0; ch < c; ch++) {
        expect(out[y * r + i][x * r + j][ch]).toBe(nhwc[(y * w + x) * channels + ch * r * r + i * r + j]);
      }
    }
  });
});

describe('loadSwinIR', () => {
  const bad = path.join(goldenDir(), 'bad');

  it('loads a params_ema checkpoint and reports where the weights were', async () => {
    const loaded = await loadSwinIR(path.join(goldenDir(), 'tiny_params_ema_x2', 'model.pth'), { scale: 2 });
    expect(loaded.checkpoint).toMatchObject({ format: 'pth', key: 'params_ema' });
    expect(loaded.checkpoint.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(loaded.config).toEqual(fixture('tiny_params_ema_x2').config);
    loaded.model.dispose();
  });

  it('refuses wrong_scale.pth as x2 and wrong_arch.pth as swinir-light', async () => {
    await expect(loadSwinIR(path.join(bad, 'wrong_scale.pth'), { scale: 2 })).rejects.toThrow(
      'scale mismatch: upsample.0.weight has 27 = 3*3^2 output channels (x3), expected 12 = 3*2^2 (x2)');
    await expect(loadSwinIR(path.join(bad, 'wrong_arch.pth'), { arch: 'swinir-light' })).rejects.toThrow(
      /wrong_arch\.pth: architecture mismatch \(loading as swinir-light\): checkpoint has the classical pixelshuffle head, expected pixelshuffledirect/);
  });

  it('passes checkpoint errors through (not a checkpoint)', async () => {
    await expect(loadSwinIR(path.join(bad, 'not_a_checkpoint.pth'))).rejects.toThrow(/not a PyTorch checkpoint/);
  });
});
