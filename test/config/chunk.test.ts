import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunkRange, parseChunk } from '../../src/config/chunk.js';
import { UsageError } from '../../src/errors.js';

test('chunks cover every worker exactly once for many (W, k)', () => {
  for (let w = 1; w <= 120; w++) {
    for (let k = 1; k <= 13; k++) {
      const seen = new Array<number>(w).fill(0);
      for (let n = 1; n <= k; n++) {
        const { first, count } = chunkRange({ n, k }, w);
        assert.ok(count >= 0);
        for (let i = first; i < first + count; i++) seen[i]++;
      }
      assert.deepEqual(seen, new Array<number>(w).fill(1), `W=${w} k=${k}`);
    }
  }
  for (const [w, k] of [[10_000, 4], [1000, 7], [999_983, 97]]) {
    let total = 0;
    let next = 0;
    for (let n = 1; n <= k; n++) {
      const { first, count } = chunkRange({ n, k }, w);
      assert.equal(first, next);
      next = first + count;
      total += count;
    }
    assert.equal(total, w);
  }
});

test('chunk n of k uses floor((n-1)W/k) .. floor(nW/k)-1', () => {
  assert.deepEqual(chunkRange({ n: 3, k: 4 }, 1000), { first: 500, count: 250 });
  assert.deepEqual(chunkRange({ n: 1, k: 3 }, 10), { first: 0, count: 3 });
  assert.deepEqual(chunkRange({ n: 3, k: 3 }, 10), { first: 6, count: 4 });
});

test('"3 of 4", "3of4" and "3/4" are accepted', () => {
  for (const s of ['3 of 4', '3of4', '3/4', ' 3 OF 4 ', '3 / 4']) assert.deepEqual(parseChunk(s), { n: 3, k: 4 });
});

test('bad chunks name the input', () => {
  for (const s of ['0 of 4', '5 of 4', 'x', '', '1 of 0', '-1 of 4', '2.5 of 4']) {
    assert.throws(() => parseChunk(s), (e: unknown) => e instanceof UsageError && e.message.includes(`"${s}"`), s);
  }
});
