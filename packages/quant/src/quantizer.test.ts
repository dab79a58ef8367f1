import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { initBackend } from '@harmoq/swinir';
import {
  SUPPORTED_BITS, checkBits, fakeQuantTf, fakeQuantize, gridOf, gridSteps, quantizationError, scalarQuantizer, stepSize, zeroPoint,
  type QuantForm,
} from './quantizer';

beforeAll(async () => {
  await initBackend('cpu');
});

const f32 = Math.fround;
const float = (min: number, max: number) => fc.float({ min: f32(min), max: f32(max), noNaN: true, noDefaultInfinity: true });
/** Bounds l < u with a step that float32 can resolve. */
const boundsArb = fc.tuple(float(-50, 50), float(1e-3, 100)).map(([l, width]) => [f32(l), f32(l + width)] as const);
const bitsArb = fc.constantFrom(...SUPPORTED_BITS);
const formArb = fc.constantFrom<QuantForm>('real-offset', 'integer');
const valuesArb = fc.array(float(-200, 200), { minLength: 1, maxLength: 64 });

/** The level index of q on the form's float32 grid, or null when q is not a grid value. */
function gridIndex(q: number, l: number, u: number, bits: number, form: QuantForm): number | null {
  const { step: s, steps: n, zero: z } = gridOf(l, u, bits, form);
  for (let k = 0; k <= n; k++) {
    const level = form === 'real-offset' ? f32(f32(k * s) + f32(l)) : f32((k - z) * s);
    if (level === q) return k;
  }
  return null;
}

describe('typed-array quantizers', () => {
  test("2DQuant's formula on a hand-checked case: l=-1, u=1, 2 bits has levels -1, -1/3, 1/3, 1", () => {
    const q = scalarQuantizer(-1, 1, 2, 'real-offset');
    expect([-5, -1, -0.7, -0.66, -0.4, 0, 0.2, 0.9, 3].map(q)).toEqual(
      [-1, -1, -1, f32(f32(f32(2 / 3)) - 1), f32(f32(f32(2 / 3)) - 1), f32(f32(2 * f32(2 / 3)) - 1), f32(f32(2 * f32(2 / 3)) - 1), f32(f32(3 * f32(2 / 3)) - 1), f32(f32(3 * f32(2 / 3)) - 1)]);
    // (0 - (-1)) / s with s = f32(2/3) = 0.6666667 is 1.49999996, which float32 rounds to 1.5; half to even
    // then picks level 2, as torch's float32 ops do.
    expect(q(0)).toBe(f32(f32(2 * f32(2 / 3)) - 1));
  });

  test('half-way values round to even, as torch.round does', () => {
    // l = 0, u = 3, 2 bits: s = 1 exactly; 0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
    const q = scalarQuantizer(0, 3, 2, 'real-offset');
    expect([0.5, 1.5, 2.5].map(q)).toEqual([0, 2, 2]);
    const qi = scalarQuantizer(-1.5, 1.5, 2, 'integer'); // s = 1, z = round(1.5) = 2
    expect(zeroPoint(-1.5, 1.5, 2)).toBe(2);
    expect([-0.5, 0.5, 1.5, -2.5].map(qi)).toEqual([0, 0, 1, -2]);
  });

  test('outputs lie on the grid, stay within the bounds and requantize to themselves', () => {
    fc.assert(fc.property(boundsArb, bitsArb, formArb, valuesArb, ([l, u], bits, form, xs) => {
      const q = scalarQuantizer(l, u, bits, form);
      const { step } = gridOf(l, u, bits, form);
      // real-offset: [l, u] up to float32 rounding of the top level; integer: [min(l,0), max(u,0)] moved by at
      // most s/2 to put 0 on the grid.
      const [lo, hi] = form === 'real-offset' ? [l, u] : [Math.min(l, 0), Math.max(u, 0)];
      const slack = (form === 'real-offset' ? 0 : step * 0.501) + 4 * Math.max(Math.abs(l), Math.abs(u)) * 2 ** -23;
      for (const x of xs) {
        const y = q(f32(x));
        if (gridIndex(y, l, u, bits, form) === null) return false;
        if (q(y) !== y) return false;
        if (y < lo - slack || y > hi + slack) return false;
      }
      return true;
    }));
  });

  test('the integer form always has 0 on its grid (its range is widened to contain 0)', () => {
    fc.assert(fc.property(boundsArb, bitsArb, ([l, u], bits) => Object.is(scalarQuantizer(l, u, bits, 'integer')(0) + 0, 0)));
    // l = 2, u = 5 becomes [0, 5]: 2 bits gives levels 0, 5/3, 10/3, 5.
    expect(scalarQuantizer(2, 5, 2, 'integer')(1)).toBe(f32(f32(5 / 3)));
  });

  test('per-channel fakeQuantize uses each channel its own bounds', () => {
    const x = Float32Array.from([0.3, 0.3, 0.3, 0.3, 0.3, 0.3]);
    const out = fakeQuantize(x, { lower: [0, 0], upper: [1, 0.2] }, 2, 'real-offset', { channels: 2, inner: 3 });
    const top = f32(3 * stepSize(0, 0.2, 2)); // the top level is 3s, which float32 rounds just above u = 0.2
    expect(Array.from(out)).toEqual([f32(1 / 3), f32(1 / 3), f32(1 / 3), top, top, top]);
    expect(() => fakeQuantize(x, { lower: [0, 0], upper: [1, 1] }, 2, 'real-offset')).toThrow(/layout/);
  });

  test('quantizationError is the L2 norm of x - Q(x)', () => {
    const x = Float32Array.from([0, 0.2, 0.5, 1.2]);
    // l=0, u=1, 1 step... 2 bits: levels 0, 1/3, 2/3, 1 -> errors 0, 0.2-1/3, 0.5-2/3 (1.5 rounds to 2), 1.2-1.
    const q = scalarQuantizer(0, 1, 2, 'real-offset');
    const want = Math.sqrt(Array.from(x).reduce((a, v) => a + (v - q(v)) ** 2, 0));
    expect(quantizationError(x, 0, 1, 2, 'real-offset')).toBeCloseTo(want, 12);
    expect(want).toBeGreaterThan(0.2);
  });

  test('unsupported bits name the choices', () => {
    expect(() => checkBits(1)).toThrow(/bits 1 is not supported \(choices: 2, 3, 4, 5, 6, 7, 8\)/);
    expect(() => checkBits(16)).toThrow(/16/);
  });
});

describe('tfjs fake quantizer', () => {
  test('forward equals the typed-array quantizer exactly, per tensor and per channel, both forms', () => {
    fc.assert(fc.property(boundsArb, boundsArb, bitsArb, formArb, fc.array(float(-200, 200), { minLength: 8, maxLength: 8 }), (b0, b1, bits, form, xs) => {
      const x = Float32Array.from(xs);
      const perTensor = tf.tidy(() => fakeQuantTf(tf.tensor(x), tf.scalar(b0[0]), tf.scalar(b0[1]), bits, form).dataSync());
      const want = fakeQuantize(x, { lower: [b0[0]], upper: [b0[1]] }, bits, form);
      const perChannel = tf.tidy(() => fakeQuantTf(tf.tensor(x, [2, 4]), tf.tensor([b0[0], b1[0]], [2, 1]), tf.tensor([b0[1], b1[1]], [2, 1]), bits, form).dataSync());
      const wantChannel = fakeQuantize(x, { lower: [b0[0], b1[0]], upper: [b0[1], b1[1]] }, bits, form, { channels: 2, inner: 4 });
      return Array.from(perTensor).join() === Array.from(want).join() && Array.from(perChannel).join() === Array.from(wantChannel).join();
    }), { numRuns: 60 });
  });

  function grads(x: Float32Array, dy: Float32Array, l: number, u: number, bits: number, form: QuantForm) {
    return tf.tidy(() => {
      const f = (xt: tf.Tensor, lt: tf.Tensor, ut: tf.Tensor) => tf.sum(tf.mul(fakeQuantTf(xt, lt, ut, bits, form), tf.tensor(dy)));
      const [gx, gl, gu] = tf.grads(f)([tf.tensor(x), tf.scalar(l), tf.scalar(u)]);
      return { gx: Array.from(gx.dataSync()), gl: gl.dataSync()[0], gu: gu.dataSync()[0] };
    });
  }

  test('the gradient passes to x inside [l, u] and is zero outside', () => {
    fc.assert(fc.property(boundsArb, bitsArb, valuesArb, ([l, u], bits, xs) => {
      const x = Float32Array.from(xs);
      const { gx } = grads(x, new Float32Array(x.length).fill(1), l, u, bits, 'real-offset');
      return Array.from(x).every((v, i) => gx[i] === (v >= l && v <= u ? 1 : 0));
    }), { numRuns: 60 });
  });

  test('integer form: the gradient passes where the level is not clamped', () => {
    fc.assert(fc.property(boundsArb, bitsArb, valuesArb, ([l, u], bits, xs) => {
      const x = Float32Array.from(xs);
      const { gx } = grads(x, new Float32Array(x.length).fill(1), l, u, bits, 'integer');
      const { step: s, zero: z, steps: n } = gridOf(l, u, bits, 'integer');
      return Array.from(x).every((v, i) => {
        const k = Math.round(f32(v / s)) + z; // tie direction does not matter away from the clamp edges
        if (k < -1 || k > n + 1) return gx[i] === 0;
        if (k > 0 && k < n) return gx[i] === 1;
        return true;
      });
    }), { numRuns: 60 });
  });

  test("l and u get 2DQuant's clip gradient (all values clipped): it matches finite differences of Q", () => {
    // Below l every value quantizes to l, above u to u: dQ/dl = 1 below, dQ/du = 1 above, 0 otherwise.
    fc.assert(fc.property(boundsArb, bitsArb, fc.array(fc.boolean(), { minLength: 1, maxLength: 16 }), fc.array(float(-2, 2), { minLength: 16, maxLength: 16 }),
      ([l, u], bits, below, weights) => {
        const x = Float32Array.from(below, (b, i) => (b ? l - 1 - i : u + 1 + i));
        const dy = Float32Array.from(weights.slice(0, x.length));
        const { gl, gu } = grads(x, dy, l, u, bits, 'real-offset');
        const h = 1e-3;
        const value = (ll: number, uu: number) => Array.from(x).reduce((a, v, i) => a + dy[i] * (v <= ll ? ll : uu), 0);
        const fdL = (value(l + h, u) - value(l - h, u)) / (2 * h);
        const fdU = (value(l, u + h) - value(l, u - h)) / (2 * h);
        return Math.abs(gl - fdL) < 1e-3 * (1 + Math.abs(fdL)) && Math.abs(gu - fdU) < 1e-3 * (1 + Math.abs(fdU));
      }), { numRuns: 60 });
  });

  test('inside the bounds l and u get the straight-through (LSQ-like) gradient: finite differences with the rounding residual frozen', () => {
    // With round(z) = z + delta and delta held fixed, Q = clip(x, l, u) + s*delta, s = (u-l)/(2^b-1):
    // dQ/dl = [x <= l] - delta/(2^b-1), dQ/du = [x >= u] + delta/(2^b-1). This is what the STE backward computes.
    fc.assert(fc.property(boundsArb, bitsArb, fc.array(fc.double({ min: 0.02, max: 0.98, noNaN: true }), { minLength: 1, maxLength: 16 }),
      fc.array(float(-2, 2), { minLength: 16, maxLength: 16 }), ([l, u], bits, ts, weights) => {
        const x = Float32Array.from(ts, (t) => l + t * (u - l));
        const dy = Float32Array.from(weights.slice(0, x.length));
        const { gl, gu } = grads(x, dy, l, u, bits, 'real-offset');
        const n = gridSteps(bits);
        const s0 = stepSize(l, u, bits);
        const delta = Array.from(x, (v) => Math.round((v - l) / s0) - (v - l) / s0);
        const value = (ll: number, uu: number) => Array.from(x).reduce((a, v, i) => a + dy[i] * (Math.min(uu, Math.max(ll, v)) + ((uu - ll) / n) * delta[i]), 0);
        const h = (u - l) * 1e-4;
        const fdL = (value(l + h, u) - value(l - h, u)) / (2 * h);
        const fdU = (value(l, u + h) - value(l, u - h)) / (2 * h);
        const scale = 1 + dy.reduce((a, v) => a + Math.abs(v), 0);
        return Math.abs(gl - fdL) < 2e-4 * scale && Math.abs(gu - fdU) < 2e-4 * scale;
      }), { numRuns: 60 });
  });

  test('per-channel bound gradients are summed per channel', () => {
    const x = tf.tensor([[-5, 0.32, 9], [-5, -5, 0.32]]);
    const [gl, gu] = tf.grads((l: tf.Tensor, u: tf.Tensor) => tf.sum(fakeQuantTf(x, l, u, 4, 'real-offset')))([tf.tensor([[0], [0]]), tf.tensor([[1], [1]])]);
    const l = Array.from(gl.dataSync()), u = Array.from(gu.dataSync());
    // Row 0: one value below (l gets 1), one above (u gets 1); row 1: two below.
    expect(l[0]).toBeCloseTo(1 - (5 - 4.8) / 15, 5);
    expect(u[0]).toBeCloseTo(1 + (5 - 4.8) / 15, 5);
    expect(l[1]).toBeCloseTo(2 - (5 - 4.8) / 15, 5);
    expect(u[1]).toBeCloseTo((5 - 4.8) / 15, 5);
  });
});
