/**
 * A restricted pickle reader for PyTorch state dicts. It parses opcodes into plain values and never runs
 * anything: a GLOBAL can only name one of the allowlisted torch/collections symbols (anything else is refused
 * at the opcode that names it), and REDUCE only "calls" those symbols through the pure re-implementations below.
 */
import { CheckpointError } from './errors';
import type { DType } from './tensor';

/** A Python tuple (kept distinct from a list so that persistent ids and sizes can be checked). */
export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

export type PyDictKey = string | number | bigint | boolean | null;

/** A dict or OrderedDict; insertion order is preserved like Python's. */
export class PyDict {
  readonly entries = new Map<PyDictKey, PyValue>();
}

/** An allowlisted global, the only kind of callable a checkpoint may mention. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualifiedName(): string {
    return `${this.module} ${this.name}`;
  }
}

/** persistent_load('storage', <dtype>Storage, key, location, numel): a reference to `<archive>/data/<key>`. */
export class StorageRef {
  constructor(readonly dtype: DType, readonly key: string, readonly location: string, readonly numel: number) {}
}

/** _rebuild_tensor_v2(storage, offset, size, stride, ...): a view of a storage, materialised later. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly storageOffset: number,
    readonly shape: number[],
    readonly strides: number[],
  ) {}
}

export type PyValue =
  | null | boolean | number | bigint | string | Uint8Array
  | PyValue[] | PyTuple | PyDict | PyGlobal | StorageRef | TensorRef;

/** Storage classes torch.save names in persistent ids, by the dtype of their elements. */
export const STORAGE_DTYPES: Readonly<Record<string, DType>> = {
  FloatStorage: 'float32', DoubleStorage: 'float64', HalfStorage: 'float16', BFloat16Storage: 'bfloat16',
  LongStorage: 'int64', IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8',
  ByteStorage: 'uint8', BoolStorage: 'bool',
};

const ALLOWED_FUNCTIONS = new Set([
  'collections OrderedDict',
  'torch._utils _rebuild_tensor_v2',
  'torch._utils _rebuild_parameter',
]);

export const ALLOWED_GLOBALS_DESCRIPTION =
  'collections OrderedDict, torch._utils _rebuild_tensor_v2, torch._utils _rebuild_parameter, ' +
  `torch ${Object.keys(STORAGE_DTYPES).join('/')}`;

export function isAllowedGlobal(module: string, name: string): boolean {
  return ALLOWED_FUNCTIONS.has(`${module} ${name}`) || (module === 'torch' && name in STORAGE_DTYPES);
}

// Opcodes of protocols 2..5 that a state dict can use.
const OP = {
  PROTO: 0x80, FRAME: 0x95, STOP: 0x2e, MARK: 0x28, POP: 0x30, POP_MARK: 0x31, DUP: 0x32,
  NONE: 0x4e, NEWTRUE: 0x88, NEWFALSE: 0x89,
  BININT: 0x4a, BININT1: 0x4b, BININT2: 0x4d, LONG1: 0x8a, LONG4: 0x8b, BINFLOAT: 0x47,
  BINUNICODE: 0x58, SHORT_BINUNICODE: 0x8c, BINUNICODE8: 0x8d,
  BINSTRING: 0x54, SHORT_BINSTRING: 0x55, BINBYTES: 0x42, SHORT_BINBYTES: 0x43, BINBYTES8: 0x8e,
  EMPTY_TUPLE: 0x29, TUPLE: 0x74, TUPLE1: 0x85, TUPLE2: 0x86, TUPLE3: 0x87,
  EMPTY_LIST: 0x5d, LIST: 0x6c, APPEND: 0x61, APPENDS: 0x65,
  EMPTY_DICT: 0x7d, DICT: 0x64, SETITEM: 0x73, SETITEMS: 0x75,
  PUT: 0x70, BINPUT: 0x71, LONG_BINPUT: 0x72, MEMOIZE: 0x94, GET: 0x67, BINGET: 0x68, LONG_BINGET: 0x6a,
  GLOBAL: 0x63, STACK_GLOBAL: 0x93, REDUCE: 0x52, BUILD: 0x62, BINPERSID: 0x51,
} as const;

// Named in the refusal so a reader can tell what the file tried to do (build objects, use buffers, ...).
const UNSUPPORTED_OPCODES = new Map<number, string>([
  [0x81, 'NEWOBJ'], [0x92, 'NEWOBJ_EX'], [0x69, 'INST'], [0x6f, 'OBJ'], [0x82, 'EXT1'], [0x83, 'EXT2'],
  [0x84, 'EXT4'], [0x50, 'PERSID'], [0x8f, 'EMPTY_SET'], [0x90, 'ADDITEMS'], [0x91, 'FROZENSET'],
  [0x96, 'BYTEARRAY8'], [0x97, 'NEXT_BUFFER'], [0x98, 'READONLY_BUFFER'], [0x49, 'INT'], [0x4c, 'LONG'],
  [0x46, 'FLOAT'], [0x53, 'STRING'], [0x56, 'UNICODE'],
]);

function describe(value: PyValue): string {
  if (value === null) return 'None';
  if (Array.isArray(value)) return 'list';
  if (value instanceof Uint8Array) return 'bytes';
  if (typeof value === 'object') return value.constructor.name;
  return typeof value;
}

function asInt(value: PyValue, what: string): number {
  if (typeof value === 'bigint') {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new CheckpointError(`${what} ${value} is out of range`);
    }
    return Number(value);
  }
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new CheckpointError(`${what} must be an int, got ${describe(value)}`);
  }
  return value;
}

function asIntTuple(value: PyValue, what: string): number[] {
  if (!(value instanceof PyTuple)) throw new CheckpointError(`${what} must be a tuple, got ${describe(value)}`);
  return value.items.map((item, i) => {
    const n = asInt(item, `${what}[${i}]`);
    if (n < 0) throw new CheckpointError(`${what}[${i}] = ${n} is negative`);
    return n;
  });
}

/** The pure stand-ins for the allowlisted callables. */
function callGlobal(fn: PyGlobal, args: PyValue[]): PyValue {
  switch (fn.qualifiedName) {
    case 'collections OrderedDict': {
      if (args.length > 0) throw new CheckpointError(`OrderedDict() with ${args.length} arguments is not supported; torch.save writes OrderedDict() and then SETITEMS`);
      return new PyDict();
    }
    case 'torch._utils _rebuild_tensor_v2': {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args.length < 4) throw new CheckpointError(`_rebuild_tensor_v2 takes at least 4 arguments, got ${args.length}`);
      const [storage, offset, size, stride] = args;
      if (!(storage instanceof StorageRef)) throw new CheckpointError(`_rebuild_tensor_v2 expects a storage, got ${describe(storage)}`);
      const shape = asIntTuple(size, 'tensor size');
      const strides = asIntTuple(stride, 'tensor stride');
      if (shape.length !== strides.length) {
        throw new CheckpointError(`tensor size (${shape.join(', ')}) and stride (${strides.join(', ')}) have different lengths`);
      }
      const storageOffset = asInt(offset, 'storage offset');
      if (storageOffset < 0) throw new CheckpointError(`storage offset ${storageOffset} is negative`);
      return new TensorRef(storage, storageOffset, shape, strides);
    }
    case 'torch._utils _rebuild_parameter': {
      // (data, requires_grad, backward_hooks): a Parameter is just its data here.
      const data = args[0];
      if (!(data instanceof TensorRef)) throw new CheckpointError(`_rebuild_parameter expects a tensor, got ${describe(data)}`);
      return data;
    }
    default:
      throw new CheckpointError(`pickle global '${fn.qualifiedName}' is allowed only as a storage type, not called`);
  }
}

function persistentLoad(pid: PyValue): StorageRef {
  // ('storage', storage_type, key, location, numel), as torch.serialization writes it.
  if (!(pid instanceof PyTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') {
    throw new CheckpointError(`unsupported persistent id ${describe(pid)}; expected ('storage', <dtype>Storage, key, location, numel)`);
  }
  const [, type, key, location, numelValue] = pid.items;
  if (!(type instanceof PyGlobal) || type.module !== 'torch' || !(type.name in STORAGE_DTYPES)) {
    throw new CheckpointError(`persistent id names storage type ${type instanceof PyGlobal ? `'${type.qualifiedName}'` : describe(type)} (supported: torch ${Object.keys(STORAGE_DTYPES).join('/')})`);
  }
  if (typeof key !== 'string' || typeof location !== 'string') {
    throw new CheckpointError('persistent id key and location must be strings');
  }
  // Keys become archive paths: keep them to plain names so they cannot point elsewhere.
  if (!/^[A-Za-z0-9_.-]+$/.test(key) || key === '.' || key === '..') {
    throw new CheckpointError(`storage key '${key}' is not a plain file name`);
  }
  return new StorageRef(STORAGE_DTYPES[type.name], key, location, asInt(numelValue, 'storage numel'));
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const latin1 = new TextDecoder('latin1');

/**
 * Parses a pickle produced by torch.save into plain values. Throws CheckpointError on any global outside the
 * allowlist (at its GLOBAL/STACK_GLOBAL opcode), any unsupported opcode, or malformed data. `onOpcode` lets
 * tests watch how far parsing got.
 */
export function readPickle(bytes: Uint8Array, onOpcode?: (opcode: number, position: number) => void): PyValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  let stack: PyValue[] = [];
  const metastack: PyValue[][] = [];
  const memo = new Map<number, PyValue>();

  const need = (n: number, what: string): number => {
    if (n < 0 || pos + n > bytes.length) {
      throw new CheckpointError(`truncated pickle: ${what} needs ${n} bytes at byte ${pos}, ${bytes.length - pos} left`);
    }
    const at = pos;
    pos += n;
    return at;
  };
  const u8 = () => bytes[need(1, 'an argument')];
  const u16 = () => view.getUint16(need(2, 'an argument'), true);
  const u32 = () => view.getUint32(need(4, 'an argument'), true);
  const u64 = (): number => {
    const value = view.getBigUint64(need(8, 'an argument'), true);
    if (value > BigInt(bytes.length)) throw new CheckpointError(`pickle length ${value} exceeds the ${bytes.length}-byte pickle`);
    return Number(value);
  };
  const take = (n: number, what: string) => bytes.subarray(need(n, what), pos);
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw new CheckpointError(`truncated pickle: unterminated line at byte ${pos}`);
    const text = latin1.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return text;
  };
  const text = (n: number): string => {
    try {
      return utf8.decode(take(n, 'a string'));
    } catch (err) {
      if (err instanceof CheckpointError) throw err;
      throw new CheckpointError(`invalid UTF-8 string in pickle before byte ${pos}`);
    }
  };
  const pop = (): PyValue => {
    if (stack.length === 0) throw new CheckpointError(`malformed pickle: stack underflow at byte ${pos}`);
    return stack.pop() as PyValue;
  };
  const top = (): PyValue => {
    if (stack.length === 0) throw new CheckpointError(`malformed pickle: empty stack at byte ${pos}`);
    return stack[stack.length - 1];
  };
  const popMark = (): PyValue[] => {
    const items = stack;
    const previous = metastack.pop();
    if (!previous) throw new CheckpointError(`malformed pickle: no MARK before byte ${pos}`);
    stack = previous;
    return items;
  };
  const global = (module: string, name: string, at: number): PyGlobal => {
    if (!isAllowedGlobal(module, name)) {
      throw new CheckpointError(
        `forbidden pickle global '${module} ${name}' (allowed: ${ALLOWED_GLOBALS_DESCRIPTION}); ` +
          `refused at pickle byte ${at}, nothing was executed`,
      );
    }
    return new PyGlobal(module, name);
  };
  const dictKey = (key: PyValue): PyDictKey => {
    if (key === null || ['string', 'number', 'bigint', 'boolean'].includes(typeof key)) return key as PyDictKey;
    throw new CheckpointError(`unsupported dict key of type ${describe(key)} at byte ${pos}`);
  };
  const setItems = (target: PyValue, items: PyValue[]): void => {
    if (!(target instanceof PyDict)) throw new CheckpointError(`SETITEM on a ${describe(target)} at byte ${pos}`);
    if (items.length % 2 !== 0) throw new CheckpointError(`malformed pickle: odd number of SETITEMS values at byte ${pos}`);
    for (let i = 0; i < items.length; i += 2) target.entries.set(dictKey(items[i]), items[i + 1]);
  };
  const appendItems = (target: PyValue, items: PyValue[]): void => {
    if (!Array.isArray(target)) throw new CheckpointError(`APPEND on a ${describe(target)} at byte ${pos}`);
    target.push(...items);
  };
  const memoGet = (index: number): PyValue => {
    if (!memo.has(index)) throw new CheckpointError(`malformed pickle: memo ${index} read before it was written (byte ${pos})`);
    return memo.get(index) as PyValue;
  };
  const signedLittleEndian = (raw: Uint8Array): number | bigint => {
    let value = 0n;
    for (let i = raw.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(raw[i]);
    if (raw.length > 0 && raw[raw.length - 1] & 0x80) value -= 1n << BigInt(8 * raw.length);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  };

  while (pos < bytes.length) {
    const at = pos;
    const opcode = bytes[pos++];
    onOpcode?.(opcode, at);
    switch (opcode) {
      case OP.PROTO: {
        const protocol = u8();
        if (protocol < 2 || protocol > 5) throw new CheckpointError(`unsupported pickle protocol ${protocol} (supported: 2..5)`);
        break;
      }
      case OP.FRAME: u64(); break; // framing is only a read-ahead hint; the data follows inline
      case OP.STOP: {
        if (metastack.length > 0) throw new CheckpointError('malformed pickle: STOP inside an open MARK');
        return pop();
      }
      case OP.MARK: metastack.push(stack); stack = []; break;
      case OP.POP: pop(); break;
      case OP.POP_MARK: popMark(); break;
      case OP.DUP: stack.push(top()); break;
      case OP.NONE: stack.push(null); break;
      case OP.NEWTRUE: stack.push(true); break;
      case OP.NEWFALSE: stack.push(false); break;
      case OP.BININT: stack.push(view.getInt32(need(4, 'BININT'), true)); break;
      case OP.BININT1: stack.push(u8()); break;
      case OP.BININT2: stack.push(u16()); break;
      case OP.LONG1: stack.push(signedLittleEndian(take(u8(), 'LONG1'))); break;
      case OP.LONG4: stack.push(signedLittleEndian(take(view.getInt32(need(4, 'LONG4'), true), 'LONG4'))); break;
      case OP.BINFLOAT: stack.push(view.getFloat64(need(8, 'BINFLOAT'), false)); break;
      case OP.BINUNICODE: stack.push(text(u32())); break;
      case OP.SHORT_BINUNICODE: stack.push(text(u8())); break;
      case OP.BINUNICODE8: stack.push(text(u64())); break;
      case OP.BINSTRING: stack.push(latin1.decode(take(view.getInt32(need(4, 'BINSTRING'), true), 'BINSTRING'))); break;
      case OP.SHORT_BINSTRING: stack.push(latin1.decode(take(u8(), 'SHORT_BINSTRING'))); break;
      case OP.BINBYTES: stack.push(take(u32(), 'BINBYTES').slice()); break;
      case OP.SHORT_BINBYTES: stack.push(take(u8(), 'SHORT_BINBYTES').slice()); break;
      case OP.BINBYTES8: stack.push(take(u64(), 'BINBYTES8').slice()); break;
      case OP.EMPTY_TUPLE: stack.push(new PyTuple([])); break;
      case OP.TUPLE: { const items = popMark(); stack.push(new PyTuple(items)); break; } // popMark swaps `stack`
      case OP.TUPLE1: stack.push(new PyTuple([pop()])); break;
      case OP.TUPLE2: { const b = pop(); const a = pop(); stack.push(new PyTuple([a, b])); break; }
      case OP.TUPLE3: { const c = pop(); const b = pop(); const a = pop(); stack.push(new PyTuple([a, b, c])); break; }
      case OP.EMPTY_LIST: stack.push([]); break;
      case OP.LIST: { const items = popMark(); stack.push(items); break; }
      case OP.APPEND: { const item = pop(); appendItems(top(), [item]); break; }
      case OP.APPENDS: { const items = popMark(); appendItems(top(), items); break; }
      case OP.EMPTY_DICT: stack.push(new PyDict()); break;
      case OP.DICT: { const items = popMark(); const dict = new PyDict(); setItems(dict, items); stack.push(dict); break; }
      case OP.SETITEM: { const value = pop(); const key = pop(); setItems(top(), [key, value]); break; }
      case OP.SETITEMS: { const items = popMark(); setItems(top(), items); break; }
      case OP.PUT: memo.set(asInt(Number(line()), 'PUT index'), top()); break;
      case OP.BINPUT: memo.set(u8(), top()); break;
      case OP.LONG_BINPUT: memo.set(u32(), top()); break;
      case OP.MEMOIZE: memo.set(memo.size, top()); break;
      case OP.GET: stack.push(memoGet(asInt(Number(line()), 'GET index'))); break;
      case OP.BINGET: stack.push(memoGet(u8())); break;
      case OP.LONG_BINGET: stack.push(memoGet(u32())); break;
      case OP.GLOBAL: {
        const module = line();
        const name = line();
        stack.push(global(module, name, at));
        break;
      }
      case OP.STACK_GLOBAL: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') {
          throw new CheckpointError(`STACK_GLOBAL needs two strings, got ${describe(module)} and ${describe(name)} (byte ${at})`);
        }
        stack.push(global(module, name, at));
        break;
      }
      case OP.REDUCE: {
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PyGlobal)) throw new CheckpointError(`REDUCE on a ${describe(fn)}, not an allowed global (byte ${at})`);
        if (!(args instanceof PyTuple)) throw new CheckpointError(`REDUCE arguments must be a tuple, got ${describe(args)} (byte ${at})`);
        stack.push(callGlobal(fn, args.items));
        break;
      }
      case OP.BUILD: {
        // OrderedDict state dicts carry `_metadata` (per-module versions) set by BUILD; it is not needed.
        pop();
        const target = top();
        if (!(target instanceof PyDict)) throw new CheckpointError(`BUILD on a ${describe(target)} is not supported (byte ${at})`);
        break;
      }
      case OP.BINPERSID: stack.push(persistentLoad(pop())); break;
      default: {
        const name = UNSUPPORTED_OPCODES.get(opcode);
        throw new CheckpointError(
          `unsupported pickle opcode 0x${opcode.toString(16).padStart(2, '0')}${name ? ` (${name})` : ''} at byte ${at}; ` +
            'a state dict needs only the protocol 2..5 opcodes for dicts, tuples, strings, numbers and tensors',
        );
      }
    }
  }
  throw new CheckpointError('truncated pickle: no STOP opcode');
}
