/**
 * SwinIR forward pass in tfjs, op for op as the official `network_swinir.py` (JingyunLiang/SwinIR at
 * 6545850) computes it in eval mode. Built from differentiable tfjs ops only, so `tf.grad` flows through
 * linears, attention, LayerNorm and the erf GELU. Internally NHWC (the layout tfjs convs want); the
 * array API is NCHW like PyTorch.
 */
import * as tf from '@tensorflow/tfjs';
import type { StateDict, Tensor } from '@harmoq/torch-io';
import {
  blockGeometry, blockPrefix, calculateAttnMask, checkArchitecture, classicalUpsampleConvs, isBufferKey, relativePositionIndex,
} from './architecture';
import { RGB_MEAN, type SwinIRConfig } from './config';
import { ArchitectureError, SwinIRError } from './errors';

/** A dense NCHW float32 array, as PyTorch lays images out. */
export interface NCHWArray {
  data: Float32Array;
  shape: [number, number, number, number];
}

/** What a hook site carries: a Linear's or Conv's input, the scaled q, k, v, or the post-softmax map. */
export type SiteKind = 'linear' | 'conv' | 'q' | 'k' | 'v' | 'attn_map';

/**
 * Called on every named activation; may return a replacement tensor of the same shape (e.g. fake-quantized).
 * Shapes as PyTorch has them: Linear inputs [windows*B, N, C] (qkv, proj) or [B, L, C] (fc1, fc2);
 * q, k, v [windows*B, heads, N, head_dim]; attn_map [windows*B, heads, N, N]. Conv inputs are NHWC.
 * Tensors handed to a hook are freed after the block; keep() them or read them inside the hook.
 */
export type ActivationHook = (site: string, x: tf.Tensor, kind: SiteKind) => tf.Tensor | void;

/**
 * Called on the weight of every Linear and Conv (PyTorch layout: [out, in] or [out, in, kh, kw]) before use,
 * keyed by module path (`layers.0.residual_group.blocks.0.attn.qkv`, `conv_first`, ...); may return a
 * replacement of the same shape, e.g. fake-quantized with differentiable parameters.
 */
export type WeightHook = (module: string, weight: tf.Tensor) => tf.Tensor | void;

/** Receives each named stage (golden `meta.json` names) as an NHWC tensor, freed after the call. */
export type StageCallback = (name: string, x: tf.Tensor4D) => void;

export interface ApplyOptions {
  hook?: ActivationHook;
  weightHook?: WeightHook;
  onStage?: StageCallback;
}

export interface ForwardOptions {
  hook?: ActivationHook;
  weightHook?: WeightHook;
  /** Capture stages as NCHW arrays: true for all, or the names wanted. */
  stages?: boolean | readonly string[];
}

export interface ForwardResult extends NCHWArray {
  stages?: Map<string, NCHWArray>;
}

export interface HookSite {
  site: string;
  kind: SiteKind;
}

const LN_EPS = 1e-5;
// Keep masks for a few padded sizes; tiling and benchmarks reuse one or two.
const MASK_CACHE_LIMIT = 8;

/** Checkpoint tensors come as float32/float64/float16/bfloat16; the model computes in float32. */
export function toFloat32(t: Tensor, key = '?'): Float32Array {
  switch (t.dtype) {
    case 'float32':
      return t.data as Float32Array;
    case 'float64':
      return Float32Array.from(t.data as Float64Array);
    case 'bfloat16': {
      const bits = t.data as Uint16Array;
      const u = new Uint32Array(bits.length);
      for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
      return new Float32Array(u.buffer);
    }
    case 'float16': {
      const bits = t.data as Uint16Array;
      const out = new Float32Array(bits.length);
      for (let i = 0; i < bits.length; i++) {
        const h = bits[i];
        const sign = h & 0x8000 ? -1 : 1;
        const exp = (h >> 10) & 0x1f;
        const frac = h & 0x3ff;
        if (exp === 0) out[i] = sign * frac * 2 ** -24;
        else if (exp === 31) out[i] = frac ? NaN : sign * Infinity;
        else out[i] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
      }
      return out;
    }
    default:
      throw new ArchitectureError(`${key} has dtype ${t.dtype}; parameters must be float32, float64, float16 or bfloat16`);
  }
}

function nhwcToNchw(t: tf.Tensor4D): NCHWArray {
  const out = tf.tidy(() => tf.transpose(t, [0, 3, 1, 2]));
  const data = out.dataSync() as Float32Array;
  const shape = out.shape as [number, number, number, number];
  out.dispose();
  return { data, shape };
}

export class SwinIRModel {
  readonly config: SwinIRConfig;
  /** Parameters by state-dict key, PyTorch layout, float32. Buffers are not here: they are recomputed. */
  readonly params: Map<string, tf.Variable>;
  private readonly positionIndex = new Map<number, tf.Tensor2D>();
  private readonly masks = new Map<string, tf.Tensor>();
  private readonly meanTensor: tf.Tensor1D;
  private disposed = false;
  /** The weight hook of the apply() in progress. */
  private weightHook?: WeightHook;

  /**
   * Builds the model from a state dict, refusing it unless it matches `config` key for key and shape for
   * shape (the official `strict=True`). Without a config, the one inferred from the state dict is used.
   */
  constructor(stateDict: StateDict, config?: SwinIRConfig, source?: string) {
    this.config = checkArchitecture(stateDict, config ?? {}, undefined, source);
    this.params = new Map();
    for (const [key, t] of stateDict) {
      if (isBufferKey(key)) continue;
      this.params.set(key, tf.variable(tf.tensor(toFloat32(t, key), t.shape, 'float32')));
    }
    const c = this.config.inChans;
    this.meanTensor = tf.keep(tf.tensor1d(c === 3 ? [...RGB_MEAN] : new Array(c).fill(0), 'float32'));
  }

  /** Every hook site in forward order: Linear and Conv inputs by module path, and the attention tensors. */
  hookSites(): HookSite[] {
    const sites: HookSite[] = [];
    const conv = (site: string) => sites.push({ site, kind: 'conv' });
    const resi = (prefix: string) => {
      if (this.config.resiConnection === '1conv') conv(prefix);
      else for (const i of [0, 2, 4]) conv(`${prefix}.${i}`);
    };
    conv('conv_first');
    this.config.depths.forEach((depth, layer) => {
      for (let block = 0; block < depth; block++) {
        const p = blockPrefix(layer, block);
        sites.push({ site: `${p}.attn.qkv`, kind: 'linear' });
        sites.push({ site: `${p}.attn.q`, kind: 'q' });
        sites.push({ site: `${p}.attn.k`, kind: 'k' });
        sites.push({ site: `${p}.attn.v`, kind: 'v' });
        sites.push({ site: `${p}.attn.attn_map`, kind: 'attn_map' });
        sites.push({ site: `${p}.attn.proj`, kind: 'linear' });
        sites.push({ site: `${p}.mlp.fc1`, kind: 'linear' });
        sites.push({ site: `${p}.mlp.fc2`, kind: 'linear' });
      }
      resi(`layers.${layer}.conv`);
    });
    resi('conv_after_body');
    switch (this.config.upsampler) {
      case 'pixelshuffle':
        conv('conv_before_upsample.0');
        for (const u of classicalUpsampleConvs(this.config.upscale)) conv(`upsample.${u.index}`);
        conv('conv_last');
        break;
      case 'pixelshuffledirect':
        conv('upsample.0');
        break;
      case 'nearest+conv':
        for (const name of ['conv_before_upsample.0', 'conv_up1', 'conv_up2', 'conv_hr', 'conv_last']) conv(name);
        break;
      case '':
        conv('conv_last');
        break;
    }
    return sites;
  }

  /** Replaces a parameter's values (PyTorch layout), e.g. with fake-quantized weights. */
  setParam(key: string, values: Float32Array | tf.Tensor): void {
    const v = this.param(key);
    const t = values instanceof Float32Array ? tf.tensor(values, v.shape) : values;
    if (t.size !== v.size) throw new SwinIRError(`setParam('${key}'): ${t.size} values for shape [${v.shape.join(', ')}]`);
    v.assign(t.reshape(v.shape));
    if (values instanceof Float32Array) t.dispose();
  }

  param(key: string): tf.Variable {
    const p = this.params.get(key);
    if (!p) throw new SwinIRError(`no parameter '${key}' in this model`);
    return p;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.params.values()) v.dispose();
    for (const t of this.positionIndex.values()) t.dispose();
    for (const t of this.masks.values()) t.dispose();
    this.meanTensor.dispose();
  }

  /**
   * The model on an NCHW float32 array: [N, C, H, W] in, [N, C, H*s, W*s] out (unclamped, as official).
   * Optionally captures named stages (NCHW, padded size) and runs activation hooks.
   */
  forward(input: NCHWArray, options: ForwardOptions = {}): ForwardResult {
    const [n, c, h, w] = input.shape;
    if (input.shape.length !== 4 || c !== this.config.inChans || n < 1 || h < 1 || w < 1) {
      throw new SwinIRError(`input shape [${input.shape.join(', ')}] is not [N, ${this.config.inChans}, H, W]`);
    }
    if (input.data.length !== n * c * h * w) {
      throw new SwinIRError(`input has ${input.data.length} values, shape [${input.shape.join(', ')}] needs ${n * c * h * w}`);
    }
    let stages: Map<string, NCHWArray> | undefined;
    let onStage: StageCallback | undefined;
    if (options.stages) {
      const captured = new Map<string, NCHWArray>();
      const wanted = options.stages === true ? null : new Set(options.stages);
      stages = captured;
      onStage = (name, t) => {
        if (wanted === null || wanted.has(name)) captured.set(name, nhwcToNchw(t));
      };
    }
    const out = tf.tidy(() => {
      const x = tf.transpose(tf.tensor4d(input.data, input.shape, 'float32'), [0, 2, 3, 1]) as tf.Tensor4D;
      return tf.transpose(this.apply(x, { hook: options.hook, weightHook: options.weightHook, onStage }), [0, 3, 1, 2]);
    });
    const data = out.dataSync() as Float32Array;
    const shape = out.shape as [number, number, number, number];
    out.dispose();
    return stages ? { data, shape, stages } : { data, shape };
  }

  /**
   * The differentiable forward on an NHWC tensor: [N, H, W, C] -> [N, H*s, W*s, C]. Does not dispose
   * its input; intermediate tensors are freed as it goes (tapes keep what gradients need).
   */
  apply(x: tf.Tensor4D, options: ApplyOptions = {}): tf.Tensor4D {
    if (this.disposed) throw new SwinIRError('this SwinIRModel has been disposed');
    this.weightHook = options.weightHook;
    try {
      return this.applyWith(x, options.hook, options.onStage);
    } finally {
      this.weightHook = undefined;
    }
  }

  private applyWith(x: tf.Tensor4D, hook?: ActivationHook, onStage?: StageCallback): tf.Tensor4D {
    const cfg = this.config;
    const [, h, w] = x.shape;
    const s = cfg.upscale;

    // check_image_size, mean shift, conv_first.
    const shallow = tf.tidy(() => {
      const padded = this.checkImageSize(x);
      onStage?.('input_padded', padded);
      const normalised = tf.mul(tf.sub(padded, this.meanTensor), cfg.imgRange) as tf.Tensor4D;
      const first = this.conv(normalised, 'conv_first', hook);
      onStage?.('conv_first', first);
      return cfg.upsampler === '' ? [first, normalised] : [first];
    });
    const [convFirst, normalisedInput] = shallow;

    const deep = this.forwardFeatures(convFirst, hook, onStage);
    const body = tf.tidy(() => {
      const after = this.residualConv(deep, 'conv_after_body', hook);
      onStage?.('conv_after_body', after);
      const sum = tf.add(after, convFirst) as tf.Tensor4D;
      onStage?.('body_plus_skip', sum);
      return sum;
    });
    deep.dispose();

    const result = tf.tidy(() => {
      let y = this.head(body, normalisedInput, hook, onStage);
      y = tf.add(tf.div(y, cfg.imgRange), this.meanTensor) as tf.Tensor4D;
      if (y.shape[1] !== h * s || y.shape[2] !== w * s) y = tf.slice(y, [0, 0, 0, 0], [-1, h * s, w * s, -1]);
      return y;
    });
    body.dispose();
    convFirst.dispose();
    normalisedInput?.dispose();
    return result;
  }

  /** `check_image_size`: reflect-pad bottom/right to a multiple of window_size (no edge repeat). */
  private checkImageSize(x: tf.Tensor4D): tf.Tensor4D {
    const ws = this.config.windowSize;
    const [, h, w] = x.shape;
    const padH = (ws - (h % ws)) % ws;
    const padW = (ws - (w % ws)) % ws;
    if (padH === 0 && padW === 0) return tf.clone(x);
    if (padH >= h || padW >= w) {
      throw new SwinIRError(`input ${h}x${w} is too small to reflect-pad to a multiple of window ${ws} (pad must be < size, as in F.pad)`);
    }
    return tf.mirrorPad(x, [[0, 0], [0, padH], [0, padW], [0, 0]], 'reflect');
  }

  private forwardFeatures(convFirst: tf.Tensor4D, hook?: ActivationHook, onStage?: StageCallback): tf.Tensor4D {
    const cfg = this.config;
    let x = tf.tidy(() => {
      let t: tf.Tensor4D = convFirst;
      if (cfg.patchNorm) t = this.layerNorm(t, 'patch_embed.norm');
      else t = tf.clone(t);
      if (cfg.ape) {
        const [, h, w, c] = t.shape;
        if (h * w !== cfg.imgSize * cfg.imgSize) {
          throw new SwinIRError(`absolute_pos_embed needs a ${cfg.imgSize}x${cfg.imgSize} padded input, got ${h}x${w}`);
        }
        t = tf.add(t, tf.reshape(this.param('absolute_pos_embed'), [1, h, w, c])) as tf.Tensor4D;
      }
      onStage?.('patch_embed', t);
      return t;
    });
    cfg.depths.forEach((depth, layer) => {
      const rstbInput = x;
      let y = x;
      for (let block = 0; block < depth; block++) {
        const next = tf.tidy(() => this.swinBlock(y, layer, block, hook));
        if (y !== rstbInput) y.dispose();
        y = next;
        onStage?.(`rstb${layer}_block${block}`, y);
      }
      x = tf.tidy(() => {
        const conv = this.residualConv(y, `layers.${layer}.conv`, hook);
        onStage?.(`rstb${layer}_conv`, conv);
        return tf.add(conv, rstbInput) as tf.Tensor4D;
      });
      if (y !== rstbInput) y.dispose();
      rstbInput.dispose();
      onStage?.(`rstb${layer}`, x);
    });
    const normed = tf.tidy(() => this.layerNorm(x, 'norm'));
    x.dispose();
    onStage?.('norm', normed);
    return normed;
  }

  private swinBlock(x: tf.Tensor4D, layer: number, block: number, hook?: ActivationHook): tf.Tensor4D {
    const cfg = this.config;
    const p = blockPrefix(layer, block);
    const [b, h, w, c] = x.shape;
    const { windowSize: ws, shiftSize: shift } = blockGeometry(cfg, block);
    if (h % ws !== 0 || w % ws !== 0) throw new SwinIRError(`${p}: padded size ${h}x${w} is not a multiple of its window ${ws}`);
    const nH = cfg.numHeads[layer];
    const hd = Math.floor(c / nH);
    const n = ws * ws;
    const nW = (h / ws) * (w / ws);
    const bw = b * nW;

    const normed = this.layerNorm(x, `${p}.norm1`);
    const shifted = shift > 0 ? roll2d(normed, -shift) : normed;
    // window_partition: [B, H, W, C] -> [B*nW, N, C], windows row-major.
    let windows: tf.Tensor = tf.reshape(
      tf.transpose(tf.reshape(shifted, [b, h / ws, ws, w / ws, ws, c]), [0, 1, 3, 2, 4, 5]), [bw, n, c]);
    windows = site(hook, `${p}.attn.qkv`, windows, 'linear');
    // One matmul per q/k/v on row slices of qkv.weight: the same sums as the fused [3C] output, without
    // splitting a [.., 3*heads, ..] tensor (slow on wasm).
    const rows = tf.reshape(windows, [bw * n, c]) as tf.Tensor2D;
    const qkvWeight = this.weight(`${p}.attn.qkv`);
    const qkvBias = this.params.get(`${p}.attn.qkv.bias`);
    const toHeads = (part: number) => {
      const w = tf.slice(qkvWeight, [part * c, 0], [c, -1]);
      const bias = qkvBias ? tf.slice(qkvBias, [part * c], [c]) : undefined;
      const out = tf.fused.matMul({ a: rows, b: tf.transpose(w) as tf.Tensor2D, bias });
      return tf.transpose(tf.reshape(out, [bw, n, nH, hd]), [0, 2, 1, 3]);
    };
    const scale = cfg.qkScale || hd ** -0.5;
    const q = site(hook, `${p}.attn.q`, tf.mul(toHeads(0), scale), 'q');
    const k = site(hook, `${p}.attn.k`, toHeads(1), 'k');
    const v = site(hook, `${p}.attn.v`, toHeads(2), 'v');

    let attn: tf.Tensor = tf.matMul(
      tf.reshape(q, [bw * nH, n, hd]) as tf.Tensor3D,
      tf.transpose(tf.reshape(k, [bw * nH, n, hd]), [0, 2, 1]) as tf.Tensor3D,
    );
    attn = tf.add(tf.reshape(attn, [bw, nH, n, n]), this.relativeBias(p, ws, nH));
    if (shift > 0) {
      attn = tf.add(tf.reshape(attn, [b, nW, nH, n, n]), this.attnMask(h, w, ws, shift));
      attn = tf.reshape(attn, [bw, nH, n, n]);
    }
    attn = site(hook, `${p}.attn.attn_map`, tf.softmax(attn), 'attn_map');
    let out: tf.Tensor = tf.matMul(tf.reshape(attn, [bw * nH, n, n]) as tf.Tensor3D, tf.reshape(v, [bw * nH, n, hd]) as tf.Tensor3D);
    out = tf.reshape(tf.transpose(tf.reshape(out, [bw, nH, n, hd]), [0, 2, 1, 3]), [bw, n, c]);
    out = site(hook, `${p}.attn.proj`, out, 'linear');
    out = this.linear(tf.reshape(out, [bw * n, c]), `${p}.attn.proj`);
    // window_reverse, then undo the cyclic shift.
    let merged = tf.reshape(tf.transpose(tf.reshape(out, [b, h / ws, w / ws, ws, ws, c]), [0, 1, 3, 2, 4, 5]), [b, h, w, c]) as tf.Tensor4D;
    if (shift > 0) merged = roll2d(merged, shift);
    const afterAttn = tf.add(x, merged) as tf.Tensor4D;

    let mlpIn: tf.Tensor = tf.reshape(this.layerNorm(afterAttn, `${p}.norm2`), [b, h * w, c]);
    mlpIn = site(hook, `${p}.mlp.fc1`, mlpIn, 'linear');
    const hidden = this.linear(tf.reshape(mlpIn, [b * h * w, c]), `${p}.mlp.fc1`);
    let act: tf.Tensor = tf.reshape(gelu(hidden), [b, h * w, hidden.shape[1]]);
    act = site(hook, `${p}.mlp.fc2`, act, 'linear');
    const mlpOut = this.linear(tf.reshape(act, [b * h * w, hidden.shape[1]]), `${p}.mlp.fc2`);
    return tf.add(afterAttn, tf.reshape(mlpOut, [b, h, w, c])) as tf.Tensor4D;
  }

  /**
   * relative_position_bias_table[relative_position_index] as [heads, N, N]. Done as one-hot @ table so the
   * table gets gradients on wasm too (gather's gradient needs UnsortedSegmentSum, which wasm lacks); each
   * sum has exactly one non-zero term, so the values are the table's exactly.
   */
  private relativeBias(prefix: string, ws: number, heads: number): tf.Tensor3D {
    let selector = this.positionIndex.get(ws);
    if (!selector) {
      const index = relativePositionIndex(ws);
      const rows = (2 * ws - 1) ** 2;
      const oneHot = new Float32Array(index.length * rows);
      index.forEach((row, i) => { oneHot[i * rows + row] = 1; });
      selector = tf.keep(tf.tensor2d(oneHot, [index.length, rows]));
      this.positionIndex.set(ws, selector);
    }
    const n = ws * ws;
    const table = this.param(`${prefix}.attn.relative_position_bias_table`);
    return tf.reshape(tf.transpose(tf.matMul(selector, table)), [heads, n, n]);
  }

  /** calculate_mask for the actual padded size, as [nW, 1, N, N] to broadcast over batch and heads. */
  private attnMask(h: number, w: number, ws: number, shift: number): tf.Tensor {
    const key = `${h}x${w}/${ws}/${shift}`;
    let mask = this.masks.get(key);
    if (!mask) {
      if (this.masks.size >= MASK_CACHE_LIMIT) {
        const [oldest] = this.masks.keys();
        this.masks.get(oldest)!.dispose();
        this.masks.delete(oldest);
      }
      const n = ws * ws;
      mask = tf.keep(tf.tensor4d(calculateAttnMask(h, w, ws, shift), [(h / ws) * (w / ws), 1, n, n]));
      this.masks.set(key, mask);
    }
    return mask;
  }

  private layerNorm(x: tf.Tensor4D, prefix: string): tf.Tensor4D {
    const { mean, variance } = tf.moments(x, -1, true);
    const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, LN_EPS)));
    return tf.add(tf.mul(normed, this.param(`${prefix}.weight`)), this.param(`${prefix}.bias`)) as tf.Tensor4D;
  }

  /** A Linear/Conv weight after the weight hook, PyTorch layout. */
  private weight(module: string): tf.Tensor {
    const w = this.param(`${module}.weight`);
    if (!this.weightHook) return w;
    const replaced = this.weightHook(module, w);
    if (!replaced) return w;
    if (replaced.shape.join() !== w.shape.join()) {
      throw new SwinIRError(`weight hook at ${module} returned shape [${replaced.shape.join(', ')}], expected [${w.shape.join(', ')}]`);
    }
    return replaced;
  }

  /** nn.Linear on [rows, in]: x @ W^T + b (W^T materialised: the wasm fast path wants no transposeB). */
  private linear(x: tf.Tensor, prefix: string): tf.Tensor2D {
    const weight = this.weight(prefix);
    const bias = this.params.get(`${prefix}.bias`);
    return tf.fused.matMul({ a: x as tf.Tensor2D, b: tf.transpose(weight) as tf.Tensor2D, bias }) as tf.Tensor2D;
  }

  /** nn.Conv2d with stride 1 and "same" padding (3x3 pad 1, 1x1 pad 0). */
  private conv(x: tf.Tensor4D, prefix: string, hook?: ActivationHook): tf.Tensor4D {
    const input = site(hook, prefix, x, 'conv') as tf.Tensor4D;
    const filter = tf.transpose(this.weight(prefix), [2, 3, 1, 0]) as tf.Tensor4D;
    // Plain conv2d + add: the wasm FusedConv2D kernel rejects the bias shape tfjs-core hands it.
    return tf.add(conv2dSame(input, filter), this.param(`${prefix}.bias`)) as tf.Tensor4D;
  }

  private residualConv(x: tf.Tensor4D, prefix: string, hook?: ActivationHook): tf.Tensor4D {
    if (this.config.resiConnection === '1conv') return this.conv(x, prefix, hook);
    let y = tf.leakyRelu(this.conv(x, `${prefix}.0`, hook), 0.2) as tf.Tensor4D;
    y = tf.leakyRelu(this.conv(y, `${prefix}.2`, hook), 0.2) as tf.Tensor4D;
    return this.conv(y, `${prefix}.4`, hook);
  }

  /** Conv then PyTorch PixelShuffle, from transposes (tfjs has no gradient for depthToSpace). */
  private convPixelShuffle(x: tf.Tensor4D, prefix: string, factor: number, hook?: ActivationHook): tf.Tensor4D {
    return pixelShuffle(this.conv(x, prefix, hook), factor);
  }

  private head(
    body: tf.Tensor4D, normalisedInput: tf.Tensor4D | undefined,
    hook?: ActivationHook, onStage?: StageCallback,
  ): tf.Tensor4D {
    const cfg = this.config;
    switch (cfg.upsampler) {
      case 'pixelshuffledirect': {
        const y = this.convPixelShuffle(body, 'upsample.0', cfg.upscale, hook);
        onStage?.('upsample', y);
        return y;
      }
      case 'pixelshuffle': {
        let y = tf.leakyRelu(this.conv(body, 'conv_before_upsample.0', hook), 0.01) as tf.Tensor4D;
        onStage?.('conv_before_upsample', y);
        for (const u of classicalUpsampleConvs(cfg.upscale)) y = this.convPixelShuffle(y, `upsample.${u.index}`, u.factor, hook);
        y = this.conv(y, 'conv_last', hook);
        onStage?.('conv_last', y);
        return y;
      }
      case 'nearest+conv': {
        let y = tf.leakyRelu(this.conv(body, 'conv_before_upsample.0', hook), 0.01) as tf.Tensor4D;
        onStage?.('conv_before_upsample', y);
        for (const name of ['conv_up1', 'conv_up2']) {
          const up = tf.image.resizeNearestNeighbor(y, [y.shape[1] * 2, y.shape[2] * 2]);
          y = tf.leakyRelu(this.conv(up, name, hook), 0.2) as tf.Tensor4D;
          onStage?.(name, y);
        }
        y = this.conv(tf.leakyRelu(this.conv(y, 'conv_hr', hook), 0.2) as tf.Tensor4D, 'conv_last', hook);
        onStage?.('conv_last', y);
        return y;
      }
      case '': {
        // Denoising/JPEG: x + conv_last(res), with x the mean-shifted input.
        const y = this.conv(body, 'conv_last', hook);
        onStage?.('conv_last', y);
        return tf.add(normalisedInput!, y) as tf.Tensor4D;
      }
    }
  }
}

function site(hook: ActivationHook | undefined, name: string, x: tf.Tensor, kind: SiteKind): tf.Tensor {
  if (!hook) return x;
  const replaced = hook(name, x, kind);
  if (!replaced) return x;
  if (replaced.shape.join() !== x.shape.join()) {
    throw new SwinIRError(`hook at ${name} returned shape [${replaced.shape.join(', ')}], expected [${x.shape.join(', ')}]`);
  }
  return replaced;
}

/**
 * Stride-1 "same" conv2d. On wasm, which has no Conv2DBackpropFilter kernel, the filter gradient is built
 * from one matmul per kernel tap; elsewhere tfjs's own gradients are used.
 */
function conv2dSame(x: tf.Tensor4D, filter: tf.Tensor4D): tf.Tensor4D {
  return tf.getBackend() === 'wasm' ? conv2dSameWasm(x, filter) : tf.conv2d(x, filter, 1, 'same');
}

const conv2dSameWasm = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, filter, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
  save([x, filter]);
  return {
    value: tf.conv2d(x, filter, 1, 'same'),
    gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
      const [input, kernel] = saved as [tf.Tensor4D, tf.Tensor4D];
      const dy4 = dy;
      const dx = tf.conv2dTranspose(dy4, kernel, input.shape, 1, 'same');
      const [kh, kw, inC, outC] = kernel.shape;
      const [b, h, w] = input.shape;
      const top = Math.floor((kh - 1) / 2);
      const left = Math.floor((kw - 1) / 2);
      const padded = tf.pad(input, [[0, 0], [top, kh - 1 - top], [left, kw - 1 - left], [0, 0]]);
      const dyRows = tf.reshape(dy4, [b * h * w, outC]);
      const taps: tf.Tensor[] = [];
      for (let i = 0; i < kh; i++) {
        for (let j = 0; j < kw; j++) {
          const shifted = tf.reshape(tf.slice(padded, [0, i, j, 0], [b, h, w, inC]), [b * h * w, inC]);
          taps.push(tf.matMul(tf.transpose(shifted), dyRows));
        }
      }
      return [dx, tf.reshape(tf.stack(taps), [kh, kw, inC, outC])];
    },
  };
}) as (x: tf.Tensor4D, filter: tf.Tensor4D) => tf.Tensor4D;

/** torch.roll(x, (shift, shift), dims=(1, 2)) on NHWC. */
function roll2d(x: tf.Tensor4D, shift: number): tf.Tensor4D {
  return rollAxis(rollAxis(x, shift, 1), shift, 2);
}

function rollAxis(x: tf.Tensor4D, shift: number, axis: 1 | 2): tf.Tensor4D {
  const size = x.shape[axis];
  const k = ((shift % size) + size) % size;
  if (k === 0) return x;
  const begin = [0, 0, 0, 0];
  const len = [-1, -1, -1, -1];
  len[axis] = size - k;
  const head = tf.slice(x, begin, len);
  const tailBegin = [0, 0, 0, 0];
  tailBegin[axis] = size - k;
  const tail = tf.slice(x, tailBegin, [-1, -1, -1, -1]);
  return tf.concat([tail, head], axis) as tf.Tensor4D;
}

/** nn.GELU() (exact): x * 0.5 * (1 + erf(x / sqrt(2))), in PyTorch's operation order. */
function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
}

/**
 * nn.PixelShuffle(r) on NHWC. PyTorch reads input channel c*r*r + i*r + j for output channel c at offset
 * (i, j): regroup channels to (i, j, c), then move i next to H and j next to W. Rank <= 4 transposes only,
 * which the wasm backend runs fast.
 */
export function pixelShuffle(x: tf.Tensor4D, r: number): tf.Tensor4D {
  const [b, h, w, channels] = x.shape;
  const c = channels / (r * r);
  const grouped = tf.transpose(tf.reshape(x, [b * h * w, c, r * r]), [0, 2, 1]); // (i, j, c)
  const rows = tf.transpose(tf.reshape(grouped, [b * h, w, r, r * c]), [0, 2, 1, 3]); // [b*h, i, w, (j, c)]
  return tf.reshape(rows, [b, h * r, w * r, c]);
}
