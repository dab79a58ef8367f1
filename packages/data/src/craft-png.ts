import { crc32, deflateSync } from 'node:zlib';

// Test helper: hand-built PNGs in the layouts sharp never writes (16-bit, grey+alpha, palette), so readImage's
// conversions can be checked against values known in advance. Not exported from the package.

function chunk(type: string, body: Uint8Array): Buffer {
  const typed = Buffer.concat([Buffer.from(type, 'latin1'), body]);
  const out = Buffer.alloc(typed.length + 8);
  out.writeUInt32BE(body.length, 0);
  typed.copy(out, 4);
  out.writeUInt32BE(crc32(typed), typed.length + 4);
  return out;
}

/** PNG colour types: 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA. */
export interface CraftedPng {
  width: number;
  height: number;
  colorType: 0 | 2 | 3 | 4 | 6;
  bitDepth: 8 | 16;
  /** Samples in row-major order, channels interleaved (palette: indices). */
  samples: number[];
  palette?: number[];
  transparency?: number[];
}

export function craftPng(spec: CraftedPng): Buffer {
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[spec.colorType];
  const bytesPerSample = spec.bitDepth / 8;
  const rowBytes = spec.width * channels * bytesPerSample;
  const raw = Buffer.alloc((rowBytes + 1) * spec.height);
  for (let y = 0; y < spec.height; y++) {
    for (let i = 0; i < spec.width * channels; i++) {
      const v = spec.samples[y * spec.width * channels + i];
      const at = y * (rowBytes + 1) + 1 + i * bytesPerSample;
      if (bytesPerSample === 2) raw.writeUInt16BE(v, at);
      else raw[at] = v;
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(spec.width, 0);
  header.writeUInt32BE(spec.height, 4);
  header[8] = spec.bitDepth;
  header[9] = spec.colorType;
  const extra = [];
  if (spec.palette) extra.push(chunk('PLTE', Buffer.from(spec.palette)));
  if (spec.transparency) extra.push(chunk('tRNS', Buffer.from(spec.transparency)));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    ...extra,
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
