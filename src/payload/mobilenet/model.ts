/**
 * A randomly initialised MobileNetV2 (width 1.0, 224x224, 1000 classes) as ONNX bytes.
 *
 * Why: a realistic payload for federated rounds — a real 13–14 MB model that a worker can
 * load into onnxruntime and run, whose weights a server can average position by position
 * using `floatRegions` instead of parsing the model.
 *
 * Batch norm is folded away (every Conv carries a bias), as an exported inference model
 * would be, so every initializer is a trainable float tensor.
 */
import { seededRandom } from '../random.js';
import { DATA_TYPE_FLOAT, encodeModel, type Graph, type Node, type Region, type Tensor } from './onnxWire.js';

/** MobileNetV2's inverted-residual stages: expansion t, output channels c, repeats n, first stride s. */
export const INVERTED_RESIDUAL_SETTINGS: ReadonlyArray<{ t: number; c: number; n: number; s: number }> = [
  { t: 1, c: 16, n: 1, s: 1 },
  { t: 6, c: 24, n: 2, s: 2 },
  { t: 6, c: 32, n: 3, s: 2 },
  { t: 6, c: 64, n: 4, s: 2 },
  { t: 6, c: 96, n: 3, s: 1 },
  { t: 6, c: 160, n: 3, s: 2 },
  { t: 6, c: 320, n: 1, s: 1 },
];

export const INPUT_NAME = 'input';
export const OUTPUT_NAME = 'output';
export const INPUT_SHAPE: readonly number[] = [1, 3, 224, 224];
export const NUM_CLASSES = 1000;
const STEM_CHANNELS = 32;
const LAST_CHANNELS = 1280;
/** Biases start small but non-zero so that every weight byte depends on the seed. */
const BIAS_BOUND = 0.01;
/** The ReLU6 bounds are Constant nodes, not initializers: they are not weights and must never be averaged or perturbed. */
const RELU6_MIN = 'relu6_min';
const RELU6_MAX = 'relu6_max';

/** Accumulates nodes and initializers while the graph is laid out; `rnd` draws the weights in order. */
interface Builder {
  rnd: () => number;
  nodes: Node[];
  initializers: Tensor[];
}

/** `n` floats uniform in [-bound, bound). */
function uniform(rnd: () => number, n: number, bound: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rnd() * 2 - 1) * bound;
  return out;
}

function scalarConstant(name: string, value: number): Node {
  return {
    name,
    opType: 'Constant',
    inputs: [],
    outputs: [name],
    attributes: [{ name: 'value', type: 'tensor', t: { name, dims: [], data: Float32Array.of(value) } }],
  };
}

/**
 * A k x k Conv with bias (batch norm folded). Weights are Kaiming-uniform,
 * bound sqrt(6 / fan_in), which keeps activations from vanishing or exploding
 * through the ~50 random layers so the forward pass stays finite and non-trivial.
 */
function conv(b: Builder, name: string, input: string, cin: number, cout: number, k: number, stride: number, group = 1): string {
  const fanIn = (cin / group) * k * k;
  const weight: Tensor = { name: `${name}.weight`, dims: [cout, cin / group, k, k], data: uniform(b.rnd, cout * fanIn, Math.sqrt(6 / fanIn)) };
  const bias: Tensor = { name: `${name}.bias`, dims: [cout], data: uniform(b.rnd, cout, BIAS_BOUND) };
  b.initializers.push(weight, bias);
  const pad = (k - 1) / 2;
  b.nodes.push({
    name,
    opType: 'Conv',
    inputs: [input, weight.name, bias.name],
    outputs: [name],
    attributes: [
      { name: 'group', type: 'int', i: group },
      { name: 'kernel_shape', type: 'ints', ints: [k, k] },
      { name: 'pads', type: 'ints', ints: [pad, pad, pad, pad] },
      { name: 'strides', type: 'ints', ints: [stride, stride] },
    ],
  });
  return name;
}

/** ReLU6 as opset-13 Clip, whose bounds are inputs. */
function relu6(b: Builder, input: string): string {
  const out = `${input}.relu6`;
  b.nodes.push({ name: out, opType: 'Clip', inputs: [input, RELU6_MIN, RELU6_MAX], outputs: [out] });
  return out;
}

/** Expand (1x1, skipped when t = 1) → depthwise 3x3 → linear project, with a residual when shapes allow. */
function invertedResidual(b: Builder, name: string, input: string, cin: number, cout: number, stride: number, t: number): string {
  const hidden = cin * t;
  let x = input;
  if (t !== 1) x = relu6(b, conv(b, `${name}.expand`, x, cin, hidden, 1, 1));
  x = relu6(b, conv(b, `${name}.dw`, x, hidden, hidden, 3, stride, hidden));
  x = conv(b, `${name}.project`, x, hidden, cout, 1, 1);
  if (stride !== 1 || cin !== cout) return x;
  const out = `${name}.add`;
  b.nodes.push({ name: out, opType: 'Add', inputs: [input, x], outputs: [out] });
  return out;
}

/** The whole MobileNetV2 graph with weights drawn from `seed` (exported so tests can compare values). */
export function mobileNetV2Graph(seed: number): Graph {
  const b: Builder = { rnd: seededRandom(seed), nodes: [scalarConstant(RELU6_MIN, 0), scalarConstant(RELU6_MAX, 6)], initializers: [] };
  let x = relu6(b, conv(b, 'stem', INPUT_NAME, INPUT_SHAPE[1], STEM_CHANNELS, 3, 2));
  let cin = STEM_CHANNELS;
  let index = 0;
  for (const { t, c, n, s } of INVERTED_RESIDUAL_SETTINGS) {
    for (let i = 0; i < n; i++) {
      x = invertedResidual(b, `block${index++}`, x, cin, c, i === 0 ? s : 1, t);
      cin = c;
    }
  }
  x = relu6(b, conv(b, 'head', x, cin, LAST_CHANNELS, 1, 1));
  b.nodes.push({ name: 'pool', opType: 'GlobalAveragePool', inputs: [x], outputs: ['pool'] });
  b.nodes.push({ name: 'flatten', opType: 'Flatten', inputs: ['pool'], outputs: ['flatten'], attributes: [{ name: 'axis', type: 'int', i: 1 }] });
  const weight: Tensor = { name: 'classifier.weight', dims: [NUM_CLASSES, LAST_CHANNELS], data: uniform(b.rnd, NUM_CLASSES * LAST_CHANNELS, Math.sqrt(6 / LAST_CHANNELS)) };
  const bias: Tensor = { name: 'classifier.bias', dims: [NUM_CLASSES], data: uniform(b.rnd, NUM_CLASSES, BIAS_BOUND) };
  b.initializers.push(weight, bias);
  b.nodes.push({
    name: 'classifier',
    opType: 'Gemm',
    inputs: ['flatten', weight.name, bias.name],
    outputs: [OUTPUT_NAME],
    attributes: [{ name: 'transB', type: 'int', i: 1 }],
  });
  return {
    name: 'mobilenet_v2',
    nodes: b.nodes,
    initializers: b.initializers,
    inputs: [{ name: INPUT_NAME, elemType: DATA_TYPE_FLOAT, shape: INPUT_SHAPE }],
    outputs: [{ name: OUTPUT_NAME, elemType: DATA_TYPE_FLOAT, shape: [1, NUM_CLASSES] }],
  };
}

export interface MobileNetModel {
  /** The serialised ONNX ModelProto. */
  bytes: Buffer;
  /** Number of float parameters (all initializers). */
  params: number;
  /** Byte range of every initializer's float32 LE raw_data within `bytes`, in graph order. */
  floatRegions: Region[];
}

/** A seeded MobileNetV2: same seed, same bytes. */
export function buildMobileNetV2(seed: number): MobileNetModel {
  const graph = mobileNetV2Graph(seed);
  const { bytes, floatRegions } = encodeModel(graph);
  const params = graph.initializers.reduce((sum, t) => sum + t.data.length, 0);
  return { bytes, params, floatRegions };
}

/** The float32 LE values of one region (a copy, since regions are not 4-byte aligned). */
export function readRegion(bytes: Uint8Array, region: Region): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset + region.offset, region.length);
  const out = new Float32Array(region.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

/**
 * A worker's "update": a copy of `bytes` with every float in `regions` moved by
 * scale * u, u uniform in [-1, 1) drawn from `seed`. Every byte outside the regions is kept,
 * so the result is still a valid model of the same layout.
 */
export function perturb(bytes: Buffer, regions: readonly Region[], seed: number, scale: number): Buffer {
  const out = Buffer.alloc(bytes.length);
  bytes.copy(out);
  const view = new DataView(out.buffer, out.byteOffset, out.length);
  const rnd = seededRandom(seed);
  for (const r of regions) {
    if (r.offset < 0 || r.length % 4 !== 0 || r.offset + r.length > out.length) throw new Error(`bad float region ${r.offset}+${r.length} for ${out.length} bytes`);
    for (let o = r.offset, end = r.offset + r.length; o < end; o += 4) {
      view.setFloat32(o, view.getFloat32(o, true) + scale * (rnd() * 2 - 1), true);
    }
  }
  return out;
}
