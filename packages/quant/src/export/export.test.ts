/**
 * Exported files on the tiny golden SwinIR (2 RSTBs x 2 blocks, embed 12, window 4), run in onnxruntime-node
 * against the engine's fake-quant output on the golden input.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { createEngine } from '@harmoq/engine';
import { decodeModel, type SwinIRConfig } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { METHOD_NAMES } from '../methods';
import type { BoundsMap, QuantPlan } from '../plan';
import { quantizedEngineOptions } from '../quantize';
import { calibrateTiny, tinyGolden } from '../testing/tiny-model';
import { EXPORT_FORMATS, exportQuantizedOnnx, parseExportFormat, snappedPlan, type ExportFormat } from './export';
import { packBits, unpackBits } from './pack';

const H = 19, W = 27;
let stateDict: StateDict;
let config: SwinIRConfig;
let input: Float32Array;

beforeAll(() => {
  ({ stateDict, config, input } = tinyGolden());
});

const calibrated = (method: string, bits: number, set: string[] = []) => calibrateTiny({ stateDict, config }, method, bits, set);

async function runFile(model: Uint8Array): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  try {
    const out = await session.run({ input: new ort.Tensor('float32', input, [1, 3, H, W]) });
    return out.output.data as Float32Array;
  } finally {
    await session.release();
  }
}

async function engineOutput(plan: QuantPlan, bounds: BoundsMap): Promise<Float32Array> {
  const runner = await createEngine({ engine: 'onnx', config, threads: 1, ...quantizedEngineOptions(plan, bounds, stateDict, 'onnx') });
  try {
    return (await runner.forward(input, [1, 3, H, W])).data;
  } finally {
    await runner.dispose();
  }
}

const initializerBytes = (file: Uint8Array) => decodeModel(file).graph.initializer.reduce((n, t) => n + (t.rawData?.length ?? 0), 0);
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

test('packBits/unpackBits round-trip at every width, 8 values per b bytes', () => {
  for (let bits = 2; bits <= 7; bits++) {
    const levels = Uint8Array.from({ length: 37 }, (_, i) => (i * 7919) % 2 ** bits);
    const packed = packBits(levels, bits);
    expect(packed.length).toBe(Math.ceil(37 / 8) * bits);
    expect(unpackBits(packed, bits, 37)).toEqual(levels);
  }
  expect(() => packBits(Uint8Array.of(4), 2)).toThrow(/level 4 at 0 does not fit 2 bits/);
});

test('a bad format names the choices', () => {
  expect(() => parseExportFormat('int8')).toThrow("export format 'int8' is not valid (choices: qdq, fakequant, packed)");
});

describe.each([
  ['minmax', 4], ['minmax', 2], ['minmax', 8],
] as const)('%s W%dA%d', (method, bits) => {
  let q: { plan: QuantPlan; bounds: BoundsMap };
  let reference: Float32Array;
  const files = new Map<ExportFormat, Uint8Array>();
  beforeAll(async () => {
    q = await calibrated(method, bits);
    reference = await engineOutput(q.plan, q.bounds);
    for (const format of EXPORT_FORMATS) {
      files.set(format, exportQuantizedOnnx(q.plan, q.bounds, stateDict, { format, height: H, width: W, metadata: { method, wbits: String(bits) } }).model);
    }
  }, 120_000);

  test('fakequant and packed give the engine output bit for bit; packed stores b-bit weights', async () => {
    expect(await runFile(files.get('fakequant')!)).toEqual(reference);
    expect(await runFile(files.get('packed')!)).toEqual(reference);
    const { stats } = exportQuantizedOnnx(q.plan, q.bounds, stateDict, { format: 'packed', height: H, width: W });
    const floatStats = exportQuantizedOnnx(q.plan, q.bounds, stateDict, { format: 'fakequant', height: H, width: W }).stats;
    expect(stats.weightValues).toBe(floatStats.weightValues);
    expect(stats.floatWeights).toEqual([]);
    // 8 values per b bytes, padded per quantizer to a whole group.
    expect(stats.weightBytes / floatStats.weightBytes).toBeGreaterThanOrEqual(bits / 32);
    expect(stats.weightBytes / floatStats.weightBytes).toBeLessThan((bits / 32) * 1.1);
    // The stored tensors shrink by most of what the weights save; per-row scale, zero point and offset cost
    // 9 bytes a row, much of a tiny row of 12 inputs (node names, not data, dominate this tiny file's size).
    const packedModel = decodeModel(files.get('packed')!);
    expect(packedModel.graph.initializer.filter((t) => t.name.endsWith(bits < 8 ? '.packed' : '.levels')).reduce((n, t) => n + t.rawData!.length, 0)).toBe(stats.weightBytes);
    const saved = initializerBytes(files.get('fakequant')!) - initializerBytes(files.get('packed')!);
    expect(saved).toBeGreaterThan(0.5 * (floatStats.weightBytes - stats.weightBytes));
  });

  test('qdq is the snapped (integer-grid) model: the engine running the integer form, within 1e-6', async () => {
    const out = await runFile(files.get('qdq')!);
    const snapped = await engineOutput(snappedPlan(q.plan), q.bounds);
    expect(exportQuantizedOnnx(q.plan, q.bounds, stateDict, { format: 'qdq', height: H, width: W }).stats.snapped).toBe(q.plan.settings.form === 'real-offset' ? q.plan.sites.length : 0);
    expect(maxDiff(out, snapped)).toBeLessThanOrEqual(1e-6);
    const model = decodeModel(files.get('qdq')!);
    const ops = new Set(model.graph.node.map((n) => n.opType));
    expect(ops.has('QuantizeLinear') && ops.has('DequantizeLinear')).toBe(true);
    // Weights are uint8 levels, never float fake-quantized copies.
    expect(model.graph.initializer.some((t) => t.name.endsWith('.fq'))).toBe(false);
    // uint8 levels, uint4 (opset 21) at <= 4 bits.
    const levels = model.graph.initializer.filter((t) => t.name.endsWith('.levels'));
    expect(levels.length).toBeGreaterThan(0);
    expect(levels.every((t) => t.dataType === (bits <= 4 ? 21 : 2))).toBe(true);
    expect(model.opsetImport[0].version).toBe(bits <= 4 ? 21 : 17);
  });

  test('metadata_props record the provenance and the format; no custom domains', () => {
    for (const format of EXPORT_FORMATS) {
      const model = decodeModel(files.get(format)!);
      expect(Object.fromEntries((model.metadataProps ?? []).map((p) => [p.key, p.value]))).toEqual({ method, wbits: String(bits), format });
      expect(model.opsetImport.map((o) => o.domain ?? '')).toEqual(['']);
      // The bit-identical outputs above are with the constants compacted: biases from their tables, an int8 mask.
      const names = model.graph.initializer.map((t) => t.name);
      expect(names.filter((n) => n.endsWith('.attn.bias.table'))).toHaveLength(4);
      expect(names.some((n) => /^attn_mask.*\.int8$/.test(n))).toBe(true);
    }
  });
});

describe('every method of the registry at W8A8, W4A4 and W2A2', () => {
  const cases = METHOD_NAMES.filter((m) => m !== 'minmax').flatMap((m) => [8, 4, 2].map((bits) => [m, bits] as const));
  test.each(cases)('%s W%i: packed gives the engine output bit for bit; qdq loads and runs', async (method, bits) => {
    // 2DQuant's distillation is cut to a few steps: the export only needs its real-offset bounds.
    const q = await calibrated(method, bits, method === '2dquant' ? ['iterations=2'] : []);
    const reference = await engineOutput(q.plan, q.bounds);
    const packed = exportQuantizedOnnx(q.plan, q.bounds, stateDict, { format: 'packed', height: H, width: W });
    expect(await runFile(packed.model)).toEqual(reference);
    const qdq = exportQuantizedOnnx(q.plan, q.bounds, stateDict, { format: 'qdq', height: H, width: W }).model;
    const snapped = await engineOutput(snappedPlan(q.plan), q.bounds);
    // At 8 weight bits onnxruntime runs the Linears as QGemm (exact int32 sums, scaled once), the engine sums
    // the dequantized products in float32: the rounding differs by a few ulps of the output. Below 8 bits the
    // uint4 weights are not fused and the float path is the same.
    expect(maxDiff(await runFile(qdq), snapped)).toBeLessThanOrEqual(bits === 8 ? 2e-5 : 1e-6);
  }, 120_000);
});

test('qdq: onnxruntime runs every Linear as an integer QGemm (bias split off the Gemm, q/k/v as 2-D Gemms)', async () => {
  const q = await calibrated('minmax', 8);
  const { model } = exportQuantizedOnnx(q.plan, q.bounds, stateDict, { format: 'qdq', height: H, width: W });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-qgemm-'));
  try {
    const optimized = path.join(dir, 'optimized.onnx');
    const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, graphOptimizationLevel: 'extended', optimizedModelFilePath: optimized });
    await session.release();
    const ops = decodeModel(new Uint8Array(fs.readFileSync(optimized))).graph.node.map((n) => n.opType);
    const linears = q.plan.sites.filter((s) => s.role === 'weight').length;
    expect(ops.filter((op) => op === 'QGemm')).toHaveLength(linears);
    expect(ops).not.toContain('Gemm');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
