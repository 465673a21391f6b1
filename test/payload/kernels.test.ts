import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import { Float64Sum, MAX_BLOCK_FLOATS, Tiler, tilerFor } from '../../src/payload/kernels.js';
import { BytesPayload } from '../../src/payload/bytes.js';
import { MobileNetPayload, mobilenetOf } from '../../src/payload/mobilenet.js';
import { seededRandom } from '../../src/payload/random.js';

/** `n` float32s (little-endian) at byte `offset` of a fresh buffer, so the data can sit at any alignment. */
function randomFloats(n: number, offset: number, seed: number): Buffer {
  const rnd = seededRandom(seed);
  const buf = Buffer.alloc(offset + n * 4);
  for (let i = 0; i < n; i++) buf.writeFloatLE((rnd() - 0.5) * 4, offset + i * 4);
  return buf.subarray(offset);
}

const floatAt = (b: Uint8Array, i: number) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).readFloatLE(i * 4);

// Lengths around the 4-float vectors and the 16,384-float staging passes; byte offsets 0 to 3.
const LENGTHS = [0, 1, 3, 4, 5, 7, 64, 1023, 16_383, 16_384, 16_385, 40_001];

test('Float64Sum: sums and means are bit for bit those of plain float64 loops, at any length and alignment', () => {
  for (const n of LENGTHS) {
    for (const offset of [0, 1, 2, 3]) {
      const ups = [1, 2, 3].map((k) => randomFloats(n, offset, n * 7 + offset * 3 + k));
      const sum = new Float64Sum(n + 5);
      const ref = new Float64Array(n + 5);
      for (const u of ups) {
        sum.add(u, 5);
        for (let i = 0; i < n; i++) ref[5 + i] += u.readFloatLE(i * 4);
      }
      const out = Buffer.alloc(offset + n * 4, 0xaa).subarray(offset);
      sum.meanInto(out, 3, 5);
      for (let i = 0; i < n; i++) assert.equal(out.readFloatLE(i * 4), Math.fround(ref[5 + i] / 3), `n=${n} offset=${offset} float ${i}`);
      // The sum starts again from zero.
      sum.reset();
      sum.add(ups[0], 5);
      sum.meanInto(out, 1, 5);
      assert.deepEqual(out, ups[0]);
    }
  }
});

test('Float64Sum refuses data outside its length', () => {
  const sum = new Float64Sum(4);
  assert.throws(() => sum.add(Buffer.alloc(20)), /20 bytes at float 0 do not fit a sum of 4 floats/);
  assert.throws(() => sum.add(Buffer.alloc(8), 3), /8 bytes at float 3/);
  assert.throws(() => sum.add(Buffer.alloc(6)), /6 bytes/);
  assert.throws(() => sum.meanInto(Buffer.alloc(20), 1), /do not fit/);
  assert.throws(() => new Float64Sum(-1), /does not fit a WebAssembly memory/);
});

test('Tiler: src plus the repeated block, carrying the phase across regions, bit for bit', () => {
  const t = new Tiler();
  for (const blockLength of [1, 3, 4, 4099, MAX_BLOCK_FLOATS]) {
    const rnd = seededRandom(blockLength);
    const block = Float32Array.from({ length: blockLength }, () => rnd() - 0.5);
    t.setBlock(block);
    for (const n of LENGTHS) {
      for (const offset of [0, 3]) {
        const src = randomFloats(n, offset, n + blockLength);
        const dst = Buffer.alloc(offset + n * 4).subarray(offset);
        const phase0 = (n * 13) % blockLength;
        const phase = t.add(dst, src, phase0);
        assert.equal(phase, (phase0 + n) % blockLength, `block ${blockLength} n=${n} phase ${phase0}`);
        for (let i = 0; i < n; i++) {
          assert.equal(floatAt(dst, i), Math.fround(src.readFloatLE(i * 4) + block[(phase0 + i) % blockLength]), `block ${blockLength} n=${n} float ${i}`);
        }
        // In place gives the same bytes.
        const copy = Buffer.from(src);
        t.add(copy, copy, phase0);
        assert.deepEqual(copy, dst);
        // So does reading the source where the module holds it, from any byte of it.
        const host = Buffer.concat([Buffer.alloc(5, 9), src]);
        t.holdSource(host);
        const fromHeld = Buffer.alloc(n * 4);
        assert.equal(t.addFromHeld(fromHeld, 5, phase0), phase);
        assert.deepEqual(fromHeld, dst);
      }
    }
  }
  assert.throws(() => t.setBlock(new Float32Array(0)), /0 floats/);
  assert.throws(() => t.add(Buffer.alloc(8), Buffer.alloc(4)), /4 source bytes into 8/);
  assert.throws(() => t.add(Buffer.alloc(4), Buffer.alloc(4), MAX_BLOCK_FLOATS), /phase 16384 outside a block of 16384 floats/);
  assert.throws(() => new Tiler().add(Buffer.alloc(4), Buffer.alloc(4)), /no block set/);
  t.holdSource(Buffer.alloc(8));
  assert.throws(() => t.addFromHeld(Buffer.alloc(8), 4), /8 bytes at 4 of a held source of 8/);
  // A source larger than any before grows the module's memory; the new one is what is read.
  const big = Buffer.alloc(3_000_000 * 4, 0);
  t.setBlock(Float32Array.of(1.5));
  t.holdSource(big);
  const out = Buffer.alloc(big.length);
  t.addFromHeld(out, 0);
  assert.equal(out.readFloatLE(0), 1.5);
  assert.equal(out.readFloatLE(big.length - 4), 1.5);
});

test('bytes payload: an update is the global model plus its worker and round block, as the plain loop made it', () => {
  const codec = new BytesPayload(4 * 5000);
  const global = codec.initialModel();
  const update = codec.makeUpdate(global, 7, 3);
  const rnd = seededRandom((1 * 1_000_003 + 7 * 7919 + 3) >>> 0);
  const block = new Float32Array(4096);
  for (let i = 0; i < block.length; i++) block[i] = (rnd() - 0.5) * 0.01;
  for (let i = 0; i < 5000; i++) assert.equal(update.readFloatLE(i * 4), Math.fround(global.readFloatLE(i * 4) + block[i % 4096]));
  // The running sum is reused from round to round and starts each round at zero.
  for (let round = 0; round < 3; round++) {
    const agg = codec.createAggregator();
    agg.fold(update);
    assert.deepEqual(agg.result(round + 1), update);
  }
});

test('mobilenetv2 payload: an update is the global model with every weight plus its worker and round block, and every other byte the same', () => {
  const codec = new MobileNetPayload(1);
  const { floatRegions } = mobilenetOf(1);
  // A global model whose weights differ from the initial one's, as after a round.
  const global = new MobileNetPayload(1).makeUpdate(codec.initialModel(), 99, 1);
  for (const reuse of [undefined, Buffer.alloc(global.length, 0xaa)]) {
    const update = codec.makeUpdate(global, 7, 3, reuse);
    const rnd = seededRandom((1 * 1_000_003 + 7 * 7919 + 3) >>> 0);
    const block = new Float32Array(4099);
    for (let i = 0; i < block.length; i++) block[i] = (rnd() * 2 - 1) * 0.01;
    let k = 0;
    let at = 0;
    for (const r of floatRegions) {
      assert.ok(update.subarray(at, r.offset).equals(global.subarray(at, r.offset)), `graph bytes ${at}..${r.offset}`);
      for (let o = r.offset; o < r.offset + r.length; o += 4, k++) {
        const want = Math.fround(global.readFloatLE(o) + block[k % block.length]);
        if (update.readFloatLE(o) !== want) assert.fail(`weight at byte ${o}: ${update.readFloatLE(o)}, not ${want}`);
      }
      at = r.offset + r.length;
    }
    assert.ok(update.subarray(at).equals(global.subarray(at)), 'the bytes after the last weight');
  }
});

test('src/payload/kernelsWasm.ts is what src/payload/kernels.wat assembles to', async () => {
  // @ts-expect-error: a plain JS script without types
  const { assemble, render } = (await import('../../../scripts/build-kernels.js')) as {
    assemble(shared?: boolean): Promise<Buffer>;
    render(b: Buffer, shared: Buffer): string;
  };
  const checkedIn = readFileSync(new URL('../../../src/payload/kernelsWasm.ts', import.meta.url), 'utf8');
  assert.equal(checkedIn, render(await assemble(), await assemble(true)), 'run `node scripts/build-kernels.js`');
});

test('an update made as it is sent (TiledSource): any byte range, floats cut at either end included, is those bytes of makeUpdate', () => {
  const mn = new MobileNetPayload(1);
  const global = new MobileNetPayload(1).makeUpdate(mn.initialModel(), 99, 1);
  const bytes = new BytesPayload(4 * 50_003);
  const cases: Array<[string, Buffer, (g: Buffer) => { length: number; fill(d: Buffer, at: number): void }, (g: Buffer) => Buffer]> = [
    ['mobilenetv2', global, (g) => mn.updateSource(g, 7, 3), (g) => mn.makeUpdate(g, 7, 3)],
    ['bytes', bytes.initialModel(), (g) => bytes.updateSource(g, 7, 3), (g) => bytes.makeUpdate(g, 7, 3)],
  ];
  const rnd = seededRandom(42);
  for (const [kind, g, source, whole] of cases) {
    const want = whole(g);
    const src = source(g);
    assert.equal(src.length, want.length, kind);
    // In 1 MiB pieces and in pieces of odd sizes, end to end.
    for (const piece of [1024 * 1024, 65_537, 4099 * 4 + 3]) {
      const got = Buffer.alloc(want.length);
      for (let at = 0; at < got.length; at += piece) src.fill(got.subarray(at, Math.min(got.length, at + piece)), at);
      assert.ok(got.equals(want), `${kind}: pieces of ${piece}`);
    }
    // Short ranges anywhere: 1 to 9 bytes (inside one float, across two), and longer ones.
    for (let i = 0; i < 2000; i++) {
      const n = i < 1500 ? 1 + Math.floor(rnd() * 9) : Math.floor(rnd() * Math.min(300_000, want.length));
      const at = Math.floor(rnd() * (want.length - n));
      const dst = Buffer.alloc(n, 0xee);
      src.fill(dst, at);
      if (!dst.equals(want.subarray(at, at + n))) assert.fail(`${kind}: bytes ${at}..${at + n}`);
    }
    assert.throws(() => src.fill(Buffer.alloc(2), want.length - 1), /bytes \d+\.\.\d+ of an update of/);
  }
});

test('updates made as they are sent from three versions at once: each reads its own held model', () => {
  const mn = new MobileNetPayload(1);
  const versions = [mn.initialModel(), mn.makeUpdate(mn.initialModel(), 1, 1), mn.makeUpdate(mn.initialModel(), 2, 1)];
  const sources = versions.map((g, w) => mn.updateSource(g, w, 5));
  const wants = versions.map((g, w) => mn.makeUpdate(g, w, 5));
  const gots = wants.map((w) => Buffer.alloc(w.length));
  // Piece by piece, in turn: a Tiler holds two models, so the third takes the place of the least recently used.
  const piece = 1024 * 1024;
  for (let at = 0; at < gots[0].length; at += piece) {
    for (let v = 0; v < 3; v++) sources[v].fill(gots[v].subarray(at, Math.min(gots[v].length, at + piece)), at);
  }
  for (let v = 0; v < 3; v++) assert.ok(gots[v].equals(wants[v]), `version ${v}`);
});

test('a sum with slots: an update in a slot is summed where it lies, to the same bits as one copied in; slots run out and come back', () => {
  const n = 40_000;
  const s = new Float64Sum(n, n * 4 + 6, 2);
  const a = s.takeSlot()!;
  const b = s.takeSlot()!;
  assert.equal(a.length, n * 4 + 6);
  assert.equal(s.takeSlot(), null, 'two slots, both taken');
  const heap = new Float64Sum(n);
  for (const [i, slot] of [a, b].entries()) {
    // At an odd byte offset of the slot, as a float region of a model sits.
    const src = randomFloats(n, 0, 77 + i);
    src.copy(slot, 3);
    s.add(slot.subarray(3, 3 + n * 4));
    heap.add(src);
  }
  const m1 = Buffer.alloc(n * 4);
  const m2 = Buffer.alloc(n * 4);
  s.meanInto(m1, 2);
  heap.meanInto(m2, 2);
  assert.ok(m1.equals(m2));
  // Its own: its slots and views of them; not a heap buffer (UpdateSlots keeps only its own).
  assert.equal(s.ownsSlot(a), true);
  assert.equal(s.ownsSlot(a.subarray(4, 12)), true);
  assert.equal(s.ownsSlot(Buffer.alloc(8)), false);
  s.giveSlot(Buffer.alloc(8)); // not one of its own: ignored
  assert.equal(s.takeSlot(), null);
  s.giveSlot(a);
  s.giveSlot(a); // once
  assert.equal(s.takeSlot(), a);
  assert.equal(s.takeSlot(), null);
});

test('an update made into pieces of the Tiler\'s own memory: the same bytes, pieces given back and taken again, none left: null', () => {
  const mn = new MobileNetPayload(1);
  const g = mn.initialModel();
  const want = mn.makeUpdate(g, 4, 2);
  const src = mn.updateSource(g, 4, 2);
  const piece = 1024 * 1024;
  const taken: Array<{ bytes: Buffer; done(): void }> = [];
  for (let at = 0; at < want.length; at += piece) {
    const end = Math.min(want.length, at + piece);
    const p = src.piece(at, end);
    assert.ok(p, `a piece for ${at}`);
    assert.ok(p.bytes.equals(want.subarray(at, end)), `piece at ${at}`);
    taken.push(p);
  }
  // A piece at an odd offset (floats cut at both ends).
  const odd = src.piece(1_000_003, 1_000_003 + 65_537)!;
  assert.ok(odd.bytes.equals(want.subarray(1_000_003, 1_000_003 + 65_537)));
  taken.push(odd);
  // 14 + 1 taken of 32: take the rest, then there is none.
  while (taken.length < 32) taken.push(src.piece(0, 10)!);
  assert.equal(src.piece(0, 10), null);
  assert.equal(src.piece(0, piece + 1), null, 'over a piece: not made here');
  taken[3].done();
  taken[3].done(); // once
  const again = src.piece(0, 100)!;
  assert.equal(again.bytes.buffer, taken[3].bytes.buffer);
  assert.equal(again.bytes.byteOffset, taken[3].bytes.byteOffset);
  assert.equal(src.piece(0, 10), null);
  for (const p of [...taken, again]) p.done();
  // The Tiler for this size never grows: a larger source is refused.
  assert.throws(() => tilerFor(want.length).holdSource(Buffer.alloc(want.length + 5000)), /a source of \d+ bytes in rooms of/);
});
