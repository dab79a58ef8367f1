import fc from 'fast-check';
import { seededRng } from '@harmoq/data';
import { bestCandidate, dobiCandidates, minmaxBounds, percentileBounds, scaledRangeCandidates } from './search';
import { ExactDistribution, StreamingHistogram } from './stats';
import type { QuantForm } from './quantizer';

/** Long-tailed test data: a normal body plus a few large outliers, as activations have. */
function sample(seed: number, n: number, offset = 0): Float32Array {
  const rng = seededRng(seed);
  return Float32Array.from({ length: n }, (_, i) => {
    const g = Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
    return offset + (i % 97 === 0 ? 8 * g : g);
  });
}

function histogramOf(values: Float32Array, batches: number, bins = 8192): StreamingHistogram {
  const h = new StreamingHistogram(1, bins);
  const size = Math.ceil(values.length / batches);
  for (let b = 0; b < batches; b++) expect(h.add(values.subarray(b * size, (b + 1) * size))).toBe(-1);
  return h;
}

describe('StreamingHistogram', () => {
  test('keeps exact count, min, max and first two moments while its range widens batch by batch', () => {
    // Later batches reach further out, so the range doubles several times.
    const parts = [0.01, 0.5, 3, 40].map((s, i) => sample(i + 1, 5000).map((v) => v * s));
    const all = new Float32Array(20000);
    parts.forEach((p, i) => all.set(p, i * 5000));
    const h = histogramOf(all, 4, 1024);
    const d = h.distribution();
    expect(d.count).toBe(20000);
    expect(d.min).toBe(Math.min(...all));
    expect(d.max).toBe(Math.max(...all));
    let sum = 0, sumSq = 0, hs = 0, hsq = 0;
    for (const v of all) [sum, sumSq] = [sum + v, sumSq + v * v];
    for (let b = 0; b < h.bins; b++) {
      const [n, s1, s2] = [h.moments[b * 3], h.moments[b * 3 + 1], h.moments[b * 3 + 2]];
      const centre = h.lo[0] + (b + 0.5) * h.width[0];
      hs += n * centre + s1;
      hsq += s2 + 2 * centre * s1 + n * centre * centre;
    }
    expect(hs).toBeCloseTo(sum, 6);
    expect(hsq / sumSq).toBeCloseTo(1, 9);
  });

  test('its quantization error matches the exact error over all values within 0.5%', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 1000 }), fc.constantFrom(2, 3, 4, 8), fc.constantFrom<QuantForm>('real-offset', 'integer'),
      fc.double({ min: 0, max: 0.45, noNaN: true }), fc.double({ min: 0, max: 0.45, noNaN: true }), (seed, bits, form, a, b) => {
        const values = sample(seed, 8000, form === 'integer' ? 0 : 0.3);
        const exact = new ExactDistribution(values);
        const approx = histogramOf(values, 3).distribution();
        const span = exact.max - exact.min;
        const [l, u] = [exact.min + a * span, exact.max - b * span];
        const e = exact.error(l, u, bits, form), h = approx.error(l, u, bits, form);
        return Math.abs(h - e) <= 5e-3 * e + 1e-9;
      }), { numRuns: 25 });
  });

  test('quantiles are within one bin width of the order statistics around p', () => {
    const values = sample(5, 30000);
    const sorted = Float32Array.from(values).sort();
    const h = histogramOf(values, 2);
    const approx = h.distribution();
    const w = h.width[0] * 1.01;
    for (const p of [0, 1e-4, 0.01, 0.5, 0.99, 0.9999, 1]) {
      const pos = p * (sorted.length - 1);
      const q = approx.quantile(p);
      expect(q).toBeGreaterThanOrEqual(sorted[Math.max(0, Math.floor(pos) - 1)] - w);
      expect(q).toBeLessThanOrEqual(sorted[Math.min(sorted.length - 1, Math.ceil(pos) + 1)] + w);
    }
    expect(approx.quantile(0.5)).toBeCloseTo(new ExactDistribution(values).quantile(0.5), 2);
  });

  test('per-channel histograms keep channels apart', () => {
    // [rows, 2 channels, inner 3]: channel 0 holds 0..5, channel 1 holds 100..105.
    const h = new StreamingHistogram(2, 64);
    const x = Float32Array.from([0, 1, 2, 100, 101, 102, 3, 4, 5, 103, 104, 105]);
    expect(h.add(x, { channels: 2, inner: 3 })).toBe(-1);
    expect([h.distribution(0).min, h.distribution(0).max, h.distribution(1).min, h.distribution(1).max]).toEqual([0, 5, 100, 105]);
    expect(h.count(0)).toBe(6);
  });

  test('a non-finite value is reported by index and not added', () => {
    const h = new StreamingHistogram(1, 16);
    expect(h.add(Float32Array.from([1, 2, NaN, 4]))).toBe(2);
    expect(h.count()).toBe(0);
    expect(h.add(Float32Array.from([1, Infinity]))).toBe(1);
  });

  test('a constant tensor gets a usable (tiny) range', () => {
    const h = new StreamingHistogram(1, 16);
    h.add(new Float32Array(10).fill(0.25));
    const [l, u] = minmaxBounds(h.distribution(), false);
    expect(l).toBe(0.25);
    expect(u).toBeGreaterThan(l);
  });
});

describe('bound searches', () => {
  test("DOBI's candidates are 2DQuant's: two-sided equal shrinks of (max-min)/200, one-sided (max-min)/100 from the top", () => {
    const d = new ExactDistribution(Float32Array.from([-1, 0, 3]));
    const two = dobiCandidates(d, 100, false, false);
    expect(two).toHaveLength(100);
    expect(two[0]).toEqual([-1, 3]);
    expect(two[1][0]).toBeCloseTo(-1 + 0.02, 6);
    expect(two[1][1]).toBeCloseTo(3 - 0.02, 6);
    expect(two[99][0]).toBeCloseTo(-1 + 99 * 0.02, 5);
    const one = dobiCandidates(d, 100, true, false);
    expect(one[99]).toEqual([-1, Math.fround(3 - Math.fround(Math.fround(0.04) * 99))]);
  });

  test('the best candidate on the histogram is as good as the exact best, measured exactly', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 1000 }), fc.constantFrom(2, 3, 4), fc.boolean(), (seed, bits, oneSided) => {
      const values = sample(seed, 8000, 0.2);
      const exact = new ExactDistribution(values);
      const approx = histogramOf(values, 2).distribution();
      const candidates = dobiCandidates(exact, 100, oneSided, false);
      const viaExact = bestCandidate(exact, { bits, form: 'real-offset', candidates });
      const viaHistogram = bestCandidate(approx, { bits, form: 'real-offset', candidates });
      const achieved = exact.error(...viaHistogram.bounds, bits, 'real-offset');
      return achieved <= viaExact.error * 1.005;
    }), { numRuns: 10 });
  });

  test('DOBI at 2 bits clips a long-tailed tensor far inside its range; MinMax does not', () => {
    const values = sample(3, 20000);
    const d = new ExactDistribution(values);
    const [l, u] = bestCandidate(d, { bits: 2, form: 'real-offset', candidates: dobiCandidates(d, 100, false, false) }).bounds;
    expect(u - l).toBeLessThan(0.5 * (d.max - d.min));
    expect(minmaxBounds(d, false)).toEqual([d.min, d.max]);
  });

  test('percentile and scaled-range candidates', () => {
    const d = new ExactDistribution(Float32Array.from({ length: 10001 }, (_, i) => i - 5000));
    expect(percentileBounds(d, 99, false)).toEqual([-4900, 4900]);
    expect(percentileBounds(d, 100, true)).toEqual([-5000, 5000]);
    const c = scaledRangeCandidates(d, 3, 0.5, false);
    expect(c).toEqual([[-5000, 5000], [-3750, 3750], [-2500, 2500]]);
  });
});
