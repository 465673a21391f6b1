import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TransportError } from '../../src/sim/ports.js';
import { backoffMs, withRetry } from '../../src/sim/retry.js';
import { FakeClock } from '../helpers/fakeClock.js';

test('backoff is exponential, capped, with full jitter', () => {
  const p = { retries: 5, baseMs: 100, maxMs: 1000 };
  assert.equal(backoffMs(p, 0, () => 1), 100);
  assert.equal(backoffMs(p, 3, () => 1), 800);
  assert.equal(backoffMs(p, 6, () => 1), 1000);
  assert.equal(backoffMs(p, 6, () => 0), 0);
});

test('retryable errors are retried up to the budget, then thrown', async () => {
  const clock = new FakeClock();
  clock.sleep = async () => undefined;
  let calls = 0;
  let retries = 0;
  await assert.rejects(
    withRetry(async () => {
      calls++;
      throw new TransportError('reset', 'boom', true);
    }, { retries: 3, baseMs: 1, maxMs: 1 }, clock, Math.random, { onRetry: () => retries++ }),
    /boom/,
  );
  assert.equal(calls, 4);
  assert.equal(retries, 3);
});

test('a non-retryable error is thrown at once; success after a retry returns', async () => {
  const clock = new FakeClock();
  clock.sleep = async () => undefined;
  let calls = 0;
  await assert.rejects(
    withRetry(async () => {
      calls++;
      throw new TransportError('http-400', 'bad', false);
    }, { retries: 3, baseMs: 1, maxMs: 1 }, clock, Math.random, { onRetry: () => undefined }),
  );
  assert.equal(calls, 1);
  let n = 0;
  const v = await withRetry(async () => {
    if (n++ === 0) throw new TransportError('reset', 'once', true);
    return 42;
  }, { retries: 3, baseMs: 1, maxMs: 1 }, clock, Math.random, { onRetry: () => undefined });
  assert.equal(v, 42);
});
