import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createHash } from 'node:crypto';
import { sha256OfBody, wholeBody } from '../../src/sim/updateBody.js';
import { PIECE_BYTES, freePieces, pieceOf } from '../../src/transport/pieces.js';

/** A source of `length` bytes whose byte i is i * 7 mod 251, made on demand. */
function counting(length: number) {
  let fills = 0;
  return {
    length,
    get fills() {
      return fills;
    },
    fill(dst: Buffer, at: number) {
      fills++;
      for (let i = 0; i < dst.length; i++) dst[i] = ((at + i) * 7) % 251;
    },
  };
}

test('a body made as it is sent hashes and joins to the bytes it makes', () => {
  for (const n of [0, 1, PIECE_BYTES - 1, PIECE_BYTES, 2 * PIECE_BYTES + 3]) {
    const src = counting(n);
    const whole = wholeBody(src);
    assert.equal(whole.length, n);
    for (const i of [0, Math.floor(n / 2), n - 1]) if (n > 0) assert.equal(whole[i], (i * 7) % 251);
    assert.equal(sha256OfBody(src), createHash('sha256').update(whole).digest('hex'), `${n} bytes`);
    assert.equal(sha256OfBody(whole), createHash('sha256').update(whole).digest('hex'));
  }
  const held = Buffer.from('held whole');
  assert.equal(wholeBody(held), held);
});

test('pieces: views of a body held whole; a source made into pooled pieces, given back once done', () => {
  const held = Buffer.alloc(10, 3);
  const v = pieceOf(held, 2, 7, true);
  assert.equal(v.bytes.buffer, held.buffer);
  assert.equal(v.bytes.length, 5);

  const src = counting(3 * PIECE_BYTES);
  const before = freePieces();
  const a = pieceOf(src, 0, PIECE_BYTES, true);
  const b = pieceOf(src, PIECE_BYTES, 2 * PIECE_BYTES, true);
  assert.notEqual(a.bytes.buffer, b.bytes.buffer, 'two pieces in use are two buffers');
  assert.equal(a.bytes[1], 7);
  assert.equal(b.bytes[0], (PIECE_BYTES * 7) % 251);
  a.done();
  a.done(); // once only
  assert.equal(freePieces(), Math.max(0, before - 2) + 1);
  const c = pieceOf(src, 2 * PIECE_BYTES, 2 * PIECE_BYTES + 10, true);
  assert.equal(c.bytes.buffer, a.bytes.buffer, 'the piece given back is made again');
  assert.equal(c.bytes.length, 10);
  assert.equal(c.bytes[0], (2 * PIECE_BYTES * 7) % 251);
  // Not pooled (a writer that may still hold the bytes after its callback): a piece of its own, never given back.
  const free = freePieces();
  const d = pieceOf(src, 0, 100, false);
  d.done();
  assert.equal(freePieces(), free);
  assert.equal(d.bytes.length, 100);
  b.done();
  c.done();
});

test('pieces: a source that makes its own pieces is asked first (pooled writers only), and fill is the fallback', () => {
  const src = counting(3 * PIECE_BYTES);
  const own = Buffer.alloc(PIECE_BYTES);
  let asked = 0;
  let given = 0;
  const withOwn = Object.assign(src, {
    piece: (at: number, end: number) => {
      asked++;
      if (asked > 1) return null; // one only
      src.fill(own.subarray(0, end - at), at);
      return { bytes: own.subarray(0, end - at), done: () => given++ };
    },
  });
  const a = pieceOf(withOwn, 5, 105, true);
  assert.equal(a.bytes.buffer, own.buffer);
  assert.equal(a.bytes[0], (5 * 7) % 251);
  a.done();
  assert.equal(given, 1);
  const b = pieceOf(withOwn, 5, 105, true); // none left there: the process pool's
  assert.notEqual(b.bytes.buffer, own.buffer);
  assert.equal(b.bytes[0], (5 * 7) % 251);
  b.done();
  const c = pieceOf(withOwn, 5, 105, false); // not pooled: never the source's memory
  assert.equal(asked, 2);
  assert.notEqual(c.bytes.buffer, own.buffer);
});
