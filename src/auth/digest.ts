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
import { hexInto } from './hex.js';

const EMPTY = Buffer.alloc(0);

/** Bodies up to this many bytes are hashed by libsodium in one call. */
export const SMALL_BODY_BYTES = 512;

const OUT = Buffer.alloc(32);
const CLAIMED = Buffer.alloc(32);

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
 * The SHA-256 of a body that arrives in chunks: the first SMALL_BODY_BYTES are gathered (a
 * copy: chunks may be views of a read buffer that is reused), and hashed in one call at the
 * end; a body that grows past them goes to a streamed `createHash`.
 */
export class BodyDigest {
  private small: Buffer | null = null;
  private length = 0;
  private hash: Hash | null = null;

  update(chunk: Buffer): void {
    if (this.hash) {
      this.hash.update(chunk);
      return;
    }
    if (this.length + chunk.length <= SMALL_BODY_BYTES) {
      this.small ??= Buffer.allocUnsafe(SMALL_BODY_BYTES);
      chunk.copy(this.small, this.length);
      this.length += chunk.length;
      return;
    }
    this.hash = createHash('sha256');
    if (this.small) this.hash.update(this.small.subarray(0, this.length));
    this.hash.update(chunk);
    this.small = null;
  }

  /** True when the digest is `claimedHex` (64 hex digits, either case); once, at the end of the body. */
  matches(claimedHex: string): boolean {
    if (!hexInto(claimedHex, CLAIMED)) return false;
    let digest: Buffer;
    if (this.hash) digest = this.hash.digest();
    else if (sodiumSha256(this.small ? this.small.subarray(0, this.length) : EMPTY)) digest = OUT;
    else digest = createHash('sha256').update(this.small ? this.small.subarray(0, this.length) : EMPTY).digest();
    return digest.equals(CLAIMED);
  }
}
