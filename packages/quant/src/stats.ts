/**
 * What calibration methods know about a tensor: its exact range, its quantiles and the quantization error
 * ||x - Q(x)||_2 for any bounds. Weights are small and kept whole (`ExactDistribution`); activations over a
 * calibration set are not (SwinIR-light's attention maps alone hold ~38M values per 64x64 patch), so they
 * stream into a histogram whose bins carry their count and centred first and second moments
 * (`StreamingHistogram`). The error of a bin whose values all round to the same level is then exact; only
 * the few bins that straddle a rounding edge (at most 2^b + 1 per candidate) are approximated by their mean.
 */
import { CalibrationError } from './errors';
import { gridOf, quantizationError, type ChannelLayout, type QuantForm } from './quantizer';

/** One channel's (or one tensor's) values as a calibration method sees them. */
export interface Distribution {
  readonly count: number;
  readonly min: number;
  readonly max: number;
  /** The p-quantile, p in [0, 1] (0 = min, 1 = max). */
  quantile(p: number): number;
  /** ||x - Q(x)||_2 with bounds (l, u). */
  error(lower: number, upper: number, bits: number, form: QuantForm): number;
}

/** All values kept: exact error (2DQuant's float32 `cal_mse`) and exact quantiles. */
export class ExactDistribution implements Distribution {
  readonly count: number;
  readonly min: number;
  readonly max: number;
  private sorted?: Float32Array;

  constructor(readonly values: Float32Array) {
    if (values.length === 0) throw new CalibrationError('a distribution needs at least one value');
    let min = Infinity, max = -Infinity;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    this.count = values.length;
    this.min = min;
    this.max = max;
  }

  quantile(p: number): number {
    this.sorted ??= Float32Array.from(this.values).sort();
    const pos = Math.min(1, Math.max(0, p)) * (this.count - 1);
    const i = Math.floor(pos);
    const frac = pos - i;
    return i + 1 < this.count ? this.sorted[i] + frac * (this.sorted[i + 1] - this.sorted[i]) : this.sorted[i];
  }

  error(lower: number, upper: number, bits: number, form: QuantForm): number {
    return quantizationError(this.values, lower, upper, bits, form);
  }
}

/** The first non-finite value of an array, or -1 (v - v is NaN exactly for NaN and +-Infinity). */
export function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v - v !== 0) return i;
  }
  return -1;
}

/**
 * Per-channel histograms that widen as values arrive: when a value falls outside the covered range, the
 * range doubles towards it and neighbouring bins merge pairwise (moments merge exactly), so one pass over
 * the data suffices and resolution stays within a factor of two of range/bins.
 */
export class StreamingHistogram {
  readonly channels: number;
  readonly bins: number;
  readonly min: Float64Array;
  readonly max: Float64Array;
  /** Per channel: left edge of bin 0 and bin width (0 until the first value). */
  readonly lo: Float64Array;
  readonly width: Float64Array;
  /** [(channel * bins + bin) * 3 + j]: count, sum of (x - centre), sum of (x - centre)^2, interleaved for locality. */
  readonly moments: Float64Array;

  constructor(channels: number, bins: number) {
    if (bins < 2 || bins % 2 !== 0) throw new RangeError(`histogram bins ${bins} must be an even number >= 2`);
    this.channels = channels;
    this.bins = bins;
    this.min = new Float64Array(channels).fill(Infinity);
    this.max = new Float64Array(channels).fill(-Infinity);
    this.lo = new Float64Array(channels);
    this.width = new Float64Array(channels);
    this.moments = new Float64Array(channels * bins * 3);
  }

  /**
   * Adds a tensor (per-tensor histograms ignore `layout`). Returns -1, or the index of the first NaN/Inf;
   * the histogram is then partly updated and should be dropped (calibration stops there).
   */
  add(values: Float32Array, layout?: ChannelLayout): number {
    const channels = this.channels;
    const inner = channels === 1 ? values.length : layout!.inner;
    if (channels > 1 && layout!.channels !== channels) {
      throw new RangeError(`histogram has ${channels} channels, tensor layout ${layout!.channels}`);
    }
    const n = values.length;
    const channelOf = (i: number) => (channels === 1 ? 0 : Math.floor(i / inner) % channels);
    if (this.width.some((w) => w === 0)) {
      // First values: size the ranges from them (a pass of its own, once).
      const bad = firstNonFinite(values);
      if (bad >= 0) return bad;
      const lo = new Float64Array(channels).fill(Infinity), hi = new Float64Array(channels).fill(-Infinity);
      for (let i = 0; i < n; i++) {
        const c = channelOf(i), v = values[i];
        if (v < lo[c]) lo[c] = v;
        if (v > hi[c]) hi[c] = v;
      }
      for (let c = 0; c < channels; c++) if (lo[c] <= hi[c]) this.cover(c, lo[c], hi[c]);
    }
    // One pass: min/max, and binning of every value inside the current range. The rest (values beyond the
    // range, NaN and Inf, which fail every comparison) are collected and handled after.
    const bins = this.bins, m = this.moments;
    const lo = this.lo, width = this.width, min = this.min, max = this.max;
    const inv = Float64Array.from(width, (w) => (w > 0 ? 1 / w : 0));
    const outside: number[] = [];
    for (let i = 0, c = 0, k = 0; i < n; i++) {
      const v = values[i];
      if (v < min[c]) min[c] = v;
      if (v > max[c]) max[c] = v;
      const t = (v - lo[c]) * inv[c];
      if (t >= 0 && t < bins) {
        const b = t | 0;
        const d = v - (lo[c] + (b + 0.5) * width[c]);
        const j = (c * bins + b) * 3;
        m[j] += 1;
        m[j + 1] += d;
        m[j + 2] += d * d;
      } else {
        outside.push(i);
      }
      if (++k === inner) {
        k = 0;
        if (++c === channels) c = 0;
      }
    }
    if (outside.length === 0) return -1;
    for (const i of outside) if (values[i] - values[i] !== 0) return i;
    for (const i of outside) this.cover(channelOf(i), values[i], values[i]);
    for (const i of outside) this.bin(channelOf(i), values[i]);
    return -1;
  }

  private bin(c: number, v: number): void {
    const w = this.width[c];
    let b = Math.floor((v - this.lo[c]) / w);
    if (b >= this.bins) b = this.bins - 1;
    if (b < 0) b = 0;
    const d = v - (this.lo[c] + (b + 0.5) * w);
    const j = (c * this.bins + b) * 3;
    this.moments[j] += 1;
    this.moments[j + 1] += d;
    this.moments[j + 2] += d * d;
  }

  /** Total values seen in a channel. */
  count(channel = 0): number {
    let total = 0;
    const off = channel * this.bins;
    for (let b = 0; b < this.bins; b++) total += this.moments[(off + b) * 3];
    return total;
  }

  /** One channel as a Distribution. */
  distribution(channel = 0): Distribution {
    return new HistogramDistribution(this, channel);
  }

  private cover(c: number, lo: number, hi: number): void {
    if (this.width[c] === 0) {
      // First values: span them exactly (a constant tensor gets a tiny range around its value).
      const span = hi - lo;
      const width = span > 0 ? (span / this.bins) * (1 + 1e-9) : Math.max(Math.abs(lo), 1) * 1e-7;
      this.lo[c] = span > 0 ? lo : lo - (width * this.bins) / 2;
      this.width[c] = width;
      return;
    }
    while (lo < this.lo[c] || hi >= this.lo[c] + this.width[c] * this.bins) {
      this.double(c, lo < this.lo[c] ? 'down' : 'up');
    }
  }

  /** Doubles the range: old bins 2j, 2j+1 merge into one, placed in the upper half (down) or lower half (up). */
  private double(c: number, direction: 'up' | 'down'): void {
    const bins = this.bins, half = bins / 2, m = this.moments;
    const from = c * bins * 3, to = from + bins * 3;
    const old = m.slice(from, to);
    m.fill(0, from, to);
    const oldWidth = this.width[c];
    const shift = direction === 'up' ? 0 : half;
    for (let j = 0; j < half; j++) {
      const t = from + (shift + j) * 3;
      // The two old bin centres sit at -w/2 and +w/2 from the merged bin's centre.
      for (const [b, dc] of [[2 * j, -oldWidth / 2], [2 * j + 1, oldWidth / 2]] as const) {
        const n = old[b * 3], s1 = old[b * 3 + 1], s2 = old[b * 3 + 2];
        if (n === 0) continue;
        m[t] += n;
        m[t + 1] += s1 + n * dc;
        m[t + 2] += s2 + 2 * dc * s1 + n * dc * dc;
      }
    }
    if (direction === 'down') this.lo[c] -= oldWidth * bins;
    this.width[c] = oldWidth * 2;
  }
}

class HistogramDistribution implements Distribution {
  readonly count: number;
  readonly min: number;
  readonly max: number;

  constructor(private readonly h: StreamingHistogram, private readonly channel: number) {
    this.count = h.count(channel);
    if (this.count === 0) throw new CalibrationError('a histogram channel received no values');
    this.min = h.min[channel];
    this.max = h.max[channel];
  }

  quantile(p: number): number {
    const { h, channel } = this;
    if (p <= 0) return this.min;
    if (p >= 1) return this.max;
    const target = p * this.count;
    const off = channel * h.bins;
    let cumulative = 0;
    for (let b = 0; b < h.bins; b++) {
      const n = h.moments[(off + b) * 3];
      if (cumulative + n >= target && n > 0) {
        // Linear within the bin, clamped to the values actually seen.
        const left = h.lo[channel] + b * h.width[channel];
        const v = left + ((target - cumulative) / n) * h.width[channel];
        return Math.min(this.max, Math.max(this.min, v));
      }
      cumulative += n;
    }
    return this.max;
  }

  error(lower: number, upper: number, bits: number, form: QuantForm): number {
    const { h, channel } = this;
    const { start: a, step: s, steps: n } = gridOf(lower, upper, bits, form);
    const m = h.moments, off = channel * h.bins;
    const lo = h.lo[channel], w = h.width[channel];
    // Bins are visited in value order; `level` is the grid level at the bin's left end and `edge` the value
    // where rounding moves on to the next level (values below the grid clip to level 0, above to n).
    let level = 0, edge = a + 0.5 * s;
    let sum = 0;
    for (let b = 0; b < h.bins; b++) {
      const j = (off + b) * 3;
      const count = m[j];
      if (count === 0) continue;
      const left = lo + b * w;
      const from = left > this.min ? left : this.min, to = left + w < this.max ? left + w : this.max;
      while (level < n && edge <= from) edge = a + (++level + 0.5) * s;
      if (level === n || to <= edge) {
        // Every value of the bin rounds to one level: exact from the bin's moments.
        const dc = left + w / 2 - (a + level * s);
        sum += m[j + 2] + 2 * dc * m[j + 1] + count * dc * dc;
        continue;
      }
      // The bin straddles rounding edges: spread its count uniformly over [from, to] and cut it there.
      const span = to - from;
      for (let k = level, segStart = from, e = edge; ; e = a + (++k + 0.5) * s) {
        const segEnd = k === n || to < e ? to : e;
        const len = segEnd - segStart;
        const d = (segStart + segEnd) / 2 - (a + k * s);
        sum += ((count * len) / span) * (d * d + (len * len) / 12);
        if (segEnd >= to) break;
        segStart = segEnd;
      }
    }
    return Math.sqrt(Math.max(0, sum));
  }
}
