/**
 * Shrinks the builder's large non-weight constants without changing a single output value: at 64x64 the
 * expanded relative-position biases, the shift mask and the window-order indices outweigh the packed weights.
 * - `<block>.attn.bias` (heads, [1,] N, N) float: rebuilt in-graph from the block's ((2ws-1)^2, heads) table by
 *   Gather (one shared int32 index), Transpose, Reshape; only after checking the expansion bit for bit.
 * - Float constants holding only small integers (the 0 / -100 shift mask): int8 plus a Cast.
 * - int64 Gather indices: int32.
 * onnxruntime folds all of it into the original constants at load.
 */
import { TensorDataType, relativePositionBias, relativePositionIndex, toFloat32, type ModelProtoObject } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';

type Tensor = ModelProtoObject['graph']['initializer'][number];
type Node = ModelProtoObject['graph']['node'][number];

const MIN_BYTES = 1024;
const bytesOf = (data: ArrayBufferView) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
const floatsOf = (t: Tensor) => new Float32Array(Uint8Array.from(t.rawData!).buffer);

/** Rewrites `model` in place; returns the bytes of constants saved. */
export function compactConstants(model: ModelProtoObject, stateDict: StateDict): number {
  const { graph } = model;
  const added: Node[] = [];
  const extra: Tensor[] = [];
  let saved = 0;
  const cast = (from: string, to: string) => added.push({ opType: 'Cast', input: [from], output: [to], name: `${to}.cast`, attribute: [{ name: 'to', type: 2, i: TensorDataType.FLOAT }] });
  const shared = (name: string, make: () => Omit<Tensor, 'name'>) => {
    if (!extra.some((t) => t.name === name)) extra.push({ name, ...make() });
    return name;
  };
  for (const t of graph.initializer) {
    const size = t.rawData?.length ?? 0;
    if (size < MIN_BYTES) continue;
    if (t.dataType === TensorDataType.FLOAT) {
      const values = floatsOf(t);
      const tableKey = t.name.replace(/\.attn\.bias$/, '.attn.relative_position_bias_table');
      if (tableKey !== t.name && stateDict.has(tableKey)) {
        const heads = t.dims[0], n = t.dims[t.dims.length - 1];
        const ws = Math.round(Math.sqrt(n));
        const table = toFloat32(stateDict.get(tableKey)!, tableKey);
        const expanded = relativePositionBias(table, heads, ws);
        if (expanded.length !== values.length || !expanded.every((v, i) => Object.is(v, values[i]))) continue;
        const index = shared(`relative_position_index_${ws}`, () => ({ dims: [n * n], dataType: TensorDataType.INT32, rawData: bytesOf(relativePositionIndex(ws)) }));
        const shape = shared(`bias_shape_${t.dims.join('x')}`, () => ({ dims: [t.dims.length], dataType: TensorDataType.INT64, rawData: bytesOf(BigInt64Array.from(t.dims, BigInt)) }));
        const name = t.name;
        t.name = `${name}.table`;
        t.dims = [table.length / heads, heads];
        t.rawData = bytesOf(table);
        added.push({ opType: 'Gather', input: [t.name, index], output: [`${name}.gathered`], name: `${name}.gather`, attribute: [{ name: 'axis', type: 2, i: 0 }] });
        added.push({ opType: 'Transpose', input: [`${name}.gathered`], output: [`${name}.heads`], name: `${name}.transpose`, attribute: [{ name: 'perm', type: 7, ints: [1, 0] }] });
        added.push({ opType: 'Reshape', input: [`${name}.heads`, shape], output: [name], name: `${name}.reshape` });
        saved += size - t.rawData.length;
      } else if (values.every((v) => Number.isInteger(v) && v >= -128 && v <= 127 && !Object.is(v, -0))) {
        const name = t.name;
        t.name = `${name}.int8`;
        t.dataType = TensorDataType.INT8;
        t.rawData = bytesOf(Int8Array.from(values));
        cast(t.name, name);
        saved += size - t.rawData.length;
      }
    } else if (t.dataType === TensorDataType.INT64) {
      const users = graph.node.filter((node) => node.input.includes(t.name));
      if (users.length === 0 || !users.every((node) => node.opType === 'Gather' && node.input.indexOf(t.name) === 1)) continue;
      const values = new BigInt64Array(Uint8Array.from(t.rawData!).buffer);
      if (!values.every((v) => v >= -(2n ** 31n) && v < 2n ** 31n)) continue;
      t.dataType = TensorDataType.INT32;
      t.rawData = bytesOf(Int32Array.from(values, Number));
      saved += size - t.rawData.length;
    }
  }
  graph.initializer.push(...extra);
  graph.node.unshift(...added);
  return saved;
}
