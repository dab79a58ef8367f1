// The module object itself (not an import-star copy), so its functions can be spied on.
import childProcess = require('node:child_process');
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { zipSync } from 'fflate';
import { CheckpointError } from './errors';
import { readPth } from './pth';
import { StateDict, TensorData, numel } from './tensor';
import { PickleWriter, dataDir, goldenDir, torchZip, refusal } from './testing/fixtures';
import { ZipArchive } from './zip';

const floats = (t: { data: TensorData } | TensorData): number[] =>
  Array.from(('data' in t ? t.data : t) as Float32Array);
const isBuffer = (name: string) => name.endsWith('attn_mask') || name.endsWith('relative_position_index');

function paramSums(stateDict: StateDict): { sum: number; absSum: number; params: number } {
  let sum = 0;
  let absSum = 0;
  let params = 0;
  for (const [name, tensor] of stateDict) {
    if (isBuffer(name)) continue;
    params += tensor.data.length;
    for (const v of tensor.data as Float32Array) {
      sum += v;
      absSum += Math.abs(v);
    }
  }
  return { sum, absSum, params };
}


const loadFile = (file: string) => readPth(fs.readFileSync(file), file);

// Sums of every parameter (buffers excluded) in float64, computed by an independent reader
// (Python zipfile + numpy.frombuffer) when these tests were written.
const REFERENCE_SUMS: Record<string, { sum: number; absSum: number }> = {
  light_x2_random: { sum: 2969.3652848754173, absSum: 24120.236388052017 },
  tiny_params_ema_x2: { sum: 121.3703845305281, absSum: 538.3098928531981 },
  tiny_pixelshuffle_x3: { sum: 142.9325843566603, absSum: 9374.049781943379 },
  tiny_pixelshuffledirect_x2: { sum: 106.3845095661236, absSum: 542.1255079366383 },
  tiny_pixelshuffledirect_x3: { sum: 123.08888598895282, absSum: 614.4185705979762 },
  tiny_pixelshuffledirect_x4: { sum: 116.46736977573892, absSum: 728.3229450607178 },
};

/** relative_position_index of a Swin window, from its definition in the official code. */
function relativePositionIndex(window: number): bigint[] {
  const out: bigint[] = [];
  for (let a = 0; a < window * window; a++) {
    for (let b = 0; b < window * window; b++) {
      const dy = Math.floor(a / window) - Math.floor(b / window) + window - 1;
      const dx = (a % window) - (b % window) + window - 1;
      out.push(BigInt(dy * (2 * window - 1) + dx));
    }
  }
  return out;
}

describe('readPth: golden fixtures', () => {
  const fixtures = fs.readdirSync(goldenDir()).filter((d) => fs.existsSync(path.join(goldenDir(), d, 'model.pth')));

  it('finds all six model fixtures', () => {
    expect(fixtures.sort()).toEqual(Object.keys(REFERENCE_SUMS).sort());
  });

  it.each(Object.keys(REFERENCE_SUMS))('%s matches meta.json and the reference sums', (fixture) => {
    const meta = JSON.parse(fs.readFileSync(path.join(goldenDir(), fixture, 'meta.json'), 'utf8'));
    const config = JSON.parse(fs.readFileSync(path.join(goldenDir(), fixture, 'config.json'), 'utf8'));
    const { stateDict, key } = loadFile(path.join(goldenDir(), fixture, 'model.pth'));
    expect(key).toBe(meta.param_key);
    expect(stateDict.size).toBe(meta.state_dict_entries);
    const { sum, absSum, params } = paramSums(stateDict);
    expect(params).toBe(meta.num_params);
    expect(sum).toBeCloseTo(REFERENCE_SUMS[fixture].sum, 8);
    expect(absSum).toBeCloseTo(REFERENCE_SUMS[fixture].absSum, 8);

    const window: number = config.window_size;
    const buffers = [...stateDict.keys()].filter(isBuffer);
    expect(buffers.length > 0).toBe(meta.buffers_included);
    for (const [name, tensor] of stateDict) {
      expect(tensor.data.length).toBe(numel(tensor.shape));
      if (name.endsWith('relative_position_index')) {
        expect(tensor.dtype).toBe('int64');
        expect(tensor.shape).toEqual([window * window, window * window]);
        expect(Array.from(tensor.data as BigInt64Array)).toEqual(relativePositionIndex(window));
      } else if (name.endsWith('attn_mask')) {
        const windows = (config.img_size / window) ** 2;
        expect(tensor.dtype).toBe('float32');
        expect(tensor.shape).toEqual([windows, window * window, window * window]);
        expect(new Set(tensor.data as Float32Array)).toEqual(new Set([0, -100]));
      } else {
        expect(tensor.dtype).toBe('float32');
      }
    }
    expect(stateDict.get('conv_first.weight')?.shape).toEqual([config.embed_dim, config.in_chans, 3, 3]);
  });

  it('reads tensor values in C order (tiny x2, checked against numpy)', () => {
    const { stateDict } = loadFile(path.join(goldenDir(), 'tiny_pixelshuffledirect_x2/model.pth'));
    const convFirst = stateDict.get('conv_first.weight')!;
    expect(floats(convFirst.data.subarray(0, 3))).toEqual(
      [-0.20014901459217072, 0.10244640707969666, -0.17757678031921387],
    );
    const head = stateDict.get('upsample.0.weight')!;
    expect(head.shape).toEqual([12, 12, 3, 3]);
    expect(floats(head.data.subarray(-2))).toEqual([0.0462714359164238, 0.0134058753028512]);
    // File order is kept.
    expect([...stateDict.keys()].slice(0, 3)).toEqual(['conv_first.weight', 'conv_first.bias', 'patch_embed.norm.weight']);
  });
});

describe('readPth: house checkpoints (17 MB, with buffers)', () => {
  it.each([
    ['swinir_light_x2_house.pth', 12, 910152, { sum: 2997.4839737508532, absSum: 17723.819631579998 }, [-0.0002428181323921308, 0.00035939671215601265, -0.0004940145299769938]],
    ['swinir_light_x4_house.pth', 48, 929628, { sum: 3035.8193705898157, absSum: 17913.591380804915 }, [-0.00046878523426130414, 0.00014239810116123408, -0.0007552671013399959]],
  ])('%s', (file, headChannels, numParams, sums, convFirstStart) => {
    const { stateDict, key } = loadFile(path.join(dataDir(), 'weights/house', file));
    expect(key).toBe('params');
    expect(stateDict.size).toBe(330 + 24 + 12);
    const stats = paramSums(stateDict);
    expect(stats.params).toBe(numParams);
    expect(stats.sum).toBeCloseTo(sums.sum, 7);
    expect(stats.absSum).toBeCloseTo(sums.absSum, 7);
    expect(stateDict.get('upsample.0.weight')?.shape).toEqual([headChannels, 60, 3, 3]);
    expect(floats(stateDict.get('conv_first.weight')!.data.subarray(0, 3))).toEqual(convFirstStart);
    const mask = stateDict.get('layers.0.residual_group.blocks.1.attn_mask')!;
    expect(mask.shape).toEqual([64, 64, 64]);
    expect((mask.data as Float32Array).filter((v) => v !== 0).length).toBe(31744);
    const index = stateDict.get('layers.3.residual_group.blocks.4.attn.relative_position_index')!;
    expect(Array.from(index.data as BigInt64Array)).toEqual(relativePositionIndex(8));
  });
});

describe('readPth: bad/ fixtures', () => {
  const bad = (file: string) => path.join(goldenDir(), 'bad', file);

  it('truncated.pth: refused for its missing end-of-central-directory record before any tensor is read', () => {
    const read = jest.spyOn(ZipArchive.prototype, 'read');
    try {
      const err = refusal(() => loadFile(bad('truncated.pth')));
      expect(err.message).toContain('truncated or corrupt checkpoint: no zip end-of-central-directory record');
      expect(err.message).toContain('truncated.pth');
      expect(read).not.toHaveBeenCalled();
    } finally {
      read.mockRestore();
    }
  });

  it('not_a_checkpoint.pth: names the PNG signature and the zip magic', () => {
    expect(refusal(() => loadFile(bad('not_a_checkpoint.pth'))).message).toContain(
      'not a PyTorch checkpoint: starts with the PNG signature 89 50 4E 47, expected a zip archive (PK\\x03\\x04)',
    );
  });

  it.each([
    ['forbidden_global.pth', 'posix system'],
    ['forbidden_global_os.pth', 'os system'],
  ])('%s: refused, and nothing ran', (file, qualified) => {
    const spawners = (['exec', 'execSync', 'execFile', 'execFileSync', 'spawn', 'spawnSync', 'fork'] as const).map(
      (name) => jest.spyOn(childProcess, name),
    );
    const stdout = jest.spyOn(process.stdout, 'write');
    try {
      const err = refusal(() => loadFile(bad(file)));
      expect(err.message).toContain(`forbidden pickle global '${qualified}' (allowed: collections OrderedDict, torch._utils _rebuild_tensor_v2`);
      for (const spawner of spawners) expect(spawner).not.toHaveBeenCalled();
      expect(stdout.mock.calls.join('')).not.toContain('HARMOQ_FORBIDDEN_GLOBAL_WAS_EXECUTED');
    } finally {
      for (const spawner of spawners) spawner.mockRestore();
      stdout.mockRestore();
    }
  });

  it('wrong_arch.pth is a valid (classical head) checkpoint for this reader', () => {
    const { stateDict, key } = loadFile(bad('wrong_arch.pth'));
    expect(key).toBe('params');
    expect(stateDict.get('upsample.0.weight')?.shape).toEqual([256, 64, 3, 3]);
    expect(stateDict.has('conv_before_upsample.0.weight')).toBe(true);
    expect(stateDict.get('conv_last.weight')?.shape).toEqual([3, 64, 3, 3]);
    expect(paramSums(stateDict).sum).toBeCloseTo(132.99068078808887, 8);
  });

  it('wrong_scale.pth is a valid x3 checkpoint for this reader', () => {
    const { stateDict } = loadFile(bad('wrong_scale.pth'));
    expect(stateDict.get('upsample.0.weight')?.shape).toEqual([27, 12, 3, 3]);
    expect(stateDict.size).toBe(72);
  });
});

/** A one-tensor checkpoint `{'params': {'w': view}}` over a float32 storage 0..n-1. */
function viewCheckpoint(storageNumel: number, offset: number, size: number[], stride: number[]): Uint8Array {
  const pickle = new PickleWriter().proto().emptyDict().str('params').emptyDict()
    .str('w').tensor('FloatStorage', '0', storageNumel, offset, size, stride).setItem().setItem().stop().bytes();
  const storage = Float32Array.from({ length: storageNumel }, (_, i) => i);
  return torchZip(pickle, { 0: new Uint8Array(storage.buffer) });
}

describe('readPth: storage views', () => {
  it('copies a transposed view into C order', () => {
    // storage 0..5 as a 2x3 matrix, read through its transpose (3x2, strides [1, 3]).
    const { stateDict } = readPth(viewCheckpoint(6, 0, [3, 2], [1, 3]));
    expect(floats(stateDict.get('w')!)).toEqual([0, 3, 1, 4, 2, 5]);
  });

  it('honours the storage offset and expanded (stride 0) dimensions', () => {
    expect(floats(readPth(viewCheckpoint(10, 4, [3], [1])).stateDict.get('w')!)).toEqual([4, 5, 6]);
    expect(floats(readPth(viewCheckpoint(10, 2, [2, 3], [0, 2])).stateDict.get('w')!)).toEqual([2, 4, 6, 2, 4, 6]);
  });

  it('matches a reference strided gather for random views (property)', () => {
    const view = fc.array(fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 7 })), { minLength: 0, maxLength: 4 });
    fc.assert(
      fc.property(view, fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 5 }), (dims, offset, slack) => {
        const size = dims.map(([n]) => n);
        const stride = dims.map(([, s]) => s);
        const last = offset + dims.reduce((acc, [n, s]) => acc + (n - 1) * s, 0);
        const storageNumel = last + 1 + slack;
        const expected: number[] = [];
        const walk = (d: number, at: number) => {
          if (d === size.length) expected.push(at);
          else for (let i = 0; i < size[d]; i++) walk(d + 1, at + i * stride[d]);
        };
        walk(0, offset);
        const tensor = readPth(viewCheckpoint(storageNumel, offset, size, stride)).stateDict.get('w')!;
        expect(tensor.shape).toEqual(size);
        expect(floats(tensor)).toEqual(expected);
      }),
      { seed: 20240611, numRuns: 200 },
    );
  });

  it('refuses a view that reaches past its storage', () => {
    expect(refusal(() => readPth(viewCheckpoint(6, 1, [2, 3], [3, 1]))).message).toContain(
      "tensor 'w' (offset 1, size [2, 3], stride [3, 1]) reaches element 6 of a 6-element storage",
    );
  });

  it('refuses a storage whose byte count does not match its numel', () => {
    const pickle = new PickleWriter().proto().emptyDict().str('w').tensor('FloatStorage', '0', 4, 0, [4], [1]).setItem().stop().bytes();
    expect(refusal(() => readPth(torchZip(pickle, { 0: new Uint8Array(12) }))).message).toContain(
      "storage 'archive/data/0' has 12 bytes, expected 4 float32 elements = 16 bytes",
    );
  });

  it('reads int64, float16 raw bits and bool storages', () => {
    const pickle = new PickleWriter().proto().emptyDict().mark()
      .str('i').tensor('LongStorage', '0', 2, 0, [2], [1])
      .str('h').tensor('HalfStorage', '1', 2, 0, [2], [1])
      .str('b').tensor('BoolStorage', '2', 3, 0, [3], [1])
      .setItems().stop().bytes();
    const longs = new BigInt64Array([-(2n ** 40n), 2n ** 62n]);
    const halves = new Uint16Array([0x3c00, 0xc000]); // 1.0, -2.0
    const archive = torchZip(pickle, { 0: new Uint8Array(longs.buffer), 1: new Uint8Array(halves.buffer), 2: Uint8Array.from([1, 0, 1]) });
    const { stateDict, key } = readPth(archive);
    expect(key).toBeNull();
    expect(stateDict.get('i')).toEqual({ dtype: 'int64', shape: [2], data: longs });
    expect(stateDict.get('h')).toEqual({ dtype: 'float16', shape: [2], data: halves });
    expect(stateDict.get('b')).toEqual({ dtype: 'bool', shape: [3], data: Uint8Array.from([1, 0, 1]) });
  });
});

describe('readPth: top level', () => {
  const scalar = (w: PickleWriter, key: string) => w.str(key).tensor('FloatStorage', key, 1, 0, [], []);
  const storages = { a: new Uint8Array(new Float32Array([1]).buffer), b: new Uint8Array(new Float32Array([2]).buffer) };
  const wrapped = (outer: string[]) => {
    const w = new PickleWriter().proto().emptyDict().mark();
    for (const key of outer) {
      w.str(key).emptyDict();
      scalar(w, key === 'params' ? 'a' : 'b').setItem();
    }
    return torchZip(w.setItems().stop().bytes(), storages);
  };

  it("prefers 'params' over 'params_ema', like the official test script", () => {
    const { stateDict, key } = readPth(wrapped(['params_ema', 'params']));
    expect(key).toBe('params');
    expect([...stateDict.keys()]).toEqual(['a']);
  });

  it("falls back to 'params_ema'", () => {
    expect(readPth(wrapped(['params_ema'])).key).toBe('params_ema');
  });

  it('refuses a dict that is neither wrapped nor a bare state dict, listing its keys', () => {
    const w = new PickleWriter().proto().emptyDict().mark().str('state_dict').emptyDict().str('epoch').int(3).setItems().stop();
    expect(refusal(() => readPth(torchZip(w.bytes()))).message).toContain(
      "checkpoint has no 'params' or 'params_ema' entry and is not a bare state dict: 'state_dict' is not a tensor (top-level keys: state_dict, epoch)",
    );
  });

  it('refuses legacy (pre-zip) torch files', () => {
    const legacy = Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
    expect(refusal(() => readPth(legacy)).message).toContain('legacy (non-zip) PyTorch checkpoint');
  });

  it('refuses big-endian archives', () => {
    const pickle = new PickleWriter().proto().emptyDict().stop().bytes();
    const archive = zipSync({ 'm/data.pkl': [pickle, { level: 0 }], 'm/byteorder': [Buffer.from('big'), { level: 0 }] });
    expect(refusal(() => readPth(archive)).message).toContain("checkpoint byteorder is 'big' (supported: little)");
  });

  it('reads deflated members and catches corrupted data by its CRC', () => {
    const pickle = new PickleWriter().proto().emptyDict().str('a').tensor('FloatStorage', 'a', 1, 0, [], []).setItem().stop().bytes();
    const deflated = zipSync({ 'm/data.pkl': pickle, 'm/data/a': storages.a }, { level: 6 });
    expect(floats(readPth(deflated).stateDict.get('a')!)).toEqual([1]);
    const stored = torchZip(pickle, { a: storages.a });
    const at = Buffer.from(stored).lastIndexOf(Buffer.from(storages.a));
    stored[at] ^= 0xff;
    expect(refusal(() => readPth(stored)).message).toContain("CRC-32 mismatch in zip member 'archive/data/a'");
  });
});
