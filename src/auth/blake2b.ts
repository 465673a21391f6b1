/**
 * BLAKE2b (RFC 7693) in plain JavaScript, keyed or not, with any digest length from 1 to 64
 * bytes: the session scheme's MAC where the libsodium addon does not load (libsodium's
 * `crypto_generichash` computes the same function; a test compares the two on random keys and
 * messages, and this one against the RFC's and OpenSSL's unkeyed digests).
 *
 * The 64-bit words are pairs of 32-bit halves in Uint32Arrays (low half first), kept between
 * calls. It is not the fast path: libsodium's C is about 20× faster.
 */

const IV = new Uint32Array([
  0xf3bcc908, 0x6a09e667, 0x84caa73b, 0xbb67ae85, 0xfe94f82b, 0x3c6ef372, 0x5f1d36f1, 0xa54ff53a,
  0xade682d1, 0x510e527f, 0x2b3e6c1f, 0x9b05688c, 0xfb41bd6b, 0x1f83d9ab, 0x137e2179, 0x5be0cd19,
]);

// The message schedule of the first 10 rounds (rounds 10 and 11 repeat 0 and 1), as word
// offsets (×2, since a word is two halves).
const SCHEDULE = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];
const SIGMA = new Uint8Array([...SCHEDULE, SCHEDULE[0], SCHEDULE[1]].flat().map((w) => w * 2));

const h = new Uint32Array(16); // the chain value
const v = new Uint32Array(32); // the working vector
const m = new Uint32Array(32); // one block's words
const block = new Uint8Array(128);

/** v[a] += v[b] + (x, y) as 64-bit words (halves at a, a+1 …). */
function add3(a: number, b: number, x0: number, x1: number): void {
  const lo = v[a] + v[b] + x0;
  // The carry out of the low half: at most 2, counted in floating point (no overflow below 2^53).
  v[a + 1] = v[a + 1] + v[b + 1] + x1 + Math.floor(lo / 0x100000000);
  v[a] = lo;
}

/** The mixing function G on words a, b, c, d with message words x, y (all as half offsets). */
function g(a: number, b: number, c: number, d: number, x: number, y: number): void {
  add3(a, b, m[x], m[x + 1]);
  // d = (d ^ a) >>> 32: the halves swap.
  let lo = v[d] ^ v[a];
  let hi = v[d + 1] ^ v[a + 1];
  v[d] = hi;
  v[d + 1] = lo;
  add3(c, d, 0, 0);
  // b = (b ^ c) >>> 24
  lo = v[b] ^ v[c];
  hi = v[b + 1] ^ v[c + 1];
  v[b] = (lo >>> 24) | (hi << 8);
  v[b + 1] = (hi >>> 24) | (lo << 8);
  add3(a, b, m[y], m[y + 1]);
  // d = (d ^ a) >>> 16
  lo = v[d] ^ v[a];
  hi = v[d + 1] ^ v[a + 1];
  v[d] = (lo >>> 16) | (hi << 16);
  v[d + 1] = (hi >>> 16) | (lo << 16);
  add3(c, d, 0, 0);
  // b = (b ^ c) >>> 63, that is <<< 1
  lo = v[b] ^ v[c];
  hi = v[b + 1] ^ v[c + 1];
  v[b] = (lo << 1) | (hi >>> 31);
  v[b + 1] = (hi << 1) | (lo >>> 31);
}

/** Compresses `block` into h; `bytes` counts every byte so far (this block's included). */
function compress(bytes: number, last: boolean): void {
  for (let i = 0; i < 32; i++) m[i] = block[4 * i] | (block[4 * i + 1] << 8) | (block[4 * i + 2] << 16) | (block[4 * i + 3] << 24);
  v.set(h, 0);
  v.set(IV, 16);
  v[24] ^= bytes >>> 0; // the byte counter, low 64 bits (messages here stay far below 2^32)
  v[25] ^= Math.floor(bytes / 0x100000000);
  if (last) {
    v[28] = ~v[28];
    v[29] = ~v[29];
  }
  for (let r = 0; r < 12; r++) {
    const s = r * 16;
    g(0, 8, 16, 24, SIGMA[s], SIGMA[s + 1]);
    g(2, 10, 18, 26, SIGMA[s + 2], SIGMA[s + 3]);
    g(4, 12, 20, 28, SIGMA[s + 4], SIGMA[s + 5]);
    g(6, 14, 22, 30, SIGMA[s + 6], SIGMA[s + 7]);
    g(0, 10, 20, 30, SIGMA[s + 8], SIGMA[s + 9]);
    g(2, 12, 22, 24, SIGMA[s + 10], SIGMA[s + 11]);
    g(4, 14, 16, 26, SIGMA[s + 12], SIGMA[s + 13]);
    g(6, 8, 18, 28, SIGMA[s + 14], SIGMA[s + 15]);
  }
  for (let i = 0; i < 16; i++) h[i] ^= v[i] ^ v[i + 16];
}

/**
 * BLAKE2b of `msg` under `key` (0 to 64 bytes; empty for the plain hash), `out.length` bytes of
 * digest (1 to 64) written into `out`.
 */
export function blake2b(out: Uint8Array, msg: Uint8Array, key: Uint8Array = new Uint8Array(0)): void {
  const outLen = out.length;
  if (outLen < 1 || outLen > 64) throw new RangeError('BLAKE2b: the digest is 1 to 64 bytes');
  if (key.length > 64) throw new RangeError('BLAKE2b: the key is at most 64 bytes');
  h.set(IV);
  h[0] ^= 0x01010000 ^ (key.length << 8) ^ outLen; // the parameter block: depth 1, fanout 1
  let bytes = 0;
  let fill = 0; // bytes in `block`
  const feed = (data: Uint8Array) => {
    for (let i = 0; i < data.length; ) {
      if (fill === 128) {
        bytes += 128;
        compress(bytes, false); // a full block that is not the last
        fill = 0;
      }
      const n = Math.min(128 - fill, data.length - i);
      block.set(data.subarray(i, i + n), fill);
      fill += n;
      i += n;
    }
  };
  if (key.length > 0) {
    block.fill(0);
    block.set(key);
    fill = 128; // the key, padded, is the first block
  }
  feed(msg);
  bytes += fill;
  block.fill(0, fill);
  compress(bytes, true);
  for (let i = 0; i < outLen; i++) out[i] = h[i >> 2] >>> (8 * (i & 3));
}
