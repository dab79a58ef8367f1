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
