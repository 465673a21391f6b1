/**
 * Hex and ASCII between strings and bytes in plain JavaScript, for safe mode's per-request
 * paths. Each `Buffer` method (`toString('hex')`, `write`, `Buffer.from`) is a call into C++;
 * on a busy server, with its caches cold, one such call measured 20–38 µs against 1–4 µs in a
 * warm loop, about what libsodium's whole MAC costs. These loops keep a request's MAC path to
 * one native call (libsodium's) on each side.
 */

const BYTE_HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** The first `n` bytes of `b` as lower-case hex. */
export function toHex(b: Uint8Array, n = b.length): string {
  let s = '';
  for (let i = 0; i < n; i++) s += BYTE_HEX[b[i]];
  return s;
}

function nibble(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  const l = c | 32; // a-f, A-F
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/** Decodes exactly out.length bytes of hex into `out`; false when `hex` is not that, in hex digits of either case. */
export function fromHex(hex: string, out: Uint8Array): boolean {
  if (hex.length !== out.length * 2) return false;
  for (let i = 0; i < out.length; i++) {
    const hi = nibble(hex.charCodeAt(2 * i));
    const lo = nibble(hex.charCodeAt(2 * i + 1));
    if (hi < 0 || lo < 0) return false;
    out[i] = (hi << 4) | lo;
  }
  return true;
}

/** Writes `s` into `out` from 0 when it is all ASCII and fits; returns its length, or -1. */
export function writeAscii(s: string, out: Uint8Array): number {
  const n = s.length;
  if (n > out.length) return -1;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 127) return -1;
    out[i] = c;
  }
  return n;
}
