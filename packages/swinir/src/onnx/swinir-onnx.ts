/**
 * SwinIR as a static ONNX graph, built from a config and a PyTorch state dict.
 *
 * The graph follows the official forward (JingyunLiang/SwinIR models/network_swinir.py) step by step; see
 * docs/engine.md for the formulation and the measurements behind each choice. The shape is fixed per graph
 * (height x width, batch optionally symbolic), so every window bias and shift mask is a constant computed here.
 */
import type { StateDict, Tensor } from '@harmoq/torch-io';
import { RGB_MEAN, type SwinIRConfig } from '../config';
import { GraphBuilder, attr } from './graph-builder';
import { relativePositionBias, shiftedWindowMask } from './windows';

/** What a site's tensor holds; `shape` uses -1 for the dimension that grows with the batch. */
export interface SiteInfo {
  kind: 'linear_input' | 'linear_weight' | 'attention';
  shape: number[];
  /** Axis names of `shape`, e.g. ['token', 'in_features'] or ['window', 'head', 'token', 'head_dim']. */
  layout: string[];
}

/**
 * Insertion hook for fake-quantization and similar rewrites. Called once per site with the name of the tensor
 * there; returns the tensor that replaces it downstream (return `tensorName` to leave the site alone).
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
}

/** Thrown when a config, state dict or size cannot be turned into a graph. */
export class OnnxGraphError extends Error {
  override name = 'OnnxGraphError';
}

const LN_EPS = 1e-5;
const COMBINED_MASK_LIMIT_BYTES = 8 * 1024 * 1024;

/** The window size and shift the official SwinTransformerBlock settles on, given img_size at construction. */
export function blockWindow(config: SwinIRConfig, blockIndex: number): { ws: number; shift: number } {
  if (config.imgSize <= config.windowSize) return { ws: config.imgSize, shift: 0 };
  return { ws: config.windowSize, shift: blockIndex % 2 === 0 ? 0 : Math.floor(config.windowSize / 2) };
}

/** Height/width after `check_image_size`: rounded up to a multiple of window_size. */
export function paddedSize(size: number, windowSize: number): number {
  return Math.ceil(size / windowSize) * windowSize;
}

function toFloat32(key: string, t: Tensor): Float32Array {
  const d = t.data;
  if (t.dtype === 'float32') return d as Float32Array;
  if (t.dtype === 'float64') return Float32Array.from(d as Float64Array);
  if (t.dtype === 'bfloat16') {
    const bits = new Uint32Array((d as Uint16Array).length);
    (d as Uint16Array).forEach((b, i) => { bits[i] = b << 16; });
    return new Float32Array(bits.buffer);
  }
  if (t.dtype === 'float16') return Float32Array.from(d as Uint16Array, halfToFloat);
  throw new OnnxGraphError(`parameter '${key}' has dtype ${t.dtype}; expected float32, float64, float16 or bfloat16`);
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

class ParamReader {
  constructor(private readonly stateDict: StateDict) {}

  get(key: string, shape: number[]): Float32Array {
    const t = this.stateDict.get(key);
    if (!t) throw new OnnxGraphError(`state dict has no '${key}' (expected shape [${shape}])`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new OnnxGraphError(`'${key}' has shape [${t.shape}], expected [${shape}]`);
    }
    return toFloat32(key, t);
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
  private readonly maskCache = new Map<string, string>();

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

  forward(input: string): string {
    const { cfg, g } = this;
    const x = this.checkImageSize(input);
    const mean = cfg.inChans === 3 ? g.constant(Float32Array.from(RGB_MEAN), [1, 3, 1, 1], 'rgb_mean') : null;
    let normed = mean ? g.op('Sub', [x, mean]) : x;
    if (cfg.imgRange !== 1) normed = g.op('Mul', [normed, g.scalar(cfg.imgRange, 'img_range')]);

    let out: string;
    const features = (first: string) => g.op('Add', [this.conv(this.forwardFeatures(first), 'conv_after_body', this.e, this.e), first]);
    switch (cfg.upsampler) {
      case 'pixelshuffledirect': {
        const first = this.conv(normed, 'conv_first', this.e, cfg.inChans);
        out = this.conv(features(first), 'upsample.0', cfg.inChans * cfg.upscale ** 2, this.e);
        out = g.op('DepthToSpace', [out], { blocksize: cfg.upscale, mode: 'CRD' });
        break;
      }
      case 'pixelshuffle': {
        const first = this.conv(normed, 'conv_first', this.e, cfg.inChans);
        out = this.leakyRelu(this.conv(features(first), 'conv_before_upsample.0', 64, this.e), 0.01);
        out = this.conv(this.upsample(out), 'conv_last', cfg.inChans, 64);
        break;
      }
      case 'nearest+conv': {
        if (cfg.upscale !== 2 && cfg.upscale !== 4) {
          throw new OnnxGraphError(`upsampler 'nearest+conv' supports upscale 2 or 4, got ${cfg.upscale}`);
        }
        const first = this.conv(normed, 'conv_first', this.e, cfg.inChans);
        out = this.leakyRelu(this.conv(features(first), 'conv_before_upsample.0', 64, this.e), 0.01);
        const nearest2x = (t: string) => g.op('Resize', [t, '', g.constant(new Float32Array([1, 1, 2, 2]), [4], 'scales')], {
          mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor',
        });
        out = this.leakyRelu(this.conv(nearest2x(out), 'conv_up1', 64, 64), 0.2);
        if (cfg.upscale === 4) out = this.leakyRelu(this.conv(nearest2x(out), 'conv_up2', 64, 64), 0.2);
        out = this.conv(this.leakyRelu(this.conv(out, 'conv_hr', 64, 64), 0.2), 'conv_last', cfg.inChans, 64);
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

  private conv(x: string, key: string, outCh: number, inCh: number, kernel = 3): string {
    const w = this.g.addInitializer(`${key}.weight`, this.params.get(`${key}.weight`, [outCh, inCh, kernel, kernel]), [outCh, inCh, kernel, kernel]);
    const b = this.g.addInitializer(`${key}.bias`, this.params.get(`${key}.bias`, [outCh]), [outCh]);
    const p = (kernel - 1) / 2;
    return this.g.op('Conv', [x, w, b], { kernel_shape: [kernel, kernel], pads: [p, p, p, p], strides: [1, 1] }, key);
  }

  private leakyRelu(x: string, slope: number): string {
    return this.g.op('LeakyRelu', [x], { alpha: attr.float(slope) });
  }

  /** Official `Upsample`: n x (conv 64->256 + PixelShuffle(2)) for 2^n, or conv 64->576 + PixelShuffle(3). */
  private upsample(x: string): string {
    const s = this.cfg.upscale;
    if (s > 0 && (s & (s - 1)) === 0) {
      for (let i = 0; i < Math.log2(s); i++) {
        x = this.g.op('DepthToSpace', [this.conv(x, `upsample.${2 * i}`, 256, 64)], { blocksize: 2, mode: 'CRD' });
      }
      return x;
    }
    if (s === 3) return this.g.op('DepthToSpace', [this.conv(x, 'upsample.0', 576, 64)], { blocksize: 3, mode: 'CRD' });
    throw new OnnxGraphError(`upscale ${s} is not supported by the pixelshuffle upsampler (choices: 2^n, 3)`);
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
      for (let j = 0; j < cfg.depths[i]; j++) {
        tokens = this.swinBlock(tokens, `layers.${i}.residual_group.blocks.${j}`, cfg.numHeads[i], blockWindow(cfg, j));
      }
      const conv = this.residualConv(this.unembed(tokens), `layers.${i}.conv`);
      tokens = g.op('Add', [this.embed(conv), rstbInput]);
    }
    tokens = this.layerNorm(tokens, 'norm');
    return this.unembed(tokens);
  }

  private absolutePositionEmbedding(tokens: string): string {
    const n = this.cfg.imgSize * this.cfg.imgSize;
    if (this.hp * this.wp !== n || this.hp !== this.cfg.imgSize) {
      throw new OnnxGraphError(
        `ape=true needs the padded input to be img_size ${this.cfg.imgSize}x${this.cfg.imgSize}, got ${this.hp}x${this.wp}`);
    }
    const pos = this.g.addInitializer('absolute_pos_embed', this.params.get('absolute_pos_embed', [1, n, this.e]), [1, n, this.e]);
    const b = this.g.op('Reshape', [tokens, this.g.int64([-1, n, this.e])]);
    return this.g.op('Reshape', [this.g.op('Add', [b, pos]), this.g.int64([-1, this.e])]);
  }

  /** RSTB conv: '1conv' = 3x3; '3conv' = 3x3 (dim/4), LReLU .2, 1x1, LReLU .2, 3x3 (dim). */
  private residualConv(x: string, key: string): string {
    if (this.cfg.resiConnection === '1conv') return this.conv(x, key, this.e, this.e);
    if (this.cfg.resiConnection === '3conv') {
      const q = this.e / 4;
      if (!Number.isInteger(q)) throw new OnnxGraphError(`resi_connection '3conv' needs embed_dim divisible by 4, got ${this.e}`);
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

  /** nn.Linear on 2-D tokens as Gemm(transB) on the [out, in] weight; both input and weight pass their sites. */
  private linear(x: string, key: string, outF: number, inF: number, transformWeight?: (w: Float32Array, b: Float32Array) => void): { y: string; transformed: boolean } {
    const { g } = this;
    const wData = this.params.get(`${key}.weight`, [outF, inF]);
    const bData = this.params.get(`${key}.bias`, [outF]);
    const xIn = this.sites(key, x, g, { kind: 'linear_input', shape: [-1, inF], layout: ['token', 'in_features'] });
    const wName = g.addInitializer(`${key}.weight`, wData, [outF, inF]);
    const wOut = this.sites(`${key}.weight`, wName, g, { kind: 'linear_weight', shape: [outF, inF], layout: ['out_features', 'in_features'] });
    let bias = bData;
    const transformed = transformWeight !== undefined && wOut === wName;
    if (transformed) {
      const w2 = Float32Array.from(wData), b2 = Float32Array.from(bData);
      transformWeight(w2, b2);
      g.replaceInitializer(wName, w2);
      bias = b2;
    }
    const bName = g.addInitializer(`${key}.bias`, bias, [outF]);
    return { y: g.op('Gemm', [xIn, wOut, bName], { transB: 1 }, key), transformed };
  }

  private gelu(x: string): string {
    const { g } = this;
    if (this.opts.gelu === 'gelu') return g.op('Gelu', [x], { approximate: 'none' });
    const erf = g.op('Erf', [g.op('Div', [x, g.scalar(Math.SQRT2, 'sqrt2')])]);
    return g.op('Mul', [g.op('Mul', [x, g.op('Add', [erf, g.scalar(1, 'one')])]), g.scalar(0.5, 'half')]);
  }

  private swinBlock(tokens: string, key: string, heads: number, { ws, shift }: { ws: number; shift: number }): string {
    const { g, hp, wp, e } = this;
    if (hp % ws !== 0 || wp % ws !== 0) {
      throw new OnnxGraphError(`padded size ${hp}x${wp} is not a multiple of the block window ${ws} in ${key}`);
    }
    if (e % heads !== 0) throw new OnnxGraphError(`embed_dim ${e} is not divisible by num_heads ${heads} in ${key}`);
    const n = ws * ws, hd = e / heads, nW = (hp / ws) * (wp / ws);

    const windows = this.toWindows(this.layerNorm(tokens, `${key}.norm1`), ws, shift);
    const scale = this.cfg.qkScale ?? hd ** -0.5;
    const foldScale = this.opts.foldQScale !== false;
    const { y: qkv, transformed: qScaleFolded } = this.linear(windows, `${key}.attn.qkv`, 3 * e, e, foldScale ? (w, b) => {
      for (let k = 0; k < e * e; k++) w[k] = Math.fround(w[k] * scale);
      for (let k = 0; k < e; k++) b[k] = Math.fround(b[k] * scale);
    } : undefined);
    const [qFlat, kFlat, vFlat] = g.addNode({ op: 'Split', inputs: [qkv, g.int64([e, e, e])], attrs: { axis: 1 }, outputs: 3, name: `${key}.attn.split` });
    const heads4 = (t: string) => g.op('Transpose', [g.op('Reshape', [t, g.int64([-1, n, heads, hd])])], { perm: [0, 2, 1, 3] });
    const attnInfo = (layout: string[], shape: number[]): SiteInfo => ({ kind: 'attention', shape, layout });
    const qkvShape = [-1, heads, n, hd], qkvLayout = ['window', 'head', 'token', 'head_dim'];
    let q = heads4(qFlat);
    if (!qScaleFolded) q = g.op('Mul', [q, g.scalar(scale, 'q_scale')]);
    q = this.sites(`${key}.attn.q`, q, g, attnInfo(qkvLayout, qkvShape));
    const k = this.sites(`${key}.attn.k`, heads4(kFlat), g, attnInfo(qkvLayout, qkvShape));
    const v = this.sites(`${key}.attn.v`, heads4(vFlat), g, attnInfo(qkvLayout, qkvShape));

    let scores = g.op('MatMul', [q, g.op('Transpose', [k], { perm: [0, 1, 3, 2] })], undefined, `${key}.attn.qk`);
    const table = this.params.get(`${key}.attn.relative_position_bias_table`, [(2 * ws - 1) ** 2, heads]);
    const bias = relativePositionBias(table, heads, ws);
    if (!shift) {
      scores = g.op('Add', [scores, g.constant(bias, [heads, n, n], `${key}.attn.bias`)]);
    } else {
      const mask = shiftedWindowMask(hp, wp, ws, shift);
      const mode = this.opts.biasMask ?? 'auto';
      const combine = mode === 'combined' || (mode === 'auto' && nW * heads * n * n * 4 <= COMBINED_MASK_LIMIT_BYTES);
      if (combine) {
        const both = new Float32Array(nW * heads * n * n);
        for (let w = 0; w < nW; w++) {
          for (let h = 0; h < heads; h++) {
            const dst = (w * heads + h) * n * n, src = h * n * n, m = w * n * n;
            for (let t = 0; t < n * n; t++) both[dst + t] = bias[src + t] + mask[m + t];
          }
        }
        const c = g.constant(both, [nW, heads, n, n], `${key}.attn.bias_mask`);
        scores = g.op('Add', [g.op('Reshape', [scores, g.int64([-1, nW, heads, n, n])]), c]);
      } else {
        scores = g.op('Add', [scores, g.constant(bias, [heads, n, n], `${key}.attn.bias`)]);
        scores = g.op('Add', [g.op('Reshape', [scores, g.int64([-1, nW, heads, n, n])]), this.maskConstant(mask, ws, shift, nW, n)]);
      }
      scores = g.op('Reshape', [scores, g.int64([-1, heads, n, n])]);
    }
    let attn = g.op('Softmax', [scores], { axis: -1 }, `${key}.attn.softmax`);
    attn = this.sites(`${key}.attn.attn_map`, attn, g, attnInfo(['window', 'head', 'query', 'key'], [-1, heads, n, n]));
    let y = g.op('MatMul', [attn, v], undefined, `${key}.attn.av`);
    y = g.op('Reshape', [g.op('Transpose', [y], { perm: [0, 2, 1, 3] }), g.int64([-1, e])]);
    y = this.linear(y, `${key}.attn.proj`, e, e).y;
    const x = g.op('Add', [tokens, this.fromWindows(y, ws, shift)]);

    const hidden = Math.floor(e * this.cfg.mlpRatio); // int(dim * mlp_ratio)
    let m = this.linear(this.layerNorm(x, `${key}.norm2`), `${key}.mlp.fc1`, hidden, e).y;
    m = this.linear(this.gelu(m), `${key}.mlp.fc2`, e, hidden).y;
    return g.op('Add', [x, m]);
  }

  private maskConstant(mask: Float32Array, ws: number, shift: number, nW: number, n: number): string {
    const cacheKey = `${ws}/${shift}`;
    let name = this.maskCache.get(cacheKey);
    if (!name) {
      name = this.g.constant(mask, [nW, 1, n, n], `attn_mask_ws${ws}_shift${shift}`);
      this.maskCache.set(cacheKey, name);
    }
    return name;
  }
}
