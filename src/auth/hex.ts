/**
 * Hex and ASCII between strings and bytes for safe mode's per-request paths, without a new
 * Buffer per call. A received MAC or body hash is compared as text against the bytes computed
 * here, not decoded: decoding took a slice and a call into C++ per request (Buffer#write, 150 ns
 * in a warm loop, but among the server's costliest steps in a profile of a busy run).
 */

// The lower-case hex digit of each nibble value, as a character code.
const DIGIT = Uint8Array.from('0123456789abcdef', (c) => c.charCodeAt(0));

/**
 * True when `hex` from `at` to its end is exactly the hex digits (either case) of `bytes`. It
 * compares without decoding: no slice, no call into C++, and no early exit (the time does not
 * depend on where a digit differs, so it can compare MACs). What the server does with every
 * MAC and body hash it is sent.
 */
export function hexEquals(bytes: Uint8Array, hex: string, at = 0): boolean {
  const n = bytes.length;
  if (hex.length - at !== 2 * n) return false;
  let diff = 0;
  for (let i = 0; i < n; i++) {
    const b = bytes[i];
    let c = hex.charCodeAt(at + 2 * i);
    let d = hex.charCodeAt(at + 2 * i + 1);
    // 'A'..'F' read as 'a'..'f' (a branch on the received text only, never on `bytes`).
    if (c >= 65 && c <= 70) c += 32;
    if (d >= 65 && d <= 70) d += 32;
    diff |= (c ^ DIGIT[b >> 4]) | (d ^ DIGIT[b & 15]);
  }
  return diff === 0;
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
