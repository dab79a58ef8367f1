// Test-only helpers: where the shared fixtures are, and builders for hand-made torch archives.
import * as path from 'node:path';
import { zipSync } from 'fflate';
import { CheckpointError } from '../errors';

/** ../shared/golden (or HARMOQ_GOLDEN); torch-io is a leaf package, so it cannot use @harmoq/data. */
export function goldenDir(): string {
  return process.env.HARMOQ_GOLDEN ? path.resolve(process.env.HARMOQ_GOLDEN) : path.resolve(__dirname, '../../../../../shared/golden');
}

/** ../shared/data (or HARMOQ_DATA). */
export function dataDir(): string {
  return process.env.HARMOQ_DATA ? path.resolve(process.env.HARMOQ_DATA) : path.resolve(__dirname, '../../../../../shared/data');
}

/** Emits pickle opcodes by hand, so tests can build exactly the byte sequences they mean to check. */
export class PickleWriter {
  private readonly parts: number[] = [];

  op(code: number, ...bytes: number[]): this {
    this.parts.push(code, ...bytes);
    return this;
  }
  proto(version = 2): this { return this.op(0x80, version); }
  mark(): this { return this.op(0x28); }
  tuple(): this { return this.op(0x74); }
  emptyTuple(): this { return this.op(0x29); }
  emptyDict(): this { return this.op(0x7d); }
  setItem(): this { return this.op(0x73); }
  setItems(): this { return this.op(0x75); }
  reduce(): this { return this.op(0x52); }
  build(): this { return this.op(0x62); }
  binPersId(): this { return this.op(0x51); }
  newFalse(): this { return this.op(0x89); }
  stop(): this { return this.op(0x2e); }
  int(value: number): this {
    if (value >= 0 && value < 256) return this.op(0x4b, value);
    const b = Buffer.alloc(4);
    b.writeInt32LE(value);
    return this.op(0x4a, ...b);
  }
  str(value: string): this {
    const b = Buffer.from(value, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    return this.op(0x58, ...len, ...b);
  }
  shortStr(value: string): this {
    const b = Buffer.from(value, 'utf8');
    return this.op(0x8c, b.length, ...b);
  }
  global(module: string, name: string): this {
    return this.op(0x63, ...Buffer.from(`${module}\n${name}\n`, 'latin1'));
  }
  intTuple(values: number[]): this {
    this.mark();
    for (const v of values) this.int(v);
    return this.tuple();
  }
  /** _rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict()). */
  tensor(storageType: string, key: string, numel: number, offset: number, size: number[], stride: number[]): this {
    this.global('torch._utils', '_rebuild_tensor_v2').mark();
    this.mark().str('storage').global('torch', storageType).str(key).str('cpu').int(numel).tuple().binPersId();
    this.int(offset).intTuple(size).intTuple(stride).newFalse();
    this.global('collections', 'OrderedDict').emptyTuple().reduce();
    return this.tuple().reduce();
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** A torch.save-shaped zip: `<name>/data.pkl`, `<name>/version`, `<name>/data/<key>` (stored, uncompressed). */
export function torchZip(pickle: Uint8Array, storages: Record<string, Uint8Array> = {}, name = 'archive'): Uint8Array {
  const files: Record<string, [Uint8Array, { level: 0 }]> = {
    [`${name}/data.pkl`]: [pickle, { level: 0 }],
    [`${name}/version`]: [Buffer.from('3\n'), { level: 0 }],
  };
  for (const [key, bytes] of Object.entries(storages)) files[`${name}/data/${key}`] = [bytes, { level: 0 }];
  return zipSync(files);
}

/** Runs `run`, expects it to throw a CheckpointError, and returns that error for message checks. */
export function refusal(run: () => unknown): CheckpointError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(CheckpointError);
    return err as CheckpointError;
  }
  throw new Error('expected a CheckpointError');
}
