/** A dense tensor as read from a checkpoint or .npy file: C-order data plus its shape. */
export type DType =
  | 'float64' | 'float32' | 'float16' | 'bfloat16'
  | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

export type TensorData =
  | Float64Array | Float32Array | Uint16Array
  | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

export interface Tensor {
  dtype: DType;
  shape: number[];
  /** C-order (row-major) values; float16/bfloat16 keep their raw bits in a Uint16Array. */
  data: TensorData;
}

/** A PyTorch state dict: parameter/buffer path -> tensor, in file order. */
export type StateDict = Map<string, Tensor>;

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export const DTYPES: readonly DType[] = [
  'float64', 'float32', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool',
];

type TypedArrayConstructor = {
  new (buffer: ArrayBuffer, byteOffset?: number, length?: number): TensorData;
  new (length: number): TensorData;
  readonly BYTES_PER_ELEMENT: number;
};

const ARRAY_TYPE: Record<DType, TypedArrayConstructor> = {
  float64: Float64Array, float32: Float32Array, float16: Uint16Array, bfloat16: Uint16Array,
  int64: BigInt64Array, int32: Int32Array, int16: Int16Array, int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
};

/** Bytes per element of a dtype. */
export function itemSize(dtype: DType): number {
  return ARRAY_TYPE[dtype].BYTES_PER_ELEMENT;
}

/** A zero-filled typed array of the right kind for `dtype`. */
export function allocData(dtype: DType, length: number): TensorData {
  return new ARRAY_TYPE[dtype](length);
}

/** Whether `data` is the array type that `dtype` is stored in (float16 and bfloat16 both use Uint16Array). */
export function dataMatchesDType(dtype: DType, data: TensorData): boolean {
  return data.constructor === ARRAY_TYPE[dtype];
}

// Every reader and writer here reinterprets bytes as host-order typed arrays; all formats are little-endian.
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Throws when the host is big-endian, where the byte reinterpretation below would be wrong. */
export function assertLittleEndianHost(): void {
  if (!HOST_IS_LITTLE_ENDIAN) throw new Error('torch-io needs a little-endian host');
}

/**
 * Copies little-endian bytes into a fresh, aligned typed array of `dtype`.
 * A copy is needed anyway: file offsets are rarely aligned to the element size.
 */
export function dataFromBytes(dtype: DType, bytes: Uint8Array): TensorData {
  assertLittleEndianHost();
  const size = itemSize(dtype);
  if (bytes.byteLength % size !== 0) {
    throw new RangeError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements (${size} bytes each)`);
  }
  const buffer = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(buffer).set(bytes);
  return new ARRAY_TYPE[dtype](buffer);
}

/** The raw little-endian bytes of a tensor's data (a view, no copy). */
export function bytesOfData(data: TensorData): Uint8Array {
  assertLittleEndianHost();
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Row-major strides (in elements) of a shape. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let step = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = step;
    step *= shape[d];
  }
  return strides;
}
