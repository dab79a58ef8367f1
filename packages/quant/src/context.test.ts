import { seededRng, type CalibrationData } from '@harmoq/data';
import type { SwinIRConfig } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { collectActivationStats } from './capture';
import { createCalibrationContext } from './context';
import { CalibrationError } from './errors';
import { PTQ_METHODS } from './methods';
import { DEFAULT_QUANT_SETTINGS, makePlan, type QuantPlan } from './plan';
import { tinyFixture } from './testing/tiny-model';

let stateDict: StateDict;
let config: SwinIRConfig;
let data: CalibrationData;

beforeAll(async () => {
  ({ stateDict, config, data } = await tinyFixture());
});

const contextFor = (plan: QuantPlan, onProgress?: () => void) => createCalibrationContext({
  plan, stateDict, data, rng: seededRng(1), threads: 1, captureEngine: 'onnx', bins: 2048, channelBins: 64, onProgress,
});

describe('CalibrationContext', () => {
  test('onnxruntime and tfjs capture the same float statistics at every site', async () => {
    for (const granularity of ['tensor', 'channel'] as const) {
      const plan = makePlan(config, { ...DEFAULT_QUANT_SETTINGS, wbits: 4, abits: 4, activationGranularity: granularity, sites: '2dquant+conv' });
      const options = { threads: 1, bins: 2048, channelBins: 64, batchSize: 2 };
      const onnx = await collectActivationStats(plan, stateDict, data.calibration, { ...options, engine: 'onnx' });
      const tfjs = await collectActivationStats(plan, stateDict, data.calibration, { ...options, engine: 'tfjs' });
      expect([...tfjs.keys()]).toEqual([...onnx.keys()]);
      for (const [site, h] of onnx) {
        const t = tfjs.get(site)!;
        expect(t.channels).toBe(h.channels);
        for (let c = 0; c < h.channels; c++) {
          expect(t.count(c)).toBe(h.count(c));
          expect(Math.abs(t.min[c] - h.min[c])).toBeLessThan(1e-4 * (1 + Math.abs(h.min[c])));
          expect(Math.abs(t.max[c] - h.max[c])).toBeLessThan(1e-4 * (1 + Math.abs(h.max[c])));
        }
      }
    }
  }, 60_000);

  test('forward helpers: float outputs are cached, fake-quant error on held-out patches falls with more bits', async () => {
    const errors: number[] = [];
    for (const bits of [2, 8]) {
      const plan = makePlan(config, { ...DEFAULT_QUANT_SETTINGS, wbits: bits, abits: bits });
      const ctx = contextFor(plan);
      const bounds = await PTQ_METHODS.minmax.calibrate(ctx, {});
      const fp = await ctx.forward(null, 'heldOut');
      expect(await ctx.forward(null, 'heldOut')).toBe(fp);
      expect(fp.length).toBe(2 * 3 * 32 * 32);
      errors.push(await ctx.outputError(bounds));
      ctx.dispose();
    }
    expect(errors[0]).toBeGreaterThan(10 * errors[1]);
    expect(errors[1]).toBeGreaterThan(0);
  }, 60_000);

  test('progress with a NaN loss, or NaN values, raises a CalibrationError naming stage, step and site', async () => {
    const ctx = contextFor(makePlan(config, { ...DEFAULT_QUANT_SETTINGS, wbits: 4, abits: 4 }));
    expect(() => ctx.progress({ stage: 'dqc', step: 17, total: 100, loss: NaN, site: 'x.attn.q' }))
      .toThrow(/loss NaN in stage 'dqc' at step 17\/100 \(site 'x.attn.q'\)/);
    expect(() => ctx.checkFinite(Float32Array.from([1, Infinity]), 'x.mlp.fc1.input', 3)).toThrow(CalibrationError);
    expect(() => ctx.checkFinite(Float32Array.from([1, Infinity]), 'x.mlp.fc1.input', 3)).toThrow(/Infinity at 'x.mlp.fc1.input' \(calibration step 3\)/);
    ctx.dispose();
  });
});
