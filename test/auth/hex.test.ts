import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { hexInto, writeAscii } from '../../src/auth/hex.js';

test('hexInto decodes hex of the exact length, either case, from an offset; it refuses anything else', () => {
  const b = randomBytes(32);
  const out = Buffer.alloc(32);
  assert.equal(hexInto(b.toString('hex'), out), true);
  assert.deepEqual(out, b);
  assert.equal(hexInto(b.toString('hex').toUpperCase(), out), true);
  assert.deepEqual(out, b);
  assert.equal(hexInto(`1.2.3.${b.toString('hex')}`, out.fill(0), 6), true);
  assert.deepEqual(out, b);
  const h = b.toString('hex');
  for (const bad of ['', h.slice(2), `${h}00`, `g${h.slice(1)}`, `0g${h.slice(2)}`, `${h.slice(0, 63)}:`, `${h.slice(0, 62)}0g`, ' '.repeat(64), `${h.slice(0, 31)}é${h.slice(32)}`, `${h.slice(0, 31)}\u0161${h.slice(32)}`, `${h.slice(0, 31)}\u0a61${h.slice(32)}`]) {
    assert.equal(hexInto(bad, out), false, JSON.stringify(bad));
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
