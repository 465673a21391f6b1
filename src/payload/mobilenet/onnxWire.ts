/**
 * A minimal ONNX protobuf encoder: only the messages and fields fedsim needs to write a
 * convolutional model (field numbers follow ONNX's published onnx.proto schema).
 *
 * Why our own: besides the bytes we need the exact position of every weight payload inside
 * the serialised model, so that a server can average models position by position without
 * parsing them. A general protobuf library hides those positions; here each message is
 * encoded bottom-up as a list of chunks, and the offset of every raw_data payload is carried
 * upwards and shifted by the tag and length prefixes of every enclosing message.
 */
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { endianness } from 'node:os';

/** A byte range inside a serialised message. */
export interface Region {
  offset: number;
  length: number;
}

/** TensorProto.DataType FLOAT. */
export const DATA_TYPE_FLOAT = 1;

/** A float32 tensor; written as raw_data (float32 little-endian). */
export interface Tensor {
  name: string;
  dims: readonly number[];
  data: Float32Array;
}

/** A node attribute; the variants are the AttributeProto types we emit. */
export type Attribute =
  | { name: string; type: 'float'; f: number }
  | { name: string; type: 'int'; i: number }
  | { name: string; type: 'ints'; ints: readonly number[] }
  | { name: string; type: 'tensor'; t: Tensor };

export interface Node {
  name: string;
  opType: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes?: readonly Attribute[];
}

/** A graph input or output: a float tensor of a fixed shape. */
export interface ValueInfo {
  name: string;
  elemType: number;
  shape: readonly number[];
}

export interface Graph {
  name: string;
  nodes: readonly Node[];
  initializers: readonly Tensor[];
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
}

/** What every model we write declares: IR 8 with the default-domain opset 13. */
export const IR_VERSION = 8;
export const OPSET_VERSION = 13;
export const PRODUCER_NAME = 'fedsim';

/**
 * A serialised message kept as chunks, so embedding it in a parent never copies the
 * (possibly megabytes of) weight bytes; only the final model is concatenated once.
 * `regions` are relative to the start of this message.
 */
export interface Encoded {
  readonly chunks: readonly Uint8Array[];
  readonly length: number;
  readonly regions: readonly Region[];
}

/** Field numbers of the ONNX messages (onnx.proto). */
const F = {
  model: { irVersion: 1, producerName: 2, graph: 7, opsetImport: 8 },
  opset: { domain: 1, version: 2 },
  graph: { node: 1, name: 2, initializer: 5, input: 11, output: 12 },
  node: { input: 1, output: 2, name: 3, opType: 4, attribute: 5 },
  attribute: { name: 1, f: 2, i: 3, t: 5, ints: 8, type: 20 },
  tensor: { dims: 1, dataType: 2, name: 8, rawData: 9 },
  valueInfo: { name: 1, type: 2 },
  type: { tensorType: 1 },
  typeTensor: { elemType: 1, shape: 2 },
  shape: { dim: 1 },
  dimension: { dimValue: 1 },
} as const;

/** AttributeProto.AttributeType values. */
const ATTR_TYPE = { float: 1, int: 2, tensor: 4, ints: 7 } as const;

const LITTLE_ENDIAN_HOST = endianness() === 'LE';

/** The float32 little-endian bytes of `data`, without a copy on little-endian hosts. */
export function float32LE(data: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN_HOST) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i], true);
  return out;
}

/**
 * Builds one message from scalar fields (through a BinaryWriter) and embedded chunks,
 * tracking the running length so embedded regions can be shifted to this message's frame.
 */
class MessageBuilder {
  private readonly chunks: Uint8Array[] = [];
  private readonly regions: Region[] = [];
  private length = 0;
  private readonly w = new BinaryWriter();

  /** Writes small fields (varints, strings) into the pending writer. */
  scalars(write: (w: BinaryWriter) => void): this {
    write(this.w);
    return this;
  }

  /** Embeds a sub-message; its regions are kept unless `keepRegions` is false. */
  message(fieldNo: number, child: Encoded, keepRegions = true): this {
    this.w.tag(fieldNo, WireType.LengthDelimited).uint32(child.length);
    this.flush();
    if (keepRegions) for (const r of child.regions) this.regions.push({ offset: this.length + r.offset, length: r.length });
    for (const c of child.chunks) this.push(c);
    return this;
  }

  /** Writes a length-delimited payload and records where it starts as a region. */
  payload(fieldNo: number, bytes: Uint8Array): this {
    this.w.tag(fieldNo, WireType.LengthDelimited).uint32(bytes.length);
    this.flush();
    this.regions.push({ offset: this.length, length: bytes.length });
    this.push(bytes);
    return this;
  }

  finish(): Encoded {
    this.flush();
    return { chunks: this.chunks, length: this.length, regions: this.regions };
  }

  private flush(): void {
    const b = this.w.finish();
    if (b.length > 0) this.push(b);
  }

  private push(c: Uint8Array): void {
    this.chunks.push(c);
    this.length += c.length;
  }
}

/** TensorProto: dims, data_type FLOAT, name, raw_data (one region: the float payload). */
export function encodeTensor(t: Tensor): Encoded {
  const expected = t.dims.reduce((a, b) => a * b, 1);
  if (expected !== t.data.length) throw new Error(`tensor ${t.name}: dims [${t.dims.join(',')}] need ${expected} floats, got ${t.data.length}`);
  return new MessageBuilder()
    .scalars((w) => {
      // proto2 repeated scalars are unpacked by default: one tag per dim.
      for (const d of t.dims) w.tag(F.tensor.dims, WireType.Varint).int64(d);
      w.tag(F.tensor.dataType, WireType.Varint).int32(DATA_TYPE_FLOAT);
      w.tag(F.tensor.name, WireType.LengthDelimited).string(t.name);
    })
    .payload(F.tensor.rawData, float32LE(t.data))
    .finish();
}

/** AttributeProto. A tensor-valued attribute (Constant) is a constant, not a weight: no region. */
export function encodeAttribute(a: Attribute): Encoded {
  const b = new MessageBuilder().scalars((w) => {
    w.tag(F.attribute.name, WireType.LengthDelimited).string(a.name);
    if (a.type === 'float') w.tag(F.attribute.f, WireType.Bit32).float(a.f);
    if (a.type === 'int') w.tag(F.attribute.i, WireType.Varint).int64(a.i);
  });
  if (a.type === 'tensor') b.message(F.attribute.t, encodeTensor(a.t), false);
  return b
    .scalars((w) => {
      if (a.type === 'ints') for (const v of a.ints) w.tag(F.attribute.ints, WireType.Varint).int64(v);
      w.tag(F.attribute.type, WireType.Varint).int32(ATTR_TYPE[a.type]);
    })
    .finish();
}

/** NodeProto; domain is left out, which means the default ONNX domain. */
export function encodeNode(n: Node): Encoded {
  const b = new MessageBuilder().scalars((w) => {
    for (const s of n.inputs) w.tag(F.node.input, WireType.LengthDelimited).string(s);
    for (const s of n.outputs) w.tag(F.node.output, WireType.LengthDelimited).string(s);
    w.tag(F.node.name, WireType.LengthDelimited).string(n.name);
    w.tag(F.node.opType, WireType.LengthDelimited).string(n.opType);
  });
  for (const a of n.attributes ?? []) b.message(F.node.attribute, encodeAttribute(a));
  return b.finish();
}

/** ValueInfoProto with TypeProto.tensor_type and a fully static TensorShapeProto. */
export function encodeValueInfo(v: ValueInfo): Encoded {
  const shape = new MessageBuilder();
  for (const d of v.shape) {
    const dim = new MessageBuilder().scalars((w) => w.tag(F.dimension.dimValue, WireType.Varint).int64(d)).finish();
    shape.message(F.shape.dim, dim);
  }
  const tensorType = new MessageBuilder()
    .scalars((w) => w.tag(F.typeTensor.elemType, WireType.Varint).int32(v.elemType))
    .message(F.typeTensor.shape, shape.finish())
    .finish();
  const type = new MessageBuilder().message(F.type.tensorType, tensorType).finish();
  return new MessageBuilder()
    .scalars((w) => w.tag(F.valueInfo.name, WireType.LengthDelimited).string(v.name))
    .message(F.valueInfo.type, type)
    .finish();
}

/** GraphProto: nodes, name, initializers (the weight regions), inputs, outputs. */
export function encodeGraph(g: Graph): Encoded {
  const b = new MessageBuilder();
  for (const n of g.nodes) b.message(F.graph.node, encodeNode(n));
  b.scalars((w) => w.tag(F.graph.name, WireType.LengthDelimited).string(g.name));
  for (const t of g.initializers) b.message(F.graph.initializer, encodeTensor(t));
  for (const v of g.inputs) b.message(F.graph.input, encodeValueInfo(v));
  for (const v of g.outputs) b.message(F.graph.output, encodeValueInfo(v));
  return b.finish();
}

/** OperatorSetIdProto for the default ONNX domain. */
function encodeOpset(version: number): Encoded {
  return new MessageBuilder()
    .scalars((w) => {
      w.tag(F.opset.domain, WireType.LengthDelimited).string('');
      w.tag(F.opset.version, WireType.Varint).int64(version);
    })
    .finish();
}

/**
 * ModelProto around `graph`, concatenated into one buffer. `floatRegions` are the exact
 * byte ranges of every initializer's raw_data in that buffer, in initializer order.
 * Encoding is deterministic: same graph, same bytes.
 */
export function encodeModel(graph: Graph): { bytes: Buffer; floatRegions: Region[] } {
  const model = new MessageBuilder()
    .scalars((w) => {
      w.tag(F.model.irVersion, WireType.Varint).int64(IR_VERSION);
      w.tag(F.model.producerName, WireType.LengthDelimited).string(PRODUCER_NAME);
    })
    .message(F.model.graph, encodeGraph(graph))
    .message(F.model.opsetImport, encodeOpset(OPSET_VERSION))
    .finish();
  return { bytes: Buffer.concat(model.chunks, model.length), floatRegions: [...model.regions] };
}
