import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckpointError } from './errors';
import { PyDict, PyTuple, StorageRef, TensorRef, readPickle } from './pickle';
import { PickleWriter, goldenDir, refusal } from './testing/fixtures';
import { ZipArchive } from './zip';

const REDUCE = 0x52;
const GLOBAL = 0x63;

function dataPkl(file: string): Uint8Array {
  const archive = new ZipArchive(fs.readFileSync(file));
  const name = [...archive.entries.keys()].find((n) => n.endsWith('/data.pkl'));
  return archive.read(name as string);
}


describe('readPickle: the forbidden fixtures', () => {
  it.each([
    ['forbidden_global.pth', 'posix system'],
    ['forbidden_global_os.pth', 'os system'],
  ])('%s is refused at its GLOBAL opcode, before REDUCE', (file, qualified) => {
    const bytes = dataPkl(path.join(goldenDir(), 'bad', file));
    const seen: [number, number][] = [];
    const err = refusal(() => readPickle(bytes, (opcode, at) => seen.push([opcode, at])));
    expect(err.message).toContain(`forbidden pickle global '${qualified}'`);
    expect(err.message).toContain('allowed: collections OrderedDict, torch._utils _rebuild_tensor_v2');
    expect(err.message).toContain('torch._utils _rebuild_parameter');
    expect(err.message).toContain('FloatStorage/');
    // Parsing stopped at the GLOBAL (byte 14, see bad/README.md); the REDUCE at byte 75 was never reached.
    expect(seen[seen.length - 1]).toEqual([GLOBAL, 14]);
    expect(seen.some(([opcode]) => opcode === REDUCE)).toBe(false);
  });
});

describe('readPickle: the allowlist', () => {
  it.each([
    ['builtins', 'eval'],
    ['posix', 'system'],
    ['torch', 'load'],
    ['torch._utils', '_rebuild_qtensor'],
    ['collections', 'defaultdict'],
    ['numpy.core.multiarray', '_reconstruct'],
  ])('refuses GLOBAL %s %s', (module, name) => {
    const bytes = new PickleWriter().proto().global(module, name).emptyTuple().reduce().stop().bytes();
    expect(refusal(() => readPickle(bytes)).message).toContain(`forbidden pickle global '${module} ${name}'`);
  });

  it('refuses STACK_GLOBAL (protocol 4) with a forbidden name, at the STACK_GLOBAL', () => {
    const bytes = new PickleWriter().proto(4).shortStr('os').shortStr('system').op(0x93).shortStr('echo hi')
      .op(0x85).reduce().stop().bytes();
    const seen: number[] = [];
    const err = refusal(() => readPickle(bytes, (opcode) => seen.push(opcode)));
    expect(err.message).toContain("forbidden pickle global 'os system'");
    expect(seen[seen.length - 1]).toBe(0x93);
  });

  it('accepts STACK_GLOBAL for an allowed name', () => {
    const bytes = new PickleWriter().proto(4).shortStr('collections').shortStr('OrderedDict').op(0x93)
      .emptyTuple().reduce().stop().bytes();
    expect(readPickle(bytes)).toBeInstanceOf(PyDict);
  });

  it('refuses to call a storage class', () => {
    const bytes = new PickleWriter().proto().global('torch', 'FloatStorage').emptyTuple().reduce().stop().bytes();
    expect(refusal(() => readPickle(bytes)).message).toContain("'torch FloatStorage' is allowed only as a storage type");
  });

  it('refuses object-building opcodes and names them', () => {
    const bytes = new PickleWriter().proto().global('collections', 'OrderedDict').emptyTuple().op(0x81).stop().bytes();
    expect(refusal(() => readPickle(bytes)).message).toMatch(/unsupported pickle opcode 0x81 \(NEWOBJ\) at byte \d+/);
  });

  it('refuses persistent ids that are not storages', () => {
    const bytes = new PickleWriter().proto().str('module').binPersId().stop().bytes();
    expect(refusal(() => readPickle(bytes)).message).toContain("expected ('storage', <dtype>Storage, key, location, numel)");
  });

  it('refuses storage keys that are not plain names', () => {
    const bytes = new PickleWriter().proto().mark().str('storage').global('torch', 'FloatStorage').str('../../x')
      .str('cpu').int(1).tuple().binPersId().stop().bytes();
    expect(refusal(() => readPickle(bytes)).message).toContain("storage key '../../x' is not a plain file name");
  });
});

describe('readPickle: values', () => {
  it('reads ints of every width, floats, strings, memo and containers', () => {
    const w = new PickleWriter().proto(4).op(0x95, 0, 0, 0, 0, 0, 0, 0, 0); // FRAME: a hint only
    w.mark();
    w.int(7).int(-5).op(0x4d, 0x34, 0x12); // BININT2 0x1234
    w.op(0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 0x80); // LONG1: -2^63 needs a bigint
    w.op(0x8a, 2, 0xff, 0x7f); // LONG1: 32767
    w.op(0x47, ...Buffer.from([0x3f, 0xf8, 0, 0, 0, 0, 0, 0])); // BINFLOAT 1.5 (big-endian)
    w.shortStr('é').op(0x94).op(0x68, 0); // MEMOIZE, then BINGET 0
    w.op(0x4e).op(0x88).op(0x89).op(0x43, 2, 1, 2); // None True False b'\x01\x02'
    w.tuple().stop();
    const value = readPickle(w.bytes());
    expect(value).toBeInstanceOf(PyTuple);
    expect((value as PyTuple).items).toEqual([7, -5, 0x1234, -(2n ** 63n), 32767, 1.5, 'é', 'é', null, true, false, Uint8Array.from([1, 2])]);
  });

  it('builds lists and dicts through APPENDS and SETITEMS', () => {
    const w = new PickleWriter().proto().op(0x5d).mark().int(1).int(2).op(0x65); // [1, 2]
    w.emptyDict().mark().str('a').int(1).str('b').int(2).setItems().op(0x86).stop();
    const value = readPickle(w.bytes()) as PyTuple;
    expect(value.items[0]).toEqual([1, 2]);
    expect([...(value.items[1] as PyDict).entries]).toEqual([['a', 1], ['b', 2]]);
  });

  it('turns _rebuild_tensor_v2 into a tensor reference without reading data', () => {
    const bytes = new PickleWriter().proto().tensor('LongStorage', '3', 10, 2, [2, 3], [1, 2]).stop().bytes();
    const ref = readPickle(bytes) as TensorRef;
    expect(ref).toBeInstanceOf(TensorRef);
    expect(ref.storage).toEqual(new StorageRef('int64', '3', 'cpu', 10));
    expect([ref.storageOffset, ref.shape, ref.strides]).toEqual([2, [2, 3], [1, 2]]);
  });

  it('treats _rebuild_parameter as its data', () => {
    const w = new PickleWriter().proto().global('torch._utils', '_rebuild_parameter').mark()
      .tensor('FloatStorage', '0', 4, 0, [4], [1]).op(0x88).global('collections', 'OrderedDict').emptyTuple().reduce()
      .tuple().reduce().stop();
    expect(readPickle(w.bytes())).toBeInstanceOf(TensorRef);
  });

  it('ignores the _metadata BUILD on an OrderedDict', () => {
    // As torch.save writes it: OrderedDict(), SETITEMS, then BUILD with {'_metadata': ...}.
    const bytes = new PickleWriter().proto().global('collections', 'OrderedDict').emptyTuple().reduce()
      .str('w').int(1).setItem().emptyDict().str('_metadata').emptyDict().setItem().build().stop().bytes();
    const dict = readPickle(bytes) as PyDict;
    expect([...dict.entries]).toEqual([['w', 1]]);
  });

  it('reports truncation and a missing STOP', () => {
    expect(refusal(() => readPickle(Uint8Array.from([0x80, 2, 0x58, 10, 0, 0, 0, 0x61]))).message).toMatch(/truncated pickle/);
    expect(refusal(() => readPickle(Uint8Array.from([0x80, 2, 0x4e]))).message).toBe('truncated pickle: no STOP opcode');
    expect(refusal(() => readPickle(Uint8Array.from([0x80, 1]))).message).toContain('unsupported pickle protocol 1');
  });
});
