/**
 * Safe mode's session scheme (docs/safe-mode.md, "Two schemes"): a registration signed with
 * the worker's ed25519 key carries the worker's X25519 public key; the server answers with
 * its own; both derive one key per worker (X25519, then HKDF-SHA-256 over the identities), and
 * every later request carries a MAC (keyed BLAKE2b-256) under that key over the same fields a
 * signature covers (src/auth/sign.ts, canonical), with a sequence number of the session in
 * place of a random nonce (replays are caught by a window of the last 1024 numbers).
 *
 * Why: a 1,000-worker round is 2,000 requests. With an ed25519 signature on each, the server
 * verifies 2,000 signatures a round (about 58 µs each alone with libsodium, more under load);
 * a MAC costs under 1 µs. The registration stays signed with ed25519, so only a listed key can
 * open a session, and a session key is known only to that worker and the server: an
 * eavesdropper sees two X25519 public keys and cannot derive it, and a man in the middle who
 * swaps the server's exchange key gets a worker whose MACs the server refuses (he cannot
 * produce the worker's key on the server's side), which he could do to the link anyway.
 *
 * X25519 and HKDF come from Node's OpenSSL (one exchange per registration, so their speed does
 * not matter); the MAC from libsodium, or src/auth/blake2b.ts where the addon does not load.
 */
import { type KeyObject, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync } from 'node:crypto';
import { blake2b } from './blake2b.js';
import { sodiumInUse } from './ed25519.js';
import { hexEquals, writeAscii } from './hex.js';

const HEX32 = /^[0-9a-f]{64}$/;

/** A session MAC's length in bytes (it travels as twice as many hex characters). */
export const MAC_BYTES = 32;

/** The HKDF salt: a domain and version separator, so the key is good for this use only. */
const SESSION_SALT = 'fedsim-session-v1';

/** One X25519 key pair: the private KeyObject and the public key as lower-case hex. */
export interface ExchangeKeyPair {
  readonly privateKey: KeyObject;
  readonly publicHex: string;
}

export function exchangeKeyPair(): ExchangeKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const x = publicKey.export({ format: 'jwk' }).x;
  if (typeof x !== 'string') throw new Error('X25519: no public key in the JWK export');
  return { privateKey, publicHex: Buffer.from(x, 'base64url').toString('hex') };
}

/** True for 64 lower-case hex characters (an exchange key as it travels). */
export const isExchangeKey = (hex: string | undefined): hex is string => hex !== undefined && HEX32.test(hex);

/**
 * The session key of worker `edPublicHex` (its ed25519 key) between `ours` and the peer's
 * X25519 public key. Both sides get the same 32 bytes: the X25519 shared secret, expanded by
 * HKDF-SHA-256 with the salt above and, as info, the worker's ed25519 key, the worker's
 * exchange key and the server's exchange key (so a key is bound to one identity and one pair
 * of exchange keys). Throws on a malformed peer key, or on one of low order (the shared secret
 * would be all zeros, which OpenSSL refuses).
 */
export function sessionKey(ours: ExchangeKeyPair, peerHex: string, edPublicHex: string, workerSide: boolean): Buffer {
  if (!isExchangeKey(peerHex)) throw new TypeError('an X25519 exchange key is 64 lower-case hex characters');
  const peer = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(peerHex, 'hex').toString('base64url') }, format: 'jwk' });
  const shared = diffieHellman({ privateKey: ours.privateKey, publicKey: peer });
  const [workerKx, serverKx] = workerSide ? [ours.publicHex, peerHex] : [peerHex, ours.publicHex];
  return Buffer.from(hkdfSync('sha256', shared, SESSION_SALT, `${edPublicHex.toLowerCase()}\n${workerKx}\n${serverKx}`, 32));
}

// Scratch space of the MAC paths: a request's canonical text and MACs go through these instead of
// fresh buffers (each is used and done with within one synchronous call).
const SCRATCH = Buffer.allocUnsafe(4096);
const MAC = Buffer.allocUnsafe(MAC_BYTES);

/** A message's bytes: an ASCII string that fits is written into SCRATCH (valid until the next call). */
function bytesOf(msg: Buffer | string): Buffer {
  if (typeof msg !== 'string') return msg;
  const n = writeAscii(msg, SCRATCH);
  return n >= 0 ? SCRATCH.subarray(0, n) : Buffer.from(msg, 'utf8');
}

/**
 * The MAC of `msg` under a 32-byte session key into `out` (32 bytes): keyed BLAKE2b-256, by
 * libsodium's `crypto_generichash` (about 0.5 µs here for a request's 230 bytes, where
 * HMAC-SHA-512-256 took 2.0 and a `createHmac` object 3.4), or by src/auth/blake2b.ts where the
 * addon does not load; the two compute the same function.
 */
export function macInto(key: Buffer, msg: Buffer, out: Buffer): void {
  const sodium = sodiumInUse();
  if (sodium) sodium.crypto_generichash(out, msg, key);
  else blake2b(out, msg, key);
}

/** The MAC of one request (its canonical form, as bytes or text) under a session key, lower-case hex. */
export function macHex(key: Buffer, msg: Buffer | string): string {
  macInto(key, bytesOf(msg), MAC);
  return MAC.toString('hex');
}

/**
 * Checks a received MAC, the 64 hex characters (either case) of `token` from `at` to its end,
 * against the MAC of `msg`, in constant time; false when it is malformed.
 */
export function macMatches(key: Buffer, msg: Buffer | string, token: string, at = 0): boolean {
  if (token.length - at !== 2 * MAC_BYTES) return false;
  macInto(key, bytesOf(msg), MAC);
  return hexEquals(MAC, token, at);
}
