import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpdateSlots } from '../../src/sim/updateSlots.js';

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
