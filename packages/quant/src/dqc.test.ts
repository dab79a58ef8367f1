import * as tf from '@tensorflow/tfjs';
import { seededRng, type CalibrationData } from '@harmoq/data';
import { initBackend, type SwinIRConfig } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { createCalibrationContext } from './context';
import { distillBounds, featureTerm, groupStages, type DqcOptions } from './dqc';
import { PTQ_METHODS } from './methods';
import { DEFAULT_QUANT_SETTINGS, makePlan } from './plan';
import { tinyFixture } from './testing/tiny-model';

/** The code's broadcast, written out: (B,1,1,1) norms against (B,N) features give (B,B,N). */
function explicitBroadcast(fq: number[][], ff: number[][]): number {
  const norm = (v: number[]) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  const b = fq.length, n = fq[0].length;
  let sum = 0;
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < b; j++) for (let k = 0; k < n; k++) sum += (fq[j][k] / norm(fq[i]) - ff[j][k] / norm(ff[i])) ** 2;
  }
  const numel = b * b * n;
  return sum / numel / numel;
}

function explicitPerSample(fq: number[][], ff: number[][]): number {
  const norm = (v: number[]) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  const b = fq.length, n = fq[0].length;
  let sum = 0;
  for (let j = 0; j < b; j++) for (let k = 0; k < n; k++) sum += (fq[j][k] / norm(fq[j]) - ff[j][k] / norm(ff[j])) ** 2;
  return sum / (b * n) / (b * n);
}

describe('DQC loss terms', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });
  const rng = seededRng(11);
  const features = (b: number, n: number) => Array.from({ length: b }, () => Array.from({ length: n }, () => rng.next() * 4 - 1));
  const asTensor = (f: number[][], h: number, w: number) => tf.tensor4d(f.flat(), [f.length, h, w, f[0].length / (h * w)]);

  test.each([1, 2, 3])('both normalisations match their written-out definitions (batch %i)', (b) => {
    const fq = features(b, 2 * 3 * 4), ff = features(b, 2 * 3 * 4);
    for (const [norm, expected] of [['broadcast', explicitBroadcast(fq, ff)], ['per-sample', explicitPerSample(fq, ff)]] as const) {
      const got = featureTerm(asTensor(fq, 2, 3), asTensor(ff, 2, 3), norm).dataSync()[0];
      expect(Math.abs(got - expected)).toBeLessThan(1e-5 * expected);
    }
  });

  test('at batch 1 the two forms agree; at batch 2 they differ', () => {
    const one = [features(1, 24), features(1, 24)];
    const t = (f: number[][]) => asTensor(f, 2, 3);
    const [a1, b1] = (['broadcast', 'per-sample'] as const).map((n) => featureTerm(t(one[0]), t(one[1]), n).dataSync()[0]);
    // numel differs (B*B*N vs B*N) only by B = 1.
    expect(Math.abs(a1 - b1)).toBeLessThan(1e-6 * b1);
    const two = [features(2, 24), features(2, 24)];
    const [a2, b2] = (['broadcast', 'per-sample'] as const).map((n) => featureTerm(t(two[0]), t(two[1]), n).dataSync()[0]);
    expect(Math.abs(a2 - b2)).toBeGreaterThan(1e-3 * b2);
  });

  test('the norms are detached, as in the code: the gradient is 2 (fq/|fq| - ff/|ff|) / |fq| / numel^2', () => {
    const fq = features(1, 24), ff = features(1, 24);
    const g = tf.grad((x: tf.Tensor) => featureTerm(x as tf.Tensor4D, asTensor(ff, 2, 3), 'per-sample'))(asTensor(fq, 2, 3)).dataSync();
    const nq = Math.hypot(...fq[0]), nf = Math.hypot(...ff[0]);
    fq[0].forEach((x, k) => {
      const expected = (2 * (x / nq - ff[0][k] / nf)) / nq / 24 ** 2;
      expect(Math.abs(g[k] - expected)).toBeLessThan(1e-4 * Math.abs(expected) + 1e-12);
    });
  });

  test('the hooked stages are the last block of each residual group', () => {
    expect(groupStages([6, 6, 6, 6])).toEqual(['rstb0_block5', 'rstb1_block5', 'rstb2_block5', 'rstb3_block5']);
  });
});

describe('distillBounds on the tiny golden model', () => {
  let stateDict: StateDict;
  let config: SwinIRConfig;
  let data: CalibrationData;
  beforeAll(async () => {
    ({ stateDict, config, data } = await tinyFixture());
  });

  test('full-batch steps lower the DQC loss from the DOBI start and keep every u above its l', async () => {
    const plan = makePlan(config, { ...DEFAULT_QUANT_SETTINGS, wbits: 2, abits: 2 });
    const ctx = createCalibrationContext({ plan, stateDict, data, rng: seededRng(1), threads: 1, captureEngine: 'onnx', bins: 2048, channelBins: 64 });
    try {
      const init = await PTQ_METHODS.dobi.calibrate(ctx, { search: 'two-sided', steps: 100 });
      const options: DqcOptions = {
        iterations: 25, batch: 4, crop: 0, lr: 1e-2, beta1: 0.9, beta2: 0.99, pixelWeight: 1, featureWeight: 5, featureNorm: 'per-sample',
      };
      const { bounds, losses, stepSeconds } = await distillBounds(ctx, init, options);
      expect(losses).toHaveLength(25);
      expect(stepSeconds).toHaveLength(25);
      // The batch is the whole pool and fixed, so the loss is one deterministic objective.
      expect(Math.min(...losses.slice(-5))).toBeLessThan(0.8 * losses[0]);
      let moved = 0;
      for (const site of plan.sites) {
        const b = bounds.get(site.id)!, a = init.get(site.id)!;
        b.lower.forEach((l, c) => {
          expect(b.upper[c]).toBeGreaterThan(l);
          if (Math.abs(l - a.lower[c]) > 1e-4 || Math.abs(b.upper[c] - a.upper[c]) > 1e-4) moved++;
        });
      }
      expect(moved).toBeGreaterThan(plan.sites.length / 2);
    } finally {
      ctx.dispose();
    }
  }, 120_000);
});
