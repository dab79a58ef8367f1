/**
 * Quantized SwinIR as a deployable stock-ONNX file, in three formats:
 * - `fakequant`: the graph the onnx engine evaluates (onnxQuantSites): float weights already fake-quantized,
 *   activations through QuantizeLinear/Clip/DequantizeLinear (or the float chain).
 * - `qdq`: every quantizer on an integer grid (a real-valued offset snapped to the nearest integer zero point,
 *   i.e. the plan run in the 'integer' form); weights as uint8 levels with per-channel scale and zero point
 *   through DequantizeLinear, activations as QuantizeLinear/DequantizeLinear pairs.
 * - `packed`: the fakequant graph's exact numbers, but the weights stored as b-bit levels packed into uint8
 *   (pack.ts), unpacked and dequantized in-graph; a real offset stays real (DequantizeLinear, then Add l).
 *
 * The split qkv (2DQuant's three projections) is rebuilt here as in onnx.ts's projectPart, except that the
 * weight slice is a graph tensor (levels -> DequantizeLinear) laid out per head by Reshape/Transpose, which
 * onnxruntime folds at load.
 */
import { TensorDataType, buildSwinIROnnx, decodeModel, encodeModel, type GraphBuilder, type ModelProtoObject, type SiteHook, type SiteInfo } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { ConfigError } from '../errors';
import { onnxQuantSites, qkvBiasPart, quantizedQkvInput, quantizedWeight, siteQuantNodes, type QkvInput } from '../onnx';
import type { BoundsMap, QuantPlan } from '../plan';
import { gridOf, roundHalfEven, type Bounds, type QuantForm, type QuantizerSpec } from '../quantizer';
import { withWeightOverrides } from '../quantize';
import { siteWeight, weightLayout, type QuantSite } from '../sites';
import { compactConstants } from './compact';
import { packBits, unpackNodes } from './pack';

export const EXPORT_FORMATS = ['qdq', 'fakequant', 'packed'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** What went into the file's weights. */
export interface ExportStats {
  format: ExportFormat;
  /** Quantized weight values, and the bytes that store them (levels, packed or float). */
  weightValues: number;
  weightBytes: number;
  /** Weight quantizers kept as float fake-quantized values (twin or noisy grids have no integer form). */
  floatWeights: string[];
  /** Quantizers whose real-valued offset was snapped to an integer zero point (qdq of a real-offset plan). */
  snapped: number;
}

export interface ExportOptions {
  format: ExportFormat;
  /** The fixed input size of the graph (the builder bakes window masks for one size; batch stays symbolic). */
  height: number;
  width: number;
  /** ONNX metadata_props (provenance). */
  metadata?: Record<string, string>;
}

export function parseExportFormat(raw: string): ExportFormat {
  if (!(EXPORT_FORMATS as readonly string[]).includes(raw)) {
    throw new ConfigError(`export format '${raw}' is not valid (choices: ${EXPORT_FORMATS.join(', ')})`, { value: raw, choices: EXPORT_FORMATS });
  }
  return raw as ExportFormat;
}

/** The plan on an integer grid: each quantizer's form is 'integer' (z = round(-l'/s), l' = min(l, 0)). */
export function snappedPlan(plan: QuantPlan): QuantPlan {
  return { ...plan, spec: (site) => ({ ...plan.spec(site), form: 'integer' }) };
}

/** Integer levels k of a weight slice, exactly as scalarQuantizer rounds them, and each channel's grid. */
export function weightLevels(values: Float32Array, bounds: Bounds, spec: QuantizerSpec, inner: number): { levels: Uint8Array; grids: ReturnType<typeof gridOf>[] } {
  const grids = bounds.lower.map((l, c) => gridOf(l, bounds.upper[c], spec.bits, spec.form));
  const levels = new Uint8Array(values.length);
  const f32 = Math.fround;
  const per = grids.length === 1 ? values.length : inner;
  for (let c = 0; c < grids.length; c++) {
    const { step: s, steps: n, zero: z, start } = grids[c];
    const u = f32(bounds.upper[c]);
    for (let i = c * per; i < (c + 1) * per; i++) {
      const x = values[i];
      let k: number;
      if (spec.form === 'real-offset') {
        const clipped = x < start ? start : x > u ? u : x;
        k = roundHalfEven(f32(f32(clipped - start) / s));
      } else {
        const r = roundHalfEven(f32(x / s)) + z;
        k = r < 0 ? 0 : r > n ? n : r;
      }
      levels[i] = k;
    }
  }
  return { levels, grids };
}

/** The float32 values DequantizeLinear (then Add l, for a real offset) gives for the levels. */
function dequantized(levels: Uint8Array, grids: ReturnType<typeof gridOf>[], form: QuantForm): Float32Array {
  const out = new Float32Array(levels.length);
  const per = levels.length / grids.length;
  for (let i = 0; i < levels.length; i++) {
    const { step, zero, start } = grids[Math.floor(i / per)];
    out[i] = form === 'real-offset' ? Math.fround(Math.fround(levels[i] * step) + start) : Math.fround((levels[i] - zero) * step);
  }
  return out;
}

/** The SiteHook that writes a format's weights and activation quantizers, and the stats it gathers. */
export function exportSiteHook(plan: QuantPlan, bounds: BoundsMap, checkpoint: StateDict, format: ExportFormat): { hook: SiteHook; stats: ExportStats } {
  const stateDict = withWeightOverrides(plan, checkpoint);
  const stats: ExportStats = { format, weightValues: 0, weightBytes: 0, floatWeights: [], snapped: 0 };
  const weightSites = plan.sites.filter((s) => s.role === 'weight');
  if (format === 'fakequant') {
    for (const site of weightSites) {
      const n = site.shape!.reduce((a, b) => a * b, 1);
      stats.weightValues += n;
      stats.weightBytes += 4 * n;
    }
    return { hook: onnxQuantSites(plan, bounds, stateDict), stats };
  }
  const target = format === 'qdq' ? snappedPlan(plan) : plan;
  if (format === 'qdq' && plan.settings.form === 'real-offset') stats.snapped = plan.sites.length;
  const byHook = new Map<string, QuantSite[]>();
  for (const site of plan.sites) byHook.set(site.hookSite, [...(byHook.get(site.hookSite) ?? []), site]);

  const weightTensor = (g: GraphBuilder, site: QuantSite): string => {
    const b = bounds.get(site.id)!;
    const spec = target.spec(site);
    const shape = site.shape!;
    const values = siteWeight(site, stateDict);
    stats.weightValues += values.length;
    if (b.twin || b.noise) {
      stats.floatWeights.push(site.id);
      stats.weightBytes += 4 * values.length;
      return g.constant(quantizedWeight(target, site, b, stateDict), shape, `${site.id}.fq`);
    }
    const { levels, grids } = weightLevels(values, b, spec, weightLayout(site).inner);
    // The levels must reproduce the engine's fake-quantized weights bit for bit, or the file is wrong.
    const expected = quantizedWeight(target, site, b, stateDict);
    const got = dequantized(levels, grids, spec.form);
    const bad = got.findIndex((v, i) => !Object.is(v, expected[i]));
    if (bad >= 0) throw new ConfigError(`export: weight '${site.id}' value ${bad} dequantizes to ${got[bad]}, the fake-quantized weight is ${expected[bad]}`);
    let stored: string;
    if (format === 'packed' && spec.bits < 8) {
      const packed = packBits(levels, spec.bits);
      stats.weightBytes += packed.length;
      stored = unpackNodes(g, packed, spec.bits, shape, site.id);
    } else {
      stats.weightBytes += levels.length;
      stored = g.constant(levels, shape, `${site.id}.levels`);
    }
    const perChannel = grids.length > 1;
    const dims = perChannel ? [grids.length] : [];
    const s = g.constant(Float32Array.from(grids, (grid) => grid.step), dims, `${site.id}.scale`);
    const z = g.constant(Uint8Array.from(grids, (grid) => grid.zero), dims, `${site.id}.zero_point`);
    const w = g.op('DequantizeLinear', [stored, s, z], perChannel ? { axis: 0 } : undefined, `${site.id}.dequantize`);
    if (spec.form !== 'real-offset' || grids.every((grid) => grid.start === 0)) return w;
    const lower = g.constant(Float32Array.from(grids, (grid) => grid.start), [grids.length, ...shape.slice(1).map(() => 1)], `${site.id}.lower`);
    return g.op('Add', [w, lower], undefined, `${site.id}.w`);
  };

  // Per block: the LayerNorm output at the qkv input site, and its quantized versions, while the split is rebuilt.
  const qkvInputs = new Map<string, QkvInput>();
  const splitPart = (g: GraphBuilder, block: string, part: 0 | 1 | 2, info: SiteInfo): string => {
    const parts = byHook.get(`${block}.attn.qkv`) ?? [];
    const input = qkvInputs.get(block);
    const inputSite = parts.find((s) => s.part === part && s.role === 'activation');
    const weightSite = (byHook.get(`${block}.attn.qkv.weight`) ?? []).find((s) => s.part === part);
    if (!input || !inputSite || !weightSite) throw new ConfigError(`export: the split qkv of ${block} is incomplete (part ${part})`);
    if (info.layout.join() !== 'head,window,token,head_dim') throw new ConfigError(`export: q/k/v layout [${info.layout.join(', ')}] is not head-major`);
    const xq = quantizedQkvInput(g, input, bounds.get(inputSite.id)!, target.spec(inputSite), inputSite.id);
    const e = plan.config.embedDim;
    const [heads, , n, hd] = info.shape;
    const bias = qkvBiasPart(stateDict, block, part, e);
    const name = `${block}.attn.qkv.${'qkv'[part]}`;
    const qScale = () => g.scalar(plan.config.qkScale || hd ** -0.5, 'q_scale');
    if (format === 'qdq') {
      // Tokens x weight as one 2-D Gemm straight off the two DequantizeLinear nodes (the pattern onnxruntime
      // fuses into an integer QGemm), bias added after it (see integerGemms), then laid out per head.
      let y = g.op('Gemm', [xq, weightTensor(g, weightSite)], { transB: 1 }, name);
      y = g.op('Add', [y, g.constant(bias, [e], `${name}.bias`)]);
      if (part === 0) y = g.op('Mul', [y, qScale()]);
      y = g.op('Transpose', [g.op('Reshape', [y, g.int64([-1, heads, hd])])], { perm: [1, 0, 2] });
      return g.op('Reshape', [y, g.int64([heads, -1, n, hd])]);
    }
    const wh = g.op('Transpose', [g.op('Reshape', [weightTensor(g, weightSite), g.int64([heads, hd, e])])], { perm: [0, 2, 1] });
    let y = g.op('Add', [g.op('MatMul', [xq, wh]), g.constant(bias, [heads, 1, hd], `${name}.bias_heads`)]);
    if (part === 0) y = g.op('Mul', [y, qScale()]);
    return g.op('Reshape', [y, g.int64([heads, -1, n, hd])]);
  };

  const hook: SiteHook = (siteName, tensor, g, info) => {
    const sites = byHook.get(siteName) ?? [];
    if (/\.attn\.qkv(\.weight)?$/.test(siteName) && sites.some((s) => s.part !== undefined)) {
      // The builder's own fused projection stays float and unused: the parts replace q, k, v below.
      if (info.kind === 'linear_input') qkvInputs.set(siteName.replace(/\.attn\.qkv$/, ''), { x: tensor, info, quantized: new Map() });
      return tensor;
    }
    let out = tensor;
    const part = /\.attn\.([qkv])$/.exec(siteName);
    const block = siteName.replace(/\.attn\.[qkv]$/, '');
    if (part && info.kind === 'attention' && qkvInputs.has(block)) out = splitPart(g, block, 'qkv'.indexOf(part[1]) as 0 | 1 | 2, info);
    for (const site of sites) {
      if (site.role === 'weight') {
        out = weightTensor(g, site);
        if (g.hasInitializer(tensor)) g.removeInitializer(tensor);
      } else {
        out = siteQuantNodes(g, out, bounds.get(site.id)!, target.spec(site), info, site.id);
      }
    }
    return out;
  };
  return { hook, stats };
}

/**
 * Weight levels of at most 4 bits that feed a DequantizeLinear as uint4 (opset 21): two per byte, the first in
 * the low nibble; their zero points too (DequantizeLinear wants both of one type). The graph builder writes no
 * 4-bit tensors, hence this pass on the proto.
 */
function toUint4Levels(proto: ModelProtoObject): number {
  const byName = new Map(proto.graph.initializer.map((t) => [t.name, t]));
  let converted = 0, saved = 0;
  for (const node of proto.graph.node) {
    if (node.opType !== 'DequantizeLinear') continue;
    const levels = byName.get(node.input[0]);
    const zero = byName.get(node.input[2]);
    if (!levels || !zero || !levels.name.endsWith('.levels') || levels.dataType !== TensorDataType.UINT8) continue;
    for (const t of [levels, zero]) {
      const values = t.rawData!;
      const packed = new Uint8Array(Math.ceil(values.length / 2));
      values.forEach((v, i) => { packed[i >> 1] |= (i & 1) === 0 ? v : v << 4; });
      if (t === levels) saved += values.length - packed.length;
      t.rawData = packed;
      t.dataType = TensorDataType.UINT4;
    }
    converted++;
  }
  if (converted > 0) {
    proto.opsetImport = proto.opsetImport.map((o) => (o.domain ? o : { ...o, version: 21 }));
    proto.irVersion = 10;
  }
  return saved;
}

/**
 * Every Gemm whose two inputs come straight from DequantizeLinear loses its float bias to an Add after it:
 * onnxruntime fuses DQ -> Gemm into an integer QGemm only when the bias is absent or itself dequantized from
 * int32 (its QDQ Gemm selector), and a separate Add keeps the float bias exact. Returns how many were split.
 */
export function integerGemms(proto: ModelProtoObject): number {
  const producer = new Map(proto.graph.node.flatMap((n) => n.output.map((o) => [o, n.opType] as const)));
  const nodes: ModelProtoObject['graph']['node'] = [];
  let split = 0;
  for (const node of proto.graph.node) {
    nodes.push(node);
    if (node.opType !== 'Gemm' || node.input.length < 3 || !node.input[2]) continue;
    if (producer.get(node.input[0]) !== 'DequantizeLinear' || producer.get(node.input[1]) !== 'DequantizeLinear') continue;
    const bias = node.input[2];
    const out = node.output[0];
    node.input = node.input.slice(0, 2);
    node.output = [`${out}.nobias`];
    nodes.push({ opType: 'Add', input: [node.output[0], bias], output: [out], name: `${node.name ?? out}.bias_add` });
    split++;
  }
  proto.graph.node = nodes;
  return split;
}

/** What finishModel does beyond compaction and metadata (the `qdq` format's passes). */
export interface FinishOptions {
  /** 4-bit weight levels as uint4 (toUint4Levels). */
  uint4?: boolean;
  /** Biases split off the Gemms fed by DequantizeLinear (integerGemms). */
  integerGemms?: boolean;
}

/**
 * The model with its large constants compacted (compact.ts), metadata_props set (the builder writes none) and the
 * passes `options` names; `saved` is what uint4 saved on the levels.
 */
export function finishModel(model: Uint8Array, stateDict: StateDict, metadata: Record<string, string>, options: FinishOptions = {}): { bytes: Uint8Array; saved: number } {
  const proto = decodeModel(model);
  compactConstants(proto, stateDict);
  if (options.integerGemms) integerGemms(proto);
  const saved = options.uint4 ? toUint4Levels(proto) : 0;
  proto.metadataProps = Object.entries(metadata).map(([key, value]) => ({ key, value }));
  return { bytes: encodeModel(proto), saved };
}

/** Builds the quantized model in `format` for one input size, with its metadata. */
export function exportQuantizedOnnx(plan: QuantPlan, bounds: BoundsMap, checkpoint: StateDict, options: ExportOptions): { model: Uint8Array; stats: ExportStats } {
  const { hook, stats } = exportSiteHook(plan, bounds, checkpoint, options.format);
  // 'separate' bias and mask: the combined (windows x heads) constants would outweigh the packed weights.
  const stateDict = withWeightOverrides(plan, checkpoint);
  const model = buildSwinIROnnx(plan.config, stateDict, { height: options.height, width: options.width, sites: hook, biasMask: 'separate' });
  // qdq at <= 4 weight bits: uint4 levels (opset 21), which onnxruntime loads; 8-bit containers above.
  const qdq = options.format === 'qdq';
  const { bytes, saved } = finishModel(model, stateDict, { ...options.metadata, format: options.format }, { uint4: qdq && plan.settings.wbits <= 4, integerGemms: qdq });
  stats.weightBytes -= saved;
  return { model: bytes, stats };
}
