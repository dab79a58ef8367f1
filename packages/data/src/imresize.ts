import { DataError } from './errors';
import { assertImage, type Image } from './image';

/**
 * MATLAB `imresize(A, scale, 'bicubic')` on uint8 and float images, as the SR community's LR test files were
 * made. Derivation and the bit-exactness checks: docs/data.md.
 */

/** A float image (HWC, any channel count), for resizing without intermediate rounding. */
export interface FloatImage {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  readonly data: Float32Array | Float64Array;
}

// Module-scope copies: inside jest's vm sandbox every global lookup (Math) in a hot loop is several times slower.
const { abs, ceil, floor, round } = Math;

/** Keys' cubic convolution kernel with a = -0.5, written as MATLAB's `cubic` so rounding matches it. */
function cubic(x: number): number {
  const absx = abs(x);
  const absx2 = absx * absx;
  const absx3 = absx2 * absx;
  if (absx <= 1) return 1.5 * absx3 - 2.5 * absx2 + 1;
  if (absx <= 2) return -0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2;
  return 0;
}

/** Per output index: `taps` input indices (already mirrored into range) and their normalised weights. */
interface AxisWeights {
  readonly outLength: number;
  readonly taps: number;
  readonly indices: Int32Array;
  readonly weights: Float64Array;
}

const weightCache = new Map<string, AxisWeights>();

/** MATLAB's `contributions`: antialiased (kernel widened by 1/scale) when shrinking, symmetric edges. */
function axisWeights(inLength: number, outLength: number, scale: number): AxisWeights {
  const key = `${inLength}:${outLength}:${scale}`;
  const cached = weightCache.get(key);
  if (cached) return cached;
  const shrink = scale < 1;
  const kernelWidth = shrink ? 4 / scale : 4;
  const kernel = shrink ? (x: number) => scale * cubic(scale * x) : cubic;
  const taps = ceil(kernelWidth) + 2;
  const indices = new Int32Array(outLength * taps);
  const weights = new Float64Array(outLength * taps);
  const period = 2 * inLength;
  for (let i = 0; i < outLength; i++) {
    // 1-based output coordinate x maps to input coordinate u (1-based), as in MATLAB.
    const x = i + 1;
    const u = x / scale + 0.5 * (1 - 1 / scale);
    const left = floor(u - kernelWidth / 2);
    let sum = 0;
    for (let t = 0; t < taps; t++) {
      const w = kernel(u - (left + t));
      weights[i * taps + t] = w;
      sum += w;
    }
    for (let t = 0; t < taps; t++) {
      weights[i * taps + t] /= sum;
      // Symmetric padding: the sequence 1..n, n..1 repeated (edge sample repeated), converted to 0-based.
      const m = (((left + t - 1) % period) + period) % period;
      indices[i * taps + t] = m < inLength ? m : period - 1 - m;
    }
  }
  const result = { outLength, taps, indices, weights };
  if (weightCache.size > 256) weightCache.clear();
  weightCache.set(key, result);
  return result;
}

/** MATLAB's output size: ceil(in * scale), ignoring float noise such as 255 * (1/3) = 84.99999999999999. */
function outputLength(inLength: number, scale: number): number {
  const exact = inLength * scale;
  const nearest = Math.round(exact);
  return Math.abs(exact - nearest) < 1e-9 * Math.max(1, exact) ? nearest : Math.ceil(exact);
}

function checkScale(scale: number): void {
  if (!Number.isFinite(scale) || scale <= 0) {
    throw new DataError(`imresize: scale ${scale} must be a positive finite number (e.g. 0.25 to shrink 4x, 2 to enlarge)`, {
      value: String(scale),
    });
  }
}

type Samples = Uint8Array | Float32Array | Float64Array;

/** MATLAB's uint8 conversion: round half away from zero (Math.round is half up, the same for v >= 0), saturate. */
function toUint8(value: number): number {
  const r = round(value);
  return r < 0 ? 0 : r > 255 ? 255 : r;
}

/**
 * One pass along the height (MATLAB dimension 1): output row i is the weighted sum of input rows, taps in
 * order, accumulated in float64. `round` stores uint8 (MATLAB's uint8 result) instead of the raw sum.
 */
function resizeRows(src: Samples, rowLength: number, axis: AxisWeights, dst: Samples, round: boolean): void {
  const acc = new Float64Array(rowLength);
  const { taps, indices, weights } = axis;
  for (let i = 0; i < axis.outLength; i++) {
    acc.fill(0);
    for (let t = 0; t < taps; t++) {
      const w = weights[i * taps + t];
      const offset = indices[i * taps + t] * rowLength;
      for (let k = 0; k < rowLength; k++) acc[k] += w * src[offset + k];
    }
    const out = i * rowLength;
    if (round) for (let k = 0; k < rowLength; k++) dst[out + k] = toUint8(acc[k]);
    else dst.set(acc, out);
  }
}

/** One pass along the width (MATLAB dimension 2), same accumulation order as `resizeRows`. */
function resizeColumns(
  src: Samples, width: number, height: number, channels: number, axis: AxisWeights, dst: Samples, round: boolean,
): void {
  const { taps, indices, weights, outLength } = axis;
  // Sample offsets of each tap within a row, precomputed once.
  const offsets = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) offsets[i] = indices[i] * channels;
  for (let y = 0; y < height; y++) {
    const inRow = y * width * channels;
    const outRow = y * outLength * channels;
    for (let j = 0; j < outLength; j++) {
      const base = j * taps;
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let t = 0; t < taps; t++) acc += weights[base + t] * src[inRow + offsets[base + t] + c];
        dst[outRow + j * channels + c] = round ? toUint8(acc) : acc;
      }
    }
  }
}

/**
 * MATLAB `imresize(uint8 image, scale, 'bicubic')`, bit-exact: output size ceil(size * scale), rows (height)
 * resized first, then columns, each pass rounded half away from zero and saturated to uint8, because that is
 * what MATLAB does for uint8 input. Use scale 1/s to make an LR image from an HR image cropped to a multiple of s.
 */
export function imresize(image: Image, scale: number): Image {
  assertImage(image, 'imresize input');
  checkScale(scale);
  const { width, height } = image;
  const outHeight = outputLength(height, scale);
  const outWidth = outputLength(width, scale);
  const rows = axisWeights(height, outHeight, scale);
  const cols = axisWeights(width, outWidth, scale);
  const mid = new Uint8Array(outHeight * width * 3);
  resizeRows(image.data, width * 3, rows, mid, true);
  const data = new Uint8Array(outHeight * outWidth * 3);
  resizeColumns(mid, width, outHeight, 3, cols, data, true);
  return { width: outWidth, height: outHeight, channels: 3, data };
}

/**
 * The same resampling on float samples with no rounding or clipping anywhere (MATLAB's result for double input).
 * Returns the input's array type (Float32Array in, Float32Array out); the arithmetic is float64.
 */
export function imresizeFloat(image: FloatImage, scale: number): FloatImage {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(channels) || channels < 1 || data.length !== width * height * channels) {
    throw new DataError(`imresizeFloat input: ${data.length} samples for ${width}x${height}x${channels}`);
  }
  checkScale(scale);
  const outHeight = outputLength(height, scale);
  const outWidth = outputLength(width, scale);
  const mid = new Float64Array(outHeight * width * channels);
  resizeRows(data, width * channels, axisWeights(height, outHeight, scale), mid, false);
  const out = data instanceof Float32Array ? new Float32Array(outHeight * outWidth * channels) : new Float64Array(outHeight * outWidth * channels);
  resizeColumns(mid, width, outHeight, channels, axisWeights(width, outWidth, scale), out, false);
  return { width: outWidth, height: outHeight, channels, data: out };
}
