import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { fromHex, toHex, writeAscii } from '../../src/auth/hex.js';

test('toHex and fromHex agree with Buffer for every byte value; fromHex refuses what is not hex of the exact length', () => {
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  assert.equal(toHex(all), all.toString('hex'));
  const b = randomBytes(32);
  assert.equal(toHex(b, 5), b.subarray(0, 5).toString('hex'));
  const out = Buffer.alloc(32);
  assert.equal(fromHex(b.toString('hex'), out), true);
  assert.deepEqual(out, b);
  assert.equal(fromHex(b.toString('hex').toUpperCase(), out), true);
  assert.deepEqual(out, b);
  for (const bad of ['', b.toString('hex').slice(2), `${b.toString('hex')}00`, `g${b.toString('hex').slice(1)}`, `${b.toString('hex').slice(0, 63)}:`, ' '.repeat(64)]) {
    assert.equal(fromHex(bad, out), false, JSON.stringify(bad));
  }
});

test('writeAscii writes ASCII that fits and refuses the rest', () => {
  const out = Buffer.alloc(8);
  assert.equal(writeAscii('abc\n', out), 4);
  assert.equal(out.subarray(0, 4).toString('latin1'), 'abc\n');
  assert.equal(writeAscii('123456789', out), -1);
  assert.equal(writeAscii('é', out), -1);
  assert.equal(writeAscii('', out), 0);
});
