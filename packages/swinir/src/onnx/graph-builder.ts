/**
 * A small ONNX graph builder: nodes, initializers and constants by name, serialized with protobufjs.
 * It does no shape inference; callers track shapes themselves (the SwinIR graph is fully static).
 */
import {
  AttributeType, TensorDataType, encodeModel,
  type AttributeProtoObject, type NodeProtoObject, type TensorProtoObject, type ValueInfo,
} from './proto';

export type OnnxTensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Int8Array | Uint16Array;

/** An attribute value. Plain numbers are INT (non-integers are refused), arrays INTS, strings STRING; floats need `attr.float`. */
export type AttrValue =
  | number | number[] | string
  | { kind: 'float'; value: number }
  | { kind: 'floats'; value: number[] }
  | { kind: 'tensor'; data: OnnxTensorData; dims: number[] };

export const attr = {
  float: (value: number): AttrValue => ({ kind: 'float', value }),
  floats: (value: number[]): AttrValue => ({ kind: 'floats', value }),
  tensor: (data: OnnxTensorData, dims: number[]): AttrValue => ({ kind: 'tensor', data, dims }),
};

/** Element types of graph inputs and outputs. */
export type ElemType = 'float32' | 'int64' | 'int32' | 'uint8' | 'int8';

export interface NodeSpec {
  op: string;
  inputs: string[];
  attrs?: Record<string, AttrValue>;
  /** Output names, or how many fresh names to make (default 1). */
  outputs?: string[] | number;
  /** Operator domain, '' (ONNX) by default; e.g. 'com.microsoft' for onnxruntime contrib ops. */
  domain?: string;
  name?: string;
}

export interface ModelOptions {
  /** Opset of the default ONNX domain (default 17: LayerNormalization; 20 adds Gelu). */
  opset?: number;
  /** IR version (default: the one that matches the opset: 8 for 17-18, 9 for 19-20, 10 for 21+). */
  irVersion?: number;
  docString?: string;
  metadata?: Record<string, string>;
}

const ELEM_CODE: Record<ElemType, number> = {
  float32: TensorDataType.FLOAT, int64: TensorDataType.INT64, int32: TensorDataType.INT32,
  uint8: TensorDataType.UINT8, int8: TensorDataType.INT8,
};

function dataTypeOf(data: OnnxTensorData): number {
  if (data instanceof Float32Array) return TensorDataType.FLOAT;
  if (data instanceof Float64Array) return TensorDataType.DOUBLE;
  if (data instanceof BigInt64Array) return TensorDataType.INT64;
  if (data instanceof Int32Array) return TensorDataType.INT32;
  if (data instanceof Uint8Array) return TensorDataType.UINT8;
  if (data instanceof Int8Array) return TensorDataType.INT8;
  return TensorDataType.FLOAT16; // Uint16Array carries float16 bits
}

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function rawBytes(data: OnnxTensorData): Uint8Array {
  // raw_data is little-endian by spec; typed arrays use host order.
  if (!HOST_IS_LITTLE_ENDIAN) throw new Error('ONNX raw_data writing needs a little-endian host');
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function tensorProto(name: string, data: OnnxTensorData, dims: number[]): TensorProtoObject {
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new RangeError(`tensor '${name}': dims [${dims}] hold ${count} values but ${data.length} were given`);
  }
  return { name, dims: [...dims], dataType: dataTypeOf(data), rawData: rawBytes(data) };
}

function attributeProto(name: string, value: AttrValue): AttributeProtoObject {
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new TypeError(`attribute '${name}': ${value} is not an integer; use attr.float()`);
    return { name, type: AttributeType.INT, i: value };
  }
  if (typeof value === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) {
    if (!value.every(Number.isInteger)) throw new TypeError(`attribute '${name}': [${value}] are not all integers; use attr.floats()`);
    return { name, type: AttributeType.INTS, ints: value };
  }
  if (value.kind === 'float') return { name, type: AttributeType.FLOAT, f: value.value };
  if (value.kind === 'floats') return { name, type: AttributeType.FLOATS, floats: value.value };
  return { name, type: AttributeType.TENSOR, t: tensorProto('', value.data, value.dims) };
}

function valueInfo(name: string, elemType: ElemType, dims: (number | string)[]): ValueInfo {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM_CODE[elemType],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

export class GraphBuilder {
  private readonly nodes: NodeProtoObject[] = [];
  private readonly initializers = new Map<string, TensorProtoObject>();
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly usedNames = new Set<string>();
  private readonly domains = new Set<string>();
  private readonly int64Cache = new Map<string, string>();

  constructor(readonly name = 'graph') {}

  /** A name not used yet, derived from `hint` (`hint`, `hint_1`, `hint_2`, ...). */
  uniqueName(hint: string): string {
    let name = hint;
    for (let k = 1; this.usedNames.has(name); k++) name = `${hint}_${k}`;
    this.usedNames.add(name);
    return name;
  }

  addInput(name: string, elemType: ElemType, dims: (number | string)[]): string {
    this.claim(name);
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /** Declares an existing tensor as a graph output; it is renamed through an Identity when `name` differs. */
  addOutput(tensor: string, elemType: ElemType, dims: (number | string)[], name = tensor): string {
    if (name !== tensor) this.addNode({ op: 'Identity', inputs: [tensor], outputs: [name] });
    this.outputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /** Adds a node and returns its output names. */
  addNode(spec: NodeSpec): string[] {
    const outputs = typeof spec.outputs === 'object'
      ? spec.outputs.map((o) => this.claim(o))
      : Array.from({ length: spec.outputs ?? 1 }, () => this.uniqueName(`${spec.name ?? spec.op}_out`));
    const node: NodeProtoObject = {
      opType: spec.op, input: spec.inputs, output: outputs, name: this.uniqueName(spec.name ?? spec.op),
    };
    if (spec.domain) {
      node.domain = spec.domain;
      this.domains.add(spec.domain);
    }
    if (spec.attrs) node.attribute = Object.entries(spec.attrs).map(([k, v]) => attributeProto(k, v));
    this.nodes.push(node);
    return outputs;
  }

  /** Shorthand for a one-output node in the default domain. */
  op(opType: string, inputs: string[], attrs?: Record<string, AttrValue>, name?: string): string {
    return this.addNode({ op: opType, inputs, attrs, name })[0];
  }

  /** Adds a named initializer (weights: pass the state-dict path as the name). */
  addInitializer(name: string, data: OnnxTensorData, dims: number[]): string {
    this.claim(name);
    this.initializers.set(name, tensorProto(name, data, dims));
    return name;
  }

  /** Swaps the values of an existing initializer (same dims), e.g. to fold a scale into a weight. */
  replaceInitializer(name: string, data: OnnxTensorData): void {
    const old = this.initializers.get(name);
    if (!old) throw new RangeError(`no initializer named '${name}'`);
    this.initializers.set(name, tensorProto(name, data, old.dims));
  }

  /** Drops an initializer nothing will read (onnxruntime warns about unused ones). */
  removeInitializer(name: string): void {
    if (!this.initializers.delete(name)) throw new RangeError(`no initializer named '${name}'`);
  }

  hasInitializer(name: string): boolean {
    return this.initializers.has(name);
  }

  /** An anonymous constant initializer named from `hint`. */
  constant(data: OnnxTensorData, dims: number[], hint = 'const'): string {
    const name = this.uniqueName(hint);
    this.initializers.set(name, tensorProto(name, data, dims));
    return name;
  }

  /** A 1-D int64 constant (shapes, axes, pads); identical values share one initializer. */
  int64(values: readonly number[]): string {
    const key = values.join(',');
    let name = this.int64Cache.get(key);
    if (!name) {
      name = this.constant(BigInt64Array.from(values, (v) => BigInt(v)), [values.length], 'i64');
      this.int64Cache.set(key, name);
    }
    return name;
  }

  /** A float32 scalar constant. */
  scalar(value: number, hint = 'scalar'): string {
    return this.constant(new Float32Array([value]), [], hint);
  }

  get nodeCount(): number {
    return this.nodes.length;
  }

  /**
   * Serializes the graph as an ONNX ModelProto. Nodes none of whose outputs reach a graph output, and
   * initializers nothing reads, are left out: onnxruntime runs every node it is given (a site hook that
   * replaces q, k and v otherwise leaves the builder's own projections running for nothing).
   */
  toModel(options: ModelOptions = {}): Uint8Array {
    const { nodes, initializers } = this.live();
    const opset = options.opset ?? 17;
    const irVersion = options.irVersion ?? (opset >= 21 ? 10 : opset >= 19 ? 9 : 8);
    const opsetImport = [{ domain: '', version: opset }, ...[...this.domains].map((domain) => ({ domain, version: 1 }))];
    return encodeModel({
      irVersion,
      opsetImport,
      producerName: 'harmoq-ts',
      producerVersion: '0.1.0',
      docString: options.docString,
      metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.name,
        node: nodes,
        initializer: initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
  }

  /** The nodes (in order) and initializers that the graph outputs depend on. */
  private live(): { nodes: NodeProtoObject[]; initializers: TensorProtoObject[] } {
    const needed = new Set(this.outputs.map((o) => o.name));
    const keep: boolean[] = new Array(this.nodes.length).fill(false);
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const node = this.nodes[i];
      if (!node.output.some((o) => needed.has(o))) continue;
      keep[i] = true;
      for (const input of node.input) if (input) needed.add(input);
    }
    return {
      nodes: this.nodes.filter((_, i) => keep[i]),
      initializers: [...this.initializers.values()].filter((t) => needed.has(t.name)),
    };
  }

  private claim(name: string): string {
    if (this.usedNames.has(name)) throw new RangeError(`tensor name '${name}' is already used in graph '${this.name}'`);
    this.usedNames.add(name);
    return name;
  }
}
