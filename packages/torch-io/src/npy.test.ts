import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { CheckpointError } from './errors';
import { encodeNpy, readNpy, readNpyFile, writeNpy } from './npy';
import { DType, Tensor, dataFromBytes, itemSize, numel } from './tensor';
import { goldenDir, refusal } from './testing/fixtures';

const concat = (chunks: Uint8Array[]) => new Uint8Array(Buffer.concat(chunks));
const hex = (text: string) => new Uint8Array(Buffer.from(text, 'hex'));


/** An .npy file with a hand-written header dict (version 1). */
function npyWithHeader(dict: string, data: Uint8Array, major = 1): Uint8Array {
  const header = Buffer.from(`${dict}\n`, major === 3 ? 'utf8' : 'latin1');
  const prefix = Buffer.alloc(major === 1 ? 10 : 12);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]).copy(prefix);
  if (major === 1) prefix.writeUInt16LE(header.length, 8);
  else prefix.writeUInt32LE(header.length, 8);
  return new Uint8Array(Buffer.concat([prefix, header, data]));
}

interface StageMeta {
  name: string;
  file: string | null;
  shape: number[];
  mean: number;
  sum: number;
  max_abs: number;
  first8: number[];
  last8: number[];
}

describe('readNpy: golden fixtures', () => {
  const fixtures = fs.readdirSync(goldenDir()).filter((d) => fs.existsSync(path.join(goldenDir(), d, 'meta.json')));

  it.each(fixtures)('%s: input, output and saved stages match meta.json', (fixture) => {
    const dir = path.join(goldenDir(), fixture);
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8'));
    const input = readNpyFile(path.join(dir, 'input.npy'));
    expect(input.dtype).toBe('float32');
    expect(input.shape).toEqual(meta.input_shape);
    const output = readNpyFile(path.join(dir, 'output.npy'));
    expect(output.shape).toEqual(meta.output_shape);
    let min = Infinity;
    let max = -Infinity;
    for (const v of output.data as Float32Array) {
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    expect([min, max]).toEqual([meta.output_min, meta.output_max]);

    const saved = (meta.stages as StageMeta[]).filter((stage) => stage.file !== null);
    for (const stage of saved) {
      const tensor = readNpyFile(path.join(dir, stage.file as string));
      expect(tensor.shape).toEqual(stage.shape);
      const values = tensor.data as Float32Array;
      let sum = 0;
      let maxAbs = 0;
      for (const v of values) {
        sum += v;
        maxAbs = Math.max(maxAbs, Math.abs(v));
      }
      expect(sum).toBeCloseTo(stage.sum, 6);
      expect(sum / values.length).toBeCloseTo(stage.mean, 9);
      expect(maxAbs).toBe(stage.max_abs);
      expect(Array.from(values.subarray(0, 8))).toEqual(stage.first8);
      expect(Array.from(values.subarray(-8))).toEqual(stage.last8);
    }
  });
});

describe('encodeNpy', () => {
  // Bytes written by numpy 2.4 np.save (np.lib.format.write_array for versions 2 and 3).
  const numpyHeader = (dict: string, padTo = 128) => Buffer.from(`${dict}`.padEnd(padTo - 11, ' ') + '\n', 'latin1');

  it('writes exactly what np.save writes', () => {
    const cases: [Tensor, string, string][] = [
      [{ dtype: 'float32', shape: [2, 3], data: Float32Array.from([0, 1, 2, 3, 4, 5]) }, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", '000000000000803f0000004000004040000080400000a040'],
      [{ dtype: 'int64', shape: [3], data: BigInt64Array.from([1n, -2n, 3n]) }, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", '0100000000000000feffffffffffffff0300000000000000'],
      [{ dtype: 'bool', shape: [], data: Uint8Array.from([1]) }, "{'descr': '|b1', 'fortran_order': False, 'shape': (), }", '01'],
      [{ dtype: 'uint8', shape: [0, 4], data: new Uint8Array(0) }, "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 4), }", ''],
    ];
    for (const [tensor, dict, data] of cases) {
      const expected = Buffer.concat([Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0x76, 0]), numpyHeader(dict), Buffer.from(data, 'hex')]);
      expect(Buffer.from(concat(encodeNpy(tensor)))).toEqual(expected);
    }
  });

  it('round-trips random tensors of every supported dtype (property)', () => {
    const dtypes: DType[] = ['float64', 'float32', 'float16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];
    const arbTensor = fc
      .record({ dtype: fc.constantFrom(...dtypes), shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 4 }) })
      .chain(({ dtype, shape }) => {
        const n = numel(shape) * itemSize(dtype);
        return fc.uint8Array({ minLength: n, maxLength: n }).map((bytes) => ({ dtype, shape, data: dataFromBytes(dtype, bytes) }));
      });
    fc.assert(
      fc.property(arbTensor, (tensor) => {
        const bytes = concat(encodeNpy(tensor));
        expect(bytes.length % 64).toBe((tensor.data.byteLength) % 64); // data starts 64-byte aligned
        expect(readNpy(bytes)).toEqual(tensor);
      }),
      { seed: 3, numRuns: 200 },
    );
  });

  it('refuses bfloat16, which .npy cannot describe', () => {
    expect(() => encodeNpy({ dtype: 'bfloat16', shape: [1], data: new Uint16Array(1) })).toThrow(/no dtype for 'bfloat16'/);
  });

  it('writes atomically', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-io-npy-'));
    try {
      const file = path.join(dir, 'a.npy');
      const tensor: Tensor = { dtype: 'float64', shape: [2], data: Float64Array.from([0.5, -1]) };
      writeNpy(file, tensor);
      expect(fs.readdirSync(dir)).toEqual(['a.npy']);
      expect(readNpyFile(file)).toEqual(tensor);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('readNpy: header versions and refusals', () => {
  it('reads version 2 and 3 headers written by numpy', () => {
    const body =
      '7b276465736372273a20273c6638272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a20' +
      '28332c292c207d20202020202020202020202020202020202020202020202020202020202020202020202020202020202020' +
      '2020202020202020202020202020200a0000000000000000000000000000f03f0000000000000040';
    for (const version of ['02', '03']) {
      const tensor = readNpy(hex(`934e554d5059${version}0074000000${body}`));
      expect(tensor).toEqual({ dtype: 'float64', shape: [3], data: Float64Array.from([0, 1, 2]) });
    }
  });

  it('accepts Python 2 style long dims and either quote style', () => {
    const tensor = readNpy(npyWithHeader('{"descr": "<i4", "fortran_order": False, "shape": (2L, 1L)}', new Uint8Array(8)));
    expect(tensor.shape).toEqual([2, 1]);
  });

  it.each<[string, Uint8Array, RegExp]>([
    ['Fortran order', npyWithHeader("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", new Uint8Array(24)), /Fortran \(column-major\) order; only C order is supported/],
    ['big-endian data', npyWithHeader("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(4)), /dtype '>f4' is not supported \(big-endian data/],
    ['complex numbers', npyWithHeader("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(8)), /dtype '<c8' is not supported .*supported: <f8, <f4/],
    ['structured dtypes', npyWithHeader("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", new Uint8Array(4)), /structured dtypes are not supported/],
    ['short data', npyWithHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", new Uint8Array(20)), /data is 20 bytes, but <f4 shape \(2, 3\) needs 24/],
    ['unknown version', hex('934e554d5059040000000000'), /format version 4.0 is not supported/],
    ['other files', hex('89504e470d0a1a0a0000'), /not an \.npy file/],
  ])('refuses %s', (_, bytes, message) => {
    expect(refusal(() => readNpy(bytes)).message).toMatch(message);
  });
});
