import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { BodyDigest, SMALL_BODY_BYTES, sha256Hex } from '../../src/auth/digest.js';
import { sodiumInUse } from '../../src/auth/ed25519.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('sha256Hex: libsodium for small bodies, OpenSSL for the rest, the same digest at every size around the switch', () => {
  assert.ok(sodiumInUse(), 'libsodium loads here (the small path is under test)');
  for (const n of [0, 1, 31, 32, 63, 64, 65, SMALL_BODY_BYTES - 1, SMALL_BODY_BYTES, SMALL_BODY_BYTES + 1, 4096, 1 << 20]) {
    const b = randomBytes(n);
    assert.equal(sha256Hex(b), sha(b), `${n} bytes`);
  }
});

test('BodyDigest: any split into chunks gives the digest of the whole body, small or large, which matches its hex in either case and nothing else; it reads what was received, and a read buffer reused after each chunk does not change it', () => {
  for (const n of [0, 5, SMALL_BODY_BYTES, SMALL_BODY_BYTES + 1, 70_000]) {
    const body = randomBytes(n);
    for (const step of [1, 7, 100, 511, 512, 513, 65_536]) {
      // The received bytes are gathered where the server gathers them (an update slot); each
      // chunk comes through one reused buffer, as a socket's shared read buffer would.
      const slot = Buffer.alloc(n);
      let received = 0;
      const d = new BodyDigest(() => slot.subarray(0, received));
      const reused = Buffer.alloc(step);
      for (let off = 0; off < n; off += step) {
        const len = body.copy(reused, 0, off, Math.min(n, off + step));
        const chunk = reused.subarray(0, len);
        received += chunk.copy(slot, received);
        d.update(chunk);
        reused.fill(0xee);
      }
      const claimed = [sha(body), sha(body).toUpperCase(), sha(Buffer.concat([body, Buffer.from('x')])), sha(body).slice(2), `${sha(body).slice(0, 62)}zz`][(n + step) % 5];
      assert.equal(d.matches(claimed), (n + step) % 5 < 2, `${n} bytes in chunks of ${step}, against ${claimed}`);
    }
  }
  // A large body is hashed as it streams in: what arrives after the switch is not read back.
  const big = randomBytes(SMALL_BODY_BYTES * 4);
  let seen = 0;
  const d = new BodyDigest(() => big.subarray(0, seen));
  for (let off = 0; off < big.length; off += 100) {
    const chunk = big.subarray(off, Math.min(big.length, off + 100));
    seen += chunk.length;
    d.update(chunk);
  }
  seen = 0; // the slot let go: only the streamed hash is left
  assert.equal(d.matches(sha(big)), true);
});
