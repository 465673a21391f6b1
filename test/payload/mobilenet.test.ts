import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { buildMobileNetV2, mobileNetV2Graph, perturb, readRegion } from '../../src/payload/mobilenet/model.js';
import type { Region } from '../../src/payload/mobilenet/onnxWire.js';
import { OnnxTrainer, runOnce } from '../../src/payload/mobilenet/ort.js';

/** torchvision's 3,504,872 minus the 17,056 BN parameters that folding into Conv biases removes. */
const EXPECTED_PARAMS = 3_487_816;

const model = buildMobileNetV2(1);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Reads a length-delimited field's payload position: [absolute start, length]. */
function delimited(r: BinaryReader, base: number): [number, number] {
  const len = r.uint32();
  const start = base + r.pos;
  r.pos += len;
  return [start, len];
}

interface ParsedInit {
  name: string;
  dims: number[];
  dataType: number;
  raw: Region;
}

/** Walks TensorProto independently of the encoder: name (8), dims (1), data_type (2), raw_data (9). */
function parseTensor(bytes: Uint8Array, start: number, len: number): ParsedInit {
  const r = new BinaryReader(bytes.subarray(start, start + len));
  const t: ParsedInit = { name: '', dims: [], dataType: 0, raw: { offset: -1, length: 0 } };
  while (r.pos < r.len) {
    const [f, wt] = r.tag();
    if (f === 1) t.dims.push(Number(r.int64()));
    else if (f === 2) t.dataType = r.int32();
    else if (f === 8) t.name = r.string();
    else if (f === 9) {
      const [offset, length] = delimited(r, start);
      t.raw = { offset, length };
    } else r.skip(wt, f);
  }
  return t;
}

/** Parses ModelProto → GraphProto (7) → initializer (5) and the top-level header fields. */
function parseModel(bytes: Uint8Array): { irVersion: number; producer: string; opset: number; inits: ParsedInit[] } {
  const top = new BinaryReader(bytes);
  const out = { irVersion: 0, producer: '', opset: 0, inits: [] as ParsedInit[] };
  while (top.pos < top.len) {
    const [f, wt] = top.tag();
    if (f === 1) out.irVersion = Number(top.int64());
    else if (f === 2) out.producer = top.string();
    else if (f === 8) {
      const o = new BinaryReader(top.bytes());
      while (o.pos < o.len) {
        const [of, owt] = o.tag();
        if (of === 2) out.opset = Number(o.int64());
        else o.skip(owt, of);
      }
    } else if (f === 7 && wt === WireType.LengthDelimited) {
      const [gStart, gLen] = delimited(top, 0);
      const g = new BinaryReader(bytes.subarray(gStart, gStart + gLen));
      while (g.pos < g.len) {
        const [gf, gwt] = g.tag();
        if (gf === 5) out.inits.push(parseTensor(bytes, ...delimited(g, gStart)));
        else g.skip(gwt, gf);
      }
    } else top.skip(wt, f);
  }
  return out;
}

test('parameter count, size and ONNX header', () => {
  assert.equal(model.params, EXPECTED_PARAMS);
  assert.ok(model.bytes.length >= 13e6 && model.bytes.length <= 14.5e6, `size ${model.bytes.length}`);
  const parsed = parseModel(model.bytes);
  assert.equal(parsed.irVersion, 8);
  assert.equal(parsed.producer, 'fedsim');
  assert.equal(parsed.opset, 13);
});

test('same seed gives the same bytes, another seed different bytes', () => {
  const again = buildMobileNetV2(1);
  assert.equal(sha256(again.bytes), sha256(model.bytes));
  assert.deepEqual(again.floatRegions, model.floatRegions);
  const other = buildMobileNetV2(2);
  assert.notEqual(sha256(other.bytes), sha256(model.bytes));
  // Only the weights differ: the layout, and so the regions, are the same for every seed.
  assert.deepEqual(other.floatRegions, model.floatRegions);
});

test('float regions are exactly the initializers raw_data, disjoint, covering params floats', () => {
  const graph = mobileNetV2Graph(1);
  const parsed = parseModel(model.bytes).inits;
  assert.equal(model.floatRegions.length, graph.initializers.length);
  assert.equal(parsed.length, graph.initializers.length);
  let total = 0;
  model.floatRegions.forEach((r, i) => {
    const t = graph.initializers[i];
    assert.deepEqual(r, parsed[i].raw, t.name);
    assert.equal(parsed[i].name, t.name);
    assert.deepEqual(parsed[i].dims, t.dims);
    assert.equal(parsed[i].dataType, 1);
    assert.equal(r.length, t.data.length * 4);
    assert.deepEqual(readRegion(model.bytes, r), t.data, t.name);
    total += r.length;
  });
  assert.equal(total, 4 * model.params);
  const sorted = [...model.floatRegions].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i - 1].offset + sorted[i - 1].length <= sorted[i].offset, `overlap at ${sorted[i].offset}`);
  const last = sorted[sorted.length - 1];
  assert.ok(sorted[0].offset > 0 && last.offset + last.length <= model.bytes.length);
});

test('perturb changes only the bytes inside the regions, deterministically', () => {
  const updated = perturb(model.bytes, model.floatRegions, 99, 0.01);
  assert.equal(updated.length, model.bytes.length);
  assert.equal(sha256(perturb(model.bytes, model.floatRegions, 99, 0.01)), sha256(updated));
  assert.notEqual(sha256(perturb(model.bytes, model.floatRegions, 100, 0.01)), sha256(updated));
  const inRegion = new Uint8Array(model.bytes.length);
  for (const r of model.floatRegions) inRegion.fill(1, r.offset, r.offset + r.length);
  let changedFloats = 0;
  for (let i = 0; i < model.bytes.length; i++) if (!inRegion[i]) assert.equal(updated[i], model.bytes[i], `byte ${i} outside the regions changed`);
  for (const r of model.floatRegions) {
    const before = readRegion(model.bytes, r);
    const after = readRegion(updated, r);
    for (let i = 0; i < before.length; i++) {
      assert.ok(Math.abs(after[i] - before[i]) <= 0.01 + 1e-6);
      if (after[i] !== before[i]) changedFloats++;
    }
  }
  assert.ok(changedFloats > 0.99 * model.params, `${changedFloats} of ${model.params} floats changed`);
  assert.equal(sha256(model.bytes), sha256(buildMobileNetV2(1).bytes), 'the input was not modified');
});

test('onnxruntime loads the model and a forward pass gives finite [1, 1000]', async () => {
  const r = await runOnce(model.bytes);
  assert.deepEqual([...r.dims], [1, 1000]);
  assert.equal(r.finite, true);
  assert.ok(r.ms > 0);
});

test('a perturbed model loads and runs too', async () => {
  const r = await runOnce(perturb(model.bytes, model.floatRegions, 5, 0.05), { threads: 2 });
  assert.deepEqual([...r.dims], [1, 1000]);
  assert.equal(r.finite, true);
});

test('OnnxTrainer runs n forward passes and releases', async () => {
  const trainer = await OnnxTrainer.load(model.bytes, 1);
  try {
    await trainer.steps(2);
  } finally {
    await trainer.release();
  }
});
