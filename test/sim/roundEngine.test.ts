import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BytesPayload } from '../../src/payload/bytes.js';
import { StringPayload } from '../../src/payload/string.js';
import { sha256Hex } from '../../src/runtime/hash.js';
import { RoundEngine } from '../../src/sim/roundEngine.js';
import { FakeClock } from '../helpers/fakeClock.js';

function engine(expectedWorkers: number, extra: { minWorkers?: number; roundTimeoutMs?: number; size?: number } = {}) {
  const clock = new FakeClock();
  const codec = extra.size ? new BytesPayload(extra.size) : new StringPayload();
  const e = new RoundEngine({ expectedWorkers, minWorkers: extra.minWorkers, roundTimeoutMs: extra.roundTimeoutMs, codec, clock, hash: sha256Hex });
  // Workers w0..w(n-1) register, as they would before their first update.
  for (let i = 0; i < expectedWorkers; i++) e.register(i);
  const closed: number[] = [];
  e.onRoundClosed((c) => closed.push(c.round));
  return { e, clock, closed, codec };
}

test('a round closes exactly when the last expected update is in', () => {
  const { e, closed } = engine(3);
  for (let i = 0; i < 3; i++) e.register(i);
  assert.equal(e.submit('w0', 1, Buffer.from('a')).outcome, 'accepted');
  assert.equal(e.submit('w1', 1, Buffer.from('b')).outcome, 'accepted');
  assert.deepEqual(closed, []);
  assert.equal(e.version, 0);
  assert.equal(e.submit('w2', 1, Buffer.from('c')).outcome, 'accepted');
  assert.deepEqual(closed, [1]);
  assert.equal(e.version, 1);
  assert.equal(e.openRound, 2);
});

test('duplicates are counted and never aggregated twice; late and future updates are told apart', () => {
  const { e, closed } = engine(2);
  e.register(0);
  e.register(1);
  e.submit('w0', 1, Buffer.from('a'));
  assert.equal(e.submit('w0', 1, Buffer.from('a')).outcome, 'duplicate');
  assert.deepEqual(closed, [], 'a duplicate must not close the round');
  assert.equal(e.submit('w0', 3, Buffer.from('a')).outcome, 'rejected');
  e.submit('w1', 1, Buffer.from('b'));
  assert.deepEqual(closed, [1]);
  assert.equal(e.submit('w1', 1, Buffer.from('b')).outcome, 'duplicate', 'a retry after the close is still a duplicate');
  e.register(2);
  assert.equal(e.submit('w2', 1, Buffer.from('c')).outcome, 'late');
  assert.equal(e.submit('w7', 2, Buffer.from('c')).outcome, 'rejected', 'a worker that never registered');
  assert.deepEqual(e.updates, { accepted: 2, duplicate: 2, late: 1, rejected: 2 });
  assert.ok(e.current.body.toString().includes('from 2 updates'));
});

test('the new global model is the element-wise mean of the updates', () => {
  const { e } = engine(3, { size: 16 });
  const upd = (vals: number[]) => Buffer.from(new Float32Array(vals).buffer);
  e.submit('w0', 1, upd([1, 2, 3, 4]));
  e.submit('w1', 1, upd([3, 4, 5, 6]));
  assert.equal(e.submit('w2', 1, Buffer.alloc(8)).outcome, 'rejected', 'a body of the wrong size is rejected');
  e.submit('w2', 1, upd([5, 9, -2, 0.5]));
  const body = e.current.body;
  const mean = new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.length));
  assert.deepEqual([...mean], [3, 5, 2, 3.5]);
  assert.equal(e.current.sha256, sha256Hex(body));
});

test('every waiting pull is answered from the one published buffer', async () => {
  const { e } = engine(1);
  const a = e.waitModel(0, 10_000);
  const b = e.waitModel(0, 10_000);
  assert.equal(e.waiting, 2);
  e.submit('w0', 1, Buffer.from('x'));
  const [ma, mb] = await Promise.all([a.promise, b.promise]);
  assert.ok(ma && mb);
  assert.equal(ma.version, 1);
  assert.equal(ma.body, mb.body, 'same Buffer object, encoded once');
  assert.equal(e.waiting, 0);
});

test('a long-poll ends with null after its timeout; a newer model answers at once', async () => {
  const { e, clock } = engine(1);
  const w = e.waitModel(0, 500);
  clock.advance(499);
  assert.equal(e.waiting, 1);
  clock.advance(1);
  assert.equal(await w.promise, null);
  const now = await e.waitModel(-1, 500).promise;
  assert.equal(now?.version, 0);
});

test('with a quorum, a round closes after its deadline once M updates are in', () => {
  const { e, clock, closed } = engine(4, { minWorkers: 2, roundTimeoutMs: 1000 });
  e.register(0);
  e.submit('w0', 1, Buffer.from('a'));
  clock.advance(1000);
  assert.deepEqual(closed, [], 'one update is below the quorum');
  e.submit('w1', 1, Buffer.from('b'));
  assert.deepEqual(closed, [1]);
  e.submit('w2', 2, Buffer.from('c'));
  e.submit('w3', 2, Buffer.from('d'));
  clock.advance(999);
  assert.deepEqual(closed, [1]);
  clock.advance(1);
  assert.deepEqual(closed, [1, 2]);
});

test('waitHeld: a replaced model goes back to the codec once its last hold is released, never while held, never twice', async () => {
  const clock = new FakeClock();
  const given: Buffer[] = [];
  const codec = Object.assign(new StringPayload(), { recycle: (b: Buffer) => given.push(b) });
  const e = new RoundEngine({ expectedWorkers: 1, codec, clock, hash: sha256Hex });
  e.register(0);
  const v0 = e.current;
  // A pull answered at once holds v0; round 1 closes: v0 is replaced but still held.
  const a = await e.waitHeld(-1, 500).promise;
  assert.equal(a?.model, v0);
  const waiting = e.waitHeld(0, 10_000);
  e.submit('w0', 1, Buffer.from('x'));
  assert.equal(given.length, 0, 'held: not given back');
  a!.release();
  assert.deepEqual(given, [v0.body], 'the last hold released: given back');
  a!.release();
  assert.equal(given.length, 1, 'a second release does nothing');
  // The waiter was answered with v1 and holds it from that moment: round 2 closing before its
  // code runs again does not give v1 away.
  e.submit('w0', 2, Buffer.from('y'));
  const b = await waiting.promise;
  assert.equal(b?.model.version, 1);
  assert.equal(given.length, 1);
  b!.release();
  assert.deepEqual(given.map((x) => x.toString()), [v0.body.toString(), b!.model.body.toString()]);
  // The current model is never given back, held or not.
  const c = await e.waitHeld(-1, 500).promise;
  c!.release();
  assert.equal(given.length, 2);
  // A replaced model nobody holds goes back at once (and only once); a poll that times out holds nothing.
  e.submit('w0', 3, Buffer.from('z'));
  assert.equal(given.length, 3);
  c!.release();
  e.submit('w0', 4, Buffer.from('w'));
  assert.equal(given.length, 4);
  const late = e.waitHeld(4, 100);
  clock.advance(100);
  assert.equal(await late.promise, null);
  e.submit('w0', 5, Buffer.from('v'));
  assert.equal(given.length, 5, 'the poll that timed out held nothing: version 4 went back at once');
});

test('a large model answers the waiting long-polls a few per turn of the event loop (ANSWER_BYTES_PER_TURN), in order, each held from the close', async () => {
  const { ANSWER_BYTES_PER_TURN } = await import('../../src/sim/roundEngine.js');
  const clock = new FakeClock();
  const given: Buffer[] = [];
  const size = Math.floor(ANSWER_BYTES_PER_TURN / 2.5); // two per turn
  const codec = Object.assign(new StringPayload(), {
    recycle: (b: Buffer) => given.push(b),
    createAggregator: () => ({ fold: () => true, count: 1, result: (v: number) => Buffer.alloc(size, v) }),
  });
  const e = new RoundEngine({ expectedWorkers: 1, codec, clock, hash: (b: Buffer) => String(b[0]) });
  e.register(0);
  const answered: number[] = [];
  const waits = Array.from({ length: 5 }, (_, i) => e.waitHeld(0, 60_000).promise.then((h) => (answered.push(i), h!)));
  // Looked at in the check phase before the engine's next turn (queued first), after every
  // microtask of the close's turn; and again after that next turn.
  const afterClose = new Promise<number[]>((r) => setImmediate(() => r([...answered])));
  e.submit('w0', 1, Buffer.from('x'));
  const v1 = e.current;
  assert.deepEqual(await afterClose, [0, 1], 'two answered in the turn of the close');
  // Round 2 closes before the others are answered: v1 is replaced, but held for each of them already.
  const afterNext = new Promise<number[]>((r) => setImmediate(() => r([...answered])));
  e.submit('w0', 2, Buffer.from('y'));
  assert.ok(!given.includes(v1.body), 'v1 is held for every waiter from the close');
  assert.deepEqual(await afterNext, [0, 1, 2, 3], 'two more in the next turn');
  const held = await Promise.all(waits);
  assert.deepEqual(answered, [0, 1, 2, 3, 4]);
  for (const h of held) assert.equal(h.model, v1, 'every waiter got the version it waited for');
  for (const h of held.slice(0, 4)) h.release();
  assert.ok(!given.includes(v1.body), 'not while one still holds it');
  held[4].release();
  assert.equal(given.filter((b) => b === v1.body).length, 1, 'given back once, after the last release');
});

test('a round whose updates cannot be aggregated still closes: on the last version\'s weights, saying why, and the next round aggregates afresh', () => {
  const clock = new FakeClock();
  const codec = new BytesPayload(16);
  let failNext = true;
  const make = codec.createAggregator.bind(codec);
  // The codec's aggregator, whose first result fails as one whose folds failed in their thread would.
  codec.createAggregator = () => {
    const a = make();
    return {
      fold: (u, h) => a.fold(u, h),
      get count() {
        return a.count;
      },
      result: (v) => {
        if (failNext) {
          failNext = false;
          throw new Error('this running sum is not to be trusted: a fold failed in the thread');
        }
        return a.result(v);
      },
    };
  };
  const e = new RoundEngine({ expectedWorkers: 2, codec, clock, hash: sha256Hex });
  e.register(0);
  e.register(1);
  const closed: Array<{ round: number; error?: string }> = [];
  e.onRoundClosed((c) => closed.push({ round: c.round, error: c.aggregationError }));
  const upd = (vals: number[]) => Buffer.from(new Float32Array(vals).buffer);
  const before = Buffer.from(e.current.body);
  e.submit('w0', 1, upd([1, 2, 3, 4]));
  assert.equal(e.submit('w1', 1, upd([3, 4, 5, 6])).outcome, 'accepted');
  assert.deepEqual(closed, [{ round: 1, error: 'this running sum is not to be trusted: a fold failed in the thread' }]);
  assert.equal(e.version, 1);
  assert.ok(e.current.body.equals(before), 'version 1 carries version 0\'s weights');
  assert.equal(e.current.sha256, sha256Hex(before));
  e.submit('w0', 2, upd([1, 2, 3, 4]));
  e.submit('w1', 2, upd([3, 4, 5, 6]));
  assert.deepEqual(closed[1], { round: 2, error: undefined });
  const body = e.current.body;
  assert.deepEqual([...new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.length))], [2, 3, 4, 5]);
});

test('a long-poll cancelled while its answer waits for its turn is answered null and lets its hold go; close answers the rest null', async () => {
  const { ANSWER_BYTES_PER_TURN } = await import('../../src/sim/roundEngine.js');
  const clock = new FakeClock();
  const given: Buffer[] = [];
  const size = Math.floor(ANSWER_BYTES_PER_TURN / 1.5); // one per turn
  const codec = Object.assign(new StringPayload(), {
    recycle: (b: Buffer) => given.push(b),
    createAggregator: () => ({ fold: () => true, count: 1, result: (v: number) => Buffer.alloc(size, v) }),
  });
  const e = new RoundEngine({ expectedWorkers: 1, codec, clock, hash: (b: Buffer) => String(b[0]) });
  e.register(0);
  const waits = Array.from({ length: 4 }, () => e.waitHeld(0, 60_000));
  e.submit('w0', 1, Buffer.from('x'));
  const v1 = e.current;
  waits[1].cancel();
  e.close();
  const got = await Promise.all(waits.map((w) => w.promise));
  assert.equal(got[0]?.model, v1, 'the first was answered in the close\'s turn');
  assert.deepEqual(got.slice(1), [null, null, null], 'the cancelled one and those close found waiting: null');
  e.submit('w0', 2, Buffer.from('y'));
  assert.ok(!given.includes(v1.body), 'v1 still held by the one answered');
  got[0]!.release();
  assert.equal(given.filter((b) => b === v1.body).length, 1, 'the holds of the three answered null were let go: v1 goes back at the last release');
});
