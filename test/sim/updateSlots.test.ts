import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpdateSlots } from '../../src/sim/updateSlots.js';


/** Holds the event loop for `ms` (a broadcast's writes, say). */
function blockLoop(ms: number): void {
  const t0 = performance.now();
  while (performance.now() - t0 < ms);
}

/** `n` bytes into `slot`, one every 20 ms: an upload that flows. */
async function flow(slot: { write(b: Buffer): void }, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await new Promise((r) => setTimeout(r, 20));
    slot.write(Buffer.from('x'));
  }
}

test('update slots: at most N bodies at once, waiters served in order, buffers reused', async () => {
  const slots = new UpdateSlots(2);
  const a = await slots.acquire();
  const b = await slots.acquire();
  const order: string[] = [];
  const c = slots.acquire().then((s) => (order.push('c'), s));
  const d = slots.acquire().then((s) => (order.push('d'), s));
  assert.equal(slots.waiting, 2);
  a.reserve(8);
  a.write(Buffer.from('abcd'));
  a.write(Buffer.from('efgh'));
  a.write(Buffer.from('ij')); // grows past the reservation
  assert.equal(a.bytes().toString(), 'abcdefghij');
  a.release();
  a.release(); // twice is once
  const cs = await c;
  assert.equal(cs.length, 0, 'a reused buffer starts empty');
  b.release();
  (await d).release();
  cs.release();
  assert.deepEqual(order, ['c', 'd']);
  assert.equal(slots.peak, 2);
  assert.throws(() => new UpdateSlots(0), /must be >= 1/);
});

test('update slots: a slot with no progress for stallMs lends its place to one waiting update, up to `spare` more; flowing ones do not', async () => {
  const slots = new UpdateSlots(1, 1, 60);
  // The slots' own timer does not keep a process alive (connections do, in a server).
  const alive = setInterval(() => undefined, 1000);
  const a = await slots.acquire();
  let got: Awaited<ReturnType<UpdateSlots['acquire']>> | null = null;
  const b = slots.acquire().then((s) => (got = s));
  const c = slots.acquire();
  // `a` keeps making progress: nobody else starts.
  for (let i = 0; i < 6; i++) {
    await new Promise((r) => setTimeout(r, 25));
    a.write(Buffer.from('x'));
  }
  assert.equal(got, null, 'a flowing upload keeps its place');
  assert.equal(slots.waiting, 2);
  // `a` stalls: `b` gets a lent slot; `c` still waits (one spare).
  await b;
  assert.ok(got);
  assert.equal(slots.busy, 2);
  assert.equal(slots.waiting, 1, 'no more than `spare` lent slots');
  // The lent slot is released while `a` still stalls: `c` is lent the place.
  (got as unknown as { release(): void }).release();
  const cs = await c;
  assert.equal(slots.busy, 2, '`a` still holds its slot beside `c`');
  a.release();
  cs.release();
  assert.equal(slots.busy, 0);
  assert.equal(slots.peak, 2);
  clearInterval(alive);
  // Without spares a stall changes nothing.
  const strict = new UpdateSlots(1, 0, 10);
  const s1 = await strict.acquire();
  let second = false;
  const s2 = strict.acquire().then((s) => ((second = true), s));
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(second, false);
  s1.release();
  (await s2).release();
});

test('update slots: the first in line hears `next`; one whose request has ended leaves the line (at dropGone, or at its turn), and the next in line hears `next` instead', async () => {
  const slots = new UpdateSlots(1, 0);
  const heard: string[] = [];
  const gone = new Set<string>();
  const waiter = (name: string) => {
    let got = false;
    const p = slots.acquire(() => heard.push(name), () => gone.has(name)).then((s) => ((got = true), s));
    return { p, got: () => got };
  };
  const a = await slots.acquire();
  const b = waiter('b');
  const c = waiter('c');
  const d = waiter('d');
  const e = waiter('e');
  assert.deepEqual(heard, ['b'], 'only the first in line');
  // b's request ends: c is first now.
  gone.add('b');
  slots.dropGone();
  assert.deepEqual(heard, ['b', 'c']);
  assert.equal(slots.waiting, 3);
  // d's ends behind c: nothing changes at the front.
  gone.add('d');
  slots.dropGone();
  assert.deepEqual(heard, ['b', 'c']);
  assert.equal(slots.waiting, 2);
  a.release();
  const cs = await c.p;
  assert.deepEqual(heard, ['b', 'c', 'e'], 'e is next once c has the slot');
  // e's request ends without a dropGone: skipped at its turn, the slot stays free.
  gone.add('e');
  cs.release();
  await new Promise((r) => setImmediate(r));
  assert.equal(b.got() || d.got() || e.got(), false, 'an update that left never gets a slot');
  assert.equal(slots.waiting, 0);
  assert.equal(slots.busy, 0);
  (await slots.acquire()).release();
});

test('update slots: buffers from the codec pool (given back when not kept), and bytes read straight into a slot\'s room', async () => {
  const given: Buffer[] = [];
  const poolBufs: Buffer[] = [Buffer.alloc(16), Buffer.alloc(16)];
  const mine = new Set<Buffer>(poolBufs);
  // As the codecs' pools do, one takes back only buffers it gave.
  const pool = { take: (bytes: number) => (bytes <= 16 ? (poolBufs.pop() ?? null) : null), give: (b: Buffer) => void (mine.has(b) && given.push(b)), owns: (b: Buffer) => mine.has(b) };
  const slots = new UpdateSlots(1, 1, 10, pool);
  const a = await slots.acquire();
  a.reserve(12);
  // The room is the slot's own memory, bounded by `max` and by the buffer.
  const aim = a.aim(5)!;
  assert.equal(aim.room.length, 5);
  aim.room.write('hello');
  a.write(aim.room.subarray(0, 3)); // a read that filled 3 of the 5
  aim.landed();
  assert.equal(slots.bytesInPlace, 3);
  const wide = a.aim(100)!;
  assert.equal(wide.room.length, 13, 'room up to the end of the 16-byte pool buffer');
  wide.landed();
  a.write(Buffer.from('XY')); // from elsewhere: copied
  assert.equal(slots.bytesInPlace, 3);
  assert.equal(a.bytes().toString(), 'helXY');
  // A stalled holder lends its place: the second slot's buffer is the pool's other one, given back at release (not kept).
  const b = slots.acquire();
  await new Promise((r) => setTimeout(r, 30));
  const bs = await b;
  bs.reserve(16);
  bs.release();
  assert.equal(given.length, 1, 'the lent buffer went back to the pool');
  // A slot released with a read aimed at it frees its place at once, but not its buffer:
  // the next slot gets another one, and the buffer comes back once the read has landed.
  const pending = a.aim(4)!;
  const aBuf = a.bytes().buffer;
  a.release();
  assert.equal(a.aim(4), null, 'no room once released');
  assert.equal(slots.busy, 0, 'its place is free at once');
  const c0 = await slots.acquire();
  c0.reserve(8);
  assert.notEqual(c0.bytes().buffer, aBuf, 'not the buffer a read is still aimed at');
  c0.release();
  pending.landed();
  pending.landed(); // once
  // Back once the read landed, and kept for the next slot: c0's buffer (from the heap, the
  // pool having none left) was not kept.
  assert.equal(given.length, 1);
  const c = await slots.acquire();
  assert.equal(c.bytes().buffer, aBuf, 'the next slot has the pool buffer the read was aimed at');
  // Growing past the pool's size takes a heap buffer and gives the pool's back.
  c.write(Buffer.alloc(10));
  c.write(Buffer.alloc(10));
  assert.equal(c.length, 20);
  assert.equal(given.length, 2);
  assert.equal(given[1].buffer, aBuf);
  c.release();
});

test('update slots: a heap buffer lent for a stall is not kept once the pool has a buffer again; the next update gets the pool\'s', async () => {
  const free: Buffer[] = [Buffer.alloc(16)];
  const mine = new Set<Buffer>(free);
  const pool = {
    take: (bytes: number) => (bytes <= 16 ? (free.pop() ?? null) : null),
    give: (b: Buffer) => void (mine.has(b) && !free.includes(b) && free.push(b)),
    owns: (b: Buffer) => [...mine].some((m) => m.buffer === b.buffer),
  };
  const slots = new UpdateSlots(1, 1, 10, pool);
  const a = await slots.acquire();
  a.reserve(12);
  assert.ok(pool.owns(a.bytes()), 'the first slot has the pool\'s buffer');
  // The holder stalls: a second update gets a lent slot, and (the pool's one buffer busy) a heap buffer.
  const b = slots.acquire();
  await new Promise((r) => setTimeout(r, 30));
  const bs = await b;
  bs.reserve(12);
  assert.ok(!pool.owns(bs.bytes()), 'the lent slot\'s buffer is from the heap');
  // The pool's buffer is let go first (it goes back to the pool: the lent slot is still busy),
  // then the heap one: kept, it would serve every later update outside the pool.
  a.release();
  bs.release();
  for (let i = 0; i < 3; i++) {
    const c = await slots.acquire();
    c.reserve(12);
    assert.ok(pool.owns(c.bytes()), `update ${i + 1} after the stall is in the pool's buffer`);
    c.release();
  }
});

test('update slots: a slot released while held (a fold in a thread) stays busy, place and buffer, until the hold is let go; it never counts as stalled', async (t) => {
  const slots = new UpdateSlots(1, 1, 40);
  const alive = setInterval(() => undefined, 1000);
  t.after(() => clearInterval(alive));
  const a = await slots.acquire();
  a.write(Buffer.from('abc'));
  const letGo = a.hold();
  a.release();
  assert.equal(a.held, true);
  assert.equal(slots.busy, 1, 'held: still busy');
  let got = false;
  const b = slots.acquire().then((s) => ((got = true), s));
  // Far past stallMs: a held slot waits for its fold, not for bytes, and lends no place.
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(got, false, 'no spare lent for a held slot');
  assert.equal(a.bytes().toString(), 'abc', 'the bytes stay while held');
  letGo();
  letGo(); // once only
  const bs = await b;
  assert.equal(slots.busy, 1);
  bs.release();
  assert.equal(slots.busy, 0);
});

test('update slots: time in which the event loop was blocked does not count toward a stall (no socket was read then either)', async (t) => {
  const slots = new UpdateSlots(1, 1, 200);
  const alive = setInterval(() => undefined, 1000);
  t.after(() => clearInterval(alive));
  const a = await slots.acquire();
  let got = false;
  const b = slots.acquire().then((s) => ((got = true), s));
  a.write(Buffer.from('x'));
  // The loop is blocked for 3 × stallMs (a broadcast's writes, say), then `a` flows again.
  blockLoop(600);
  await flow(a, 15);
  assert.equal(got, false, 'a slot that flows before and after a blocked loop has not stalled');
  // A real stall still lends the place.
  await b;
  assert.equal(got, true);
  a.release();
  (await b).release();
});

test('update slots: a loop that is late again and again slows the stall clock down, never stops it (a stalled slot still lends its place)', async (t) => {
  const slots = new UpdateSlots(1, 1, 200);
  const alive = setInterval(() => undefined, 1000);
  t.after(() => clearInterval(alive));
  const a = await slots.acquire();
  let got = false;
  const b = slots.acquire().then((s) => ((got = true), s));
  a.write(Buffer.from('x'));
  // `a` stalls; the loop is blocked for 300 ms at every turn (its timer, due every 100 ms, late each time).
  for (let i = 0; i < 20 && !got; i++) {
    blockLoop(300);
    await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal(got, true, 'the stalled slot lent its place within 20 blocked turns');
  a.release();
  (await b).release();
});

test('update slots: a loop blocked while no update waited does not make the uploads in the slots look stalled to the next acquire', async (t) => {
  const slots = new UpdateSlots(1, 1, 200);
  const alive = setInterval(() => undefined, 1000);
  t.after(() => clearInterval(alive));
  const a = await slots.acquire();
  a.write(Buffer.from('x'));
  // Nothing waits; the loop is blocked for 3 × stallMs (a round's answers, say); then an update comes.
  blockLoop(600);
  let got = false;
  const b = slots.acquire().then((s) => ((got = true), s));
  await flow(a, 10);
  assert.equal(got, false, 'the slot flowed before and after the block: not stalled, no place lent');
  a.release();
  (await b).release();
});
