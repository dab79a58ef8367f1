/**
 * HarmoQ's stages on the tiny golden model and on synthetic layers: HSO keeps the float model (onnxruntime) and its
 * closed form is at the best of a grid search; SRC's moment formulas, ridge and GPTQ; the method end to end through
 * a qparams file with a weights sidecar (hash-checked), and its stage switches.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dataDir, seededRng, type CalibrationData } from '@harmoq/data';
import type { SwinIRConfig } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { forwardPatches } from '../capture';
import { resolveRequest } from '../config';
import { createCalibrationContext } from '../context';
import { DEFAULT_QUANT_SETTINGS, makePlan, type BoundsMap, type QuantPlan } from '../plan';
import { qparamsPlan, readQParams, writeQParams } from '../qparams';
import { quantizeModel, quantizedEngineOptions } from '../quantize';
import { fakeQuantize, type Bounds } from '../quantizer';
import { tinyFixture } from '../testing/tiny-model';
import { abrSegments, quantizedActivationStats, refineBounds, scaleRanges } from './abr';
import { linearInputMoments, momentWidth, quantizedInputMoments, runPatches, siteWindow } from './capture';
import { absorbScales, balanceProblem, closedFormScales, harmonize, harmonizedScales, modelledError, scaleGroups, type BalanceProblem } from './hso';
import {
  BOUND_QUANTILES, calibrateResiduals, gptqFactor, gptqRound, gramsOf, linearPairs, outputError, ridgeWeights, roundToGrid, solveLinear, weightBoundCandidates, type Grams,
} from './src';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-method-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let stateDict: StateDict;
let config: SwinIRConfig;
let data: CalibrationData;
let plan: QuantPlan;

beforeAll(async () => {
  ({ stateDict, config, data } = await tinyFixture());
  plan = makePlan(config, { ...DEFAULT_QUANT_SETTINGS, wbits: 2, abits: 2 });
});

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('HSO', () => {
  test('absorbing scales keeps the float model: onnxruntime outputs within 1e-5, for the closed form and for random scales', async () => {
    const fp = await forwardPatches(plan, stateDict, data.calibration, null, 1);
    const hso = await harmonize(plan, stateDict, (sites) => linearInputMoments(plan, stateDict, data.calibration, sites, null, 1));
    expect(hso.groups.map((g) => g.group.kind)).toEqual(Array(config.depths.reduce((a, b) => a + b, 0)).fill(['proj', 'qkv', 'fc1']).flat());
    expect(hso.groups.some((g) => g.gamma > 0)).toBe(true); // something moved, so the check below is not vacuous
    expect(hso.groups.every((g) => g.after <= g.before)).toBe(true);
    expect(maxDiff(await forwardPatches(plan, hso.stateDict, data.calibration, null, 1), fp)).toBeLessThan(1e-5);
    // Random scales over 1/8..8 on every group: still the same function, while the weights changed a lot.
    const rng = seededRng(9);
    const sd: StateDict = new Map(stateDict);
    for (const group of scaleGroups(plan)) absorbScales(sd, group, Float64Array.from({ length: config.embedDim }, () => 2 ** (6 * rng.next() - 3)), config.embedDim);
    expect(maxDiff(await forwardPatches(plan, sd, data.calibration, null, 1), fp)).toBeLessThan(1e-5);
    const key = 'layers.0.residual_group.blocks.0.norm1.weight';
    expect(maxDiff(sd.get(key)!.data as Float32Array, stateDict.get(key)!.data as Float32Array)).toBeGreaterThan(1e-2);
  });

  /** Two channels: x_0 small, x_1 an outlier channel; weights the other way round. */
  const problem = (abits: number, wbits: number): BalanceProblem => ({
    second: Float64Array.from([0.04, 9]), lo: Float64Array.from([-0.5, -1]), hi: Float64Array.from([0.5, 12]),
    weights: [{ values: Float64Array.from([1.5, 0.02, -0.8, 0.05, 0.3, -0.01]), rows: 3 }],
    abits, wbits, activationPerChannel: false, weightPerChannel: false,
  });
  /** The modelled error over s = (1, t), t on a fine log grid (a common factor changes nothing). */
  const gridBest = (p: BalanceProblem) => {
    let best = Infinity;
    for (let k = -3000; k <= 3000; k++) best = Math.min(best, modelledError(p, Float64Array.from([1, 10 ** (k / 1000)])));
    return best;
  };

  test.each([[2, 2], [4, 4], [2, 8], [8, 2]])('W%iA%i: HSO lands within 1% of the best of a grid search of its objective', (wbits, abits) => {
    const p = problem(abits, wbits);
    const { scales, before, after } = harmonizedScales(p);
    const best = gridBest(p);
    expect(after).toBeLessThan(before);
    expect(modelledError(p, scales)).toBeCloseTo(after, 10);
    expect(after).toBeLessThanOrEqual(best * 1.01);
  });

  test('the closed form divides the outlier channel; the bit widths decide which range kink the selection stops at', () => {
    const s = closedFormScales(problem(2, 2));
    expect(s[0] * s[1]).toBeCloseTo(1, 10); // geometric mean 1
    expect(s[1] / s[0]).toBeGreaterThan(10); // the outlier channel is divided more
    // 2-bit activations, 8-bit weights: scale until x_1/s_1 no longer sets the activation range (12 / 0.5 = 24).
    const w8a2 = harmonizedScales(problem(2, 8)).scales;
    expect(w8a2[1] / w8a2[0]).toBeGreaterThan(24 * 0.98);
    expect(w8a2[1] / w8a2[0]).toBeLessThan(24 * 1.02);
    // 8-bit activations, 2-bit weights: scale until W_:1 s_1 starts to set the weight range (1.5 / 0.05 = 30).
    const w2a8 = harmonizedScales(problem(8, 2)).scales;
    expect(w2a8[1] / w2a8[0]).toBeGreaterThan(30 * 0.98);
    expect(w2a8[1] / w2a8[0]).toBeLessThan(30 * 1.02);
  });
});

describe('SRC', () => {
  /** Correlated inputs x (N x n), their per-tensor 2-bit quantization, a weight W (rows x n). */
  const rows = 5, n = 6, count = 4000;
  const rng = seededRng(4);
  const x = new Float32Array(count * n);
  for (let t = 0; t < count; t++) {
    const common = rng.next() * 2 - 1;
    for (let j = 0; j < n; j++) x[t * n + j] = common * (1 + j / 3) + 0.3 * (rng.next() * 2 - 1);
  }
  const q = fakeQuantize(x, { lower: [-2], upper: [2.6] }, 2, 'real-offset');
  const w = Float64Array.from({ length: rows * n }, () => rng.next() * 2 - 1);
  const moments = (): Grams => {
    const g: Grams = { n, f: new Float64Array(n * n), h: new Float64Array(n * n), c: new Float64Array(n * n) };
    for (let t = 0; t < count; t++) {
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        g.f[i * n + j] += (x[t * n + i] * x[t * n + j]) / count;
        g.h[i * n + j] += (q[t * n + i] * q[t * n + j]) / count;
        g.c[i * n + j] += (x[t * n + i] * q[t * n + j]) / count;
      }
    }
    return g;
  };
  const direct = (v: Float64Array) => {
    let sum = 0;
    for (let t = 0; t < count; t++) {
      for (let r = 0; r < rows; r++) {
        let e = 0;
        for (let j = 0; j < n; j++) e += w[r * n + j] * x[t * n + j] - v[r * n + j] * q[t * n + j];
        sum += e * e;
      }
    }
    return sum / count;
  };
  const g = moments();

  test('the moment formula is the output error; the ridge solution beats W and is the least-squares optimum at λ -> 0', () => {
    expect(outputError(w, w, rows, g)).toBeCloseTo(direct(w), 8);
    const v = ridgeWeights(w, rows, g, 1e-9);
    expect(outputError(w, v, rows, g)).toBeCloseTo(direct(v), 8);
    expect(direct(v)).toBeLessThan(0.9 * direct(w));
    // Optimality: any small perturbation raises the error.
    for (let k = 0; k < 5; k++) {
      const p = v.map((val) => val + 0.01 * (rng.next() - 0.5));
      expect(direct(p)).toBeGreaterThan(direct(v));
    }
    expect(outputError(w, ridgeWeights(w, rows, g, 1e9), rows, g)).toBeCloseTo(outputError(w, w, rows, g), 6); // λ -> ∞ keeps W
  });

  test('with the bias column, the moments give the error of [W b] and the solve cancels the mean error', () => {
    const m = { channels: n, rows: count, gram: g.f.map((v) => v * count), qgram: g.h.map((v) => v * count), cross: g.c.map((v) => v * count),
      sum: new Float64Array(n), qsum: new Float64Array(n), min: new Float64Array(n), max: new Float64Array(n) };
    for (let t = 0; t < count; t++) for (let j = 0; j < n; j++) [m.sum[j], m.qsum[j]] = [m.sum[j] + x[t * n + j], m.qsum[j] + q[t * n + j]];
    const aug = gramsOf(m, true);
    const k = n + 1, b = [0.3, -0.2, 0.1, 0.5, -0.4];
    const wb = Float64Array.from({ length: rows * k }, (_, i) => (i % k < n ? w[Math.floor(i / k) * n + (i % k)] : b[Math.floor(i / k)]));
    const errorOf = (v: Float64Array) => {
      let sum = 0;
      for (let t = 0; t < count; t++) {
        for (let r = 0; r < rows; r++) {
          let e = b[r] - v[r * k + n];
          for (let j = 0; j < n; j++) e += w[r * n + j] * x[t * n + j] - v[r * k + j] * q[t * n + j];
          sum += e * e;
        }
      }
      return sum / count;
    };
    expect(outputError(wb, wb, rows, aug)).toBeCloseTo(errorOf(wb), 8);
    const v = ridgeWeights(wb, rows, aug, 1e-9);
    expect(outputError(wb, v, rows, aug)).toBeCloseTo(errorOf(v), 8);
    expect(errorOf(v)).toBeLessThan(outputError(w, ridgeWeights(w, rows, g, 1e-9), rows, g)); // the bias helps
  });

  test('GPTQ rounding is on the grid and beats plain rounding of the same weights', () => {
    const bounds = { lower: [-1.2], upper: [1.1] }, spec = { bits: 2, form: 'real-offset' as const, symmetric: false, perChannel: false };
    const v = ridgeWeights(w, rows, g, 1e-3);
    const gq = gptqRound(v, rows, n, gptqFactor(g.h, n), bounds, spec);
    const f32 = Float32Array.from(gq);
    expect(Array.from(fakeQuantize(f32, bounds, 2, 'real-offset'))).toEqual(Array.from(f32));
    expect(outputError(w, gq, rows, g)).toBeLessThan(outputError(w, roundToGrid(v, rows, n, bounds, spec), rows, g));
  });

  test('weight-grid search: candidates are weight quantiles (symmetric stays symmetric), and the chosen grid never loses on held-out', () => {
    // One large weight (an identity-like tail) over a small bulk: an L2 fit of 4 levels is pulled to cover it.
    const wo = Float64Array.from(w, (v, i) => (i === 0 ? 4 : 0.1 * v));
    const calibrated = { lower: [-0.2], upper: [4] };
    for (const symmetric of [false, true]) {
      const spec = { bits: 2, form: 'real-offset' as const, symmetric, perChannel: false };
      const grid = symmetric ? { lower: [-4], upper: [4] } : calibrated;
      const candidates = weightBoundCandidates(wo, rows, n, n, grid, spec);
      expect(candidates[0]).toBe(grid);
      expect(candidates.length).toBe(1 + (symmetric ? BOUND_QUANTILES.upper.length : BOUND_QUANTILES.lower.length * BOUND_QUANTILES.upper.length));
      const sorted = Array.from(wo).sort((a, b) => a - b);
      for (const c of candidates.slice(1)) {
        expect(c.upper[0]).toBeGreaterThan(c.lower[0]);
        if (symmetric) expect(c.lower[0]).toBe(-c.upper[0]);
        else expect(sorted).toContain(c.lower[0]);
      }
      const plain = solveLinear(wo, rows, g, g, grid, spec, true);
      const searched = solveLinear(wo, rows, g, g, grid, spec, true, n, true);
      expect(plain.bounds).toBe(grid);
      expect(searched.after).toBeLessThanOrEqual(plain.after);
      expect(searched.after).toBeLessThan(0.5 * plain.after); // here a grid that clips the outlier wins by far
      expect(candidates).toContainEqual(searched.bounds);
    }
    // Per channel: one range per row.
    const perRow = weightBoundCandidates(wo, rows, n, n, { lower: Array(rows).fill(-1), upper: Array(rows).fill(4) }, { bits: 2, form: 'real-offset', symmetric: false, perChannel: true });
    expect(perRow.every((c) => c.lower.length === rows && c.upper.length === rows)).toBe(true);
  });

  test('Gram capture in the graph equals the moments of the captured tensors', async () => {
    const site = plan.sites.find((s) => s.id.endsWith('blocks.0.mlp.fc1.input'))!;
    const bounds: BoundsMap = new Map([[site.id, { lower: [-1], upper: [1.5] }]]);
    const m = (await linearInputMoments(plan, stateDict, data.calibration, [site], bounds, 1)).get(site.id)!;
    const grams = gramsOf(m);
    // Diagonal of the float Gram >= the squares of min and max over the tokens; Q(x) in [-1, 1.5].
    for (let j = 0; j < m.channels; j++) {
      expect(grams.f[j * m.channels + j]).toBeGreaterThan(0);
      expect(grams.h[j * m.channels + j]).toBeLessThanOrEqual(1.5 ** 2 + 1e-6);
      expect(m.max[j]).toBeGreaterThanOrEqual(m.min[j]);
    }
    expect(m.rows).toBe(data.calibration.lrShape[0] * 16 * 16);
  });

  test('structure moments: the Laplacian Grams in the graph equal the window-by-window filter of the captured input', async () => {
    const site = plan.sites.find((s) => s.id.endsWith('blocks.1.mlp.fc1.input'))!; // a shifted block
    const n = site.channels, ws = siteWindow(plan, site);
    expect(ws).toBeGreaterThanOrEqual(3);
    const bounds: BoundsMap = new Map([[site.id, { lower: [-1], upper: [1.5] }]]);
    const m = (await linearInputMoments(plan, stateDict, data.calibration, [site], bounds, 1, true)).get(site.id)!;
    const xs: Float32Array[] = [];
    await runPatches(plan, stateDict, data.calibration, (name, input, g, info) => {
      if (name === site.hookSite && info.kind === 'linear_input') g.addOutput(input, 'float32', [-1, n], 'raw');
      return input;
    }, 1, 8, (o) => { xs.push(Float32Array.from(o.raw.data as Float32Array)); });
    const gram = new Float64Array(n * n), qgram = new Float64Array(n * n), cross = new Float64Array(n * n);
    let rows = 0;
    const laplacian = (t: Float32Array, base: number, i: number, j: number, c: number) => {
      const at = (a: number, b: number) => t[base + (a * ws + b) * n + c];
      return at(i, j) - 0.25 * (at(i - 1, j) + at(i + 1, j) + at(i, j - 1) + at(i, j + 1));
    };
    for (const x of xs) {
      const q = fakeQuantize(x, { lower: [-1], upper: [1.5] }, plan.spec(site).bits, plan.spec(site).form);
      for (let base = 0; base < x.length; base += ws * ws * n) {
        for (let i = 1; i < ws - 1; i++) {
          for (let j = 1; j < ws - 1; j++) {
            const lx = Array.from({ length: n }, (_, c) => laplacian(x, base, i, j, c));
            const lq = Array.from({ length: n }, (_, c) => laplacian(q, base, i, j, c));
            for (let a = 0; a < n; a++) {
              for (let b = 0; b < n; b++) {
                gram[a * n + b] += lx[a] * lx[b];
                qgram[a * n + b] += lq[a] * lq[b];
                cross[a * n + b] += lx[a] * lq[b];
              }
            }
            rows++;
          }
        }
      }
    }
    expect(m.structure!.rows).toBe(rows);
    for (const [mine, ref] of [[m.structure!.gram, gram], [m.structure!.qgram!, qgram], [m.structure!.cross!, cross]] as const) {
      const scale = Math.max(...ref.map(Math.abs));
      expect(maxDiff(Float32Array.from(mine), Float32Array.from(ref)) / scale).toBeLessThan(1e-4);
    }
    // β = 0 is the plain objective; β > 0 adds the filtered Grams per filtered token (no bias terms).
    const plain = gramsOf(m, true), weighted = gramsOf(m, true, 2);
    expect(weighted.h[0]).toBeCloseTo(plain.h[0] + (2 * qgram[0]) / rows, 6);
    expect(weighted.c[n]).toBe(plain.c[n]);
    expect(() => gramsOf({ ...m, structure: undefined }, true, 1)).toThrow(/structure weight 1 needs structure moments/);
  });

  test('Conv moments are of the im2col tokens (zero padding, weight order); SRC solves Convs like Linears', async () => {
    const convPlan = makePlan(config, { ...DEFAULT_QUANT_SETTINGS, wbits: 2, abits: 2, sites: '2dquant+conv' });
    const site = convPlan.sites.find((s) => s.id === 'layers.0.conv.input')!;
    const c = site.channels, k = 3, n = c * k * k;
    expect(momentWidth(convPlan, site)).toBe(n);
    const b: Bounds = { lower: [-0.5], upper: [0.8] };
    const bounds: BoundsMap = new Map([[site.id, b]]);
    const m = (await linearInputMoments(convPlan, stateDict, data.calibration, [site], bounds, 1, true)).get(site.id)!;
    const xs: { data: Float32Array; dims: readonly number[] }[] = [];
    await runPatches(convPlan, stateDict, data.calibration, (name, input, g, info) => {
      if (name === site.hookSite && info.kind === 'conv_input') g.addOutput(input, 'float32', [-1, c, -1, -1], 'raw');
      return input;
    }, 1, 8, (o) => { xs.push({ data: Float32Array.from(o.raw.data as Float32Array), dims: o.raw.dims }); });
    const gram = new Float64Array(n * n), cross = new Float64Array(n * n), lgram = new Float64Array(n * n);
    let rows = 0, lrows = 0;
    for (const { data: x, dims } of xs) {
      const [batch, , h, w] = dims;
      const q = fakeQuantize(x, b, 2, plan.spec(site).form);
      // im2col column ch*9 + di*3 + dj at pixel (i, j) is the input at (i + di - 1, j + dj - 1), 0 outside.
      const col = (t: Float32Array, s: number, i: number, j: number) => Float64Array.from({ length: n }, (_, a) => {
        const [ch, di, dj] = [Math.floor(a / 9), Math.floor((a % 9) / 3) - 1, (a % 3) - 1];
        const [y, xx] = [i + di, j + dj];
        return y < 0 || y >= h || xx < 0 || xx >= w ? 0 : t[((s * c + ch) * h + y) * w + xx];
      });
      for (let s = 0; s < batch; s++) {
        const cols = Array.from({ length: h }, (_, i) => Array.from({ length: w }, (_, j) => col(x, s, i, j)));
        for (let i = 0; i < h; i++) {
          for (let j = 0; j < w; j++) {
            const xv = cols[i][j], qv = col(q, s, i, j);
            for (let a = 0; a < n; a++) for (let bb = 0; bb < n; bb++) {
              gram[a * n + bb] += xv[a] * xv[bb];
              cross[a * n + bb] += xv[a] * qv[bb];
            }
            rows++;
            if (i === 0 || j === 0 || i === h - 1 || j === w - 1) continue;
            const lx = xv.map((v, a) => v - 0.25 * (cols[i - 1][j][a] + cols[i + 1][j][a] + cols[i][j - 1][a] + cols[i][j + 1][a]));
            for (let a = 0; a < n; a++) for (let bb = 0; bb < n; bb++) lgram[a * n + bb] += lx[a] * lx[bb];
            lrows++;
          }
        }
      }
    }
    expect([m.rows, m.structure!.rows]).toEqual([rows, lrows]);
    for (const [mine, ref] of [[m.gram, gram], [m.cross!, cross], [m.structure!.gram, lgram]] as const) {
      const scale = Math.max(...ref.map(Math.abs));
      expect(maxDiff(Float32Array.from(mine), Float32Array.from(ref)) / scale).toBeLessThan(1e-4);
    }
    // SRC over the whole Conv plan: every Conv is a pair, and its held-out output error only goes down.
    const pairs = linearPairs(convPlan);
    const convPairs = pairs.filter((p) => p.weight.kind === 'conv_weight');
    const convs = convPairs.map((p) => p.weight.module);
    expect(convs).toEqual(convPlan.sites.filter((s) => s.kind === 'conv_weight').map((s) => s.module));
    const ctx = createCalibrationContext({ plan: convPlan, stateDict, data, rng: seededRng(1), threads: 1, captureEngine: 'onnx', bins: 2048, channelBins: 64 });
    const { minmax } = await import('../methods/minmax');
    const all = await minmax.calibrate(ctx, {}) as BoundsMap;
    ctx.dispose();
    const [v] = await calibrateResiduals(convPlan, stateDict, all, [{ gptq: true, structure: 0 }],
      (sites, set) => linearInputMoments(convPlan, stateDict, data[set], sites, all, 1));
    const convIds = new Set(convPairs.map((p) => p.weight.id));
    const convDecisions = v.decisions.filter((d) => convIds.has(d.site));
    expect(convDecisions.length).toBe(convs.length);
    expect(convDecisions.every((d) => d.after <= d.before)).toBe(true);
    expect(convDecisions.some((d) => d.choice !== 'keep')).toBe(true);
  });

  test('quantized-model moments: the first Linear sees the float input, later ones the upstream error; corrected weights are fed through', async () => {
    const ctx = createCalibrationContext({ plan, stateDict, data, rng: seededRng(1), threads: 1, captureEngine: 'onnx', bins: 2048, channelBins: 64 });
    const { minmax } = await import('../methods/minmax');
    const bounds = await minmax.calibrate(ctx, {}) as BoundsMap;
    ctx.dispose();
    const inputs = plan.sites.filter((s) => s.kind === 'linear_input');
    const first = inputs[0];
    const late = inputs.find((s) => s.hookSite === 'layers.1.residual_group.blocks.1.mlp.fc2')!;
    expect(first.hookSite).toBe('layers.0.residual_group.blocks.0.attn.qkv');
    const own = await linearInputMoments(plan, stateDict, data.calibration, [first, late], bounds, 1);
    const upstream = await quantizedInputMoments(plan, stateDict, data.calibration, [first, late], bounds, 1);
    const rel = (a: Float64Array, b: Float64Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0) / b.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (const s of [first, late]) expect(rel(upstream.get(s.id)!.gram, own.get(s.id)!.gram)).toBeLessThan(1e-5); // the float x in both
    expect(rel(upstream.get(first.id)!.cross!, own.get(first.id)!.cross!)).toBeLessThan(1e-5); // nothing quantized upstream of it
    expect(rel(upstream.get(late.id)!.cross!, own.get(late.id)!.cross!)).toBeGreaterThan(1e-3); // 2-bit quantizers upstream
    // A quantized model with other weights changes what fc2 sees, not the float target.
    const other: StateDict = new Map(stateDict);
    const key = 'layers.0.residual_group.blocks.0.mlp.fc1.weight';
    other.set(key, { ...stateDict.get(key)!, data: Float32Array.from(stateDict.get(key)!.data as Float32Array, (v) => -v) });
    const changed = await quantizedInputMoments(plan, stateDict, data.calibration, [late], bounds, 1, other);
    expect(rel(changed.get(late.id)!.gram, own.get(late.id)!.gram)).toBeLessThan(1e-5);
    expect(rel(changed.get(late.id)!.qgram!, upstream.get(late.id)!.qgram!)).toBeGreaterThan(1e-3);
  });
});

describe('ABR', () => {
  test('segments cover every quantizer once, in forward order; range scaling keeps midpoints and symmetry', () => {
    const segments = abrSegments(plan, 3);
    expect(segments).toHaveLength(3);
    const ids = segments.flatMap((s) => [...s.activations, ...s.weights]);
    expect(ids.sort()).toEqual(plan.sites.map((s) => s.id).sort());
    const order = new Map(plan.sites.map((s, i) => [s.id, i]));
    for (let k = 1; k < segments.length; k++) {
      expect(Math.min(...segments[k].activations.map((id) => order.get(id)!))).toBeGreaterThan(Math.max(...segments[k - 1].activations.map((id) => order.get(id)!)));
    }
    const bounds: BoundsMap = new Map([['a', { lower: [-1, 0.5], upper: [3, 1.5] }], ['b', { lower: [-2], upper: [2] }]]);
    const wider = scaleRanges(bounds, ['a', 'b'], 1.25);
    expect(wider.get('a')).toEqual({ lower: [-1.5, 0.375], upper: [3.5, 1.625] });
    expect(wider.get('b')).toEqual({ lower: [-2.5], upper: [2.5] });
  });

  test('quantized captures see the upstream quantizers; refinement only keeps held-out improvements', async () => {
    const dobiCtx = createCalibrationContext({ plan, stateDict, data, rng: seededRng(1), threads: 1, captureEngine: 'onnx', bins: 2048, channelBins: 64 });
    const { dobi } = await import('../methods/dobi');
    const init = await dobi.calibrate(dobiCtx, { search: 'two-sided', steps: 20 });
    const late = 'layers.1.residual_group.blocks.1.mlp.fc2';
    const [float, quantized] = [(await dobiCtx.activationStats()).get(late)!, (await quantizedActivationStats(plan, stateDict, data.calibration, init, 1, new Set([late]))).get(late)!];
    expect(quantized.max[0]).not.toBeCloseTo(float.max[0], 4); // 2-bit quantizers upstream change what fc2 sees
    const errors: number[] = [];
    const score = async (b: BoundsMap) => {
      const e = maxDiff(await forwardPatches(plan, stateDict, data.heldOut, b, 1), await dobiCtx.forward(null, 'heldOut'));
      errors.push(e);
      return e;
    };
    const result = await refineBounds(plan, stateDict, data.calibration, init, { rounds: 1, segments: 2, steps: 20, threads: 1 }, score);
    expect(errors).toHaveLength(1 + 2 * 5); // the initial score, then five candidates per segment
    expect(result.rounds.map((r) => r.heldOutError)).toEqual(result.rounds.map((r) => Math.min(...errors.slice(0, 1 + 5 * (r.segment + 1)))));
    dobiCtx.dispose();
  });
});

describe('harmoq method', () => {
  const model = () => ({ arch: 'tiny', config, stateDict, checkpoint: { file: '/x/model.pth', sha256: 'cd'.repeat(32) } });
  const tiny = ['count=4', 'patchSize=16', 'heldOutCount=2', 'steps=20'];

  test('end to end: weights sidecar written, hash-checked, applied by quantizedEngineOptions; stages switch off', async () => {
    const request = resolveRequest({ method: 'harmoq', wbits: 2, abits: 2, seed: 5, set: [...tiny, 'rounds=1'] });
    const qp = await quantizeModel(model(), request, { dataDir: dataDir(), threads: 1 });
    expect(qp.version).toBe(3);
    expect(qp.weights!.tensors.some((k) => k.endsWith('norm1.weight'))).toBe(true); // HSO moved a LayerNorm
    const file = path.join(tmp, 'h.json');
    await writeQParams(file, qp);
    expect(qp.weights!.file).toBe('h.weights.safetensors');
    expect(fs.existsSync(path.join(tmp, 'h.weights.safetensors'))).toBe(true);
    const { plan: p, bounds } = qparamsPlan(readQParams(file), file);
    expect([...p.weightOverrides!.keys()]).toEqual(qp.weights!.tensors);
    // The engine runs the transformed weights: its output differs from the same bounds on the checkpoint's weights.
    const withOverrides = await forwardPatches(p, quantizedEngineOptions(p, bounds, stateDict, 'onnx').stateDict!, data.heldOut, bounds, 1);
    const without = await forwardPatches(p, stateDict, data.heldOut, bounds, 1);
    expect(maxDiff(withOverrides, without)).toBeGreaterThan(1e-3);
    // A sidecar with other bytes is refused.
    const sidecar = path.join(tmp, 'h.weights.safetensors');
    const bytes = fs.readFileSync(sidecar);
    bytes[bytes.length - 1] ^= 1;
    fs.writeFileSync(sidecar, bytes);
    expect(() => qparamsPlan(readQParams(file), file)).toThrow(/h\.weights\.safetensors' has sha256 .* but .* records/);
  });

  test('all three stages off is DOBI, with no weights; `src=false` and `options.src=false` both switch SRC', async () => {
    const off = resolveRequest({ method: 'harmoq', wbits: 2, abits: 2, seed: 5, set: [...tiny, 'src=false', 'options.hso=false', 'abr=false'] });
    expect(off.options).toMatchObject({ src: false, hso: false, abr: false });
    const qp = await quantizeModel(model(), off, { dataDir: dataDir(), threads: 1 });
    const dobi = await quantizeModel(model(), resolveRequest({ method: 'dobi', wbits: 2, abits: 2, seed: 5, set: ['count=4', 'patchSize=16', 'heldOutCount=2', 'steps=20'] }),
      { dataDir: dataDir(), threads: 1 });
    expect(qp.weights).toBeUndefined();
    expect(qp.bounds).toEqual(dobi.bounds);
  });

  test('dqc: 2DQuant\'s budget per preset; the distilled bounds are kept only when the held-out error drops', async () => {
    for (const preset of ['quick', 'paper'] as const) {
      const [h, q] = [resolveRequest({ method: 'harmoq', wbits: 2, abits: 2, preset }), resolveRequest({ method: '2dquant', wbits: 2, abits: 2, preset })];
      expect({ i: h.options.iterations, b: h.options.batch, c: h.options.crop }).toEqual({ i: q.options.iterations, b: q.options.batch, c: q.options.crop });
    }
    const notes: string[] = [];
    const stages = (extra: string[]) => resolveRequest({ method: 'harmoq', wbits: 2, abits: 2, seed: 5, set: [...tiny, 'src=false', 'hso=false', 'abr=false', ...extra] });
    const run = (extra: string[]) => quantizeModel(model(), stages(extra), { dataDir: dataDir(), threads: 1, onProgress: (u) => { if (u.stage === 'dqc' && u.note) notes.push(u.note); } });
    const base = await run([]);
    const tuned = await run(['dqc=true', 'iterations=4', 'batch=2', 'crop=8']);
    expect(notes).toHaveLength(1);
    const m = /held-out output MSE (\S+) -> (\S+): (kept|dropped)/.exec(notes[0])!;
    expect(m).not.toBeNull();
    expect(m[3]).toBe(Number(m[2]) < Number(m[1]) ? 'kept' : 'dropped');
    if (m[3] === 'kept') expect(tuned.bounds).not.toEqual(base.bounds);
    else expect(tuned.bounds).toEqual(base.bounds);
  });

  test('a derived context recomputes statistics on its own state dict', async () => {
    const ctx = createCalibrationContext({ plan, stateDict, data, rng: seededRng(1), threads: 1, captureEngine: 'onnx', bins: 2048, channelBins: 64 });
    const scaled: StateDict = new Map(stateDict);
    const key = 'layers.0.residual_group.blocks.0.norm1.weight';
    const t = stateDict.get(key)!;
    scaled.set(key, { ...t, data: (t.data as Float32Array).map((v) => v * 3) });
    const child = ctx.withStateDict(scaled);
    const site = 'layers.0.residual_group.blocks.0.attn.qkv';
    const [a, b] = [(await ctx.activationStats()).get(site)!, (await child.activationStats()).get(site)!];
    expect(b.max[0]).not.toBeCloseTo(a.max[0], 3);
    expect(() => ctx.withStateDict(new Map([...stateDict].slice(1)))).toThrow(/withStateDict: '.*' is missing/);
    ctx.dispose();
  });
});
