/**
 * The fake-quantized model on both engines: ONNX nodes (SiteHook) and tfjs hooks (the differentiable
 * reference) compute the same thing, on the tiny golden SwinIR (2 RSTBs x 2 blocks, embed 12, window 4).
 */
import * as tf from '@tensorflow/tfjs';
import { createEngine, type SRRunner } from '@harmoq/engine';
import { SwinIRModel, initBackend, type SwinIRConfig } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { DEFAULT_QUANT_SETTINGS, makePlan, type BoundsMap, type QuantPlan } from './plan';
import { quantizedEngineOptions } from './quantize';
import { calibrateTiny, tinyGolden } from './testing/tiny-model';
import { disposeTfBounds, tfjsQuantHooks, toTfBounds } from './tfjs';

let stateDict: StateDict;
let config: SwinIRConfig;
let input: Float32Array;
const shape = [1, 3, 19, 27] as const;

beforeAll(async () => {
  await initBackend('wasm');
  ({ stateDict, config, input } = tinyGolden());
});

const calibrated = (method: string, bits: number, set: string[] = []) => calibrateTiny({ stateDict, config }, method, bits, set);

async function run(runner: SRRunner): Promise<Float32Array> {
  const out = await runner.forward(input, shape);
  await runner.dispose();
  return out.data;
}

async function onnxOutput(plan: QuantPlan, bounds: BoundsMap): Promise<Float32Array> {
  return run(await createEngine({ engine: 'onnx', config, threads: 1, ...quantizedEngineOptions(plan, bounds, stateDict, 'onnx') }));
}

/** The tfjs reference with both hooks (weights quantized in the graph, as gradient methods use it). */
function tfjsOutput(plan: QuantPlan, bounds: BoundsMap): Float32Array {
  const model = new SwinIRModel(stateDict, config);
  const tensors = toTfBounds(plan, bounds);
  try {
    const hooks = tfjsQuantHooks(plan, tensors, (key) => model.param(key));
    return model.forward({ data: input, shape: [...shape] }, hooks).data;
  } finally {
    disposeTfBounds(tensors);
    model.dispose();
  }
}

function diff(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  let max = 0, sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

describe('fake quantization: ONNX nodes vs tfjs hooks', () => {
  let fp: Float32Array;
  beforeAll(async () => {
    fp = await run(await createEngine({ engine: 'onnx', config, stateDict, threads: 1 }));
  });

  test.each([
    ['2DQuant default (split qkv, per tensor, real-offset), W4A4 minmax', 'minmax', 4, []],
    ['per-channel integer form with convs, W3A3 dobi', 'dobi', 3, ['form=integer', 'weightGranularity=channel', 'activationGranularity=channel', 'sites=2dquant+conv']],
    ['symmetric weights, fused qkv, W2A2 percentile', 'percentile', 2, ['weightSymmetric=true', 'sites=2dquant+fused-qkv']],
  ])('%s: the engines agree and differ from float', async (_name, method, bits, set) => {
    const { plan, bounds } = await calibrated(method as string, bits as number, set as string[]);
    const onnx = await onnxOutput(plan, bounds);
    const ref = tfjsOutput(plan, bounds);
    const runner = await run(await createEngine({ engine: 'tfjs', config, backend: 'wasm', ...quantizedEngineOptions(plan, bounds, stateDict, 'tfjs') }));
    const d = diff(onnx, ref);
    // Measured: max 6e-7. Float rounding differences between engines could move a value across a rounding
    // edge, so the bound leaves room for a few such flips.
    expect(d.mean).toBeLessThan(1e-5);
    expect(d.max).toBeLessThan(1e-2);
    expect(diff(runner, ref).max).toBeLessThan(1e-5); // same engine, weights quantized up front vs in the graph
    expect(diff(onnx, fp).mean).toBeGreaterThan(20 * d.mean + 1e-4);
  }, 60_000);

  test('with wide bounds at 8 bits the quantized model stays close to float', async () => {
    const plan = makePlan(config, { ...DEFAULT_QUANT_SETTINGS, wbits: 8, abits: 8 });
    const { bounds: tight } = await calibrated('minmax', 8);
    // 10% beyond each side of the observed range.
    const wide: BoundsMap = new Map([...tight].map(([id, b]) => {
      const m = b.upper[0] - b.lower[0];
      return [id, { lower: [b.lower[0] - 0.1 * m], upper: [b.upper[0] + 0.1 * m] }];
    }));
    for (const out of [await onnxOutput(plan, wide), tfjsOutput(plan, wide)]) {
      const d = diff(out, fp);
      expect(d.max).toBeLessThan(0.03);
      expect(d.mean).toBeLessThan(2e-3);
    }
  }, 60_000);

  test('each part of the split qkv uses its own input bounds', async () => {
    const { plan, bounds } = await calibrated('minmax', 4);
    const block = 'layers.1.residual_group.blocks.0.attn.qkv';
    const squeezed: BoundsMap = new Map(bounds);
    const v = bounds.get(`${block}.v.input`)!;
    squeezed.set(`${block}.v.input`, { lower: [v.lower[0] * 0.05], upper: [v.upper[0] * 0.05] });
    const [a, b] = [await onnxOutput(plan, bounds), await onnxOutput(plan, squeezed)];
    const moved = diff(a, b).mean;
    expect(moved).toBeGreaterThan(1e-4);
    expect(diff(b, tfjsOutput(plan, squeezed)).mean).toBeLessThan(moved / 100);
  }, 60_000);

  test('bound gradients flow through every quantizer in the tfjs reference', async () => {
    const { plan, bounds } = await calibrated('minmax', 4);
    const model = new SwinIRModel(stateDict, config);
    const vars = toTfBounds(plan, bounds, true);
    try {
      const hooks = tfjsQuantHooks(plan, vars, (key) => model.param(key));
      const x = tf.transpose(tf.tensor4d(input, [...shape]), [0, 2, 3, 1]) as tf.Tensor4D;
      const { grads } = tf.variableGrads(() => tf.mean(tf.abs(tf.sub(model.apply(x, hooks), 0.5))) as tf.Scalar,
        [...vars.values()].flatMap((b) => [b.lower, b.upper]) as tf.Variable[]);
      const touched = [...vars].filter(([, b]) => {
        const gl = grads[(b.lower as tf.Variable).name], gu = grads[(b.upper as tf.Variable).name];
        return Math.abs(gl.dataSync()[0]) + Math.abs(gu.dataSync()[0]) > 0;
      });
      expect(touched.length).toBe(plan.sites.length);
      Object.values(grads).forEach((g) => g.dispose());
      x.dispose();
    } finally {
      disposeTfBounds(vars);
      model.dispose();
    }
  }, 60_000);
});
