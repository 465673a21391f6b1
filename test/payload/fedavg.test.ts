import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BytesPayload } from '../../src/payload/bytes.js';
import { MobileNetPayload, mobilenetOf } from '../../src/payload/mobilenet.js';
import { readRegion } from '../../src/payload/mobilenet/model.js';
import { sha256Hex } from '../../src/runtime/hash.js';
import { createPayload } from '../../src/payload/index.js';

test('FedAvg on small tensors: the folded mean equals the exact mean; malformed updates fold nothing', () => {
  const codec = new BytesPayload(16);
  const agg = codec.createAggregator();
  const ups = [0, 1, 2].map((w) => codec.makeUpdate(codec.initialModel(), w, 1));
  for (const u of ups) assert.equal(agg.fold(u), true);
  assert.equal(agg.fold(Buffer.alloc(12)), false);
  assert.equal(agg.count, 3);
  const got = agg.result(1);
  for (let i = 0; i < 4; i++) {
    const exact = Math.fround(ups.reduce((a, u) => a + u.readFloatLE(i * 4), 0) / 3);
    assert.equal(got.readFloatLE(i * 4), exact);
  }
});

test('FedAvg on MobileNetV2: every weight is the mean of the updates, every other byte is the graph', () => {
  const codec = new MobileNetPayload(1);
  const { bytes, floatRegions } = mobilenetOf(1);
  const ups = [0, 1].map((w) => codec.makeUpdate(bytes, w, 1));
  const agg = codec.createAggregator();
  for (const u of ups) assert.equal(agg.fold(u), true);
  assert.equal(agg.fold(bytes.subarray(1)), false, 'a truncated model folds nothing');
  const got = agg.result(1);
  assert.equal(got.length, bytes.length);
  const r = floatRegions[5];
  const a = readRegion(ups[0], r);
  const b = readRegion(ups[1], r);
  const m = readRegion(got, r);
  for (let i = 0; i < m.length; i += 97) assert.equal(m[i], Math.fround((a[i] + b[i]) / 2));
  // Outside the weights the result is the model's own bytes: before, between and after them.
  let at = 0;
  for (const region of floatRegions) {
    assert.ok(got.subarray(at, region.offset).equals(bytes.subarray(at, region.offset)), `bytes ${at}..${region.offset}`);
    at = region.offset + region.length;
  }
  assert.ok(got.subarray(at).equals(bytes.subarray(at)), 'the bytes after the last weight');
  // The next round reuses the running sum: it starts from zero, so one update's mean is that update.
  const next = codec.createAggregator();
  assert.equal(next.fold(ups[1]), true);
  const alone = readRegion(next.result(2), r);
  for (let i = 0; i < alone.length; i += 97) assert.equal(alone[i], b[i]);
});

test('a corrupted chunk is caught by the SHA-256 every version carries', () => {
  const { bytes } = mobilenetOf(1);
  const sha = sha256Hex(bytes);
  const bad = Buffer.from(bytes);
  bad[1024 * 1024 + 17] ^= 0xff; // one byte in the second 1 MiB chunk
  assert.notEqual(sha256Hex(bad), sha);
});

test('an update written into the previous one (reuse) has the same bytes as a fresh one', () => {
  for (const codec of [new MobileNetPayload(3), new BytesPayload(1 << 16)]) {
    const global = codec.initialModel();
    const fresh = codec.makeUpdate(global, 5, 2);
    const old = codec.makeUpdate(global, 9, 1);
    const reused = codec.makeUpdate(global, 5, 2, old);
    assert.equal(reused, old, `${codec.name}: written into the given buffer`);
    assert.ok(reused.equals(fresh), `${codec.name}: same bytes`);
    // Never into the global model itself.
    assert.notEqual(codec.makeUpdate(global, 5, 2, global), global);
  }
});

test('updateBytes: the size of an update, without making one (the server sizes its slots by it)', () => {
  const specs = ['string', 'bytes:4096', 'mobilenetv2', 'pair'] as const;
  for (const kind of specs) {
    const codec =
      kind === 'pair'
        ? createPayload({ kind: 'pair', global: { kind: 'mobilenetv2' }, update: { kind: 'bytes', size: 1024 } })
        : createPayload(kind === 'string' ? { kind: 'string' } : kind === 'mobilenetv2' ? { kind: 'mobilenetv2' } : { kind: 'bytes', size: 4096 });
    assert.equal(codec.updateBytes(), codec.makeUpdate(codec.initialModel(), 0, 1).length, kind);
  }
});

test('MobileNetV2 results written into a recycled one: the same bytes as into a new buffer; only its own results are taken back', () => {
  const codec = new MobileNetPayload(1);
  const fresh = new MobileNetPayload(1);
  const { bytes } = mobilenetOf(1);
  const ups = [0, 1, 2].map((w) => codec.makeUpdate(bytes, w, 1));
  const resultOf = (c: MobileNetPayload, us: Buffer[], v: number) => {
    const agg = c.createAggregator();
    for (const u of us) agg.fold(u);
    return agg.result(v);
  };
  const first = resultOf(codec, ups.slice(0, 2), 1);
  const expected = Buffer.from(resultOf(fresh, ups.slice(1), 2));
  codec.recycle(first);
  const second = resultOf(codec, ups.slice(1), 2);
  assert.equal(second.buffer, first.buffer, 'written into the recycled buffer');
  assert.ok(second.equals(expected), 'the same bytes as a result in a new buffer');
  // The initial model, or any buffer it did not make, is not taken: the next result is new.
  codec.recycle(bytes);
  codec.recycle(Buffer.alloc(bytes.length));
  const third = resultOf(codec, ups.slice(0, 1), 3);
  assert.notEqual(third.buffer, bytes.buffer);
  assert.notEqual(third.buffer, second.buffer);
  assert.ok(bytes.equals(mobilenetOf(1).bytes), 'the initial model is untouched');
});
