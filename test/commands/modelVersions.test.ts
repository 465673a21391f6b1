import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { ModelVersions, bodyHasher } from '../../src/commands/modelVersions.js';
import type { PulledModel } from '../../src/sim/ports.js';
import { BodyBuffer, type SharedBody } from '../../src/transport/headers.js';

const SIZE = 256 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A pull of `bytes` as a worker node's transport makes it: against the node's reference, in 64 KiB chunks. */
function pull(v: ModelVersions, version: number, bytes: Buffer): PulledModel {
  const body = new BodyBuffer(bytes.length, v.reference(sha(bytes), bytes.length));
  for (let o = 0; o < bytes.length; o += 65_536) body.push(bytes.subarray(o, o + 65_536));
  return { version, body: body.bytes(), sha256: sha(bytes), publishedAtMs: 0 };
}

test('model versions: the pulls of one version share one buffer; a version no worker holds and the node no longer keeps is received into again, as another object, and the hasher forgets it', () => {
  const hash = bodyHasher();
  const forgotten: Buffer[] = [];
  const v = new ModelVersions({ recycle: true, keep: 2, forget: (b) => (forgotten.push(b), hash.forget(b)) });
  const models = Array.from({ length: 6 }, () => randomBytes(SIZE));
  // Two workers step through six versions: each pulls the next, holds it, and lets the last go.
  let held: PulledModel[] = [];
  const bodies: Buffer[] = [];
  for (let version = 0; version < 6; version++) {
    const got = [pull(v, version, models[version]), pull(v, version, models[version])];
    for (const g of got) assert.equal(hash(g.body), sha(models[version]), `version ${version}: the bytes pulled are the version's`);
    assert.equal(got[0].body, got[1].body, 'one buffer for both pulls');
    const now = got.map((g) => v.hold(g));
    for (const h of held) v.release(h);
    held = now;
    bodies.push(now[0].body);
    assert.ok(v.kept <= 2);
    for (const h of held) assert.ok(h.body.equals(models[h.version]), `version ${h.version}, held, is its own bytes`);
  }
  assert.ok(v.recycled >= 3, `buffers of versions let go were received into again (${v.recycled} of ${v.taken})`);
  // The same memory came back as a new object.
  const memories = new Set(bodies.map((b) => b.buffer));
  assert.ok(memories.size < bodies.length, 'some version reused the memory of an earlier one');
  assert.equal(new Set(bodies).size, bodies.length, 'as a new Buffer object every time');
  assert.ok(forgotten.length >= 3);
});

test('model versions: a buffer still held, or still read by a pull, is not received into', () => {
  const v = new ModelVersions({ recycle: true, keep: 1 });
  const [a, b, c, d] = Array.from({ length: 4 }, () => randomBytes(SIZE));
  const heldA = v.hold(pull(v, 1, a));
  // A slow pull of version 1 starts (the node holds it: it compares against that buffer) and stalls half-way.
  const slow = new BodyBuffer(a.length, v.reference(sha(a), a.length));
  slow.push(a.subarray(0, SIZE / 2));
  const heldB = v.hold(pull(v, 2, b)); // version 1 is no longer kept
  v.release(heldA); // and no longer held, but the slow pull still reads it
  const heldC = v.hold(pull(v, 3, c));
  assert.equal(v.recycled, 0, 'version 1 is still read; version 2 is still held');
  slow.push(a.subarray(SIZE / 2));
  assert.ok(slow.bytes().equals(a), 'the slow pull got version 1 whole and exact');
  v.release(heldB);
  const heldD = v.hold(pull(v, 4, d));
  assert.equal(v.recycled, 1, 'version 2, let go and no longer kept, took version 4');
  assert.ok(heldD.body.equals(d) && heldC.body.equals(c));
  assert.equal(heldD.body.buffer, heldB.body.buffer);
});

test('model versions: a pull whose bytes differ lets go of the buffer it read; without recycle nothing is received into twice', () => {
  const v = new ModelVersions({ recycle: true, keep: 1 });
  const [a, b, c] = Array.from({ length: 3 }, () => randomBytes(SIZE));
  const heldA = v.hold(pull(v, 1, a));
  const ref = v.reference(sha(a), a.length) as SharedBody;
  const corrupt = Buffer.from(a);
  corrupt[100] ^= 1;
  const bad = new BodyBuffer(a.length, ref);
  bad.push(corrupt);
  assert.equal(bad.matchesReference, false);
  assert.equal(ref.readers, 0, 'the differing pull is no longer a reader');
  v.hold(pull(v, 2, b));
  v.release(heldA);
  v.hold(pull(v, 3, c));
  assert.equal(v.recycled, 1);
  const off = new ModelVersions({ keep: 1 });
  let h = off.hold(pull(off, 1, a));
  for (const [i, m] of [b, c, a].entries()) {
    const next = off.hold(pull(off, i + 2, m));
    off.release(h);
    h = next;
  }
  assert.equal(off.recycled, 0);
});

test('model versions: a straggler that holds a version the node no longer keeps shares its entry with the others holding it; the buffer is received into only once all of them let go', () => {
  const v = new ModelVersions({ recycle: true, keep: 2 });
  const m = Array.from({ length: 6 }, () => randomBytes(SIZE));
  // L holds version 0. P starts pulling version 0 (against the node's copy) and stalls half-way.
  const l0 = v.hold(pull(v, 0, m[0]));
  const slow = new BodyBuffer(SIZE, v.reference(sha(m[0]), SIZE));
  slow.push(m[0].subarray(0, SIZE / 2));
  // The others move on: versions 1 and 2 (version 0 is no longer kept).
  let fast = v.hold(pull(v, 1, m[1]));
  const f2 = v.hold(pull(v, 2, m[2]));
  v.release(fast);
  fast = f2;
  // P finishes and holds version 0: the same entry as L's, so L letting go leaves P holding it.
  slow.push(m[0].subarray(SIZE / 2));
  const p0 = v.hold({ version: 0, body: slow.bytes(), sha256: sha(m[0]), publishedAtMs: 0 });
  assert.equal(p0.body, l0.body);
  v.release(l0);
  for (let version = 3; version < 6; version++) {
    const next = v.hold(pull(v, version, m[version]));
    v.release(fast);
    fast = next;
    assert.ok(p0.body.equals(m[0]), `version ${version} arrived: P's version 0 is untouched`);
    assert.ok(fast.body.equals(m[version]));
  }
  assert.notEqual(fast.body.buffer, p0.body.buffer, 'version 0\'s memory went to no later version');
  // P lets go: its buffer takes the next version.
  v.release(p0);
  const before = v.recycled;
  const next = v.hold(pull(v, 6, randomBytes(SIZE)));
  v.release(fast);
  assert.equal(v.recycled, before + 1);
  assert.ok(next.body.buffer === p0.body.buffer || v.recycled > 0);
});

test('model versions: a pull cut half-way leaves its version\'s buffer to the GC, never to a later version', () => {
  const v = new ModelVersions({ recycle: true, keep: 1 });
  const m = Array.from({ length: 4 }, () => randomBytes(SIZE));
  let held = v.hold(pull(v, 0, m[0]));
  // A pull of version 0 is cut half-way: it never ends, and never lets its reader go.
  const cut = new BodyBuffer(SIZE, v.reference(sha(m[0]), SIZE));
  cut.push(m[0].subarray(0, SIZE / 2));
  const zero = held.body;
  for (let version = 1; version < 4; version++) {
    const next = v.hold(pull(v, version, m[version]));
    v.release(held);
    held = next;
    assert.notEqual(held.body.buffer, zero.buffer, `version ${version} was not received into version 0's buffer`);
  }
  assert.ok(zero.equals(m[0]), 'the buffer the cut pull read is untouched');
  assert.ok(v.recycled >= 1, 'later versions recycle one another');
});
