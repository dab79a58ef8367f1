/**
 * SwinIR as a static ONNX graph, built from a config and a PyTorch state dict.
 *
 * The graph follows the official forward (JingyunLiang/SwinIR models/network_swinir.py) step by step; see
 * docs/engine.md for the formulation and the measurements behind each choice. The shape is fixed per graph
 * (height x width, batch optionally symbolic), so every window bias and shift mask is a constant computed here.
 */
import type { StateDict } from '@harmoq/torch-io';
import { NUM_FEAT, blockGeometry, calculateAttnMask, classicalUpsampleConvs, relativePositionIndex } from '../architecture';
import { RGB_MEAN, type SwinIRConfig } from '../config';
import { toFloat32 } from '../model';
import { GraphBuilder, attr } from './graph-builder';

/**
 * What a site's tensor holds. In `shape`, -1 is the dimension that grows with the batch and -2 a spatial
 * dimension that differs between conv sites (before/after pixel shuffle).
 */
export interface SiteInfo {
  kind: 'linear_input' | 'linear_weight' | 'attention' | 'conv_input' | 'conv_weight';
  shape: number[];
  /** Axis names of `shape`, e.g. ['token', 'in_features'] or ['window', 'head', 'token', 'head_dim']. */
  layout: string[];
}

/**
 * Insertion hook for fake-quantization and similar rewrites. Called once per site with the name of the tensor
 * there; returns the tensor that replaces it downstream (return `tensorName` to leave the site alone).
 * Sites, named as in the tfjs reference's `hookSites()` (per block p = `layers.{i}.residual_group.blocks.{j}`):
 * - Linear inputs `p.attn.qkv`, `p.attn.proj`, `p.mlp.fc1`, `p.mlp.fc2`: 2-D [tokens, in_features]; tokens are
 *   in window order (a permutation of the image's pixels), so per-tensor and per-channel statistics are exact.
 * - Linear weights `<linear>.weight`: the [out, in] initializer, PyTorch layout (q rows unscaled).
 * - `p.attn.q` (after the head_dim^-0.5 scaling), `p.attn.k`, `p.attn.v`: [heads, windows, N, head_dim];
 *   `p.attn.attn_map` (after softmax): [heads, windows, N, N]. Heads come first (the tfjs reference has
 *   windows first); `SiteInfo.layout` names the axes.
 * - Conv inputs by module path (`conv_first`, `layers.{i}.conv`, `conv_after_body`, `upsample.0`, ...): NCHW;
 *   conv weights `<conv>.weight`: [out, in, k, k].
 * Sites come in forward order. A hook adds its nodes with `graph.addNode`/`graph.op` and constants with
 * `graph.constant`/`graph.addInitializer`.
 */
export type SiteHook = (siteName: string, tensorName: string, graph: GraphBuilder, info: SiteInfo) => string;

export interface SwinIROnnxOptions {
  /** Input height and width of the graph. Sizes that are not multiples of the window are reflect-padded inside. */
  height: number;
  width: number;
  /** Fixed batch size; by default the batch dimension is symbolic ('batch'). */
  batch?: number;
  sites?: SiteHook;
  /** 'erf' writes x*0.5*(1+erf(x/sqrt2)) (opset 17, fused by onnxruntime); 'gelu' uses the opset-20 Gelu op. */
  gelu?: 'erf' | 'gelu';
  /** Fold head_dim^-0.5 into the q rows of qkv when no weight site rewrites it (default true). */
  foldQScale?: boolean;
  /**
   * 'separate' adds the (heads,N,N) bias and then the (nW,1,N,N) mask; 'combined' adds one (nW,heads,N,N)
   * constant per shifted block (fewer passes, more memory); 'auto' (default) combines while it stays small.
   */
  biasMask?: 'separate' | 'combined' | 'auto';
  /**
   * 'matmul' (default): explicit MatMul/Add/Softmax ops, which the q/k/v/attn_map sites need; 'fused':
   * onnxruntime's com.microsoft MultiHeadAttention with bias+mask as one (nW, heads, N, N) constant per
   * shifted block (no faster on CPU, see docs/engine.md, and much larger for big inputs).
   */
  attention?: 'matmul' | 'fused';
  /** 'gather' (default): one Gather per block between window orders; 'reshape': roll + partition per block. */
  windowOrder?: 'gather' | 'reshape';
}

/** Thrown when a config, state dict or size cannot be turned into a graph. */
export class OnnxGraphError extends Error {
  override name = 'OnnxGraphError';
}

const LN_EPS = 1e-5;
const COMBINED_MASK_LIMIT_BYTES = 8 * 1024 * 1024;

/** Height/width after `check_image_size`: rounded up to a multiple of window_size. */
export function paddedSize(size: number, windowSize: number): number {
  return Math.ceil(size / windowSize) * windowSize;
}

/**
 * `table[relative_position_index].view(N, N, heads).permute(2, 0, 1)`: the (heads, N, N) bias added to q k^T.
 * `table` is a block's `relative_position_bias_table`, ((2ws-1)^2, heads), row-major.
 */
export function relativePositionBias(table: Float32Array, heads: number, ws: number): Float32Array {
  const n = ws * ws;
  const index = relativePositionIndex(ws);
  const bias = new Float32Array(heads * n * n);
  for (let h = 0; h < heads; h++) {
    for (let k = 0; k < n * n; k++) bias[h * n * n + k] = table[index[k] * heads + h];
  }
  return bias;
}

class ParamReader {
  constructor(private readonly stateDict: StateDict) {}

  has(key: string): boolean {
    return this.stateDict.has(key);
  }

  get(key: string, shape: number[]): Float32Array {
    const t = this.stateDict.get(key);
    if (!t) throw new OnnxGraphError(`state dict has no '${key}' (expected shape [${shape}])`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new OnnxGraphError(`'${key}' has shape [${t.shape}], expected [${shape}]`);
    }
    return toFloat32(t, key);
  }
}

/**
 * Builds the ONNX ModelProto (opset 17, or 20 with `gelu: 'gelu'`) of SwinIR for one input size.
 * Input 'input' [batch, in_chans, height, width] float32 in 0..1; output 'output'
 * [batch, in_chans, height*upscale, width*upscale], unclamped, exactly as the official forward.
 */
export function buildSwinIROnnx(config: SwinIRConfig, stateDict: StateDict, options: SwinIROnnxOptions): Uint8Array {
  const { height, width } = options;
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new OnnxGraphError(`input size ${height}x${width} is not a positive integer size`);
  }
  const g = new GraphBuilder('swinir');
  const ctx = new SwinIRGraph(config, new ParamReader(stateDict), g, options);
  const batchDim = options.batch ?? 'batch';
  const input = g.addInput('input', 'float32', [batchDim, config.inChans, height, width]);
  const output = ctx.forward(input);
  const s = config.upsampler === '' ? 1 : config.upscale;
  g.addOutput(output, 'float32', [batchDim, config.inChans, height * s, width * s], 'output');
  return g.toModel({
    opset: options.gelu === 'gelu' ? 20 : 17,
    docString: `SwinIR ${config.upsampler || 'restoration'} x${s}, input ${height}x${width}`,
    metadata: { swinir_config: JSON.stringify(config), input_size: `${height}x${width}` },
  });
}

class SwinIRGraph {
  private readonly hp: number;
  private readonly wp: number;
  private readonly e: number;
  private readonly sites: SiteHook;
  private readonly expandShapes = new Map<string, string>();
  private readonly permutations = new Map<string, Int32Array>();
  private readonly maskData = new Map<string, Float32Array>();
  private readonly maskConstants = new Map<Float32Array, string>();
  private ones?: string;

  constructor(
    private readonly cfg: SwinIRConfig,
    private readonly params: ParamReader,
    private readonly g: GraphBuilder,
    private readonly opts: SwinIROnnxOptions,
  ) {
    this.hp = paddedSize(opts.height, cfg.windowSize);
    this.wp = paddedSize(opts.width, cfg.windowSize);
    this.e = cfg.embedDim;
    this.sites = opts.sites ?? ((_site, tensor) => tensor);
    if (cfg.depths.length !== cfg.numHeads.length) {
      throw new OnnxGraphError(`depths [${cfg.depths}] and num_heads [${cfg.numHeads}] differ in length`);
    }
  }

  private geometry(blockIndex: number): { ws: number; shift: number } {
    const { windowSize, shiftSize } = blockGeometry(this.cfg, blockIndex);
    return { ws: windowSize, shift: shiftSize };
  }

  forward(input: string): string {
    const { cfg, g } = this;
    const x = this.checkImageSize(input);
    const mean = cfg.inChans === 3 ? g.constant(Float32Array.from(RGB_MEAN), [1, 3, 1, 1], 'rgb_mean') : null;
    let normed = mean ? g.op('Sub', [x, mean]) : x;
    if (cfg.imgRange !== 1) normed = g.op('Mul', [normed, g.scalar(cfg.imgRange, 'img_range')]);

    let out: string;
    const features = (first: string) => g.op('Add', [this.residualConv(this.forwardFeatures(first), 'conv_after_body'), first]);
    switch (cfg.upsampler) {
      case 'pixelshuffledirect': {
        const first = this.conv(normed, 'conv_first', this.e, cfg.inChans);
        out = this.conv(features(first), 'upsample.0', cfg.inChans * cfg.upscale ** 2, this.e);
        out = g.op('DepthToSpace', [out], { blocksize: cfg.upscale, mode: 'CRD' });
        break;
      }
      case 'pixelshuffle': {
        const first = this.conv(normed, 'conv_first', this.e, cfg.inChans);
        out = this.leakyRelu(this.conv(features(first), 'conv_before_upsample.0', NUM_FEAT, this.e), 0.01);
        out = this.conv(this.upsample(out), 'conv_last', cfg.inChans, NUM_FEAT);
        break;
      }
      case 'nearest+conv': {
        if (cfg.upscale !== 4) {
          // The official constructor asserts upscale == 4 ('only support x4 now').
          throw new OnnxGraphError(`upsampler 'nearest+conv' supports upscale 4 only, got ${cfg.upscale}`);
        }
        const first = this.conv(normed, 'conv_first', this.e, cfg.inChans);
        out = this.leakyRelu(this.conv(features(first), 'conv_before_upsample.0', NUM_FEAT, this.e), 0.01);
        const nearest2x = (t: string) => g.op('Resize', [t, '', g.constant(new Float32Array([1, 1, 2, 2]), [4], 'scales')], {
          mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor',
        });
        out = this.leakyRelu(this.conv(nearest2x(out), 'conv_up1', NUM_FEAT, NUM_FEAT), 0.2);
        out = this.leakyRelu(this.conv(nearest2x(out), 'conv_up2', NUM_FEAT, NUM_FEAT), 0.2);
        out = this.conv(this.leakyRelu(this.conv(out, 'conv_hr', NUM_FEAT, NUM_FEAT), 0.2), 'conv_last', cfg.inChans, NUM_FEAT);
        break;
      }
      case '': {
        const first = this.conv(normed, 'conv_first', this.e, cfg.inChans);
        out = g.op('Add', [normed, this.conv(features(first), 'conv_last', cfg.inChans, this.e)]);
        break;
      }
      default:
        throw new OnnxGraphError(`unknown upsampler '${String(cfg.upsampler)}' (choices: pixelshuffledirect, pixelshuffle, nearest+conv, '')`);
    }
    if (cfg.imgRange !== 1) out = g.op('Div', [out, g.scalar(cfg.imgRange, 'img_range')]);
    if (mean) out = g.op('Add', [out, mean]);
    return this.crop(out);
  }

  /** `check_image_size`: reflect pad (no edge repeat) bottom/right up to a multiple of window_size. */
  private checkImageSize(input: string): string {
    const { height, width } = this.opts;
    const padH = this.hp - height, padW = this.wp - width;
    if (padH === 0 && padW === 0) return input;
    if (padH >= height || padW >= width) {
      throw new OnnxGraphError(
        `input ${height}x${width} is too small to reflect-pad to ${this.hp}x${this.wp} ` +
        `(reflect padding must be smaller than the size, as in PyTorch)`);
    }
    return this.g.op('Pad', [input, this.g.int64([0, 0, 0, 0, 0, 0, padH, padW])], { mode: 'reflect' });
  }

  private crop(out: string): string {
    const s = this.cfg.upsampler === '' ? 1 : this.cfg.upscale;
    if (this.hp === this.opts.height && this.wp === this.opts.width) return out;
    return this.g.op('Slice', [out, this.g.int64([0, 0]), this.g.int64([this.opts.height * s, this.opts.width * s]), this.g.int64([2, 3])]);
  }

  /** nn.Conv2d (stride 1, same padding); its NCHW input and [out, in, k, k] weight pass their sites. */
  private conv(x: string, key: string, outCh: number, inCh: number, kernel = 3): string {
    const { g } = this;
    const wShape = [outCh, inCh, kernel, kernel];
    const xIn = this.sites(key, x, g, { kind: 'conv_input', shape: [-1, inCh, -2, -2], layout: ['batch', 'channel', 'height', 'width'] });
    const w = g.addInitializer(`${key}.weight`, this.params.get(`${key}.weight`, wShape), wShape);
    const wOut = this.sites(`${key}.weight`, w, g, { kind: 'conv_weight', shape: wShape, layout: ['out_channels', 'in_channels', 'kh', 'kw'] });
    const b = g.addInitializer(`${key}.bias`, this.params.get(`${key}.bias`, [outCh]), [outCh]);
    const p = (kernel - 1) / 2;
    return g.op('Conv', [xIn, wOut, b], { kernel_shape: [kernel, kernel], pads: [p, p, p, p], strides: [1, 1] }, key);
  }

  private leakyRelu(x: string, slope: number): string {
    return this.g.op('LeakyRelu', [x], { alpha: attr.float(slope) });
  }

  /** Official `Upsample`: n x (conv 64->256 + PixelShuffle(2)) for 2^n, or conv 64->576 + PixelShuffle(3). */
  private upsample(x: string): string {
    let convs: ReturnType<typeof classicalUpsampleConvs>;
    try {
      convs = classicalUpsampleConvs(this.cfg.upscale);
    } catch (err) {
      throw new OnnxGraphError((err as Error).message);
    }
    for (const { index, outChannels, factor } of convs) {
      x = this.g.op('DepthToSpace', [this.conv(x, `upsample.${index}`, outChannels, NUM_FEAT)], { blocksize: factor, mode: 'CRD' });
    }
    return x;
  }

  private layerNorm(x: string, key: string): string {
    const scale = this.g.addInitializer(`${key}.weight`, this.params.get(`${key}.weight`, [this.e]), [this.e]);
    const bias = this.g.addInitializer(`${key}.bias`, this.params.get(`${key}.bias`, [this.e]), [this.e]);
    return this.g.op('LayerNormalization', [x, scale, bias], { axis: -1, epsilon: attr.float(LN_EPS) }, key);
  }

  /** NCHW feature map -> tokens as a 2-D [B*H*W, C] matrix, row-major over (b, h, w). */
  private embed(x: string): string {
    const t = this.g.op('Transpose', [x], { perm: [0, 2, 3, 1] });
    return this.g.op('Reshape', [t, this.g.int64([-1, this.e])]);
  }

  private unembed(tokens: string): string {
    const t = this.g.op('Reshape', [tokens, this.g.int64([-1, this.hp, this.wp, this.e])]);
    return this.g.op('Transpose', [t], { perm: [0, 3, 1, 2] });
  }

  private forwardFeatures(x: string): string {
    const { cfg, g } = this;
    let tokens = this.embed(x);
    if (cfg.patchNorm) tokens = this.layerNorm(tokens, 'patch_embed.norm');
    if (cfg.ape) tokens = this.absolutePositionEmbedding(tokens);
    for (let i = 0; i < cfg.depths.length; i++) {
      const rstbInput = tokens;
      if (this.opts.windowOrder === 'reshape') {
        for (let j = 0; j < cfg.depths[i]; j++) {
          tokens = this.swinBlock(tokens, `layers.${i}.residual_group.blocks.${j}`, cfg.numHeads[i], this.geometry(j), false);
        }
      } else {
        // The stream stays in the current block's window order; one Gather moves it to the next block's order.
        let order: Int32Array | null = null;
        for (let j = 0; j < cfg.depths[i]; j++) {
          const { ws, shift } = this.geometry(j);
          const perm = this.windowPermutation(ws, shift);
          tokens = this.reorder(tokens, order, perm);
          order = perm;
          tokens = this.swinBlock(tokens, `layers.${i}.residual_group.blocks.${j}`, cfg.numHeads[i], { ws, shift }, true);
        }
        tokens = this.reorder(tokens, order, null);
      }
      const conv = this.residualConv(this.unembed(tokens), `layers.${i}.conv`);
      tokens = g.op('Add', [this.embed(conv), rstbInput]);
    }
    tokens = this.layerNorm(tokens, 'norm');
    return this.unembed(tokens);
  }

  private absolutePositionEmbedding(tokens: string): string {
    const n = this.cfg.imgSize * this.cfg.imgSize;
    if (this.hp * this.wp !== n) {
      // x + absolute_pos_embed only broadcasts when L equals img_size^2, as in the official forward.
      throw new OnnxGraphError(
        `ape=true needs ${n} tokens (img_size ${this.cfg.imgSize}^2) but the padded input ${this.hp}x${this.wp} has ${this.hp * this.wp}`);
    }
    const pos = this.g.addInitializer('absolute_pos_embed', this.params.get('absolute_pos_embed', [1, n, this.e]), [1, n, this.e]);
    const b = this.g.op('Reshape', [tokens, this.g.int64([-1, n, this.e])]);
    return this.g.op('Reshape', [this.g.op('Add', [b, pos]), this.g.int64([-1, this.e])]);
  }

  /** RSTB conv: '1conv' = 3x3; '3conv' = 3x3 (dim/4), LReLU .2, 1x1, LReLU .2, 3x3 (dim). */
  private residualConv(x: string, key: string): string {
    if (this.cfg.resiConnection === '1conv') return this.conv(x, key, this.e, this.e);
    if (this.cfg.resiConnection === '3conv') {
      const q = Math.floor(this.e / 4); // dim // 4
      let y = this.leakyRelu(this.conv(x, `${key}.0`, q, this.e), 0.2);
      y = this.leakyRelu(this.conv(y, `${key}.2`, q, q, 1), 0.2);
      return this.conv(y, `${key}.4`, this.e, q);
    }
    throw new OnnxGraphError(`unknown resi_connection '${String(this.cfg.resiConnection)}' (choices: 1conv, 3conv)`);
  }

  /** torch.roll(x, shift, dim=axis) on a static axis of length n, as Slice + Concat. */
  private roll(x: string, shift: number, axis: number, n: number): string {
    const k = (((-shift) % n) + n) % n;
    if (k === 0) return x;
    const a = this.g.op('Slice', [x, this.g.int64([k]), this.g.int64([n]), this.g.int64([axis])]);
    const b = this.g.op('Slice', [x, this.g.int64([0]), this.g.int64([k]), this.g.int64([axis])]);
    return this.g.op('Concat', [a, b], { axis });
  }

  /** Tokens in (b, h, w) order -> rolled by -shift -> window-partitioned (b, window, token) order, 2-D. */
  private toWindows(tokens: string, ws: number, shift: number): string {
    const { g, hp, wp, e } = this;
    let x = g.op('Reshape', [tokens, g.int64([-1, hp, wp, e])]);
    if (shift) x = this.roll(this.roll(x, -shift, 1, hp), -shift, 2, wp);
    x = g.op('Reshape', [x, g.int64([-1, hp / ws, ws, wp / ws, ws, e])]);
    x = g.op('Transpose', [x], { perm: [0, 1, 3, 2, 4, 5] });
    return g.op('Reshape', [x, g.int64([-1, e])]);
  }

  private fromWindows(tokens: string, ws: number, shift: number): string {
    const { g, hp, wp, e } = this;
    let x = g.op('Reshape', [tokens, g.int64([-1, hp / ws, wp / ws, ws, ws, e])]);
    x = g.op('Transpose', [x], { perm: [0, 1, 3, 2, 4, 5] });
    x = g.op('Reshape', [x, g.int64([-1, hp, wp, e])]);
    if (shift) x = this.roll(this.roll(x, shift, 1, hp), shift, 2, wp);
    return g.op('Reshape', [x, g.int64([-1, e])]);
  }

  /** nn.Linear on 2-D tokens as Gemm(transB) on the [out, in] weight; input and weight pass their sites. */
  private linear(x: string, key: string, outF: number, inF: number): string {
    const { g } = this;
    const xIn = this.sites(key, x, g, { kind: 'linear_input', shape: [-1, inF], layout: ['token', 'in_features'] });
    const wName = g.addInitializer(`${key}.weight`, this.params.get(`${key}.weight`, [outF, inF]), [outF, inF]);
    const wOut = this.sites(`${key}.weight`, wName, g, { kind: 'linear_weight', shape: [outF, inF], layout: ['out_features', 'in_features'] });
    const bName = g.addInitializer(`${key}.bias`, this.params.get(`${key}.bias`, [outF]), [outF]);
    return g.op('Gemm', [xIn, wOut, bName], { transB: 1 }, key);
  }

  private gelu(x: string): string {
    const { g } = this;
    if (this.opts.gelu === 'gelu') return g.op('Gelu', [x], { approximate: 'none' });
    const erf = g.op('Erf', [g.op('Div', [x, g.scalar(Math.SQRT2, 'sqrt2')])]);
    return g.op('Mul', [g.op('Mul', [x, g.op('Add', [erf, g.scalar(1, 'one')])]), g.scalar(0.5, 'half')]);
  }

  /**
   * Window position p -> spatial token index (h*W + w) for a block: `window_partition(roll(x, -shift))`,
   * windows row-major, tokens row-major inside a window.
   */
  private windowPermutation(ws: number, shift: number): Int32Array {
    const key = `${ws}/${shift}`;
    let perm = this.permutations.get(key);
    if (perm) return perm;
    const { hp, wp } = this;
    if (hp % ws !== 0 || wp % ws !== 0) throw new OnnxGraphError(`padded size ${hp}x${wp} is not a multiple of the block window ${ws}`);
    perm = new Int32Array(hp * wp);
    let p = 0;
    for (let wh = 0; wh < hp / ws; wh++) {
      for (let ww = 0; ww < wp / ws; ww++) {
        for (let i = 0; i < ws; i++) {
          for (let j = 0; j < ws; j++) perm[p++] = ((wh * ws + i + shift) % hp) * wp + ((ww * ws + j + shift) % wp);
        }
      }
    }
    this.permutations.set(key, perm);
    return perm;
  }

  /** Moves a stream held in `from` order (null = spatial) to `to` order (null = spatial) with one Gather. */
  private reorder(tokens: string, from: Int32Array | null, to: Int32Array | null): string {
    const L = this.hp * this.wp;
    let inverse: Int32Array | null = null;
    if (from) {
      inverse = new Int32Array(L);
      from.forEach((spatial, p) => { inverse![spatial] = p; });
    }
    const index = new BigInt64Array(L);
    let identity = true;
    for (let p = 0; p < L; p++) {
      const spatial = to ? to[p] : p;
      const src = inverse ? inverse[spatial] : spatial;
      index[p] = BigInt(src);
      if (src !== p) identity = false;
    }
    if (identity) return tokens;
    const { g } = this;
    const b = g.op('Reshape', [tokens, g.int64([-1, L, this.e])]);
    const gathered = g.op('Gather', [b, g.constant(index, [L], 'window_order')], { axis: 1 });
    return g.op('Reshape', [gathered, g.int64([-1, this.e])]);
  }


  private swinBlock(tokens: string, key: string, heads: number, { ws, shift }: { ws: number; shift: number }, windowOrdered: boolean): string {
    const { g, hp, wp, e } = this;
    if (hp % ws !== 0 || wp % ws !== 0) {
      throw new OnnxGraphError(`padded size ${hp}x${wp} is not a multiple of the block window ${ws} in ${key}`);
    }
    if (e % heads !== 0) throw new OnnxGraphError(`embed_dim ${e} is not divisible by num_heads ${heads} in ${key}`);
    const normed = this.layerNorm(tokens, `${key}.norm1`);
    const windows = windowOrdered ? normed : this.toWindows(normed, ws, shift);
    const table = this.params.get(`${key}.attn.relative_position_bias_table`, [(2 * ws - 1) ** 2, heads]);
    const geometry: AttentionGeometry = {
      key, heads, n: ws * ws, nW: (hp / ws) * (wp / ws),
      bias: relativePositionBias(table, heads, ws),
      mask: shift ? this.shiftMask(ws, shift) : null,
      scale: this.cfg.qkScale || (e / heads) ** -0.5, // qk_scale or head_dim ** -0.5
    };
    let y = this.useFusedAttention() ? this.fusedAttention(windows, geometry) : this.explicitAttention(windows, geometry);
    y = this.linear(y, `${key}.attn.proj`, e, e);
    const x = g.op('Add', [tokens, windowOrdered ? y : this.fromWindows(y, ws, shift)]);

    const hidden = Math.floor(e * this.cfg.mlpRatio); // int(dim * mlp_ratio)
    let m = this.linear(this.layerNorm(x, `${key}.norm2`), `${key}.mlp.fc1`, hidden, e);
    m = this.linear(this.gelu(m), `${key}.mlp.fc2`, e, hidden);
    return g.op('Add', [x, m]);
  }

  private useFusedAttention(): boolean {
    const mode = this.opts.attention ?? 'matmul';
    if (mode !== 'matmul' && mode !== 'fused') throw new OnnxGraphError(`unknown attention '${String(mode)}' (choices: matmul, fused)`);
    if (mode === 'fused' && this.opts.sites) {
      throw new OnnxGraphError(`attention 'fused' has no q/k/v/attn_map tensors for sites; use 'matmul'`);
    }
    return mode === 'fused';
  }

  /** qkv weight and bias (zeros when qkv_bias=False), PyTorch layout, and whether the weight site kept them. */
  private qkvParams(x: string, key: string): { xIn: string; w: Float32Array; b: Float32Array; hooked: string | null } {
    const { g, e } = this;
    const lk = `${key}.attn.qkv`;
    const xIn = this.sites(lk, x, g, { kind: 'linear_input', shape: [-1, e], layout: ['token', 'in_features'] });
    const w = this.params.get(`${lk}.weight`, [3 * e, e]);
    const b = this.params.has(`${lk}.bias`) ? this.params.get(`${lk}.bias`, [3 * e]) : new Float32Array(3 * e);
    const wName = g.addInitializer(`${lk}.weight`, w, [3 * e, e]);
    const wOut = this.sites(`${lk}.weight`, wName, g, { kind: 'linear_weight', shape: [3 * e, e], layout: ['out_features', 'in_features'] });
    if (wOut !== wName) return { xIn, w, b, hooked: wOut };
    g.removeInitializer(wName); // re-laid out below as per-head constants
    return { xIn, w, b, hooked: null };
  }

  /**
   * Window attention with q, k, v produced head-major ([heads, windows, N, head_dim]) by one batched MatMul
   * per projection against per-head slices of qkv.weight, the bias riding along as an extra weight row met by
   * a ones column. Only the output needs a transpose back to tokens. q k^T, bias, mask and softmax stay
   * separate ops so the q/k/v/attn_map sites see the official tensors.
   */
  private explicitAttention(x: string, a: AttentionGeometry): string {
    const { g, e } = this;
    const { key, heads, n, nW } = a;
    const hd = e / heads;
    const { xIn, w, b, hooked } = this.qkvParams(x, key);
    const xAug = g.op('Concat', [xIn, this.onesColumn()], { axis: 1 });
    let weights: string[];
    const foldScale = hooked === null && this.opts.foldQScale !== false;
    if (hooked === null) {
      // part p in {q, k, v}: [heads, E+1, hd] with [h][i][d] = W[(p*heads + h)*hd + d][i] and row E the bias.
      weights = ['q', 'k', 'v'].map((name, part) => {
        const f = part === 0 && foldScale ? a.scale : 1;
        const t = new Float32Array(heads * (e + 1) * hd);
        for (let h = 0; h < heads; h++) {
          for (let d = 0; d < hd; d++) {
            const row = (part * heads + h) * hd + d;
            t[(h * (e + 1) + e) * hd + d] = Math.fround(b[row] * f);
            for (let i = 0; i < e; i++) t[(h * (e + 1) + i) * hd + d] = Math.fround(w[row * e + i] * f);
          }
        }
        return g.constant(t, [heads, e + 1, hd], `${key}.attn.qkv.${name}_heads`);
      });
    } else {
      // The same layout computed from the rewritten weight (onnxruntime folds it when it is constant).
      const wh = g.op('Transpose', [g.op('Reshape', [hooked, g.int64([3 * heads, hd, e])])], { perm: [0, 2, 1] });
      const bh = g.constant(b, [3 * heads, 1, hd], `${key}.attn.qkv.bias_heads`);
      const both = g.op('Concat', [wh, bh], { axis: 1 });
      weights = g.addNode({ op: 'Split', inputs: [both, g.int64([heads, heads, heads])], attrs: { axis: 0 }, outputs: 3 });
    }
    const project = (wt: string) => g.op('Reshape', [g.op('MatMul', [xAug, wt]), g.int64([heads, -1, n, hd])]);
    const info: SiteInfo = { kind: 'attention', shape: [heads, -1, n, hd], layout: ['head', 'window', 'token', 'head_dim'] };
    let q = project(weights[0]);
    if (!foldScale) q = g.op('Mul', [q, g.scalar(a.scale, 'q_scale')]);
    q = this.sites(`${key}.attn.q`, q, g, info);
    const k = this.sites(`${key}.attn.k`, project(weights[1]), g, info);
    const v = this.sites(`${key}.attn.v`, project(weights[2]), g, info);

    let scores = g.op('MatMul', [q, g.op('Transpose', [k], { perm: [0, 1, 3, 2] })], undefined, `${key}.attn.qk`);
    if (!a.mask) {
      scores = g.op('Add', [scores, g.constant(a.bias, [heads, 1, n, n], `${key}.attn.bias`)]);
    } else {
      const mode = this.opts.biasMask ?? 'auto';
      const combine = mode === 'combined' || (mode === 'auto' && nW * heads * n * n * 4 <= COMBINED_MASK_LIMIT_BYTES);
      if (combine) {
        const c = g.constant(this.combinedBiasMask(a.bias, a.mask, heads, n, nW, 'head-major'), [heads, 1, nW, n, n], `${key}.attn.bias_mask`);
        scores = g.op('Add', [g.op('Reshape', [scores, g.int64([heads, -1, nW, n, n])]), c]);
      } else {
        scores = g.op('Add', [scores, g.constant(a.bias, [heads, 1, n, n], `${key}.attn.bias`)]);
        scores = g.op('Add', [g.op('Reshape', [scores, g.int64([heads, -1, nW, n, n])]), this.maskConstant(a.mask, nW, n)]);
      }
      scores = g.op('Reshape', [scores, g.int64([heads, -1, n, n])]);
    }
    let attn = g.op('Softmax', [scores], { axis: -1 }, `${key}.attn.softmax`);
    attn = this.sites(`${key}.attn.attn_map`, attn, g, { kind: 'attention', shape: [heads, -1, n, n], layout: ['head', 'window', 'query', 'key'] });
    const y = g.op('MatMul', [attn, v], undefined, `${key}.attn.av`);
    return g.op('Reshape', [g.op('Transpose', [y], { perm: [1, 2, 0, 3] }), g.int64([-1, e])]);
  }

  /**
   * onnxruntime's com.microsoft MultiHeadAttention over windows, bias (+ mask) as attention_bias. Measured
   * slower than the explicit graph on CPU (docs/engine.md); kept as the alternative the benchmark reports.
   */
  private fusedAttention(x: string, a: AttentionGeometry): string {
    const { g, e } = this;
    const { key, heads, n, nW } = a;
    const { xIn, w, b } = this.qkvParams(x, key);
    const wt = new Float32Array(w.length);
    for (let r = 0; r < 3 * e; r++) for (let i = 0; i < e; i++) wt[i * 3 * e + r] = w[r * e + i];
    const qkv = g.op('MatMul', [xIn, g.constant(wt, [e, 3 * e], `${key}.attn.qkv.weight_t`)]);
    const [qFlat, kFlat, vFlat] = g.addNode({ op: 'Split', inputs: [qkv, g.int64([e, e, e])], attrs: { axis: 1 }, outputs: 3, name: `${key}.attn.split` });
    const win = (t: string) => g.op('Reshape', [t, g.int64([-1, n, e])]);
    let attnBias: string;
    if (!a.mask) {
      attnBias = g.constant(a.bias, [1, heads, n, n], `${key}.attn.bias`);
    } else {
      const c = g.constant(this.combinedBiasMask(a.bias, a.mask, heads, n, nW, 'window-major'), [1, nW, heads, n, n], `${key}.attn.bias_mask`);
      attnBias = this.opts.batch === 1
        ? g.op('Reshape', [c, g.int64([nW, heads, n, n])])
        : g.op('Reshape', [g.op('Expand', [c, this.batchExpandShape(nW, heads, n)]), g.int64([-1, heads, n, n])]);
    }
    const y = g.addNode({
      op: 'MultiHeadAttention', domain: 'com.microsoft', name: `${key}.attn.mha`,
      inputs: [win(qFlat), win(kFlat), win(vFlat), g.constant(b, [3 * e], `${key}.attn.qkv.bias`), '', attnBias],
      attrs: { num_heads: heads, scale: attr.float(a.scale) },
    })[0];
    return g.op('Reshape', [y, g.int64([-1, e])]);
  }

  /** bias + mask per window, heads outermost ([heads, nW, N, N]) or windows outermost ([nW, heads, N, N]). */
  private combinedBiasMask(bias: Float32Array, mask: Float32Array, heads: number, n: number, nW: number, order: 'head-major' | 'window-major'): Float32Array {
    const both = new Float32Array(nW * heads * n * n);
    for (let w = 0; w < nW; w++) {
      for (let h = 0; h < heads; h++) {
        const dst = (order === 'head-major' ? h * nW + w : w * heads + h) * n * n, src = h * n * n, m = w * n * n;
        for (let t = 0; t < n * n; t++) both[dst + t] = bias[src + t] + mask[m + t];
      }
    }
    return both;
  }

  /** [batch, nW, heads, N, N] with the batch read from the graph input at run time. */
  private batchExpandShape(nW: number, heads: number, n: number): string {
    const key = `${nW}/${heads}/${n}`;
    let name = this.expandShapes.get(key);
    if (!name) {
      const batch = this.g.op('Slice', [this.g.op('Shape', ['input']), this.g.int64([0]), this.g.int64([1])]);
      name = this.g.op('Concat', [batch, this.g.int64([nW, heads, n, n])], { axis: 0 });
      this.expandShapes.set(key, name);
    }
    return name;
  }

  /** [tokens, 1] of ones, shaped from the graph input at run time (the batch may be symbolic). */
  private onesColumn(): string {
    if (!this.ones) {
      const { g } = this;
      const batch = g.op('Slice', [g.op('Shape', ['input']), g.int64([0]), g.int64([1])]);
      const tokens = g.op('Mul', [batch, g.int64([this.hp * this.wp])]);
      this.ones = g.op('ConstantOfShape', [g.op('Concat', [tokens, g.int64([1])], { axis: 0 })], { value: attr.tensor(new Float32Array([1]), [1]) });
    }
    return this.ones;
  }

  private shiftMask(ws: number, shift: number): Float32Array {
    const key = `${ws}/${shift}`;
    let mask = this.maskData.get(key);
    if (!mask) {
      mask = calculateAttnMask(this.hp, this.wp, ws, shift);
      this.maskData.set(key, mask);
    }
    return mask;
  }

  /** The (nW, N, N) mask as one shared constant (every shifted block of a graph has the same one). */
  private maskConstant(mask: Float32Array, nW: number, n: number): string {
    let name = this.maskConstants.get(mask);
    if (!name) {
      name = this.g.constant(mask, [nW, n, n], 'attn_mask');
      this.maskConstants.set(mask, name);
    }
    return name;
  }
}

interface AttentionGeometry {
  key: string;
  heads: number;
  /** Tokens per window and windows per image. */
  n: number;
  nW: number;
  /** (heads, N, N) relative position bias and (nW, N, N) shift mask (null for unshifted blocks). */
  bias: Float32Array;
  mask: Float32Array | null;
  scale: number;
}
