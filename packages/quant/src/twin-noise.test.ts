/**
 * The two extra quantizer forms (twin.ts, noise.ts): the typed-array function (`fakeQuantize`), the tfjs ops
 * (`tfjsQuantHooks`' forms) and the ONNX nodes (`siteQuantNodes`) give identical float32 values on random
 * tensors, and their defining properties hold.
 */
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { GraphBuilder, initBackend, type SiteInfo } from '@harmoq/swinir';
import { noisyQuantTf, uniformNoise } from './noise';
import { siteQuantNodes } from './onnx';
import { fakeQuantTf, fakeQuantize, type Bounds, type QuantForm } from './quantizer';
import { toTfTwin, twinGrid, twinProblem, twinQuantTf, twinRange, type TwinUniform } from './twin';
import { seededRng } from '@harmoq/data';

beforeAll(async () => {
  await initBackend('cpu');
});

const f32 = Math.fround;
const float = (min: number, max: number) => fc.float({ min: f32(min), max: f32(max), noNaN: true, noDefaultInfinity: true });
const bitsArb = fc.constantFrom(2, 3, 4, 6, 8);
const formArb = fc.constantFrom<QuantForm>('real-offset', 'integer');
const C = 4;
const info: SiteInfo = { kind: 'linear_input', shape: [-1, C], layout: ['token', 'in_features'] };

/** A twin parameter set for C channels (per channel) or one (per tensor). */
const twinArb = (channels: number) => fc.record({
  signed: fc.boolean(),
  fine: fc.array(float(1e-3, 0.5), { minLength: channels, maxLength: channels }),
  shift: fc.array(fc.integer({ min: 0, max: 8 }), { minLength: channels, maxLength: channels }),
});
/** Rows of C values; includes values right on the range thresholds via the mix of scales. */
const rowsArb = fc.array(fc.oneof(float(-3, 3), float(-300, 300), float(-0.01, 0.01)), { minLength: C, maxLength: 16 * C })
  .map((xs) => Float32Array.from(xs.slice(0, xs.length - (xs.length % C))));

async function onnxRun(bounds: Bounds, bits: number, form: QuantForm, x: Float32Array): Promise<Float32Array> {
  const g = new GraphBuilder();
  g.addInput('x', 'float32', ['rows', C]);
  const y = siteQuantNodes(g, 'x', bounds, { bits, form, symmetric: false, perChannel: bounds.lower.length > 1 }, info, 'site');
  g.addOutput(y, 'float32', ['rows', C], 'y');
  const session = await ort.InferenceSession.create(g.toModel());
  try {
    return (await session.run({ x: new ort.Tensor('float32', x, [x.length / C, C]) })).y.data as Float32Array;
  } finally {
    await session.release();
  }
}

const same = (a: ArrayLike<number>, b: ArrayLike<number>) => a.length === b.length && Array.from(a).every((v, i) => Object.is(v + 0, b[i] + 0));

describe('twin-uniform quantizer', () => {
  test('every output lies on the fine or the coarse grid, on the side of the threshold the input is', () => {
    fc.assert(fc.property(twinArb(1), bitsArb, rowsArb, (twin, bits, x) => {
      const out = fakeQuantize(x, { ...twinRange(twin, bits), twin }, bits, 'real-offset');
      const { fine, coarse } = twinGrid(twin, 0, bits);
      const threshold = twin.signed ? 0 : f32(2 ** (bits - 1) * f32(twin.fine[0]));
      return Array.from(out).every((q, i) => (x[i] < threshold ? fine : coarse).includes(q));
    }), { numRuns: 200 });
  });

  test('post-softmax form: values in [0, 1] keep their error within half a step of their grid', () => {
    const twin: TwinUniform = { signed: false, fine: [1 / 8 / 16], shift: [4] };
    const x = Float32Array.from({ length: 1000 }, (_, i) => f32(i / 999));
    const out = fakeQuantize(x, { ...twinRange(twin, 4), twin }, 4, 'real-offset');
    x.forEach((v, i) => {
      // R1 = [0, 8/128) has levels 0..7/128 only, so its top sliver [7.5/128, 8/128) rounds down to 7/128.
      const bound = v < 7.5 / 128 ? 1 / 256 : v < 8 / 128 ? 1 / 128 : 1 / 16;
      expect(Math.abs(out[i] - Math.min(v, 7 / 8))).toBeLessThanOrEqual(bound + 1e-7);
    });
  });

  test('typed arrays, tfjs and ONNX agree exactly, per tensor and per channel', async () => {
    await fc.assert(fc.asyncProperty(fc.boolean(), bitsArb, rowsArb, twinArb(C), async (perChannel, bits, x, twinC) => {
      const twin: TwinUniform = perChannel ? twinC : { signed: twinC.signed, fine: twinC.fine.slice(0, 1), shift: twinC.shift.slice(0, 1) };
      const bounds: Bounds = { ...twinRange(twin, bits), twin };
      const layout = perChannel ? { channels: C, inner: 1 } : undefined;
      const scalar = fakeQuantize(x, bounds, bits, 'real-offset', layout);
      const shape = perChannel ? [C] : [];
      const tfTwin = toTfTwin(twin, bits, shape);
      const viaTf = tf.tidy(() => twinQuantTf(tf.tensor(x, [x.length / C, C]), tfTwin, bits).dataSync());
      [tfTwin.fine, tfTwin.coarse, tfTwin.threshold].forEach((t) => t.dispose());
      const viaOnnx = await onnxRun(bounds, bits, 'real-offset', x);
      return same(scalar, viaTf) && same(scalar, viaOnnx);
    }), { numRuns: 40 });
  });

  test('validation names the site and the offending value', () => {
    const site = { id: 'b.mlp.fc2.input', role: 'activation' };
    const twin: TwinUniform = { signed: true, fine: [0.02], shift: [3] };
    const ok = { ...twinRange(twin, 4), twin };
    expect(twinProblem(site, ok, 4)).toBeUndefined();
    expect(twinProblem(site, { ...ok, twin: { ...twin, fine: [Number.NaN] } }, 4)).toMatch(/fine step NaN at quantizer 'b\.mlp\.fc2\.input'/);
    expect(twinProblem(site, { ...ok, twin: { ...twin, shift: [1.5] } }, 4)).toMatch(/shift 1\.5/);
    expect(twinProblem(site, { ...ok, twin: { ...twin, shift: [3, 3] } }, 4)).toMatch(/1\/2 fine steps\/shifts .* expected 1/);
    expect(twinProblem(site, { ...ok, upper: [9] }, 4)).toMatch(/\[-0\.14.*, 9\] .* not the twin grids' span/);
    expect(twinProblem({ ...site, role: 'weight' }, ok, 4)).toMatch(/weight site/);
  });
});

describe('NoisyQuant noisy bias', () => {
  const boundsArb = fc.tuple(float(-5, 1), float(0.05, 10)).map(([l, w]) => ({ lower: [f32(l)], upper: [f32(l + w)] }));
  const noiseArb = fc.array(float(-0.5, 0.5), { minLength: C, maxLength: C });

  test('zero noise is exactly the plain quantizer', () => {
    fc.assert(fc.property(boundsArb, bitsArb, formArb, rowsArb, (b, bits, form, x) =>
      same(fakeQuantize(x, { ...b, noise: new Array(C).fill(0) }, bits, form), fakeQuantize(x, b, bits, form))), { numRuns: 100 });
  });

  test('the output is Q(x + N) - N: within half a step (plus the noise) of x inside the range', () => {
    fc.assert(fc.property(boundsArb, bitsArb, noiseArb, rowsArb, (b, bits, noise, x) => {
      const out = fakeQuantize(x, { ...b, noise }, bits, 'real-offset');
      const step = (b.upper[0] - b.lower[0]) / (2 ** bits - 1);
      return Array.from(x).every((v, i) => {
        const y = v + noise[i % C];
        return y < b.lower[0] || y > b.upper[0] || Math.abs(out[i] - v) <= step / 2 + 1e-5 * (1 + Math.abs(v));
      });
    }), { numRuns: 100 });
  });

  test('typed arrays, tfjs and ONNX agree exactly', async () => {
    await fc.assert(fc.asyncProperty(boundsArb, bitsArb, formArb, noiseArb, rowsArb, async (b, bits, form, noise, x) => {
      const bounds: Bounds = { ...b, noise: noise.map(f32) };
      const scalar = fakeQuantize(x, bounds, bits, form);
      const viaTf = tf.tidy(() => noisyQuantTf(tf.tensor(x, [x.length / C, C]), tf.tensor(bounds.noise!, [C]),
        (y) => fakeQuantTf(y, tf.scalar(b.lower[0]), tf.scalar(b.upper[0]), bits, form)).dataSync());
      const viaOnnx = await onnxRun(bounds, bits, form, x);
      return same(scalar, viaTf) && same(scalar, viaOnnx);
    }), { numRuns: 40 });
  });

  test('the noise cancels through a Linear: W(Q(x+N) - N) + b = W Q(x+N) + (b - W N) in float64', () => {
    const rng = seededRng(5);
    const noise = uniformNoise(rng, C, 0.3);
    expect(noise.every((v) => Math.abs(v) <= 0.15)).toBe(true);
    expect(new Set(noise).size).toBe(C);
    const x = Float32Array.from({ length: 32 * C }, () => rng.next() * 4 - 2);
    const w = Array.from({ length: 3 * C }, () => rng.next() - 0.5);
    const bias = [0.1, -0.2, 0.3];
    const bounds = { lower: [-2], upper: [2], noise };
    const xhat = fakeQuantize(x, bounds, 4, 'real-offset');
    const shifted = Float32Array.from(x, (v, i) => v + noise[i % C]);
    const qShifted = fakeQuantize(shifted, { lower: [-2], upper: [2] }, 4, 'real-offset');
    const folded = bias.map((bo, o) => bo - noise.reduce((a, n, i) => a + w[o * C + i] * n, 0));
    let worst = 0;
    for (let r = 0; r < 32; r++) {
      for (let o = 0; o < 3; o++) {
        let a = bias[o], b = folded[o];
        for (let i = 0; i < C; i++) {
          a += w[o * C + i] * xhat[r * C + i];
          b += w[o * C + i] * qShifted[r * C + i];
        }
        worst = Math.max(worst, Math.abs(a - b));
      }
    }
    // Only the float32 rounding of Q(x+N) - N stays: 2^-24 relative per element, not a quantization step.
    expect(worst).toBeLessThan(1e-6);
    // And the noise matters: without removing it the Linear's output moves by W N.
    const plain = fakeQuantize(x, { lower: [-2], upper: [2] }, 4, 'real-offset');
    expect(same(plain, xhat)).toBe(false);
  });
});
