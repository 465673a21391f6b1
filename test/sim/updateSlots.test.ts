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
