/**
 * SHA-256 of request bodies for safe mode, fast for the small ones.
 *
 * Every request of a safe-mode run names its body's SHA-256, and most bodies are small (an
 * update of the `string` payload is a few dozen bytes; a pull has none). For those, what a
 * `createHash` costs is the object, not the bytes: measured here (32-byte body, a warm loop)
 * 4.6 µs against 1.6 µs for libsodium's one-shot `crypto_hash_sha256`, and after the caches
 * were flushed 60–95 µs against under 20 µs, which is the state a busy server meets them in.
 * From about 1 KiB on, OpenSSL's SHA-256 (with the CPU's SHA extensions) is faster (a 1 MiB
 * body: 0.7 ms against 5.5 ms), so larger bodies go to `createHash`, streamed.
 */
import { type Hash, createHash } from 'node:crypto';
import { sodiumInUse } from './ed25519.js';
import { hexEquals } from './hex.js';

const EMPTY = Buffer.alloc(0);

/** The SHA-256 of an empty body (a pull's): what a request without `x-fedsim-body-sha256` claims. */
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** Bodies up to this many bytes are hashed by libsodium in one call. */
export const SMALL_BODY_BYTES = 512;

const OUT = Buffer.alloc(32);

/** libsodium's SHA-256 of a small body into OUT; false where the addon does not load. */
function sodiumSha256(body: Buffer): boolean {
  const sodium = sodiumInUse();
  if (!sodium) return false;
  sodium.crypto_hash_sha256(OUT, body);
  return true;
}

function sodiumSha256Hex(body: Buffer): string | null {
  return sodiumSha256(body) ? OUT.toString('hex') : null;
}

/** The SHA-256 of a body, lower-case hex. */
export function sha256Hex(body: Buffer): string {
  return (body.length <= SMALL_BODY_BYTES ? sodiumSha256Hex(body) : null) ?? createHash('sha256').update(body).digest('hex');
}

/**
 * The SHA-256 of a body that arrives in chunks into a buffer of its own (an update slot), to
 * compare with the one its request claims. `received()` gives the bytes received so far, the
 * last chunk included. A small body (up to SMALL_BODY_BYTES, all of the `string` payload's) is
 * hashed once it is whole, by one libsodium call over those bytes: no copy and no object per
 * request. One that grows past them goes to a streamed `createHash` (what came before is fed
 * from `received()`), so a 14 MB model is hashed as it streams in.
 */
export class BodyDigest {
  private length = 0;
  private hash: Hash | null = null;

  constructor(private readonly received: () => Buffer) {}

  /** After each chunk has been added to the received bytes. */
  update(chunk: Buffer): void {
    this.length += chunk.length;
    if (this.hash) this.hash.update(chunk);
    else if (this.length > SMALL_BODY_BYTES) this.hash = createHash('sha256').update(this.received());
  }

  /** True when the body's digest is `claimedHex` (64 hex digits, either case); once, at the end of the body. */
  matches(claimedHex: string): boolean {
    if (claimedHex.length !== 64) return false;
    if (this.hash) return hexEquals(this.hash.digest(), claimedHex);
    const body = this.length > 0 ? this.received() : EMPTY;
    return hexEquals(sodiumSha256(body) ? OUT : createHash('sha256').update(body).digest(), claimedHex);
  }
}
