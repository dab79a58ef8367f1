import { CheckpointError } from './errors';
import { describeStart } from './signatures';
import { PyDict, PyValue, StorageRef, TensorRef, readPickle } from './pickle';
import { StateDict, Tensor, allocData, contiguousStrides, dataFromBytes, itemSize, numel } from './tensor';
import { ZipArchive } from './zip';

/** Which top-level entry held the state dict: `{'params': sd}`, `{'params_ema': sd}`, or a bare state dict (null). */
export type CheckpointKey = 'params' | 'params_ema' | null;

export interface PthCheckpoint {
  stateDict: StateDict;
  key: CheckpointKey;
}

type IndexedData = { [index: number]: number | bigint };

const ZIP_MAGIC = [0x50, 0x4b, 0x03, 0x04];

/** Copies a (possibly strided) view of a storage into a C-order tensor. */
function materialize(ref: TensorRef, storageBytes: Uint8Array, name: string, source?: string): Tensor {
  const { dtype } = ref.storage;
  const size = itemSize(dtype);
  const elements = numel(ref.shape);
  if (elements === 0) return { dtype, shape: ref.shape, data: allocData(dtype, 0) };
  // The farthest element the view touches must lie inside the storage.
  let last = ref.storageOffset;
  for (let d = 0; d < ref.shape.length; d++) last += (ref.shape[d] - 1) * ref.strides[d];
  if (last >= ref.storage.numel) {
    throw new CheckpointError(
      `tensor '${name}' (offset ${ref.storageOffset}, size [${ref.shape.join(', ')}], stride [${ref.strides.join(', ')}]) ` +
        `reaches element ${last} of a ${ref.storage.numel}-element storage`,
      source,
    );
  }
  const dense = contiguousStrides(ref.shape);
  // Strides of size-1 dimensions never matter, so they are ignored in the contiguity test.
  const isContiguous = ref.shape.every((n, d) => n === 1 || ref.strides[d] === dense[d]);
  if (isContiguous) {
    const start = ref.storageOffset * size;
    return { dtype, shape: ref.shape, data: dataFromBytes(dtype, storageBytes.subarray(start, start + elements * size)) };
  }
  // Transposed, sliced or expanded views: gather element by element in C order.
  // Same element type on both sides, so a plain indexed copy is exact (bigint for int64, raw bits for halves).
  const storage = dataFromBytes(dtype, storageBytes) as IndexedData;
  const out = allocData(dtype, elements);
  const target = out as IndexedData;
  const rank = ref.shape.length;
  const index = new Array<number>(rank).fill(0);
  let from = ref.storageOffset;
  for (let i = 0; i < elements; i++) {
    target[i] = storage[from];
    for (let d = rank - 1; d >= 0; d--) {
      if (++index[d] < ref.shape[d]) {
        from += ref.strides[d];
        break;
      }
      from -= (ref.shape[d] - 1) * ref.strides[d];
      index[d] = 0;
    }
  }
  return { dtype, shape: ref.shape, data: out };
}

function pickStateDict(root: PyValue, source?: string): { dict: PyDict; key: CheckpointKey } {
  if (!(root instanceof PyDict)) {
    throw new CheckpointError(`checkpoint holds a ${root === null ? 'None' : typeof root === 'object' ? root.constructor.name : typeof root}, expected a dict`, source);
  }
  // The official test script: ckpt['params'] if 'params' in ckpt else ckpt; params_ema is BasicSR's EMA copy.
  for (const key of ['params', 'params_ema'] as const) {
    if (root.entries.has(key)) {
      const inner = root.entries.get(key);
      if (!(inner instanceof PyDict)) throw new CheckpointError(`checkpoint['${key}'] is not a dict`, source);
      return { dict: inner, key };
    }
  }
  for (const [name, value] of root.entries) {
    if (!(value instanceof TensorRef)) {
      const keys = [...root.entries.keys()].slice(0, 8).map(String).join(', ');
      throw new CheckpointError(
        `checkpoint has no 'params' or 'params_ema' entry and is not a bare state dict: '${String(name)}' is not a tensor (top-level keys: ${keys})`,
        source,
      );
    }
  }
  return { dict: root, key: null };
}

/** True when the bytes start like a zip archive (every torch.save file since torch 1.6). */
export function looksLikeZip(bytes: Uint8Array): boolean {
  return ZIP_MAGIC.every((b, i) => bytes[i] === b);
}

/** Legacy (pre-1.6) torch.save files are a bare pickle stream starting with PROTO 2 and a magic number. */
export function looksLikeLegacyTorch(bytes: Uint8Array): boolean {
  return bytes[0] === 0x80 && bytes[1] >= 2 && bytes[1] <= 5;
}

/** Reads a torch.save zip checkpoint without executing any of its pickle. */
export function readPth(bytes: Uint8Array, source?: string): PthCheckpoint {
  if (looksLikeLegacyTorch(bytes)) {
    throw new CheckpointError(
      'legacy (non-zip) PyTorch checkpoint: torch < 1.6 format is not supported; re-save it with torch >= 1.6 ' +
        '(torch.save(torch.load(f), f2) writes the zip format)',
      source,
    );
  }
  if (!looksLikeZip(bytes)) {
    throw new CheckpointError(`not a PyTorch checkpoint: ${describeStart(bytes)}, expected a zip archive (PK\\x03\\x04)`, source);
  }
  const archive = new ZipArchive(bytes, source);
  const pickles = [...archive.entries.keys()].filter((name) => name === 'data.pkl' || name.endsWith('/data.pkl'));
  if (pickles.length !== 1) {
    throw new CheckpointError(`expected one <archive>/data.pkl in the zip, found ${pickles.length} (${pickles.join(', ') || 'none'})`, source);
  }
  const prefix = pickles[0].slice(0, -'data.pkl'.length);
  const byteOrder = archive.entries.has(`${prefix}byteorder`)
    ? new TextDecoder().decode(archive.read(`${prefix}byteorder`)).trim()
    : 'little';
  if (byteOrder !== 'little') throw new CheckpointError(`checkpoint byteorder is '${byteOrder}' (supported: little)`, source);

  let root: PyValue;
  try {
    root = readPickle(archive.read(pickles[0]));
  } catch (err) {
    if (err instanceof CheckpointError && source && !err.file) throw new CheckpointError(err.message, source);
    throw err;
  }
  const { dict, key } = pickStateDict(root, source);

  const storages = new Map<string, Uint8Array>();
  const storageBytes = (ref: StorageRef): Uint8Array => {
    let bytesOfStorage = storages.get(ref.key);
    if (!bytesOfStorage) {
      const member = `${prefix}data/${ref.key}`;
      if (!archive.entries.has(member)) throw new CheckpointError(`storage '${member}' is missing from the archive`, source);
      bytesOfStorage = archive.read(member);
      const expected = ref.numel * itemSize(ref.dtype);
      if (bytesOfStorage.length !== expected) {
        throw new CheckpointError(
          `storage '${member}' has ${bytesOfStorage.length} bytes, expected ${ref.numel} ${ref.dtype} elements = ${expected} bytes`,
          source,
        );
      }
      storages.set(ref.key, bytesOfStorage);
    }
    return bytesOfStorage;
  };

  const stateDict: StateDict = new Map();
  for (const [name, value] of dict.entries) {
    if (typeof name !== 'string') throw new CheckpointError(`state dict key ${String(name)} is not a string`, source);
    if (!(value instanceof TensorRef)) throw new CheckpointError(`state dict entry '${name}' is not a tensor`, source);
    stateDict.set(name, materialize(value, storageBytes(value.storage), name, source));
  }
  return { stateDict, key };
}
