import * as fs from 'node:fs';
import { writeFileAtomic } from './atomic';
import { CheckpointError } from './errors';
import { DType, StateDict, Tensor, bytesOfData, dataFromBytes, dataMatchesDType, itemSize, numel } from './tensor';

/** safetensors dtype names, as the format spells them. */
export const SAFETENSORS_DTYPES: Readonly<Record<string, DType>> = {
  F64: 'float64', F32: 'float32', F16: 'float16', BF16: 'bfloat16',
  I64: 'int64', I32: 'int32', I16: 'int16', I8: 'int8', U8: 'uint8', BOOL: 'bool',
};
const DTYPE_TO_SAFETENSORS = Object.fromEntries(
  Object.entries(SAFETENSORS_DTYPES).map(([name, dtype]) => [dtype, name]),
) as Record<DType, string>;

/** Same bound as the reference implementation, so a corrupt length cannot make us allocate gigabytes. */
const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';

export interface SafetensorsFile {
  stateDict: StateDict;
  /** The optional `__metadata__` string map ({} when absent). */
  metadata: Record<string, string>;
}

interface HeaderEntry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseEntry(name: string, raw: unknown, fail: (message: string) => never): HeaderEntry {
  if (!isPlainObject(raw)) return fail(`safetensors entry '${name}' is not an object`);
  const extra = Object.keys(raw).filter((k) => !['dtype', 'shape', 'data_offsets'].includes(k));
  if (extra.length > 0) fail(`safetensors entry '${name}' has unknown field(s) ${extra.join(', ')} (allowed: dtype, shape, data_offsets)`);
  const { dtype: dtypeName, shape, data_offsets: offsets } = raw;
  if (typeof dtypeName !== 'string' || !(dtypeName in SAFETENSORS_DTYPES)) {
    fail(`safetensors entry '${name}' has dtype ${JSON.stringify(dtypeName)} (supported: ${Object.keys(SAFETENSORS_DTYPES).join(', ')})`);
  }
  if (!Array.isArray(shape) || !shape.every((n) => Number.isSafeInteger(n) && n >= 0)) {
    fail(`safetensors entry '${name}' has shape ${JSON.stringify(shape)}, expected a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((n) => Number.isSafeInteger(n) && n >= 0) || offsets[0] > offsets[1]) {
    fail(`safetensors entry '${name}' has data_offsets ${JSON.stringify(offsets)}, expected [begin, end] with 0 <= begin <= end`);
  }
  const dtype = SAFETENSORS_DTYPES[dtypeName];
  const expected = numel(shape) * itemSize(dtype);
  if (offsets[1] - offsets[0] !== expected) {
    fail(`safetensors entry '${name}' spans ${offsets[1] - offsets[0]} bytes, but ${dtypeName} [${shape.join(', ')}] needs ${expected}`);
  }
  return { name, dtype, shape: [...shape], begin: offsets[0], end: offsets[1] };
}

/** Parses and strictly validates a safetensors file held in memory. */
export function readSafetensors(bytes: Uint8Array, source?: string): SafetensorsFile {
  const fail = (message: string): never => {
    throw new CheckpointError(message, source);
  };
  if (bytes.length < 8) fail(`safetensors file is ${bytes.length} bytes, shorter than its 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength < 2n || headerLength > BigInt(Math.min(MAX_HEADER_BYTES, bytes.length - 8))) {
    fail(`safetensors header length ${headerLength} is out of range (2..${Math.min(MAX_HEADER_BYTES, bytes.length - 8)} for this ${bytes.length}-byte file)`);
  }
  const headerEnd = 8 + Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, headerEnd)));
  } catch (err) {
    fail(`safetensors header is not valid UTF-8 JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(header)) return fail('safetensors header is not a JSON object');

  let metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      if (!isPlainObject(raw) || !Object.values(raw).every((v) => typeof v === 'string')) {
        fail(`safetensors ${METADATA_KEY} must map strings to strings`);
      }
      metadata = { ...(raw as Record<string, string>) };
      continue;
    }
    entries.push(parseEntry(name, raw, fail));
  }

  // The byte buffer must be tiled exactly: no gaps, no overlaps, nothing after the last tensor.
  const data = bytes.subarray(headerEnd);
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const entry of byOffset) {
    if (entry.begin !== cursor) {
      fail(
        entry.begin < cursor
          ? `safetensors entry '${entry.name}' (bytes ${entry.begin}..${entry.end}) overlaps the previous tensor, which ends at ${cursor}`
          : `safetensors entry '${entry.name}' starts at byte ${entry.begin}, leaving a gap after byte ${cursor}`,
      );
    }
    cursor = entry.end;
  }
  if (cursor !== data.length) {
    fail(`safetensors tensors cover ${cursor} bytes but the data section has ${data.length} (truncated or trailing bytes)`);
  }

  const stateDict: StateDict = new Map();
  for (const entry of byOffset) {
    stateDict.set(entry.name, { dtype: entry.dtype, shape: entry.shape, data: dataFromBytes(entry.dtype, data.subarray(entry.begin, entry.end)) });
  }
  return { stateDict, metadata };
}

export function readSafetensorsFile(file: string): SafetensorsFile {
  return readSafetensors(fs.readFileSync(file), file);
}

function checkTensor(name: string, tensor: Tensor): void {
  if (!(tensor.dtype in DTYPE_TO_SAFETENSORS)) throw new CheckpointError(`tensor '${name}' has dtype '${tensor.dtype}' (supported: ${Object.keys(DTYPE_TO_SAFETENSORS).join(', ')})`);
  if (!dataMatchesDType(tensor.dtype, tensor.data)) {
    throw new CheckpointError(`tensor '${name}' is ${tensor.dtype} but holds a ${tensor.data.constructor.name}`);
  }
  if (tensor.data.length !== numel(tensor.shape)) {
    throw new CheckpointError(`tensor '${name}' has ${tensor.data.length} values for shape [${tensor.shape.join(', ')}]`);
  }
}

/** Serialises a state dict (in its Map order) as safetensors: [u64 header length][JSON header][data]. */
export function encodeSafetensors(stateDict: StateDict, metadata: Record<string, string> = {}): Uint8Array[] {
  // No prototype, so a tensor named '__proto__' is an ordinary key.
  const header: Record<string, unknown> = Object.create(null);
  if (Object.keys(metadata).length > 0) header[METADATA_KEY] = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, tensor] of stateDict) {
    if (name === METADATA_KEY) throw new CheckpointError(`tensor name '${METADATA_KEY}' is reserved by safetensors`);
    checkTensor(name, tensor);
    const bytes = bytesOfData(tensor.data);
    header[name] = { dtype: DTYPE_TO_SAFETENSORS[tensor.dtype], shape: tensor.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  // Pad the header with spaces to a multiple of 8 so the data section is aligned, as the reference writer does.
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const lengthBytes = new Uint8Array(8);
  new DataView(lengthBytes.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  return [lengthBytes, headerBytes, ...chunks];
}

/** Writes a safetensors file atomically. */
export function writeSafetensors(file: string, stateDict: StateDict, metadata: Record<string, string> = {}): void {
  writeFileAtomic(file, encodeSafetensors(stateDict, metadata));
}

/** A cheap look at whether bytes could be a safetensors file (used to pick a reader, not to validate). */
export function looksLikeSafetensors(bytes: Uint8Array): boolean {
  if (bytes.length < 10) return false;
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  return headerLength >= 2n && headerLength <= BigInt(bytes.length - 8) && bytes[8] === 0x7b; // '{'
}
