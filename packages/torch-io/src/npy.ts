import * as fs from 'node:fs';
import { writeFileAtomic } from './atomic';
import { CheckpointError } from './errors';
import { DType, Tensor, bytesOfData, dataFromBytes, dataMatchesDType, itemSize, numel } from './tensor';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** numpy descr strings (little-endian or byte-order-free), as np.save writes them. */
export const NPY_DESCRS: Readonly<Record<string, DType>> = {
  '<f8': 'float64', '<f4': 'float32', '<f2': 'float16',
  '<i8': 'int64', '<i4': 'int32', '<i2': 'int16', '|i1': 'int8', '|u1': 'uint8', '|b1': 'bool',
};
const DTYPE_TO_DESCR = Object.fromEntries(Object.entries(NPY_DESCRS).map(([descr, dtype]) => [dtype, descr])) as Partial<Record<DType, string>>;

type HeaderValue = string | boolean | number[];

/** Parses the Python dict literal of an .npy header, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }. */
function parseHeaderDict(text: string, fail: (message: string) => never): Map<string, HeaderValue> {
  let pos = 0;
  const skipSpace = () => {
    while (pos < text.length && /\s/.test(text[pos])) pos++;
  };
  const expect = (ch: string) => {
    skipSpace();
    if (text[pos] !== ch) fail(`.npy header: expected '${ch}' at character ${pos} of ${JSON.stringify(text)}`);
    pos++;
  };
  const parseString = (): string => {
    skipSpace();
    const quote = text[pos];
    if (quote !== "'" && quote !== '"') fail(`.npy header: expected a string at character ${pos} of ${JSON.stringify(text)}`);
    const end = text.indexOf(quote, pos + 1);
    if (end < 0) fail(`.npy header: unterminated string in ${JSON.stringify(text)}`);
    const value = text.slice(pos + 1, end);
    pos = end + 1;
    return value;
  };
  const parseValue = (): HeaderValue => {
    skipSpace();
    if (text.startsWith('True', pos)) { pos += 4; return true; }
    if (text.startsWith('False', pos)) { pos += 5; return false; }
    if (text[pos] === "'" || text[pos] === '"') return parseString();
    if (text[pos] === '(') {
      pos++;
      const dims: number[] = [];
      for (;;) {
        skipSpace();
        if (text[pos] === ')') { pos++; return dims; }
        const match = /^(\d+)L?/.exec(text.slice(pos));
        if (!match) fail(`.npy header: bad shape entry at character ${pos} of ${JSON.stringify(text)}`);
        dims.push(Number(match[1]));
        pos += match[0].length;
        skipSpace();
        if (text[pos] === ',') pos++;
        else if (text[pos] !== ')') fail(`.npy header: expected ',' or ')' in shape at character ${pos}`);
      }
    }
    return fail(`.npy header: unsupported value at character ${pos} of ${JSON.stringify(text)} (structured dtypes are not supported)`);
  };
  const dict = new Map<string, HeaderValue>();
  expect('{');
  for (;;) {
    skipSpace();
    if (text[pos] === '}') { pos++; break; }
    const key = parseString();
    expect(':');
    dict.set(key, parseValue());
    skipSpace();
    if (text[pos] === ',') pos++;
    else if (text[pos] !== '}') fail(`.npy header: expected ',' or '}' at character ${pos} of ${JSON.stringify(text)}`);
  }
  if (text.slice(pos).trim() !== '') fail(`.npy header: unexpected text after the dict: ${JSON.stringify(text.slice(pos))}`);
  return dict;
}

/** Reads an .npy file (format versions 1, 2 and 3) holding a little-endian, C-order array. */
export function readNpy(bytes: Uint8Array, source?: string): Tensor {
  const fail = (message: string): never => {
    throw new CheckpointError(message, source);
  };
  if (bytes.length < 10 || !MAGIC.every((b, i) => bytes[i] === b)) fail('not an .npy file: it does not start with \\x93NUMPY');
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerStart: number;
  let headerLength: number;
  if (major === 1) {
    headerStart = 10;
    headerLength = view.getUint16(8, true);
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) fail('truncated .npy file: no header length');
    headerStart = 12;
    headerLength = view.getUint32(8, true);
  } else {
    return fail(`.npy format version ${major}.${bytes[7]} is not supported (supported: 1, 2, 3)`);
  }
  if (headerStart + headerLength > bytes.length) fail(`truncated .npy file: header of ${headerLength} bytes runs past the end`);
  // Versions 1 and 2 are latin1; version 3 allows UTF-8 field names.
  const headerText = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(headerStart, headerStart + headerLength));
  const header = parseHeaderDict(headerText, fail);

  const descr = header.get('descr');
  if (typeof descr !== 'string') return fail(`.npy header has no string 'descr': ${headerText.trim()}`);
  const dtype = NPY_DESCRS[descr];
  if (!dtype) {
    const hint = descr.startsWith('>') ? ' (big-endian data; save it little-endian with arr.astype(arr.dtype.newbyteorder("<")))' : '';
    return fail(`.npy dtype '${descr}' is not supported${hint} (supported: ${Object.keys(NPY_DESCRS).join(', ')})`);
  }
  const fortranOrder = header.get('fortran_order');
  if (fortranOrder === true) fail('.npy array is in Fortran (column-major) order; only C order is supported (save np.ascontiguousarray(arr))');
  if (fortranOrder !== false) fail(`.npy header has no boolean 'fortran_order': ${headerText.trim()}`);
  const shape = header.get('shape');
  if (!Array.isArray(shape)) return fail(`.npy header has no tuple 'shape': ${headerText.trim()}`);

  const dataStart = headerStart + headerLength;
  const expected = numel(shape) * itemSize(dtype);
  if (bytes.length - dataStart !== expected) {
    fail(`.npy data is ${bytes.length - dataStart} bytes, but ${descr} shape (${shape.join(', ')}) needs ${expected}`);
  }
  return { dtype, shape, data: dataFromBytes(dtype, bytes.subarray(dataStart)) };
}

export function readNpyFile(file: string): Tensor {
  return readNpy(fs.readFileSync(file), file);
}

/** np.save reserves room for the first axis to grow to this many digits, so headers can be rewritten in place. */
const GROWTH_AXIS_MAX_DIGITS = 21;
const ARRAY_ALIGN = 64;

/** Encodes a tensor as .npy, byte for byte as np.save writes it (version 1, or 2 when the header needs it). */
export function encodeNpy(tensor: Tensor): Uint8Array[] {
  const descr = DTYPE_TO_DESCR[tensor.dtype];
  if (!descr) throw new CheckpointError(`.npy has no dtype for '${tensor.dtype}' (supported: ${Object.keys(DTYPE_TO_DESCR).join(', ')})`);
  if (!dataMatchesDType(tensor.dtype, tensor.data) || tensor.data.length !== numel(tensor.shape)) {
    throw new CheckpointError(`tensor data (${tensor.data.constructor.name}, ${tensor.data.length} values) does not match ${tensor.dtype} [${tensor.shape.join(', ')}]`);
  }
  const shapeText = tensor.shape.length === 1 ? `(${tensor.shape[0]},)` : `(${tensor.shape.join(', ')})`;
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  if (tensor.shape.length > 0) dict += ' '.repeat(GROWTH_AXIS_MAX_DIGITS - String(tensor.shape[0]).length);
  // Like numpy: pad with spaces and a final newline so the data starts on a 64-byte boundary.
  const wrap = (prefixLength: number): string =>
    dict + ' '.repeat(ARRAY_ALIGN - ((prefixLength + dict.length + 1) % ARRAY_ALIGN)) + '\n';
  let major = 1;
  let header = wrap(10);
  if (header.length > 0xffff) {
    major = 2;
    header = wrap(12);
  }
  const prefix = new Uint8Array(major === 1 ? 10 : 12);
  prefix.set(MAGIC);
  prefix[6] = major;
  prefix[7] = 0;
  const view = new DataView(prefix.buffer);
  if (major === 1) view.setUint16(8, header.length, true);
  else view.setUint32(8, header.length, true);
  return [prefix, new TextEncoder().encode(header), bytesOfData(tensor.data)];
}

/** Writes a tensor as an .npy file, atomically. */
export function writeNpy(file: string, tensor: Tensor): void {
  writeFileAtomic(file, encodeNpy(tensor));
}
