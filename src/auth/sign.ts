/**
 * Safe mode's signatures: what a worker signs for each request, and the server's check.
 *
 * Keys are ed25519 (generated with tweetnacl, src/auth/keys.ts). Signing and verifying use
 * libsodium through the `sodium-native` addon, or Node's OpenSSL where the addon does not
 * load (src/auth/ed25519.ts has the figures of `npm run bench -- auth-crypto` behind that
 * choice: tweetnacl's pure-JS verification manages about 60 a second here, OpenSSL about
 * 7,900, libsodium about 17,900). ed25519 is deterministic, so all three produce the same
 * signature for the same key and message, and each verifies the others' (tested); tweetnacl
 * stays for key generation.
 *
 * Keys are prepared once per key (a signer per worker key, a verifier per listed key), never
 * per request.
 */
import { timingSafeEqual } from 'node:crypto';
import { EMPTY_SHA256 } from './digest.js';
import { type Verify, ed25519 } from './ed25519.js';
import { type ExchangeKeyPair, exchangeKeyPair, isExchangeKey, macMatches, sessionKey } from './session.js';

/** The first line of every signed message: a domain and version separator. */
export const CANONICAL_PREFIX = 'fedsim-auth-v1';
/** The first line of a registration that opens a session (it has one more line, the exchange key). */
export const CANONICAL_PREFIX_KX = 'fedsim-auth-v1+kx';

const HEX32 = /^[0-9a-fA-F]{64}$/;
const HEX64 = /^[0-9a-fA-F]{128}$/;

/** Longest nonce accepted: nonces are kept per key, so their size bounds the Verifier's memory. */
export const MAX_NONCE_CHARS = 128;

/**
 * Everything a request's signature covers. Each field is there for a reason:
 * - `method`, `path`: bind the signature to this request, so a signed model pull cannot be
 *   replayed as an update (or against another endpoint).
 * - `publicKey`, `workerId`: bind it to the identity: the key that signed, and the worker id
 *   it acts as (a key cannot act as a worker id registered by another key; see
 *   Verifier.bindWorker). `workerId` is '' on registration, before the id exists.
 * - `round`, `timestamp`, `nonce`: stop replay. The round ties an update to its round (a
 *   captured update cannot be resubmitted in a later round), the timestamp limits how long a
 *   captured request stays usable (maxSkewMs), and the nonce makes each request unique
 *   within that window (the Verifier refuses a nonce it has seen).
 * - `bodySha256`: binds the body (hex SHA-256 of the bytes sent), so the signature covers the
 *   payload without the signature code reading it; the server compares it to the hash of the
 *   body it actually received (checkBody).
 */
export interface SignedFields {
  method: string;
  path: string;
  publicKey: string;
  workerId: string;
  round: number;
  timestamp: number;
  nonce: string;
  bodySha256: string;
  /**
   * A registration that opens a session (src/auth/session.ts): the worker's X25519 public key,
   * hex. Under the signature, so nobody can swap it for their own.
   */
  exchangeKey?: string;
}

export type AuthReason = 'missing' | 'unknown-key' | 'bad-signature' | 'stale' | 'replay' | 'wrong-worker' | 'body-hash' | 'no-session';

export type AuthResult = { ok: true } | { ok: false; reason: AuthReason };

/** What a session-scheme request names besides its token: the key, time and nonce travel in the token or come from the session. */
export type SessionFields = Pick<SignedFields, 'method' | 'path' | 'workerId' | 'round' | 'bodySha256'>;

/**
 * The bytes that are signed (or MACed): UTF-8 of `fedsim-auth-v1\n` then each field on its own
 * line, in the order of SignedFields (method, path, publicKey, workerId, round, timestamp,
 * nonce, bodySha256), each line ending in `\n`. A registration that opens a session starts
 * with `fedsim-auth-v1+kx\n` instead and has the exchange key as a last line.
 *
 * The encoding must be unambiguous (one byte string, one set of fields), so a string field
 * containing a newline, or a round/timestamp that is not a safe integer, throws.
 */
export function canonical(f: SignedFields): Buffer {
  return Buffer.from(canonicalText(f), 'utf8');
}

/** canonical() as a string (the MAC paths write it into a scratch buffer instead of a new one). */
export function canonicalText(f: SignedFields): string {
  const fields = `${text('method', f.method)}\n${text('path', f.path)}\n${text('publicKey', f.publicKey)}\n${text('workerId', f.workerId)}\n${int('round', f.round)}\n${int('timestamp', f.timestamp)}\n${text('nonce', f.nonce)}\n${text('bodySha256', f.bodySha256)}\n`;
  const kx = f.exchangeKey === undefined ? '' : text('exchangeKey', f.exchangeKey);
  return kx ? `${CANONICAL_PREFIX_KX}\n${fields}${kx}\n` : `${CANONICAL_PREFIX}\n${fields}`;
}

/** The first line of a session-scheme message (under a MAC with the session key, never a signature). */
export const SESSION_PREFIX = 'fedsim-session-v1';

/** A session-scheme request's fields, as sessionText takes them. */
export type SessionMessageFields = SessionFields & { publicKey: string; timestamp: number; seq: number };

/**
 * The bytes a session-scheme request's MAC covers: UTF-8 of `fedsim-session-v1\n`, then the
 * worker's public key, its worker id, method, path, round, timestamp, sequence number (the
 * nonce, in decimal) and bodySha256, each on its own line ending in `\n`. The fields of
 * canonical(), in another order: the lines that stay the same for a whole session (key and
 * worker id) come first, so that each side writes them once per session (sessionHead) and
 * copies them per request. A string with a line break, or a number that is not a safe
 * integer, throws a TypeError.
 */
export function sessionText(f: SessionMessageFields): string {
  return `${headText(f.publicKey, f.workerId)}${text('method', f.method)}\n${text('path', f.path)}\n${int('round', f.round)}\n${int('timestamp', f.timestamp)}\n${int('seq', f.seq)}\n${text('bodySha256', f.bodySha256)}\n`;
}

/** sessionText's first lines: the prefix, the public key and the worker id. */
function headText(publicKey: string, workerId: string): string {
  return `${SESSION_PREFIX}\n${text('publicKey', publicKey)}\n${text('workerId', workerId)}\n`;
}

/** The first lines of every message of one session (prefix, public key, worker id), as bytes. */
export interface SessionHead {
  readonly publicKey: string;
  readonly workerId: string;
  readonly bytes: Buffer;
}

/** A session's head, made once per session on each side; throws as sessionText. */
export function sessionHead(publicKey: string, workerId: string): SessionHead {
  return { publicKey, workerId, bytes: Buffer.from(headText(publicKey, workerId), 'utf8') };
}

/** Where sessionMessage writes (each message is used and done with within one synchronous call). */
const CANON = Buffer.allocUnsafe(4096);

/**
 * sessionText() of a request of the session `head`, written into a scratch buffer (valid until
 * the next call) by copying the head's bytes and the route's, then writing the numbers and the
 * body's hash: on both sides of every request, and on a busy machine every object, string and
 * lookup of this path showed in the profile. Where this writer stops (a field that is not
 * ASCII, a line break, a number that is not a safe integer, a message over 4 KiB), sessionText
 * decides: the same bytes as a string, or the TypeError it throws.
 */
export function sessionMessage(head: SessionHead, method: string, path: string, round: number, timestamp: number, seq: number, bodySha256: string): Buffer | string {
  let at = -1;
  if (Number.isSafeInteger(round) && Number.isSafeInteger(timestamp) && Number.isSafeInteger(seq)) {
    at = putRoute(method, path, putBytes(head.bytes, 0));
    at = putInt(seq, putInt(timestamp, putInt(round, at)));
    at = bodySha256 === EMPTY_SHA256 ? putBytes(EMPTY_LINE, at) : put(bodySha256, at);
  }
  return at < 0 ? sessionText({ publicKey: head.publicKey, workerId: head.workerId, method, path, round, timestamp, seq, bodySha256 }) : canonView(at);
}

/** CANON's first `n` bytes: one view per length, made once (a view is an object; a request makes none). */
const views: Buffer[] = [];
function canonView(n: number): Buffer {
  return (views[n] ??= CANON.subarray(0, n));
}

// The method and path lines of the few routes there are, as bytes: copied with one
// TypedArray.set rather than written a character at a time.
const routes: Array<{ method: string; path: string; bytes: Buffer }> = [];

/** Writes the method and path lines into CANON at `at`; as put. */
function putRoute(method: string, path: string, at: number): number {
  for (const r of routes) if (r.method === method && r.path === path) return putBytes(r.bytes, at);
  const end = put(path, put(method, at));
  if (end > 0 && routes.length < 8) routes.push({ method, path, bytes: Buffer.from(CANON.subarray(at, end)) });
  return end;
}

/** The body-hash line of every pull (an empty body). */
const EMPTY_LINE = Buffer.from(`${EMPTY_SHA256}\n`, 'latin1');

/** Copies `bytes` into CANON at `at`; as put. */
function putBytes(bytes: Uint8Array, at: number): number {
  if (at < 0 || at + bytes.length > CANON.length) return -1;
  CANON.set(bytes, at);
  return at + bytes.length;
}

/** Writes `s` and a line feed into CANON at `at`; the next position, or -1 where sessionText must decide. */
function put(s: string, at: number): number {
  if (at < 0 || typeof s !== 'string' || at + s.length + 1 > CANON.length) return -1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 127 || c === 10 || c === 13) return -1;
    CANON[at++] = c;
  }
  CANON[at++] = 10;
  return at;
}

/** Writes a safe integer in decimal (as String(n) would) and a line feed into CANON at `at`; as put. */
function putInt(n: number, at: number): number {
  if (at < 0 || at + 18 > CANON.length) return -1;
  if (n < 0) {
    CANON[at++] = 45; // '-'
    n = -n;
  }
  if (n >= 1e9) {
    // Above what 32-bit integer arithmetic holds: the digits above the last nine, then those nine.
    const high = Math.floor(n / 1e9);
    at = putDigits(high, at);
    at = putDigits(n - high * 1e9, at, 9);
  } else {
    at = putDigits(n, at);
  }
  CANON[at++] = 10;
  return at;
}

/** Writes 0 <= n < 1e9 in decimal at `at`, padded with zeros to `width` digits; the next position. */
function putDigits(n: number, at: number, width = 1): number {
  let digits = 1;
  for (let p = 10; p <= n; p *= 10) digits++;
  if (digits < width) digits = width;
  for (let i = at + digits - 1; i >= at; i--) {
    const q = (n / 10) | 0;
    CANON[i] = 48 + n - q * 10;
    n = q;
  }
  return at + digits;
}

/**
 * Reads a decimal number of 1 to `max` digits (no sign, no leading zero unless it is 0) from
 * `s` at `at`, up to the next '.' or the end; -1 when there is none. Where it stopped is left
 * in `parsedEnd`. (The session token's parser: no slices, no regular expressions.)
 */
function digitsAt(s: string, at: number, max: number): number {
  let n = 0;
  let i = at;
  parsedEnd = at;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) break; // '.'
    if (c < 48 || c > 57 || i - at >= max) return -1;
    n = n * 10 + (c - 48);
  }
  parsedEnd = i;
  if (i === at || (s.charCodeAt(at) === 48 && i - at > 1)) return -1;
  return n;
}
let parsedEnd = 0;

/**
 * The replay window of one session: its sequence numbers (1, 2, … per session, on the worker's
 * side) must each arrive once, in any order within the last SEQ_WINDOW, which a bitmap of that
 * many bits keeps (as IPsec and DTLS do). Numbers at or below the highest minus the window are
 * refused outright. Unlike a cache of random nonces, nothing is forgotten within a session, and
 * a check is a few integer operations.
 */
export const SEQ_WINDOW = 1024;

class SeqWindow {
  private top = 0; // the highest number accepted
  private readonly bits = new Uint32Array(SEQ_WINDOW / 32);

  /** True when `seq` was not accepted before and is not older than the window. */
  fresh(seq: number): boolean {
    if (seq > this.top) return true;
    if (this.top - seq >= SEQ_WINDOW) return false;
    const i = seq % SEQ_WINDOW;
    return (this.bits[i >>> 5] & (1 << (i & 31))) === 0;
  }

  /** Records an accepted `seq` (fresh(seq) was true). */
  record(seq: number): void {
    if (seq > this.top) {
      // Numbers skipped on the way up are still welcome: their bits are cleared.
      if (seq - this.top >= SEQ_WINDOW) this.bits.fill(0);
      else for (let k = this.top + 1; k < seq; k++) this.bits[(k % SEQ_WINDOW) >>> 5] &= ~(1 << (k % SEQ_WINDOW & 31));
      this.top = seq;
    }
    const i = seq % SEQ_WINDOW;
    this.bits[i >>> 5] |= 1 << (i & 31);
  }
}

const LINE_BREAK = /[\r\n]/;

/** A string field of the canonical form: one without line breaks (else the encoding would be ambiguous). */
function text(name: string, v: string): string {
  if (typeof v !== 'string') throw new TypeError(`canonical: ${name} must be a string`);
  if (LINE_BREAK.test(v)) throw new TypeError(`canonical: ${name} contains a line break`);
  return v;
}

function int(name: string, v: number): number {
  if (!Number.isSafeInteger(v)) throw new TypeError(`canonical: ${name} must be an integer, got ${String(v)}`);
  return v;
}

function bytes32(hex: string, what: string): Buffer {
  if (!HEX32.test(hex)) throw new TypeError(`an ed25519 ${what} is 64 hex characters`);
  return Buffer.from(hex, 'hex');
}

/** The public key (lower-case hex) of a seed (hex). */
export function publicKeyOfSeed(seedHex: string): string {
  return ed25519().publicKeyOf(bytes32(seedHex, 'seed')).toString('hex');
}

/** A signing function for one seed (the key is prepared once): message → 64-byte signature. */
export function signer(seedHex: string): (msg: Buffer) => Buffer {
  return ed25519().signerOf(bytes32(seedHex, 'seed'));
}

/** A verifying function for one public key (hex), prepared once. Throws on a malformed key. */
export function verifierOf(publicKeyHex: string): Verify {
  return ed25519().verifierOf(bytes32(publicKeyHex, 'public key'));
}

const KEY_CACHE_MAX = 4096;
const keyCache = new Map<string, Verify>();

/**
 * Checks `signature` (64 bytes, or 128 hex characters) over `msg` with a raw public key (hex).
 * Prepared keys are cached (the KEY_CACHE_MAX most recently added). A malformed key or
 * signature gives false.
 */
export function verifySignature(publicKeyHex: string, msg: Buffer, signature: Buffer | string): boolean {
  if (!HEX32.test(publicKeyHex)) return false;
  const sig = typeof signature === 'string' ? (HEX64.test(signature) ? Buffer.from(signature, 'hex') : null) : signature;
  if (!sig) return false;
  const id = publicKeyHex.toLowerCase();
  let check = keyCache.get(id);
  if (!check) {
    try {
      check = verifierOf(id);
    } catch {
      return false; // not a valid key
    }
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value as string);
    keyCache.set(id, check);
  }
  return check(msg, sig);
}

/** The last `size` nonces of one key, oldest forgotten first (a ring plus a set). */
class NonceRing {
  private readonly ring: string[] = [];
  private readonly seen = new Set<string>();
  private next = 0;

  constructor(private readonly size: number) {}

  has(nonce: string): boolean {
    return this.seen.has(nonce);
  }

  add(nonce: string): void {
    if (this.ring.length < this.size) {
      this.ring.push(nonce);
    } else {
      this.seen.delete(this.ring[this.next]);
      this.ring[this.next] = nonce;
      this.next = (this.next + 1) % this.size;
    }
    this.seen.add(nonce);
  }
}

interface KeyState {
  index: number;
  id: string; // the public key, lower-case hex
  check: Verify;
  nonces: NonceRing | null; // made on the key's first accepted request
  workerId: string | null; // the worker id this key registered, if any
  session: Buffer | null; // the session key its last registration opened, if any
  seqs: SeqWindow | null; // that session's replay window
  head: SessionHead | null; // that session's first lines (key and worker id)
}

export interface VerifierOptions {
  /** The allowed public keys (hex), line i of keys.list being worker i's. */
  keys: readonly string[];
  /** Largest |now - timestamp| accepted, ms (default 60 000). */
  maxSkewMs?: number;
  /** Nonces remembered per key (default 1024). */
  noncesPerWorker?: number;
}

/**
 * The server's check of signed requests, for a fixed list of keys.
 *
 * Rules, in the order they are checked (cheap ones first, so an unsigned flood costs no
 * signature verification):
 * 1. `missing`: no signature, key or nonce.
 * 2. `unknown-key`: the key is not in the list.
 * 3. `stale`: |now - timestamp| > maxSkewMs (either direction: a clock far ahead is refused too).
 * 4. `bad-signature`: the signature does not verify over canonical(fields), or is malformed
 *    (not 128 hex characters, a nonce over MAX_NONCE_CHARS, a field the canonical form refuses).
 * 5. `replay`: the key has used this nonce among its last `noncesPerWorker` accepted requests.
 * 6. `wrong-worker`: the request acts as a worker id that another key registered (see
 *    bindWorker). Registration requests (workerId '') are exempt. (A session-scheme request
 *    may act only as its key's own worker id: see verifySession.)
 * A request that passes every rule has its nonce recorded; a refused one records nothing, so
 * forged requests cannot push genuine nonces out of the cache.
 *
 * Replay protection beyond the cache: the nonce cache is bounded (memory is keys ×
 * noncesPerWorker nonces), so a nonce older than the last `noncesPerWorker` requests of its
 * key is forgotten and would be accepted again, if its timestamp were still in the window.
 * What stops such replays is the timestamp window: a captured request is refused as `stale`
 * once maxSkewMs has passed. So noncesPerWorker must cover the requests one key makes within
 * the window (2 × maxSkewMs, as skew counts both ways) at the expected request rate: at the
 * defaults, 1024 nonces over 120 s allow ~8.5 requests/s per worker.
 */
export class Verifier {
  readonly maxSkewMs: number;
  readonly noncesPerWorker: number;
  private readonly byKey = new Map<string, KeyState>();
  /** Line i of the list → its key (a key listed twice is known by its first line only). */
  private readonly byIndex: KeyState[] = [];
  /** Worker id → the key that registered it (at most one id per key, so bounded by the list). */
  private readonly boundTo = new Map<string, string>();

  constructor(opts: VerifierOptions) {
    this.maxSkewMs = opts.maxSkewMs ?? 60_000;
    this.noncesPerWorker = opts.noncesPerWorker ?? 1024;
    if (!(this.maxSkewMs >= 0)) throw new RangeError('Verifier: maxSkewMs must be >= 0');
    if (!Number.isInteger(this.noncesPerWorker) || this.noncesPerWorker < 1) throw new RangeError('Verifier: noncesPerWorker must be an integer >= 1');
    opts.keys.forEach((hex, index) => {
      const id = hex.toLowerCase();
      if (this.byKey.has(id)) return; // the first line wins
      const state: KeyState = { index, id, check: verifierOf(id), nonces: null, workerId: null, session: null, seqs: null, head: null };
      this.byKey.set(id, state);
      this.byIndex[index] = state;
    });
  }

  /** The server's X25519 key pair, made on the first session (one per Verifier, so per server). */
  private exchange: ExchangeKeyPair | null = null;

  /** The key's line in the list (its worker index), or -1 when it is not in the list. */
  indexOf(publicKey: string): number {
    return this.byKey.get(publicKey.toLowerCase())?.index ?? -1;
  }

  /** The cheap checks, in order (no signature work), and the message the signature must cover. */
  private precheck(f: SignedFields, proof: string, now: number): AuthResult | { id: string; state: KeyState; msg: Buffer } {
    if (!proof || !f.publicKey || !f.nonce) return { ok: false, reason: 'missing' };
    // Keys travel in lower case; another case costs a lower-casing.
    let id = f.publicKey;
    let state = this.byKey.get(id);
    if (!state) state = this.byKey.get((id = id.toLowerCase()));
    if (!state) return { ok: false, reason: 'unknown-key' };
    if (!Number.isFinite(f.timestamp) || Math.abs(now - f.timestamp) > this.maxSkewMs) return { ok: false, reason: 'stale' };
    if (!HEX64.test(proof) || f.nonce.length > MAX_NONCE_CHARS) return { ok: false, reason: 'bad-signature' };
    if (f.exchangeKey !== undefined && !isExchangeKey(f.exchangeKey)) return { ok: false, reason: 'bad-signature' };
    try {
      return { id, state, msg: canonical(f) };
    } catch {
      return { ok: false, reason: 'bad-signature' };
    }
  }

  /** After a good signature: replay and identity, then the nonce is recorded. */
  private accept(f: SignedFields, id: string, state: KeyState): AuthResult {
    if (state.nonces?.has(f.nonce)) return { ok: false, reason: 'replay' };
    if (f.workerId !== '') {
      const owner = this.boundTo.get(f.workerId);
      if (owner !== undefined && owner !== id) return { ok: false, reason: 'wrong-worker' };
    }
    (state.nonces ??= new NonceRing(this.noncesPerWorker)).add(f.nonce);
    return { ok: true };
  }

  /** An ed25519-signed request (every registration, and every request of the per-request scheme). */
  verify(f: SignedFields, signatureHex: string, now: number): AuthResult {
    const p = this.precheck(f, signatureHex, now);
    if ('ok' in p) return p;
    if (!p.state.check(p.msg, Buffer.from(signatureHex, 'hex'))) return { ok: false, reason: 'bad-signature' };
    return this.accept(f, p.id, p.state);
  }

  /**
   * A request of the session scheme. `token` is its `x-fedsim-mac` header,
   * `INDEX.TIMESTAMP.SEQ.MAC`: the line of the worker's key in the list, the time (ms), the
   * request's sequence number in its session (1, 2, …, in decimal) and the MAC (hex,
   * src/auth/session.ts) under the session key that key's registration opened, over
   * sessionText (the fields a signature covers, the sequence number as the nonce). The rules
   * of verify, in the same order, except that a session acts as its registration's worker id
   * only: a good MAC naming any other id ('' too) is `wrong-worker`. A key without a session is
   * `no-session` (it never registered, registered with the ed25519 scheme, or registered again
   * under another id), as is a registration (it must be signed: it is what opens a session). A bad MAC is `bad-signature`; a sequence number seen before, or
   * older than the session's window (SEQ_WINDOW), is `replay`.
   */
  verifySession(f: SessionFields, token: string, now: number): AuthResult & { publicKey: string } {
    if (!token) return { ok: false, reason: 'missing', publicKey: '' };
    const index = digitsAt(token, 0, 9);
    const state = index >= 0 && token.charCodeAt(parsedEnd) === 46 ? this.byIndex[index] : undefined;
    if (!state) return { ok: false, reason: 'unknown-key', publicKey: '' };
    const id = state.id;
    if (!state.session || !state.seqs || !state.head || f.workerId.charCodeAt(0) === 35 /* #: a registration */) return { ok: false, reason: 'no-session', publicKey: id };
    const timestamp = digitsAt(token, parsedEnd + 1, 15);
    if (timestamp < 0 || Math.abs(now - timestamp) > this.maxSkewMs) return { ok: false, reason: 'stale', publicKey: id };
    const seq = token.charCodeAt(parsedEnd) === 46 ? digitsAt(token, parsedEnd + 1, 15) : -1;
    if (seq <= 0 || token.charCodeAt(parsedEnd) !== 46) return { ok: false, reason: 'bad-signature', publicKey: id };
    // The MAC covers the worker id the request names. The session's own head serves, unless it
    // names another id: then a head is made for it, and a good MAC means `wrong-worker`.
    const head = state.head;
    const other = f.workerId !== head.workerId;
    let msg: Buffer | string;
    try {
      msg = sessionMessage(other ? sessionHead(id, f.workerId) : head, f.method, f.path, f.round, timestamp, seq, f.bodySha256);
    } catch {
      return { ok: false, reason: 'bad-signature', publicKey: id }; // a field the message form refuses
    }
    if (!macMatches(state.session, msg, token, parsedEnd + 1)) return { ok: false, reason: 'bad-signature', publicKey: id };
    if (!state.seqs.fresh(seq)) return { ok: false, reason: 'replay', publicKey: id };
    // A session is opened by a registration, which bound the key's worker id: it acts as that worker only.
    if (other) return { ok: false, reason: 'wrong-worker', publicKey: id };
    state.seqs.record(seq);
    return { ok: true, publicKey: id };
  }

  /**
   * A registration of `publicKey` that carried `workerExchangeKey` (and whose signature, which
   * covers it, verified) succeeded: the key's session is (re)opened, replacing any earlier one.
   * Returns the server's exchange key (hex) for the worker to derive the same session key.
   * The session acts as the worker id the key registered (bindWorker comes first). Throws on
   * an unknown key, a key with no worker id, or a malformed or low-order exchange key.
   */
  openSession(publicKey: string, workerExchangeKey: string): string {
    const id = publicKey.toLowerCase();
    const state = this.byKey.get(id);
    if (!state) throw new Error('openSession: the key is not in the list');
    if (state.workerId === null) throw new Error('openSession: the key has registered no worker id (bindWorker first)');
    const head = sessionHead(id, state.workerId);
    this.exchange ??= exchangeKeyPair();
    const key = sessionKey(this.exchange, workerExchangeKey, id, false);
    // The server's exchange key lives as long as the server, so a registration that carries an
    // exchange key this key already used (a held-back copy of an earlier attempt, replayed once
    // a later one went through) derives the same session key: its window is kept, or the
    // requests already made in that session could be replayed against an empty one.
    if (!state.session || !state.seqs || !timingSafeEqual(state.session, key)) state.seqs = new SeqWindow();
    state.session = key;
    state.head = head;
    return this.exchange.publicHex;
  }

  /**
   * A registration succeeded: `workerId` belongs to `publicKey` from now on, and requests of
   * any other key acting as it are `wrong-worker`. The first key to register an id keeps it:
   * binding it to another key returns false and changes nothing (as does an unknown key).
   * A key holds one worker id: registering again under a new id releases the old one. Every
   * registration that binds ends the key's session until openSession opens the next (a
   * registration of the ed25519 scheme so leaves none, whatever the id).
   */
  bindWorker(workerId: string, publicKey: string): boolean {
    const id = publicKey.toLowerCase();
    const state = this.byKey.get(id);
    if (!state || workerId === '') return false;
    const owner = this.boundTo.get(workerId);
    if (owner !== undefined && owner !== id) return false;
    // Every registration ends the key's session (no-session) until openSession makes a head
    // for it again: one that opens none (the ed25519 scheme, or an exchange key X25519
    // refuses) leaves no session behind. The key and window stay, so a held-back registration
    // that carries the latest exchange key again still meets that session's window.
    state.head = null;
    if (owner === id) return true;
    if (state.workerId !== null) this.boundTo.delete(state.workerId);
    state.workerId = workerId;
    this.boundTo.set(workerId, id);
    return true;
  }

  /** The worker id a key registered, or null. */
  workerOf(publicKey: string): string | null {
    return this.byKey.get(publicKey.toLowerCase())?.workerId ?? null;
  }
}

/** The body check, after the body has been read: the signed hash against the received one. */
export function checkBody(expectedSha: string, actualSha: string): AuthResult {
  return expectedSha.toLowerCase() === actualSha.toLowerCase() ? { ok: true } : { ok: false, reason: 'body-hash' };
}
