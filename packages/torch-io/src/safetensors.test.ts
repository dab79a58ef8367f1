import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { CheckpointError } from './errors';
import { encodeSafetensors, readSafetensors, readSafetensorsFile, writeSafetensors } from './safetensors';
import { DTYPES, DType, StateDict, Tensor, allocData, dataFromBytes, itemSize, numel } from './tensor';
import { refusal } from './testing/fixtures';

const concat = (chunks: Uint8Array[]) => new Uint8Array(Buffer.concat(chunks));


/** A safetensors file from a literal header object and a data section. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return new Uint8Array(Buffer.concat([length, json, data]));
}

const arbTensor: fc.Arbitrary<Tensor> = fc
  .record({
    dtype: fc.constantFrom<DType>(...DTYPES),
    shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 }),
  })
  .chain(({ dtype, shape }) =>
    fc.uint8Array({ minLength: numel(shape) * itemSize(dtype), maxLength: numel(shape) * itemSize(dtype) })
      .map((bytes) => ({ dtype, shape, data: dataFromBytes(dtype, bytes) })),
  );

const arbStateDict: fc.Arbitrary<StateDict> = fc
  .uniqueArray(fc.tuple(fc.string({ minLength: 1, maxLength: 12 }).filter((k) => k !== '__metadata__'), arbTensor), {
    selector: ([name]) => name,
    maxLength: 6,
  })
  .map((entries) => new Map(entries));

const arbMetadata = fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 });

describe('safetensors round trip', () => {
  it('write -> read gives back the same state dict, order and metadata (property)', () => {
    fc.assert(
      fc.property(arbStateDict, arbMetadata, (stateDict, metadata) => {
        const bytes = concat(encodeSafetensors(stateDict, metadata));
        const headerLength = Number(Buffer.from(bytes).readBigUInt64LE(0));
        expect((8 + headerLength) % 8).toBe(0); // data section aligned
        const read = readSafetensors(bytes);
        expect([...read.stateDict.keys()]).toEqual([...stateDict.keys()]);
        for (const [name, tensor] of stateDict) expect(read.stateDict.get(name)).toEqual(tensor);
        expect(read.metadata).toEqual(metadata);
      }),
      { seed: 7, numRuns: 150 },
    );
  });

  it('writes atomically to disk and reads the file back', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-io-st-'));
    try {
      const file = path.join(dir, 'w.safetensors');
      const stateDict: StateDict = new Map([['w', { dtype: 'float32', shape: [2], data: new Float32Array([1.5, -2]) }]]);
      writeSafetensors(file, stateDict, { note: 'x' });
      expect(fs.readdirSync(dir)).toEqual(['w.safetensors']); // no temp file left behind
      expect(readSafetensorsFile(file)).toEqual({ stateDict, metadata: { note: 'x' } });
      // A failed write leaves the old file untouched.
      const bad: StateDict = new Map([['w', { dtype: 'float32', shape: [3], data: new Float32Array(2) }]]);
      expect(() => writeSafetensors(file, bad)).toThrow(CheckpointError);
      expect(readSafetensorsFile(file).stateDict).toEqual(stateDict);
      expect(fs.readdirSync(dir)).toEqual(['w.safetensors']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lays a file out as the reference implementation does', () => {
    // safetensors' save_file({'a': [1., 2.]}): compact JSON, padded with spaces to a multiple of 8 bytes.
    const header = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  ';
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    const expected = Buffer.concat([length, Buffer.from(header), Buffer.from(new Float32Array([1, 2]).buffer)]);
    const stateDict: StateDict = new Map([['a', { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) }]]);
    expect(Buffer.from(concat(encodeSafetensors(stateDict)))).toEqual(expected);
    expect(readSafetensors(new Uint8Array(expected)).stateDict).toEqual(stateDict);
  });

  it('refuses to write tensors whose data does not fit their dtype or shape', () => {
    expect(() => encodeSafetensors(new Map([['x', { dtype: 'int64', shape: [1], data: new Float64Array(1) }]]))).toThrow(
      "tensor 'x' is int64 but holds a Float64Array",
    );
    expect(() => encodeSafetensors(new Map([['__metadata__', { dtype: 'uint8', shape: [0], data: allocData('uint8', 0) }]]))).toThrow(
      'reserved',
    );
  });
});

describe('safetensors header validation', () => {
  const f32 = (begin: number, end: number, shape = [(end - begin) / 4]) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });

  it.each<[string, unknown, number, RegExp]>([
    ['unknown dtype', { a: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } }, 1, /dtype "F8" \(supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL\)/],
    ['negative shape', { a: { dtype: 'U8', shape: [-1], data_offsets: [0, 0] } }, 0, /shape \[-1\]/],
    ['reversed offsets', { a: { dtype: 'U8', shape: [0], data_offsets: [4, 0] } }, 4, /data_offsets \[4,0\]/],
    ['size mismatch', { a: f32(0, 8, [3]) }, 8, /spans 8 bytes, but F32 \[3\] needs 12/],
    ['overlap', { a: f32(0, 8), b: f32(4, 12) }, 12, /'b' \(bytes 4..12\) overlaps the previous tensor, which ends at 8/],
    ['gap', { a: f32(0, 4), b: f32(8, 12) }, 12, /'b' starts at byte 8, leaving a gap after byte 4/],
    ['offsets past the data', { a: f32(0, 8) }, 4, /cover 8 bytes but the data section has 4/],
    ['trailing bytes', { a: f32(0, 4) }, 8, /cover 4 bytes but the data section has 8/],
    ['unknown field', { a: { ...f32(0, 4), extra: 1 } }, 4, /unknown field\(s\) extra/],
    ['non-string metadata', { __metadata__: { n: 1 } }, 0, /__metadata__ must map strings to strings/],
    ['not an object', [1, 2], 0, /header is not a JSON object/],
  ])('refuses %s', (_, header, dataBytes, message) => {
    expect(refusal(() => readSafetensors(rawFile(header, new Uint8Array(dataBytes)))).message).toMatch(message);
  });

  it('refuses header lengths outside the file and non-JSON headers', () => {
    const valid = rawFile({ a: f32(0, 4) }, new Uint8Array(4));
    const tooLong = valid.slice();
    new DataView(tooLong.buffer).setBigUint64(0, 1n << 40n, true);
    expect(refusal(() => readSafetensors(tooLong)).message).toMatch(/header length 1099511627776 is out of range/);
    expect(refusal(() => readSafetensors(valid.subarray(0, 5))).message).toMatch(/shorter than its 8-byte header length/);
    const garbled = valid.slice();
    garbled[9] = 0xff;
    expect(refusal(() => readSafetensors(garbled)).message).toMatch(/not valid UTF-8 JSON/);
  });

  it('refuses single-byte header corruptions, or still reads the same tensors (property)', () => {
    const stateDict: StateDict = new Map<string, Tensor>([
      ['a', { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
      ['b', { dtype: 'int64', shape: [4], data: BigInt64Array.from([7n, 8n, 9n, 10n]) }],
    ]);
    const bytes = concat(encodeSafetensors(stateDict));
    const headerEnd = 8 + Number(Buffer.from(bytes).readBigUInt64LE(0));
    let refused = 0;
    let runs = 0;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: headerEnd - 1 }), fc.integer({ min: 1, max: 255 }), (at, flip) => {
        runs++;
        const corrupt = bytes.slice();
        corrupt[at] ^= flip;
        let result: ReturnType<typeof readSafetensors>;
        try {
          result = readSafetensors(corrupt);
        } catch (err) {
          expect(err).toBeInstanceOf(CheckpointError);
          refused++;
          return;
        }
        // What still parses (a renamed key, changed padding) must describe exactly the same tensors.
        expect([...result.stateDict.values()]).toEqual([...stateDict.values()]);
      }),
      { seed: 11, numRuns: 400 },
    );
    expect(refused / runs).toBeGreaterThan(0.8);
  });
});
