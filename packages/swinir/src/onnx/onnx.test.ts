import * as path from 'node:path';
import { loadStateDict, type StateDict } from '@harmoq/torch-io';
import { inferConfig } from '../architecture';
import type { SwinIRConfig } from '../config';
import { SwinIRModel } from '../model';
import { AttributeType, GraphBuilder, OnnxGraphError, TensorDataType, attr, buildSwinIROnnx, decodeModel, type SiteInfo } from './index';

const opsets = (m: { opsetImport: { domain?: string; version: number }[] }) => m.opsetImport.map((o) => [o.domain ?? '', o.version]);
const GOLDEN = process.env.HARMOQ_GOLDEN ?? path.resolve(__dirname, '../../../../../shared/golden');

describe('GraphBuilder + protobuf encoding', () => {
  test('a model round-trips through encode/decode with the ONNX field numbers', () => {
    const g = new GraphBuilder('t');
    const x = g.addInput('x', 'float32', ['batch', 2]);
    const w = g.addInitializer('w', Float32Array.from([1.5, -2]), [2]);
    const y = g.op('Add', [x, w]);
    const [a, b] = g.addNode({ op: 'Split', inputs: [y, g.int64([1, 1])], attrs: { axis: 1 }, outputs: 2 });
    const z = g.op('LeakyRelu', [g.op('Concat', [b, a], { axis: 1 })], { alpha: attr.float(0.25) });
    g.addNode({ op: 'DepthToSpace', inputs: [g.op('Reshape', [z, g.int64([1, 2, 1, 1])])], attrs: { blocksize: 1, mode: 'CRD' }, outputs: ['y'] });
    g.addOutput('y', 'float32', [1, 2, 1, 1]);
    expect(g.int64([1, 1])).toBe(g.int64([1, 1])); // shape constants are shared

    const m = decodeModel(g.toModel());
    expect(m.irVersion).toBe(8);
    expect(opsets(m)).toEqual([['', 17]]);
    expect(m.graph.node.map((n) => n.opType)).toEqual(['Add', 'Split', 'Concat', 'LeakyRelu', 'Reshape', 'DepthToSpace']);
    expect(m.graph.input[0].type.tensorType.shape.dim).toEqual([{ dimParam: 'batch' }, { dimValue: 2 }]);
    const init = m.graph.initializer.find((t) => t.name === 'w')!;
    expect(init.dataType).toBe(TensorDataType.FLOAT);
    expect(Array.from(new Float32Array(Uint8Array.from(init.rawData!).buffer))).toEqual([1.5, -2]);
    const attrs = m.graph.node.flatMap((n) => n.attribute ?? []);
    expect(attrs.find((t) => t.name === 'alpha')).toMatchObject({ type: AttributeType.FLOAT, f: 0.25 });
    expect(attrs.find((t) => t.name === 'axis')).toMatchObject({ type: AttributeType.INT, i: 1 });
    expect(new TextDecoder().decode(attrs.find((t) => t.name === 'mode')!.s)).toBe('CRD');
    expect(g.toModel({ opset: 21 }).length).toBeGreaterThan(0);
    expect(decodeModel(g.toModel({ opset: 21 })).irVersion).toBe(10);
  });

  test('nodes and initializers that no output depends on are left out of the model', () => {
    const g = new GraphBuilder('t');
    const x = g.addInput('x', 'float32', [2]);
    const dead = g.op('Mul', [g.op('Sub', [x, g.scalar(1, 'dead_one')]), g.scalar(3, 'dead_three')]);
    const live = g.op('Add', [x, g.scalar(2, 'two')]);
    g.addOutput(live, 'float32', [2], 'y');
    g.addOutput(g.op('Neg', [x]), 'float32', [2], 'side');
    const m = decodeModel(g.toModel());
    expect(m.graph.node.map((n) => n.opType)).toEqual(['Add', 'Identity', 'Neg', 'Identity']);
    expect(m.graph.initializer.map((t) => t.name)).toEqual(['two']);
    expect(m.graph.node.some((n) => n.output.includes(dead))).toBe(false);
  });

  test('refuses duplicate names, non-integer INT attributes and wrong data lengths', () => {
    const g = new GraphBuilder('t');
    g.addInput('x', 'float32', [1]);
    expect(() => g.addInitializer('x', new Float32Array(1), [1])).toThrow(/'x' is already used/);
    expect(() => g.op('LeakyRelu', ['x'], { alpha: 0.5 })).toThrow(/not an integer; use attr.float/);
    expect(() => g.constant(new Float32Array(3), [2, 2])).toThrow(/hold 4 values but 3/);
  });
});

describe('buildSwinIROnnx on the tiny golden model', () => {
  let stateDict: StateDict;
  let config: SwinIRConfig;
  beforeAll(() => {
    stateDict = loadStateDict(path.join(GOLDEN, 'tiny_pixelshuffledirect_x2/model.pth')).stateDict;
    config = { ...inferConfig(stateDict), imgSize: 16 };
  });

  test('default graph: opset 17 static shapes, explicit attention, erf GELU', () => {
    const m = decodeModel(buildSwinIROnnx(config, stateDict, { height: 19, width: 27, batch: 2 }));
    expect(opsets(m)).toEqual([['', 17]]);
    expect(m.graph.input[0].type.tensorType.shape.dim.map((d) => d.dimValue)).toEqual([2, 3, 19, 27]);
    expect(m.graph.output[0].type.tensorType.shape.dim.map((d) => d.dimValue)).toEqual([2, 3, 38, 54]);
    const ops = new Set(m.graph.node.map((n) => n.opType));
    for (const op of ['Pad', 'LayerNormalization', 'Gemm', 'Softmax', 'Erf', 'Gather', 'DepthToSpace', 'Slice']) expect(ops).toContain(op);
    expect(ops).not.toContain('MultiHeadAttention');
    const pad = m.graph.node.find((n) => n.opType === 'Pad')!;
    expect(new TextDecoder().decode(pad.attribute![0].s)).toBe('reflect');
    // Weights are stored under their state-dict names.
    expect(m.graph.initializer.map((t) => t.name)).toContain('layers.1.residual_group.blocks.1.mlp.fc2.weight');
  });

  test('options: opset-20 Gelu, fused attention (com.microsoft), batch symbolic by default', () => {
    const gelu = decodeModel(buildSwinIROnnx(config, stateDict, { height: 8, width: 8, gelu: 'gelu' }));
    expect(opsets(gelu)).toEqual([['', 20]]);
    expect(gelu.irVersion).toBe(9);
    expect(gelu.graph.node.some((n) => n.opType === 'Gelu')).toBe(true);
    expect(gelu.graph.input[0].type.tensorType.shape.dim[0]).toEqual({ dimParam: 'batch' });
    const fused = decodeModel(buildSwinIROnnx(config, stateDict, { height: 8, width: 8, attention: 'fused' }));
    expect(opsets(fused)).toContainEqual(['com.microsoft', 1]);
    expect(fused.graph.node.filter((n) => n.opType === 'MultiHeadAttention')).toHaveLength(4);
    expect(() => buildSwinIROnnx(config, stateDict, { height: 8, width: 8, attention: 'fused', sites: (_s, t) => t })).toThrow(OnnxGraphError);
  });

  test('sites: the tfjs reference hook sites plus every Linear/Conv weight, in forward order', () => {
    const seen: { site: string; info: SiteInfo }[] = [];
    buildSwinIROnnx(config, stateDict, { height: 8, width: 8, sites: (site, tensor, _g, info) => { seen.push({ site, info }); return tensor; } });
    const model = new SwinIRModel(stateDict, config);
    const reference = model.hookSites().map((s) => s.site);
    model.dispose();
    expect(seen.filter((s) => !s.site.endsWith('.weight')).map((s) => s.site)).toEqual(reference);
    const weights = seen.filter((s) => s.site.endsWith('.weight'));
    expect(weights.map((s) => s.site.replace(/\.weight$/, ''))).toEqual(reference.filter((s) => !/\.attn\.(q|k|v|attn_map)$/.test(s)));
    expect(seen.find((s) => s.site === 'layers.0.residual_group.blocks.1.attn.qkv.weight')!.info)
      .toEqual({ kind: 'linear_weight', shape: [36, 12], layout: ['out_features', 'in_features'] });
    expect(seen.find((s) => s.site === 'layers.0.residual_group.blocks.1.attn.attn_map')!.info.shape).toEqual([2, -1, 16, 16]);
  });

  test('q scaling is folded into the per-head q weights unless the qkv weight site rewrites the weight', () => {
    const key = 'layers.0.residual_group.blocks.0.attn.qkv';
    const original = stateDict.get(`${key}.weight`)!.data as Float32Array;
    const initializer = (bytes: Uint8Array, name: string) => {
      const t = decodeModel(bytes).graph.initializer.find((i) => i.name === name);
      return t && new Float32Array(Uint8Array.from(t.rawData!).buffer);
    };
    const scale = (12 / 2) ** -0.5;
    const folded = buildSwinIROnnx(config, stateDict, { height: 8, width: 8, sites: (_s, t) => t });
    expect(initializer(folded, `${key}.weight`)).toBeUndefined(); // re-laid out per head
    // [heads, E+1, head_dim]: element [0][0][0] is W[0][0] (q) and W[12][0] (k, row heads*head_dim).
    expect(initializer(folded, `${key}.q_heads`)![0]).toBe(Math.fround(original[0] * scale));
    expect(initializer(folded, `${key}.k_heads`)![0]).toBe(original[12 * 12]);
    const rewritten = buildSwinIROnnx(config, stateDict, {
      height: 8, width: 8,
      sites: (site, t, g) => (site.endsWith('.qkv.weight') ? g.op('Identity', [t]) : t),
    });
    expect(initializer(rewritten, `${key}.weight`)![0]).toBe(original[0]);
    expect(decodeModel(rewritten).graph.node.filter((n) => n.opType === 'Mul' && n.input.some((i) => i.startsWith('q_scale')))).toHaveLength(4);
  });

  test('errors name the offending key, shape or size', () => {
    const missing = new Map(stateDict);
    missing.delete('norm.weight');
    expect(() => buildSwinIROnnx(config, missing, { height: 8, width: 8 })).toThrow(/no 'norm.weight' \(expected shape \[12\]\)/);
    const wrong = new Map(stateDict);
    wrong.set('conv_first.bias', { dtype: 'float32', shape: [11], data: new Float32Array(11) });
    expect(() => buildSwinIROnnx(config, wrong, { height: 8, width: 8 })).toThrow(/'conv_first.bias' has shape \[11\], expected \[12\]/);
    expect(() => buildSwinIROnnx(config, stateDict, { height: 1, width: 9 })).toThrow(/too small to reflect-pad/);
    expect(() => buildSwinIROnnx({ ...config, upsampler: 'nearest+conv', upscale: 2 }, stateDict, { height: 8, width: 8 })).toThrow(/upscale 4 only/);
  });
});
