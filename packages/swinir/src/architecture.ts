/**
 * SwinIR state-dict layout: the keys and shapes the official `SwinIR(**config).state_dict()` has,
 * the config a state dict implies, and the buffers the official constructor computes.
 * Everything here works from keys and shapes only; nothing needs a tfjs backend.
 */
import type { StateDict, Tensor } from '@harmoq/torch-io';
import { presetConfig, type ArchName, type SwinIRConfig, type Upsampler } from './config';
import { ArchitectureError } from './errors';

/** Width of the classical/nearest+conv head, hard-coded as `num_feat = 64` in the official constructor. */
export const NUM_FEAT = 64;

/** Window and shift of one Swin block, as the official `SwinTransformerBlock.__init__` settles them. */
export interface BlockGeometry {
  windowSize: number;
  shiftSize: number;
}

/**
 * The official rule: odd blocks shift by window/2, but when `min(img_size) <= window_size` there is no
 * shift and the window shrinks to img_size. Decided from img_size at construction, never from the input.
 */
export function blockGeometry(config: Pick<SwinIRConfig, 'imgSize' | 'windowSize'>, blockIndex: number): BlockGeometry {
  if (config.imgSize <= config.windowSize) return { windowSize: config.imgSize, shiftSize: 0 };
  return { windowSize: config.windowSize, shiftSize: blockIndex % 2 === 1 ? Math.floor(config.windowSize / 2) : 0 };
}

export function blockPrefix(layer: number, block: number): string {
  return `layers.${layer}.residual_group.blocks.${block}`;
}

/** True for the two non-parameter buffers, which may be absent from a checkpoint and are then recomputed. */
export function isBufferKey(key: string): boolean {
  return key.endsWith('.attn.relative_position_index') || key.endsWith('.attn_mask');
}

/** `relative_position_index` of WindowAttention: (w*w) x (w*w), row-major. */
export function relativePositionIndex(windowSize: number): Int32Array {
  const n = windowSize * windowSize;
  const out = new Int32Array(n * n);
  for (let i = 0; i < n; i++) {
    const hi = Math.floor(i / windowSize);
    const wi = i % windowSize;
    for (let j = 0; j < n; j++) {
      const hj = Math.floor(j / windowSize);
      const wj = j % windowSize;
      out[i * n + j] = (hi - hj + windowSize - 1) * (2 * windowSize - 1) + (wi - wj + windowSize - 1);
    }
  }
  return out;
}

/**
 * `SwinTransformerBlock.calculate_mask((height, width))`: nW x (w*w) x (w*w) with 0 inside a region and -100
 * across regions, windows in row-major order. Only meaningful for shiftSize > 0 (with no shift the official
 * mask is all zeros).
 */
export function calculateAttnMask(height: number, width: number, windowSize: number, shiftSize: number): Float32Array {
  // Python slices (0,-w), (-w,-s), (-s,None) label each row/column 0, 1 or 2.
  const region = (i: number, size: number) => (i < size - windowSize ? 0 : i < size - shiftSize ? 1 : 2);
  const nh = height / windowSize;
  const nw = width / windowSize;
  const n = windowSize * windowSize;
  const out = new Float32Array(nh * nw * n * n);
  const labels = new Int32Array(n);
  for (let wh = 0; wh < nh; wh++) {
    for (let ww = 0; ww < nw; ww++) {
      for (let t = 0; t < n; t++) {
        const row = wh * windowSize + Math.floor(t / windowSize);
        const col = ww * windowSize + (t % windowSize);
        labels[t] = region(row, height) * 3 + region(col, width);
      }
      const base = (wh * nw + ww) * n * n;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) out[base + i * n + j] = labels[i] === labels[j] ? 0 : -100;
      }
    }
  }
  return out;
}

function convShapes(prefix: string, outCh: number, inCh: number, k: number, into: Map<string, number[]>): void {
  into.set(`${prefix}.weight`, [outCh, inCh, k, k]);
  into.set(`${prefix}.bias`, [outCh]);
}

function residualConvShapes(prefix: string, dim: number, resi: SwinIRConfig['resiConnection'], into: Map<string, number[]>): void {
  if (resi === '1conv') {
    convShapes(prefix, dim, dim, 3, into);
  } else {
    const quarter = Math.floor(dim / 4);
    convShapes(`${prefix}.0`, quarter, dim, 3, into);
    convShapes(`${prefix}.2`, quarter, quarter, 1, into);
    convShapes(`${prefix}.4`, dim, quarter, 3, into);
  }
}

/** Conv layer indices inside the classical `Upsample` sequential, with their output channel counts. */
export function classicalUpsampleConvs(scale: number): { index: number; outChannels: number; factor: number }[] {
  if (scale === 3) return [{ index: 0, outChannels: 9 * NUM_FEAT, factor: 3 }];
  if (scale >= 2 && (scale & (scale - 1)) === 0) {
    return Array.from({ length: Math.round(Math.log2(scale)) }, (_, i) => ({ index: 2 * i, outChannels: 4 * NUM_FEAT, factor: 2 }));
  }
  throw new ArchitectureError(`scale ${scale} is not supported by the pixelshuffle head (choices: 2^n and 3)`);
}

/**
 * Every key of the official state dict for `config`, parameters and buffers, in the official order,
 * with its shape. Strict loading compares a checkpoint against exactly this.
 */
export function expectedShapes(config: SwinIRConfig): Map<string, number[]> {
  const e = config.embedDim;
  const c = config.inChans;
  const shapes = new Map<string, number[]>();
  if (config.ape) shapes.set('absolute_pos_embed', [1, config.imgSize * config.imgSize, e]);
  convShapes('conv_first', e, c, 3, shapes);
  if (config.patchNorm) {
    shapes.set('patch_embed.norm.weight', [e]);
    shapes.set('patch_embed.norm.bias', [e]);
  }
  const hidden = Math.floor(e * config.mlpRatio);
  config.depths.forEach((depth, layer) => {
    const heads = config.numHeads[layer];
    for (let block = 0; block < depth; block++) {
      const p = blockPrefix(layer, block);
      const { windowSize: w, shiftSize } = blockGeometry(config, block);
      if (shiftSize > 0) {
        const nW = Math.floor(config.imgSize / w) ** 2;
        shapes.set(`${p}.attn_mask`, [nW, w * w, w * w]);
      }
      shapes.set(`${p}.norm1.weight`, [e]);
      shapes.set(`${p}.norm1.bias`, [e]);
      shapes.set(`${p}.attn.relative_position_bias_table`, [(2 * w - 1) ** 2, heads]);
      shapes.set(`${p}.attn.relative_position_index`, [w * w, w * w]);
      shapes.set(`${p}.attn.qkv.weight`, [3 * e, e]);
      if (config.qkvBias) shapes.set(`${p}.attn.qkv.bias`, [3 * e]);
      shapes.set(`${p}.attn.proj.weight`, [e, e]);
      shapes.set(`${p}.attn.proj.bias`, [e]);
      shapes.set(`${p}.norm2.weight`, [e]);
      shapes.set(`${p}.norm2.bias`, [e]);
      shapes.set(`${p}.mlp.fc1.weight`, [hidden, e]);
      shapes.set(`${p}.mlp.fc1.bias`, [hidden]);
      shapes.set(`${p}.mlp.fc2.weight`, [e, hidden]);
      shapes.set(`${p}.mlp.fc2.bias`, [e]);
    }
    residualConvShapes(`layers.${layer}.conv`, e, config.resiConnection, shapes);
  });
  shapes.set('norm.weight', [e]);
  shapes.set('norm.bias', [e]);
  residualConvShapes('conv_after_body', e, config.resiConnection, shapes);
  switch (config.upsampler) {
    case 'pixelshuffle':
      convShapes('conv_before_upsample.0', NUM_FEAT, e, 3, shapes);
      for (const conv of classicalUpsampleConvs(config.upscale)) convShapes(`upsample.${conv.index}`, conv.outChannels, NUM_FEAT, 3, shapes);
      convShapes('conv_last', c, NUM_FEAT, 3, shapes);
      break;
    case 'pixelshuffledirect':
      convShapes('upsample.0', c * config.upscale ** 2, e, 3, shapes);
      break;
    case 'nearest+conv':
      convShapes('conv_before_upsample.0', NUM_FEAT, e, 3, shapes);
      for (const name of ['conv_up1', 'conv_up2', 'conv_hr']) convShapes(name, NUM_FEAT, NUM_FEAT, 3, shapes);
      convShapes('conv_last', c, NUM_FEAT, 3, shapes);
      break;
    case '':
      convShapes('conv_last', c, e, 3, shapes);
      break;
  }
  return shapes;
}

const HEAD_NAMES: Record<Upsampler, string> = {
  pixelshuffle: 'classical pixelshuffle',
  pixelshuffledirect: 'lightweight pixelshuffledirect',
  'nearest+conv': 'real-world nearest+conv',
  '': 'denoising (no upsampler)',
};

function shapeOf(sd: StateDict, key: string): number[] | undefined {
  return sd.get(key)?.shape;
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function integerSqrt(n: number): number | null {
  const r = Math.round(Math.sqrt(n));
  return r * r === n ? r : null;
}

/**
 * The constructor config a state dict implies, from keys and shapes only. Not recoverable from weights:
 * img_range (1.0 assumed), qk_scale (null), and img_size when the checkpoint has no `attn_mask` buffer
 * (64 assumed, the official default).
 */
export function inferConfig(sd: StateDict, source?: string): SwinIRConfig {
  const need = (key: string): number[] => {
    const shape = shapeOf(sd, key);
    if (!shape) {
      const first = [...sd.keys()].slice(0, 5).join(', ');
      throw new ArchitectureError(`not a SwinIR state dict: no '${key}' (it has ${sd.size} keys, starting ${first || '(none)'})`, source);
    }
    return shape;
  };
  const [embedDim, inChans] = need('conv_first.weight');

  const depthOf = new Map<number, number>();
  for (const key of sd.keys()) {
    const m = /^layers\.(\d+)\.residual_group\.blocks\.(\d+)\./.exec(key);
    if (m) depthOf.set(Number(m[1]), Math.max(depthOf.get(Number(m[1])) ?? 0, Number(m[2]) + 1));
  }
  const layerCount = depthOf.size;
  if (layerCount === 0) need(`${blockPrefix(0, 0)}.norm1.weight`);
  const depths: number[] = [];
  const numHeads: number[] = [];
  const windows: number[] = [];
  for (let layer = 0; layer < layerCount; layer++) {
    const depth = depthOf.get(layer);
    if (depth === undefined) throw new ArchitectureError(`layers are not numbered 0..${layerCount - 1}: layers.${layer} is missing`, source);
    depths.push(depth);
    const [rows, heads] = need(`${blockPrefix(layer, 0)}.attn.relative_position_bias_table`);
    const side = integerSqrt(rows);
    if (side === null || side % 2 === 0) {
      throw new ArchitectureError(`${blockPrefix(layer, 0)}.attn.relative_position_bias_table has ${rows} rows, not (2*window-1)^2`, source);
    }
    numHeads.push(heads);
    windows.push((side + 1) / 2);
  }
  const tableWindow = windows[0];
  const [hidden] = need(`${blockPrefix(0, 0)}.mlp.fc1.weight`);

  // img_size: attn_mask (nW = (img/w)^2) > absolute_pos_embed > the official default 64.
  let imgSize = 64;
  let maskFound = false;
  for (const [key, tensor] of sd) {
    if (key.endsWith('.attn_mask') && tensor.shape.length === 3) {
      const side = integerSqrt(tensor.shape[0]);
      const w = integerSqrt(tensor.shape[1]);
      if (side !== null && w !== null) {
        imgSize = side * w;
        maskFound = true;
        break;
      }
    }
  }
  const ape = sd.has('absolute_pos_embed');
  if (!maskFound && ape) {
    const side = integerSqrt(need('absolute_pos_embed')[1]);
    if (side !== null) imgSize = side;
  }
  let windowSize = tableWindow;
  // Buffers stored, a shifted block exists, yet no attn_mask: the model never shifted, so img_size <= window.
  const hasIndexBuffers = [...sd.keys()].some((k) => k.endsWith('.relative_position_index'));
  if (!maskFound && !ape && hasIndexBuffers && depths.some((d) => d > 1)) {
    imgSize = tableWindow;
    windowSize = tableWindow;
  }

  let upsampler: Upsampler;
  let upscale: number;
  if (sd.has('conv_up1.weight')) {
    upsampler = 'nearest+conv';
    upscale = 4;
  } else if (sd.has('conv_before_upsample.0.weight')) {
    upsampler = 'pixelshuffle';
    const convs = [...sd.keys()]
      .map((k) => /^upsample\.(\d+)\.weight$/.exec(k))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => need(m[0])[0]);
    const numFeat = need('conv_before_upsample.0.weight')[0];
    if (convs.length === 1 && convs[0] === 9 * numFeat) upscale = 3;
    else if (convs.length >= 1 && convs.every((o) => o === 4 * numFeat)) upscale = 2 ** convs.length;
    else throw new ArchitectureError(`pixelshuffle head with upsample conv outputs [${convs.join(', ')}] fits no scale (2^n: 4*${numFeat} each, 3: one of 9*${numFeat})`, source);
  } else if (sd.has('upsample.0.weight')) {
    upsampler = 'pixelshuffledirect';
    const out = need('upsample.0.weight')[0];
    const s = integerSqrt(out / inChans);
    if (s === null || out % inChans !== 0) {
      throw new ArchitectureError(`upsample.0.weight has ${out} output channels, not in_chans*scale^2 = ${inChans}*s^2`, source);
    }
    upscale = s;
  } else if (sd.has('conv_last.weight')) {
    upsampler = '';
    upscale = 1;
  } else {
    throw new ArchitectureError('no upsampling head found (expected upsample.0.*, conv_before_upsample.0.*, conv_up1.* or conv_last.*)', source);
  }

  return {
    upscale,
    inChans,
    imgSize,
    windowSize,
    imgRange: 1.0,
    depths,
    embedDim,
    numHeads,
    mlpRatio: hidden / embedDim,
    qkvBias: sd.has(`${blockPrefix(0, 0)}.attn.qkv.bias`),
    qkScale: null,
    upsampler,
    resiConnection: sd.has('layers.0.conv.0.weight') || sd.has('conv_after_body.0.weight') ? '3conv' : '1conv',
    patchNorm: sd.has('patch_embed.norm.weight'),
    ape,
  };
}

/** Fields that define an architecture family, with their official (snake_case) names for messages. */
const FAMILY_FIELDS: [keyof SwinIRConfig, string][] = [
  ['inChans', 'in_chans'],
  ['embedDim', 'embed_dim'],
  ['depths', 'depths'],
  ['numHeads', 'num_heads'],
  ['windowSize', 'window_size'],
  ['mlpRatio', 'mlp_ratio'],
  ['resiConnection', 'resi_connection'],
  ['qkvBias', 'qkv_bias'],
  ['patchNorm', 'patch_norm'],
  ['ape', 'ape'],
];

/** The part of a preset that `--arch` pins: the family, without upscale, img_size, img_range or qk_scale. */
export function archFamily(arch: ArchName): Partial<SwinIRConfig> {
  const { upscale: _upscale, imgSize: _imgSize, imgRange: _imgRange, qkScale: _qkScale, ...family } = presetConfig(arch, 2);
  return family;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function scaleMessage(sd: StateDict, inferred: SwinIRConfig, expectedScale: number): string {
  if (inferred.upsampler === 'pixelshuffledirect') {
    const c = inferred.inChans;
    const got = shapeOf(sd, 'upsample.0.weight')![0];
    return `scale mismatch: upsample.0.weight has ${got} = ${c}*${inferred.upscale}^2 output channels (x${inferred.upscale}), ` +
      `expected ${c * expectedScale ** 2} = ${c}*${expectedScale}^2 (x${expectedScale})`;
  }
  if (inferred.upsampler === 'pixelshuffle') {
    const convs = classicalUpsampleConvs(inferred.upscale).map((conv) => `upsample.${conv.index}.weight [${conv.outChannels}, ${NUM_FEAT}, 3, 3]`);
    let wanted: string;
    try {
      wanted = classicalUpsampleConvs(expectedScale).map((conv) => `upsample.${conv.index}.weight [${conv.outChannels}, ${NUM_FEAT}, 3, 3]`).join(', ');
    } catch {
      wanted = 'a scale the pixelshuffle head does not support (choices: 2^n and 3)';
    }
    return `scale mismatch: checkpoint head is x${inferred.upscale} (${convs.join(', ')}), expected x${expectedScale} (${wanted})`;
  }
  return `scale mismatch: checkpoint is x${inferred.upscale}, expected x${expectedScale}`;
}

function numberAt(t: Tensor, i: number): number {
  return Number(t.data[i]);
}

/** Checks stored buffers against the ones the official constructor would compute. */
function bufferProblems(sd: StateDict, config: SwinIRConfig): string[] {
  const problems: string[] = [];
  const indexCache = new Map<number, Int32Array>();
  config.depths.forEach((depth, layer) => {
    for (let block = 0; block < depth; block++) {
      const p = blockPrefix(layer, block);
      const { windowSize: w, shiftSize } = blockGeometry(config, block);
      const index = sd.get(`${p}.attn.relative_position_index`);
      if (index) {
        if (!indexCache.has(w)) indexCache.set(w, relativePositionIndex(w));
        const want = indexCache.get(w)!;
        if (want.some((v, i) => numberAt(index, i) !== v)) {
          problems.push(`${p}.attn.relative_position_index differs from the one computed for window ${w}`);
        }
      }
      const mask = sd.get(`${p}.attn_mask`);
      if (mask && shiftSize > 0) {
        const want = calculateAttnMask(config.imgSize, config.imgSize, w, shiftSize);
        if (want.some((v, i) => numberAt(mask, i) !== v)) {
          problems.push(`${p}.attn_mask differs from calculate_mask((${config.imgSize}, ${config.imgSize})) for window ${w}, shift ${shiftSize}`);
        }
      }
    }
  });
  return problems;
}

/**
 * Checks a state dict against an expected architecture and returns the config to build it with.
 * `expected` may be a full config (strict: every key and shape) or a partial one (e.g. a family and a
 * scale); the fields it leaves out are taken from the checkpoint. Throws an ArchitectureError listing
 * head/scale/family mismatches, unexpected keys, missing keys and every shape mismatch.
 */
export function checkArchitecture(
  sd: StateDict,
  expected: Partial<SwinIRConfig>,
  archName?: string,
  source?: string,
): SwinIRConfig {
  const inferred = inferConfig(sd, source);
  const defined = Object.fromEntries(Object.entries(expected).filter(([, v]) => v !== undefined)) as Partial<SwinIRConfig>;
  const config: SwinIRConfig = { ...inferred, ...defined };
  const problems: string[] = [];

  if (defined.upsampler !== undefined && defined.upsampler !== inferred.upsampler) {
    problems.push(`checkpoint has the ${HEAD_NAMES[inferred.upsampler]} head, expected ${defined.upsampler || "'' (no upsampler)"}`);
    if (defined.upscale !== undefined && defined.upscale !== inferred.upscale) {
      problems.push(`scale mismatch: checkpoint is x${inferred.upscale}, expected x${defined.upscale}`);
    }
  } else if (defined.upscale !== undefined && defined.upscale !== inferred.upscale) {
    problems.push(scaleMessage(sd, inferred, defined.upscale));
  }
  for (const [field, pyName] of FAMILY_FIELDS) {
    if (defined[field] !== undefined && !same(defined[field], inferred[field])) {
      problems.push(`${pyName}: checkpoint has ${JSON.stringify(inferred[field])}, expected ${JSON.stringify(defined[field])}`);
    }
  }

  let want: Map<string, number[]>;
  try {
    want = expectedShapes(config);
  } catch (err) {
    throw new ArchitectureError(`architecture mismatch${archName ? ` (loading as ${archName})` : ''}: ${[...problems, (err as Error).message].join('; ')}`, source);
  }
  const unexpected = [...sd.keys()].filter((k) => !want.has(k));
  const missing = [...want.keys()].filter((k) => !sd.has(k) && !isBufferKey(k));
  const shapeMismatches: string[] = [];
  for (const [key, shape] of want) {
    const got = shapeOf(sd, key);
    if (got && !same(got, shape)) shapeMismatches.push(`${key} has shape ${fmt(got)}, expected ${fmt(shape)}`);
  }
  if (unexpected.length) problems.push(`unexpected keys ${unexpected.join(', ')}`);
  if (missing.length) problems.push(`missing keys ${missing.join(', ')}`);
  problems.push(...shapeMismatches);
  if (problems.length === 0) problems.push(...bufferProblems(sd, config));
  if (problems.length) {
    throw new ArchitectureError(`architecture mismatch${archName ? ` (loading as ${archName})` : ''}: ${problems.join('; ')}`, source);
  }
  return config;
}
