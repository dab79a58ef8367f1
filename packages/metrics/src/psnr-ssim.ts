/**
 * PSNR and SSIM exactly as the official SwinIR `utils/util_calculate_psnr_ssim.py` computes them
 * (`calculate_psnr` / `calculate_ssim`, input_order 'HWC'): float64, border crop, PSNR inf when mse = 0,
 * SSIM with an 11x11 Gaussian (sigma 1.5) over the valid region, mean per channel then over channels, and
 * the Y channel through the official float32 conversion. The protocol: shared/golden/README.md, steps 7-8.
 */

/** An 8-bit image, HWC, rows top to bottom: 3 channels (RGB order) or 1 (grey). Structural, so any package's image fits. */
export interface MetricImage {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  readonly data: Uint8Array | Uint8ClampedArray;
}

export interface MetricOptions {
  /** Pixels removed at every edge before measuring (the official `crop_border`; the SR scale in the test). */
  readonly cropBorder?: number;
  /** Measure on the Y channel of YCbCr (BT.601, 16..235) instead of all channels. */
  readonly yChannel?: boolean;
}

export interface AllMetrics {
  readonly psnr: number;
  readonly ssim: number;
  readonly psnr_y: number;
  readonly ssim_y: number;
}

/** The one error class of the metrics package: images that cannot be compared. */
export class MetricError extends Error {
  override readonly name = 'MetricError';
}

// Module-scope copies: global lookups (Math) in hot loops are slow inside jest's vm sandbox.
const { fround, exp, log10, sqrt } = Math;

/** Float64 planes of equal size, one per channel, after the border crop (and the Y conversion). */
interface Planes {
  readonly width: number;
  readonly height: number;
  readonly planes: Float64Array[];
}

function checkPair(img: MetricImage, ref: MetricImage, cropBorder: number): void {
  for (const [what, im] of [['image', img], ['reference', ref]] as const) {
    if (im.channels !== 1 && im.channels !== 3) {
      throw new MetricError(`${what} has ${im.channels} channels; expected 1 (grey) or 3 (RGB)`);
    }
    if (im.data.length !== im.width * im.height * im.channels) {
      throw new MetricError(`${what}: ${im.data.length} samples for ${im.width}x${im.height}x${im.channels}`);
    }
  }
  if (img.width !== ref.width || img.height !== ref.height || img.channels !== ref.channels) {
    throw new MetricError(
      `image ${img.width}x${img.height}x${img.channels} and reference ${ref.width}x${ref.height}x${ref.channels} differ in shape`,
    );
  }
  if (!Number.isInteger(cropBorder) || cropBorder < 0 || 2 * cropBorder >= Math.min(img.width, img.height)) {
    throw new MetricError(`cropBorder ${cropBorder} must be an integer in [0, ${Math.ceil(Math.min(img.width, img.height) / 2) - 1}]`);
  }
}

/** The cropped samples as float64 planes: all channels, or Y only. */
function toPlanes(image: MetricImage, cropBorder: number, yChannel: boolean): Planes {
  const width = image.width - 2 * cropBorder;
  const height = image.height - 2 * cropBorder;
  const { channels, data } = image;
  const at = (x: number, y: number, c: number) => data[((y + cropBorder) * image.width + x + cropBorder) * channels + c];
  if (yChannel && channels === 3) {
    // Official to_y_channel on BGR: v32 = float32(v) / 255 in float32; np.dot with the float64 list
    // [24.966, 128.553, 65.481] promotes to float64 and sums in B, G, R order; + 16; the /255 and the cast
    // back to float32 (_convert_output_type_range); then * 255 in float32. Not rounded.
    const y = new Float64Array(width * height);
    for (let row = 0; row < height; row++) {
      for (let x = 0; x < width; x++) {
        const r = fround(at(x, row, 0) / 255);
        const g = fround(at(x, row, 1) / 255);
        const b = fround(at(x, row, 2) / 255);
        const dot = b * 24.966 + g * 128.553 + r * 65.481 + 16.0;
        y[row * width + x] = fround(fround(dot / 255) * 255);
      }
    }
    return { width, height, planes: [y] };
  }
  const planes = Array.from({ length: channels }, () => new Float64Array(width * height));
  for (let row = 0; row < height; row++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        // A 1-channel image's "Y" is itself, but it still goes through to_y_channel's float32 /255 and *255.
        const v = at(x, row, c);
        planes[c][row * width + x] = yChannel ? fround(fround(v / 255) * 255) : v;
      }
    }
  }
  return { width, height, planes };
}

function psnrOfPlanes(a: Planes, b: Planes): number {
  let sum = 0;
  let count = 0;
  for (let c = 0; c < a.planes.length; c++) {
    const pa = a.planes[c];
    const pb = b.planes[c];
    for (let i = 0; i < pa.length; i++) {
      const d = pa[i] - pb[i];
      sum += d * d; // integer-valued and below 2^53: exact in any order, as numpy's float64 mean is
    }
    count += pa.length;
  }
  const mse = sum / count;
  if (mse === 0) return Number.POSITIVE_INFINITY;
  return 20 * log10(255 / sqrt(mse));
}

/** numpy's default ufunc buffer size (`np.getbufsize()`), the block length of its reductions. */
const NUMPY_BUFSIZE = 8192;

/**
 * numpy's float32 `add.reduce` over a contiguous array: pairwise summation, blocks of at most 128 summed
 * with 8 running partial sums, every addition rounded to float32 (numpy's `FLOAT_pairwise_sum`).
 */
function pairwiseSumFloat32(values: Float32Array, start: number, n: number): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res = fround(res + values[start + i]);
    return res;
  }
  if (n <= 128) {
    const r = [0, 0, 0, 0, 0, 0, 0, 0];
    for (let j = 0; j < 8; j++) r[j] = values[start + j];
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j] = fround(r[j] + values[start + i + j]);
    }
    let res = fround(fround(fround(r[0] + r[1]) + fround(r[2] + r[3])) + fround(fround(r[4] + r[5]) + fround(r[6] + r[7])));
    for (; i < n; i++) res = fround(res + values[start + i]);
    return res;
  }
  let half = Math.floor(n / 2);
  half -= half % 8;
  return fround(pairwiseSumFloat32(values, start, half) + pairwiseSumFloat32(values, start + half, n - half));
}

/**
 * PSNR of float32 planes as the official code computes it on Y: `to_y_channel` returns float32 arrays, so
 * `np.mean((img1 - img2) ** 2)` runs in float32 (difference, square and pairwise sum), `np.sqrt` of the float32
 * mse stays float32, and only `255. / ...` (numpy 1.x scalar rules) and the log are float64. Matching the
 * summation order exactly matters: one float32 ulp of the mse moves PSNR-Y by up to 8e-7 dB.
 */
function psnrOfFloat32Planes(a: Planes, b: Planes): number {
  const pa = a.planes[0];
  const pb = b.planes[0];
  const squares = new Float32Array(pa.length);
  for (let i = 0; i < pa.length; i++) {
    const d = fround(pa[i] - pb[i]);
    squares[i] = d * d;
  }
  // numpy 1.x reduces in buffer-sized blocks (8192 elements): pairwise inside a block, running sum across.
  let total = 0;
  for (let k = 0; k < squares.length; k += NUMPY_BUFSIZE) {
    total = fround(total + pairwiseSumFloat32(squares, k, Math.min(NUMPY_BUFSIZE, squares.length - k)));
  }
  const mse = fround(total / squares.length);
  if (mse === 0) return Number.POSITIVE_INFINITY;
  return 20 * log10(255 / fround(sqrt(mse)));
}

/** `cv2.getGaussianKernel(11, 1.5)`: exp(-x^2 / (2 sigma^2)), scaled by the reciprocal of its sum. */
function gaussianKernel(size: number, sigma: number): Float64Array {
  const kernel = new Float64Array(size);
  const scale2X = -0.5 / (sigma * sigma);
  let sum = 0;
  for (let i = 0; i < size; i++) {
    const x = i - (size - 1) * 0.5;
    kernel[i] = exp(scale2X * x * x);
    sum += kernel[i];
  }
  const inverse = 1 / sum;
  for (let i = 0; i < size; i++) kernel[i] *= inverse;
  return kernel;
}

const WINDOW = 11;
const KERNEL = gaussianKernel(WINDOW, 1.5);
const C1 = (0.01 * 255) ** 2;
const C2 = (0.03 * 255) ** 2;

/**
 * Official `_ssim` on one float64 plane pair: the mean of the SSIM map. The five window sums (of a, b, a^2,
 * b^2 and ab) over the valid region ([5:-5, 5:-5] of cv2.filter2D's output) are done separably, since the
 * window is an outer product, and together, so each row is read once. OpenCV itself runs a 121-tap float64
 * kernel through the DFT, so the two agree to float rounding (about 1e-13 here), far inside 1e-7.
 */
function ssimOfPlane(a: Float64Array, b: Float64Array, width: number, height: number): number {
  const outWidth = width - WINDOW + 1;
  const outHeight = height - WINDOW + 1;
  const kernel = KERNEL;
  // Horizontal pass over every row: five row-filtered planes of height x outWidth.
  const size = height * outWidth;
  const ha = new Float64Array(size);
  const hb = new Float64Array(size);
  const haa = new Float64Array(size);
  const hbb = new Float64Array(size);
  const hab = new Float64Array(size);
  for (let y = 0; y < height; y++) {
    const rowIn = y * width;
    const rowOut = y * outWidth;
    for (let x = 0; x < outWidth; x++) {
      let sa = 0;
      let sb = 0;
      let saa = 0;
      let sbb = 0;
      let sab = 0;
      for (let k = 0; k < WINDOW; k++) {
        const w = kernel[k];
        const va = a[rowIn + x + k];
        const vb = b[rowIn + x + k];
        sa += w * va;
        sb += w * vb;
        saa += w * (va * va);
        sbb += w * (vb * vb);
        sab += w * (va * vb);
      }
      ha[rowOut + x] = sa;
      hb[rowOut + x] = sb;
      haa[rowOut + x] = saa;
      hbb[rowOut + x] = sbb;
      hab[rowOut + x] = sab;
    }
  }
  // Vertical pass and the SSIM map, summed on the fly.
  let sum = 0;
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      let mu1 = 0;
      let mu2 = 0;
      let e11 = 0;
      let e22 = 0;
      let e12 = 0;
      for (let k = 0; k < WINDOW; k++) {
        const w = kernel[k];
        const at = (y + k) * outWidth + x;
        mu1 += w * ha[at];
        mu2 += w * hb[at];
        e11 += w * haa[at];
        e22 += w * hbb[at];
        e12 += w * hab[at];
      }
      const mu1Sq = mu1 * mu1;
      const mu2Sq = mu2 * mu2;
      const mu12 = mu1 * mu2;
      const sigma1Sq = e11 - mu1Sq;
      const sigma2Sq = e22 - mu2Sq;
      const sigma12 = e12 - mu12;
      sum += ((2 * mu12 + C1) * (2 * sigma12 + C2)) / ((mu1Sq + mu2Sq + C1) * (sigma1Sq + sigma2Sq + C2));
    }
  }
  return sum / (outWidth * outHeight);
}

function ssimOfPlanes(a: Planes, b: Planes): number {
  if (a.width < WINDOW || a.height < WINDOW) {
    throw new MetricError(`SSIM needs at least ${WINDOW}x${WINDOW} pixels after the border crop, got ${a.width}x${a.height}`);
  }
  let sum = 0;
  for (let c = 0; c < a.planes.length; c++) sum += ssimOfPlane(a.planes[c], b.planes[c], a.width, a.height);
  return sum / a.planes.length;
}

function prepare(img: MetricImage, ref: MetricImage, options: MetricOptions, yChannel = options.yChannel ?? false) {
  const cropBorder = options.cropBorder ?? 0;
  checkPair(img, ref, cropBorder);
  return [toPlanes(img, cropBorder, yChannel), toPlanes(ref, cropBorder, yChannel)] as const;
}

/** Official `calculate_psnr(img, ref, crop_border, test_y_channel)` in dB; Infinity for identical images. */
export function psnr(img: MetricImage, ref: MetricImage, options: MetricOptions = {}): number {
  const [a, b] = prepare(img, ref, options);
  return options.yChannel ? psnrOfFloat32Planes(a, b) : psnrOfPlanes(a, b);
}

/** Official `calculate_ssim(img, ref, crop_border, test_y_channel)`. */
export function ssim(img: MetricImage, ref: MetricImage, options: MetricOptions = {}): number {
  const [a, b] = prepare(img, ref, options);
  return ssimOfPlanes(a, b);
}

/** All four numbers the official test prints for one image, sharing the crop and the Y conversion. */
export function calculateAll(img: MetricImage, ref: MetricImage, cropBorder: number): AllMetrics {
  const [a, b] = prepare(img, ref, { cropBorder }, false);
  const [ay, by] = prepare(img, ref, { cropBorder }, true);
  return { psnr: psnrOfPlanes(a, b), ssim: ssimOfPlanes(a, b), psnr_y: psnrOfFloat32Planes(ay, by), ssim_y: ssimOfPlanes(ay, by) };
}
