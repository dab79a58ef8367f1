/**
 * Fake quantization and activation capture as ONNX graph rewrites, through the SwinIR builder's SiteHook.
 *
 * Activations get Clip/Sub/Div/Round/Mul/Add nodes (real-offset form) or Div/Round/Add/Clip/Sub/Mul
 * (integer form), the same float32 steps as `scalarQuantizer` and `fakeQuantTf`. Weights are constants, so
 * they are fake-quantized here once and swapped in as new initializers.
 *
 * 2DQuant's qkv split (three Linears with their own input and weight quantizers) has no site of its own in
 * the builder: the qkv input and weight sites feed one projection. So the split is rebuilt at the q, k, v
 * sites: each part is projected again from the LayerNorm output (remembered at the qkv input site) through
 * its own quantized input and weight slice, and replaces the builder's float q/k/v, which are then unused.
 */
import type { GraphBuilder, SiteHook, SiteInfo } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { toFloat32 } from '@harmoq/swinir';
import { ConfigError } from './errors';
import type { BoundsMap, QuantPlan } from './plan';
import { fakeQuantize, gridOf, roundHalfEven, type Bounds, type QuantizerSpec } from './quantizer';
import { noisyQuantNodes } from './noise';
import { siteWeight, weightLayout, type QuantSite } from './sites';
import { twinQuantNodes } from './twin';

/** The axis of an ONNX site tensor that per-channel bounds run along, from the builder's axis names. */
export function onnxChannelAxis(info: SiteInfo): number {
  const name = info.kind === 'linear_input' ? 'in_features' : info.kind === 'attention' ? 'head' : info.kind === 'conv_input' ? 'channel' : 'out_features';
  const axis = info.layout.indexOf(name);
  if (axis < 0) throw new ConfigError(`site layout [${info.layout.join(', ')}] has no '${name}' axis for per-channel bounds`);
  return axis;
}

function boundsConstant(g: GraphBuilder, values: number[], info: SiteInfo, hint: string): string {
  if (values.length === 1) return g.scalar(values[0], hint);
  const dims = info.shape.map(() => 1);
  const axis = onnxChannelAxis(info);
  dims[axis] = values.length;
  // Leading 1s are implied by broadcasting; keep them anyway so the rank matches.
  return g.constant(Float32Array.from(values), dims, hint);
}

/**
 * Appends fake-quant nodes for one activation tensor and returns the quantized tensor's name.
 *
 * QuantizeLinear (uint8: x / s in float32, round half to even, + z, saturate to 0..255) -> Clip of the
 * integer level -> DequantizeLinear ((k - z) * s) is bit-identical to the float chain of `scalarQuantizer`:
 * - integer form: clip(round(x/s) + z, 0, 2^b-1), then (k - z)*s; the Clip on uint8 is dropped at 8 bits;
 * - real-offset form: clip(x, l, u) - l equals clip(x - l, 0, u - l) in float32 (rounding is monotone), and
 *   round(min(a, b)/s) = min(round(a/s), round(b/s)), so after Sub(x, l) the lower clip is QuantizeLinear's
 *   saturation at 0 and the upper one a Clip at round((u - l)/s); then k*s + l.
 * Three or four kernels instead of six, two of them on uint8. Falls back to the float chain where the integer
 * levels would not fit uint8 or per-channel upper levels differ (a scalar Clip cannot express that).
 */
export function fakeQuantNodes(g: GraphBuilder, x: string, bounds: Bounds, spec: QuantizerSpec, info: SiteInfo, id: string): string {
  const grids = bounds.lower.map((l, c) => gridOf(l, bounds.upper[c], spec.bits, spec.form));
  const tops = spec.form === 'real-offset'
    ? grids.map((grid, c) => roundHalfEven(Math.fround(Math.fround(Math.fround(bounds.upper[c]) - grid.start) / grid.step)))
    : grids.map((grid) => grid.steps);
  if (tops.some((t) => t !== tops[0]) || tops[0] > 255 || grids.some((grid) => grid.zero > 255)) {
    return floatFakeQuantNodes(g, x, bounds, spec, info, id, grids);
  }
  const perChannel = grids.length > 1;
  const channelAttrs = perChannel ? { axis: onnxChannelAxis(info) } : undefined;
  const qdq = (t: string, zeros: number[]) => {
    const dims = perChannel ? [grids.length] : [];
    const s = g.constant(Float32Array.from(grids, (grid) => grid.step), dims, `${id}.step`);
    const z = g.constant(Uint8Array.from(zeros), dims, `${id}.zero_point`);
    let k = g.op('QuantizeLinear', [t, s, z], channelAttrs, `${id}.quantize`);
    if (tops[0] < 255) k = g.op('Clip', [k, uint8Scalar(g, 0), uint8Scalar(g, tops[0])]);
    return g.op('DequantizeLinear', [k, s, z], channelAttrs, `${id}.dequantize`);
  };
  if (spec.form === 'real-offset') {
    const zeros = grids.map(() => 0);
    // l = 0 (e.g. attention maps): x - 0 and k*s + 0 are exact, so Sub and Add would change nothing.
    if (grids.every((grid) => grid.start === 0)) return qdq(x, zeros);
    const l = boundsConstant(g, bounds.lower, info, `${id}.lower`);
    return g.op('Add', [qdq(g.op('Sub', [x, l]), zeros), l], undefined, `${id}.fq`);
  }
  return qdq(x, grids.map((grid) => grid.zero));
}

/** A uint8 scalar constant (the Clip bounds of integer levels). */
function uint8Scalar(g: GraphBuilder, value: number): string {
  return g.constant(new Uint8Array([value]), [], `u8_${value}`);
}

/** The float32 chain (Clip/Sub/Div/Round/Mul/Add or Div/Round/Add/Clip/Sub/Mul), for what uint8 cannot hold. */
function floatFakeQuantNodes(
  g: GraphBuilder, x: string, bounds: Bounds, spec: QuantizerSpec, info: SiteInfo, id: string, grids: ReturnType<typeof gridOf>[],
): string {
  const s = boundsConstant(g, grids.map((grid) => grid.step), info, `${id}.step`);
  if (spec.form === 'real-offset') {
    const l = boundsConstant(g, bounds.lower, info, `${id}.lower`);
    const u = boundsConstant(g, bounds.upper, info, `${id}.upper`);
    const clipped = bounds.lower.length === 1
      ? g.op('Clip', [x, l, u])
      : g.op('Min', [g.op('Max', [x, l]), u]);
    const r = g.op('Round', [g.op('Div', [g.op('Sub', [clipped, l]), s])]);
    return g.op('Add', [g.op('Mul', [r, s]), l], undefined, `${id}.fq`);
  }
  const z = boundsConstant(g, grids.map((grid) => grid.zero), info, `${id}.zero_point`);
  const k = g.op('Clip', [g.op('Add', [g.op('Round', [g.op('Div', [x, s])]), z]), g.scalar(0, 'zero'), g.scalar(grids[0].steps, `levels${spec.bits}`)]);
  return g.op('Mul', [g.op('Sub', [k, z]), s], undefined, `${id}.fq`);
}

/** The nodes for a site's quantizer form: twin-uniform (twin.ts), noisy Q(x + N) - N (noise.ts) or uniform. */
export function siteQuantNodes(g: GraphBuilder, x: string, bounds: Bounds, spec: QuantizerSpec, info: SiteInfo, id: string): string {
  const constant = (values: number[], hint: string) => boundsConstant(g, values, info, hint);
  if (bounds.twin) return twinQuantNodes(g, x, bounds.twin, spec.bits, constant, id);
  const uniform = (y: string) => fakeQuantNodes(g, y, bounds, spec, info, id);
  return bounds.noise ? noisyQuantNodes(g, x, constant(bounds.noise, `${id}.noise`), uniform, id) : uniform(x);
}

/** A weight slice fake-quantized in float32 (the values the tfjs weight hook computes). */
export function quantizedWeight(plan: QuantPlan, site: QuantSite, bounds: Bounds, stateDict: StateDict): Float32Array {
  const spec = plan.spec(site);
  return fakeQuantize(siteWeight(site, stateDict), bounds, spec.bits, spec.form, spec.perChannel ? weightLayout(site) : undefined);
}

export interface OnnxQuantOptions {
  /** Graph outputs `capture:<hook site>` holding these activation sites' float values (before any quantizer). */
  capture?: ReadonlySet<string>;
  /** Fake-quantize (default true). False: the float graph, plus captures. */
  quantize?: boolean;
}

/** Name of the graph output that carries a captured site. */
export const captureOutput = (hookSite: string) => `capture:${hookSite}`;

/**
 * The SiteHook that fake-quantizes every quantizer of `plan` with `bounds` (and captures, if asked).
 * `stateDict` supplies the weights (the builder's own initializers are replaced, not read back).
 */
export function onnxQuantSites(plan: QuantPlan, bounds: BoundsMap | null, stateDict: StateDict, options: OnnxQuantOptions = {}): SiteHook {
  const quantize = options.quantize ?? true;
  if (quantize && !bounds) throw new ConfigError('onnxQuantSites: bounds are needed to fake-quantize');
  const byHook = new Map<string, QuantSite[]>();
  for (const site of plan.sites) {
    const list = byHook.get(site.hookSite) ?? [];
    list.push(site);
    byHook.set(site.hookSite, list);
  }
  const boundsOf = (site: QuantSite) => bounds!.get(site.id)!;
  // Per block: the LayerNorm output at the qkv input site, while the split is being rebuilt.
  const qkvInputs = new Map<string, QkvInput>();
  const splitParts = new Map<string, QuantSite[]>();
  if (quantize && plan.siteSet.qkvSplit) {
    for (const site of plan.sites) {
      if (site.part === undefined) continue;
      const block = site.hookSite.replace(/\.attn\.qkv(\.weight)?$/, '');
      const list = splitParts.get(block) ?? [];
      list.push(site);
      splitParts.set(block, list);
    }
  }

  return (siteName, tensor, g, info) => {
    if (options.capture?.has(siteName)) {
      g.addOutput(tensor, 'float32', info.shape.map((d, i) => (d < 0 ? `${siteName}_d${i}` : d)), captureOutput(siteName));
    }
    if (!quantize) return tensor;
    const sites = byHook.get(siteName) ?? [];
    const split = /\.attn\.qkv(\.weight)?$/.test(siteName) && sites.some((s) => s.part !== undefined);
    if (split) {
      // Remember the float input; the builder's own qkv projection stays float and is replaced at q/k/v.
      if (info.kind === 'linear_input') qkvInputs.set(siteName.replace(/\.attn\.qkv$/, ''), { x: tensor, info, quantized: new Map() });
      return tensor;
    }
    let out = tensor;
    const part = /\.attn\.([qkv])$/.exec(siteName);
    if (part && info.kind === 'attention') {
      const block = siteName.slice(0, -'.attn.q'.length);
      const parts = splitParts.get(block);
      if (parts) out = projectPart(g, plan, bounds!, stateDict, block, 'qkv'.indexOf(part[1]) as 0 | 1 | 2, parts, qkvInputs.get(block), info);
    }
    for (const site of sites) {
      if (site.role === 'weight') {
        const values = quantizedWeight(plan, site, boundsOf(site), stateDict);
        const name = g.constant(values, site.shape!, `${site.id}.fq`);
        if (g.hasInitializer(tensor)) g.removeInitializer(tensor);
        out = name;
      } else {
        out = siteQuantNodes(g, out, boundsOf(site), plan.spec(site), info, site.id);
      }
    }
    return out;
  };
}

/** The LayerNorm output at a block's qkv input site, and its quantized versions keyed by bounds and spec. */
export interface QkvInput {
  x: string;
  info: SiteInfo;
  quantized: Map<string, string>;
}

/**
 * The qkv input quantized for one part. q, k and v quantize the same tensor; parts with equal bounds (DOBI and
 * MinMax give them) share the nodes.
 */
export function quantizedQkvInput(g: GraphBuilder, input: QkvInput, bounds: Bounds, spec: QuantizerSpec, id: string): string {
  const key = JSON.stringify([bounds, spec]);
  let xq = input.quantized.get(key);
  if (!xq) {
    xq = siteQuantNodes(g, input.x, bounds, spec, input.info, id);
    input.quantized.set(key, xq);
  }
  return xq;
}

/** One part's slice of the qkv bias (zeros when the model has no qkv bias). */
export function qkvBiasPart(stateDict: StateDict, block: string, part: 0 | 1 | 2, embedDim: number): Float32Array {
  const key = `${block}.attn.qkv.bias`;
  return stateDict.has(key) ? toFloat32(stateDict.get(key)!, key).slice(part * embedDim, (part + 1) * embedDim) : new Float32Array(embedDim);
}

/**
 * One part of the split qkv in the layout the builder hands the q/k/v site: quantized input (that part's
 * bounds) times quantized weight slice plus bias, then (q only) the head_dim^-0.5 scale.
 */
function projectPart(
  g: GraphBuilder, plan: QuantPlan, bounds: BoundsMap, stateDict: StateDict, block: string, part: 0 | 1 | 2,
  parts: QuantSite[], input: QkvInput | undefined, info: SiteInfo,
): string {
  if (!input) throw new ConfigError(`qkv split: the q/k/v site of ${block} came before its qkv input site`);
  const inputSite = parts.find((s) => s.part === part && s.role === 'activation')!;
  const weightSite = parts.find((s) => s.part === part && s.role === 'weight')!;
  const e = plan.config.embedDim;
  const xq = quantizedQkvInput(g, input, bounds.get(inputSite.id)!, plan.spec(inputSite), inputSite.id);
  const w = quantizedWeight(plan, weightSite, bounds.get(weightSite.id)!, stateDict);
  const bias = qkvBiasPart(stateDict, block, part, e);
  const axis = (name: string) => info.layout.indexOf(name);
  const heads = info.shape[axis('head')], n = info.shape[axis('token')], hd = info.shape[axis('head_dim')];
  const scale = (t: string) => (part === 0 ? g.op('Mul', [t, g.scalar(plan.config.qkScale || hd ** -0.5, 'q_scale')]) : t);
  const name = `${block}.attn.qkv.${'qkv'[part]}`;
  if (info.layout.join() === 'head,window,token,head_dim') {
    // Head-major, as the builder lays q/k/v out: one batched MatMul against per-head weight slices.
    const wh = new Float32Array(heads * e * hd);
    for (let h = 0; h < heads; h++) {
      for (let d = 0; d < hd; d++) for (let i = 0; i < e; i++) wh[(h * e + i) * hd + d] = w[(h * hd + d) * e + i];
    }
    let y = g.op('MatMul', [xq, g.constant(wh, [heads, e, hd], `${name}.weight_heads`)]);
    y = scale(g.op('Add', [y, g.constant(bias, [heads, 1, hd], `${name}.bias_heads`)]));
    return g.op('Reshape', [y, g.int64([heads, -1, n, hd])]);
  }
  // Any other axis order: [windows*N, heads*hd] -> [windows, N, heads, hd] -> the site's order.
  const perm = info.layout.map((a) => ['window', 'token', 'head', 'head_dim'].indexOf(a));
  if (perm.some((p) => p < 0)) throw new ConfigError(`qkv split: unexpected q/k/v layout [${info.layout.join(', ')}]`);
  const y = scale(g.op('Gemm', [xq, g.constant(w, [e, e], `${name}.weight_fq`), g.constant(bias, [e], `${name}.bias`)], { transB: 1 }));
  return g.op('Transpose', [g.op('Reshape', [y, g.int64([-1, n, heads, hd])])], { perm });
}
