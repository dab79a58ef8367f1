import * as fs from 'node:fs';
import { writeFileAtomic as writeFileAtomicSync } from '@harmoq/atomic-fs';
import sharp from 'sharp';
import { DataError } from './errors';

/** An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC), as the official test holds it (but RGB, not BGR). */
export interface Image {
  readonly width: number;
  readonly height: number;
  readonly channels: 3;
  readonly data: Uint8Array;
}

/** Checks that `data` holds exactly width*height*3 bytes and the sizes are positive integers. */
export function assertImage(image: Image, what = 'image'): void {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new DataError(`${what}: size ${width}x${height} is not a positive integer size`, { value: `${width}x${height}` });
  }
  if (channels !== 3) throw new DataError(`${what}: ${channels} channels, expected 3 (RGB)`, { value: String(channels) });
  if (data.length !== width * height * 3) {
    throw new DataError(`${what}: ${data.length} bytes for ${width}x${height}x3 (expected ${width * height * 3})`);
  }
}

/**
 * Reads an image file (PNG, or any format sharp decodes) into exact 8-bit RGB, the way
 * `cv2.imread(path, cv2.IMREAD_COLOR)` does: grey and grey+alpha become three equal channels, alpha is
 * dropped (not composited), 16-bit samples keep their high byte (v >> 8). Embedded ICC profiles are ignored,
 * as OpenCV ignores them, so the stored sample values come back unchanged.
 */
export async function readImage(file: string): Promise<Image> {
  let bytes: Buffer;
  try {
    bytes = await fs.promises.readFile(file);
  } catch (err) {
    throw new DataError(`cannot read image '${file}': ${(err as Error).message}`, { value: file, cause: err });
  }
  try {
    const source = () => sharp(bytes, { ignoreIcc: true, failOn: 'error' });
    const meta = await source().metadata();
    const stored = meta.channels ?? 3;
    const grey = stored <= 2;
    if (meta.depth === 'ushort') {
      // Ask for the stored 16-bit samples and reduce them ourselves, so the v >> 8 rule does not depend on
      // libvips' colour conversion.
      const { data, info } = await source()
        .toColourspace(grey ? 'grey16' : 'rgb16')
        .raw({ depth: 'ushort' })
        .toBuffer({ resolveWithObject: true });
      const samples = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
      return toRgb(samples, info.width, info.height, info.channels, (v) => v >> 8, file);
    }
    const { data, info } = await source().raw().toBuffer({ resolveWithObject: true });
    return toRgb(data, info.width, info.height, info.channels, (v) => v, file);
  } catch (err) {
    if (err instanceof DataError) throw err;
    throw new DataError(`'${file}' is not a readable image: ${(err as Error).message}`, { value: file, cause: err });
  }
}

function toRgb(
  samples: ArrayLike<number>,
  width: number,
  height: number,
  channels: number,
  to8: (v: number) => number,
  file: string,
): Image {
  if (channels < 1 || channels > 4) {
    throw new DataError(`'${file}' has ${channels} channels; expected 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA)`);
  }
  const pixels = width * height;
  const data = new Uint8Array(pixels * 3);
  const replicate = channels <= 2;
  for (let p = 0; p < pixels; p++) {
    const src = p * channels;
    const dst = p * 3;
    if (replicate) {
      const v = to8(samples[src]);
      data[dst] = v;
      data[dst + 1] = v;
      data[dst + 2] = v;
    } else {
      data[dst] = to8(samples[src]);
      data[dst + 1] = to8(samples[src + 1]);
      data[dst + 2] = to8(samples[src + 2]);
    }
  }
  return { width, height, channels: 3, data };
}

/** Encodes `image` as an 8-bit RGB PNG and writes it atomically (lossless: reading it back gives the same bytes). */
export async function writePng(file: string, image: Image): Promise<void> {
  assertImage(image, `writePng('${file}')`);
  const png = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .png()
    .toBuffer();
  await writeFileAtomic(file, png);
}

/**
 * Writes `bytes` to `file` atomically (see @harmoq/atomic-fs), as a DataError naming the file when it fails.
 * Async so callers can await it beside sharp's encoders.
 */
export async function writeFileAtomic(file: string, bytes: Uint8Array | string): Promise<void> {
  try {
    writeFileAtomicSync(file, bytes);
  } catch (err) {
    throw new DataError(`cannot write '${file}': ${(err as Error).message}`, { value: file, cause: err });
  }
}

/** The top-left `width` x `height` part of `image` (a copy). */
export function cropTopLeft(image: Image, width: number, height: number): Image {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0 || width > image.width || height > image.height) {
    throw new DataError(`cannot crop ${image.width}x${image.height} to ${width}x${height}`, { value: `${width}x${height}` });
  }
  if (width === image.width && height === image.height) return image;
  const data = new Uint8Array(width * height * 3);
  const rowBytes = width * 3;
  for (let y = 0; y < height; y++) {
    const src = y * image.width * 3;
    data.set(image.data.subarray(src, src + rowBytes), y * rowBytes);
  }
  return { width, height, channels: 3, data };
}

/** Crops `image` top-left to a multiple of `scale` in each dimension, as the SR test code does before resizing. */
export function modcrop(image: Image, scale: number): Image {
  if (!Number.isInteger(scale) || scale < 1) throw new DataError(`modcrop: scale ${scale} is not a positive integer`, { value: String(scale) });
  const width = image.width - (image.width % scale);
  const height = image.height - (image.height % scale);
  if (width === 0 || height === 0) {
    throw new DataError(`image ${image.width}x${image.height} is smaller than the scale ${scale}`, { value: String(scale) });
  }
  return cropTopLeft(image, width, height);
}
