import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { hexEquals, writeAscii } from '../../src/auth/hex.js';

test('hexEquals matches the exact hex of the bytes, either case, from an offset; it refuses anything else', () => {
  for (let n = 0; n < 200; n++) {
    const b = randomBytes(32);
    const h = b.toString('hex');
    assert.equal(hexEquals(b, h), true);
    assert.equal(hexEquals(b, h.toUpperCase()), true);
    assert.equal(hexEquals(b, `1.2.3.${h}`, 6), true);
    // Every digit position, changed to every other character of the hex alphabets and to a few that are not hex.
    const i = n % 64;
    for (const c of '0123456789abcdefABCDEFgG:/@`\u0000\u0130\u0161\u0a61é ') {
      if (c.toLowerCase() === h[i]) continue;
      const bad = h.slice(0, i) + c + h.slice(i + 1);
      assert.equal(hexEquals(b, bad), false, `${JSON.stringify(bad)} for ${h}`);
    }
    for (const bad of ['', h.slice(2), `${h}00`, ` ${h}`, `${h.slice(0, 63)}`]) assert.equal(hexEquals(b, bad), false, JSON.stringify(bad));
  }
  assert.equal(hexEquals(Buffer.from([0x00, 0x9f, 0xa0, 0xff]), '009FA0fF'), true);
  assert.equal(hexEquals(Buffer.alloc(0), ''), true);
});

test('writeAscii writes ASCII that fits and refuses the rest', () => {
  const out = Buffer.alloc(8);
  assert.equal(writeAscii('abc\n', out), 4);
  assert.equal(out.subarray(0, 4).toString('latin1'), 'abc\n');
  assert.equal(writeAscii('123456789', out), -1);
  assert.equal(writeAscii('é', out), -1);
  assert.equal(writeAscii('', out), 0);
});
