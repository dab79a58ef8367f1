import * as path from 'node:path';
import { loadStateDict, numel, type StateDict, type Tensor } from '@harmoq/torch-io';
import {
  archFamily, calculateAttnMask, checkArchitecture, expectedShapes, inferConfig, isBufferKey, relativePositionIndex,
} from './architecture';
import { presetConfig, type SwinIRConfig } from './config';
import { ArchitectureError } from './errors';
import { expectedFor } from './load';
import { MODEL_FIXTURES, dataDir, fixture, goldenDir } from './testing/golden';

const tiny = (overrides: Partial<SwinIRConfig> = {}): SwinIRConfig => ({ ...fixture('tiny_pixelshuffledirect_x2').config, ...overrides });

/** A state dict with every key of `config`, zero weights and correctly computed buffers. */
function syntheticStateDict(config: SwinIRConfig, withBuffers = true): StateDict {
  const sd: StateDict = new Map();
  for (const [key, shape] of expectedShapes(config)) {
    if (isBufferKey(key) && !withBuffers) continue;
    let tensor: Tensor;
    if (key.endsWith('relative_position_index')) {
      tensor = { dtype: 'int64', shape, data: BigInt64Array.from(relativePositionIndex(Math.sqrt(shape[0])), (v) => BigInt(v)) };
    } else if (key.endsWith('attn_mask')) {
      const w = Math.sqrt(shape[1]);
      tensor = { dtype: 'float32', shape, data: calculateAttnMask(config.imgSize, config.imgSize, w, w / 2) };
    } else {
      tensor = { dtype: 'float32', shape, data: new Float32Array(numel(shape)) };
    }
    sd.set(key, tensor);
  }
  return sd;
}

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ArchitectureError);
    return (err as Error).message;
  }
  throw new Error('expected an ArchitectureError');
}

describe('inferConfig', () => {
  it.each(MODEL_FIXTURES)('%s: the config inferred from keys and shapes equals config.json', (name) => {
    const fx = fixture(name);
    expect(inferConfig(fx.stateDict())).toEqual(fx.config);
  });

  it('house SwinIR-light x2: img_size 64 from attn_mask, the lightweight preset', () => {
    const sd = loadStateDict(path.join(dataDir(), 'weights/house/swinir_light_x2_house.pth')).stateDict;
    expect(inferConfig(sd)).toEqual(presetConfig('swinir-light', 2));
  });

  const variants: [string, SwinIRConfig][] = [
    ['classical x2', tiny({ upsampler: 'pixelshuffle', upscale: 2 })],
    ['classical x3', tiny({ upsampler: 'pixelshuffle', upscale: 3 })],
    ['classical x8', tiny({ upsampler: 'pixelshuffle', upscale: 8 })],
    ['direct x4, 3 layers of different depth and heads', tiny({ upscale: 4, depths: [2, 3, 1], numHeads: [2, 4, 3] })],
    ['nearest+conv x4', tiny({ upsampler: 'nearest+conv', upscale: 4 })],
    ['denoising (no upsampler)', tiny({ upsampler: '', upscale: 1 })],
    ['3conv, one channel, mlp 4, no qkv bias, no patch norm', tiny({ resiConnection: '3conv', inChans: 1, mlpRatio: 4, qkvBias: false, patchNorm: false })],
    ['ape with img 24 / window 8', tiny({ ape: true, imgSize: 24, windowSize: 8, embedDim: 16 })],
    ['img 32, window 8 (4x4 windows)', tiny({ imgSize: 32, windowSize: 8 })],
    ['img_size <= window: no shift, window shrinks', tiny({ imgSize: 4, windowSize: 4 })],
  ];
  it.each(variants)('round-trips %s through a synthetic state dict', (_name, config) => {
    expect(inferConfig(syntheticStateDict(config))).toEqual(config);
    expect(checkArchitecture(syntheticStateDict(config), config)).toEqual(config);
  });

  it('without buffers, img_size falls back to 64 and the window comes from the bias table', () => {
    const config = tiny({ imgSize: 32, windowSize: 8 });
    expect(inferConfig(syntheticStateDict(config, false))).toEqual({ ...config, imgSize: 64 });
  });

  it('names the missing key when the state dict is not SwinIR', () => {
    const msg = refusal(() => inferConfig(new Map([['fc.weight', { dtype: 'float32', shape: [2, 2], data: new Float32Array(4) }]])));
    expect(msg).toContain("not a SwinIR state dict: no 'conv_first.weight'");
    expect(msg).toContain('fc.weight');
  });
});

describe('expectedShapes', () => {
  it.each(MODEL_FIXTURES)('%s: same keys, in the official order, and shapes as the checkpoint', (name) => {
    const fx = fixture(name);
    const sd = fx.stateDict();
    const want = expectedShapes(fx.config);
    const stored = [...want.keys()].filter((k) => sd.has(k) || !isBufferKey(k));
    expect([...sd.keys()]).toEqual(stored);
    for (const [key, t] of sd) expect([key, t.shape]).toEqual([key, want.get(key)]);
  });

  it('light_x2_random stores no buffers: 24 relative_position_index and 12 attn_mask keys are recomputed', () => {
    const fx = fixture('light_x2_random');
    const sd = fx.stateDict();
    const buffers = [...expectedShapes(fx.config).keys()].filter(isBufferKey);
    expect(buffers.filter((k) => k.endsWith('relative_position_index'))).toHaveLength(24);
    expect(buffers.filter((k) => k.endsWith('attn_mask'))).toHaveLength(12);
    expect(buffers.some((k) => sd.has(k))).toBe(false);
    expect(sd.size).toBe(330);
    expect(checkArchitecture(sd, fx.config)).toEqual(fx.config);
  });
});

describe('recomputed buffers', () => {
  it('match every stored relative_position_index and attn_mask of the tiny x2 fixture', () => {
    const sd = fixture('tiny_pixelshuffledirect_x2').stateDict();
    let checked = 0;
    for (const [key, t] of sd) {
      if (key.endsWith('relative_position_index')) {
        expect(Array.from(t.data as BigInt64Array, Number)).toEqual(Array.from(relativePositionIndex(4)));
        checked++;
      } else if (key.endsWith('attn_mask')) {
        // img_size 16, window 4, shift 2: 16 windows of 16x16.
        expect(t.shape).toEqual([16, 16, 16]);
        expect(Array.from(t.data as Float32Array)).toEqual(Array.from(calculateAttnMask(16, 16, 4, 2)));
        checked++;
      }
    }
    expect(checked).toBe(6);
  });

  it('match the house checkpoint buffers (window 8, img 64: 64 windows)', () => {
    const sd = loadStateDict(path.join(dataDir(), 'weights/house/swinir_light_x2_house.pth')).stateDict;
    const mask = sd.get('layers.3.residual_group.blocks.5.attn_mask')!;
    expect(mask.shape).toEqual([64, 64, 64]);
    expect(Array.from(mask.data as Float32Array)).toEqual(Array.from(calculateAttnMask(64, 64, 8, 4)));
    const index = sd.get('layers.2.residual_group.blocks.0.attn.relative_position_index')!;
    expect(Array.from(index.data as BigInt64Array, Number)).toEqual(Array.from(relativePositionIndex(8)));
  });

  it('calculateAttnMask only separates the wrapped border regions', () => {
    const mask = calculateAttnMask(8, 8, 4, 2); // 4 windows; only the last row/column of windows mixes regions
    const n = 16;
    const window = (w: number) => Array.from(mask.subarray(w * n * n, (w + 1) * n * n));
    expect(window(0).every((v) => v === 0)).toBe(true);
    expect(window(3).filter((v) => v === -100).length).toBe(n * n - 4 * 16); // 4 regions of 4 tokens each
    expect(new Set(mask)).toEqual(new Set([0, -100]));
  });

  it('a stored buffer that differs from the recomputed one is refused', () => {
    const fx = fixture('tiny_pixelshuffledirect_x2');
    const sd = fx.stateDict();
    const key = 'layers.1.residual_group.blocks.1.attn_mask';
    const data = Float32Array.from(sd.get(key)!.data as Float32Array);
    data[5] = data[5] === 0 ? -100 : 0;
    sd.set(key, { ...sd.get(key)!, data });
    expect(refusal(() => checkArchitecture(sd, fx.config))).toContain(`${key} differs from calculate_mask((16, 16))`);
  });
});

describe('checkArchitecture refusals', () => {
  const bad = (file: string) => loadStateDict(path.join(goldenDir(), 'bad', file)).stateDict;

  it('wrong_arch.pth (classical head) loaded as tiny lightweight x2', () => {
    const msg = refusal(() => checkArchitecture(bad('wrong_arch.pth'), tiny()));
    expect(msg).toContain('architecture mismatch');
    expect(msg).toContain('checkpoint has the classical pixelshuffle head, expected pixelshuffledirect');
    expect(msg).toContain('unexpected keys conv_before_upsample.0.weight, conv_before_upsample.0.bias, conv_last.weight, conv_last.bias');
    expect(msg).toContain('upsample.0.weight has shape [256, 64, 3, 3], expected [12, 12, 3, 3]');
    expect(msg).toContain('upsample.0.bias has shape [256], expected [12]');
  });

  it('wrong_scale.pth (lightweight x3) loaded as tiny x2', () => {
    const msg = refusal(() => checkArchitecture(bad('wrong_scale.pth'), tiny()));
    expect(msg).toContain('scale mismatch: upsample.0.weight has 27 = 3*3^2 output channels (x3), expected 12 = 3*2^2 (x2)');
    expect(msg).toContain('upsample.0.weight has shape [27, 12, 3, 3], expected [12, 12, 3, 3]');
    expect(msg).not.toContain('unexpected keys');
  });

  it('both load with their own configs (not too strict)', () => {
    const archConfig = fixture('tiny_pixelshuffledirect_x2').config;
    expect(checkArchitecture(bad('wrong_arch.pth'), { ...archConfig, upsampler: 'pixelshuffle' }).upsampler).toBe('pixelshuffle');
    expect(checkArchitecture(bad('wrong_scale.pth'), fixture('tiny_pixelshuffledirect_x3').config).upscale).toBe(3);
  });

  it('--arch swinir-light refuses the tiny classical checkpoint, naming the family fields', () => {
    const msg = refusal(() => checkArchitecture(bad('wrong_arch.pth'), expectedFor({ arch: 'swinir-light', scale: 2 }), 'swinir-light x2'));
    expect(msg).toContain('architecture mismatch (loading as swinir-light x2)');
    expect(msg).toContain('checkpoint has the classical pixelshuffle head, expected pixelshuffledirect');
    expect(msg).toContain('embed_dim: checkpoint has 12, expected 60');
    expect(msg).toContain('depths: checkpoint has [2,2], expected [6,6,6,6]');
    expect(msg).toContain('window_size: checkpoint has 4, expected 8');
    expect(msg).toContain('conv_first.weight has shape [12, 3, 3, 3], expected [60, 3, 3, 3]');
  });

  it('classical head scale mismatch names the Upsample convs', () => {
    const config = tiny({ upsampler: 'pixelshuffle', upscale: 3 });
    const msg = refusal(() => checkArchitecture(syntheticStateDict(config), { upscale: 4 }));
    expect(msg).toContain('scale mismatch: checkpoint head is x3 (upsample.0.weight [576, 64, 3, 3]), expected x4 (upsample.0.weight [256, 64, 3, 3], upsample.2.weight [256, 64, 3, 3])');
  });

  it('lists missing keys', () => {
    const fx = fixture('tiny_pixelshuffledirect_x2');
    const sd = fx.stateDict();
    sd.delete('layers.0.residual_group.blocks.1.mlp.fc2.bias');
    sd.delete('norm.weight');
    expect(refusal(() => checkArchitecture(sd, fx.config))).toContain(
      'missing keys layers.0.residual_group.blocks.1.mlp.fc2.bias, norm.weight');
  });

  it('archFamily pins the preset family, not the scale or img_size', () => {
    expect(archFamily('swinir-light')).toMatchObject({ embedDim: 60, depths: [6, 6, 6, 6], upsampler: 'pixelshuffledirect' });
    expect(archFamily('swinir-classical')).toMatchObject({ embedDim: 180, depths: [6, 6, 6, 6, 6, 6], upsampler: 'pixelshuffle' });
    expect(archFamily('swinir-light')).not.toHaveProperty('upscale');
    expect(archFamily('swinir-light')).not.toHaveProperty('imgSize');
  });

  it('unknown arch and bad scales are refused with the choices', () => {
    expect(refusal(() => expectedFor({ arch: 'swinir-large' as never }))).toBe(
      "unknown arch 'swinir-large' (choices: swinir-light, swinir-classical)");
    expect(refusal(() => expectedFor({ scale: 2.5 }))).toContain('scale 2.5 is not a positive integer');
  });
});
