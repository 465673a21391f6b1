import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HpackDecoder, HpackError, encodeIndexed, encodeLiterals, huffmanCodes, huffmanDecode, huffmanEncode, literalBytes, writeLiteral } from '../../src/transport/hpack.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('Huffman codes: canonical from the lengths, as RFC 7541 Appendix B lists them', () => {
  const codes = huffmanCodes();
  assert.equal(codes.length, 257);
  // A few rows of Appendix B: '0' 00000, 'a' 00011, ' ' 010100, '\0' 1111111111000, EOS 30 ones.
  assert.deepEqual(codes[0x30], { code: 0x0, length: 5 });
  assert.deepEqual(codes[0x61], { code: 0x3, length: 5 });
  assert.deepEqual(codes[0x20], { code: 0x14, length: 6 });
  assert.deepEqual(codes[0x00], { code: 0x1ff8, length: 13 });
  assert.deepEqual(codes[0xff], { code: 0x3ffffee, length: 26 });
  assert.deepEqual(codes[256], { code: 0x3fffffff, length: 30 });
  // A prefix code: no code is the prefix of another.
  const bits = codes.map(({ code, length }) => code.toString(2).padStart(length, '0'));
  const sorted = [...bits].sort();
  for (let i = 1; i < sorted.length; i++) assert.ok(!sorted[i].startsWith(sorted[i - 1]), `${sorted[i - 1]} prefixes ${sorted[i]}`);
});

test('Huffman: every octet round-trips; RFC 7541 C.4.1\'s "www.example.com"; bad padding and EOS are errors', () => {
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('latin1');
  const enc = huffmanEncode(all);
  assert.equal(huffmanDecode(enc, 0, enc.length), all);
  for (const s of ['', 'a', 'application/grpc', 'trailers', '%E2%9C%93 done', 'no-cache']) {
    const e = huffmanEncode(s);
    assert.equal(huffmanDecode(e, 0, e.length), s);
  }
  assert.deepEqual(huffmanEncode('www.example.com'), hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff'));
  // 'a' is 00011: padded with zeros instead of ones.
  assert.throws(() => huffmanDecode(Buffer.from([0b00011000]), 0, 1), HpackError);
  // A whole byte of padding (8 ones) after a symbol: padding over 7 bits.
  assert.throws(() => huffmanDecode(Buffer.from([0b00011111, 0xff]), 0, 2), HpackError);
  // EOS itself, 30 ones and two bits of padding.
  assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4), /EOS/);
});

test('decoder: RFC 7541 C.4, three requests with Huffman sharing one dynamic table', () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff')), [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
  ]);
  assert.deepEqual(d.decode(hex('8286 84be 5886 a8eb 1064 9cbf')), [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
    ['cache-control', 'no-cache'],
  ]);
  assert.deepEqual(d.decode(hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf')), [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':path', '/index.html'],
    [':authority', 'www.example.com'],
    ['custom-key', 'custom-value'],
  ]);
});

test('decoder: eviction keeps the newest entries within the size; a size update shrinks the table; bad blocks are errors', () => {
  // 64 bytes allowed: one entry of name+value 20 (52 bytes) fits, two do not.
  const d = new HpackDecoder(64);
  const literal = (name: string, value: string) => Buffer.concat([Buffer.from([0x40, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
  assert.deepEqual(d.decode(literal('x-aaaaaaaa', 'aaaaaaaaaa')), [['x-aaaaaaaa', 'aaaaaaaaaa']]);
  assert.deepEqual(d.decode(Buffer.from([0x80 | 62])), [['x-aaaaaaaa', 'aaaaaaaaaa']]);
  d.decode(literal('x-bbbbbbbb', 'bbbbbbbbbb'));
  assert.deepEqual(d.decode(Buffer.from([0x80 | 62])), [['x-bbbbbbbb', 'bbbbbbbbbb']]);
  assert.throws(() => d.decode(Buffer.from([0x80 | 63])), /not in the table/);
  // A size update to 0 empties the table.
  assert.throws(() => d.decode(Buffer.from([0x20, 0x80 | 62])), /not in the table/);
  // Over what we allowed, after a field, index 0, a string past the end.
  assert.throws(() => new HpackDecoder(64).decode(Buffer.from([0x3f, 0x22])), /over the 64 allowed/);
  assert.throws(() => new HpackDecoder().decode(Buffer.from([0x82, 0x20])), /after a header field/);
  assert.throws(() => new HpackDecoder().decode(Buffer.from([0x80])), /index 0/);
  assert.throws(() => new HpackDecoder().decode(Buffer.from([0x04, 0x05, 0x61])), /past the end/);
  // Never-indexed and without-indexing literals do not enter the table.
  const e = new HpackDecoder();
  assert.deepEqual(e.decode(Buffer.from([0x10, 0x01, 0x61, 0x01, 0x62, 0x0f, 0x2e, 0x01, 0x63])), [
    ['a', 'b'],
    ['www-authenticate', 'c'],
  ]);
  assert.throws(() => e.decode(Buffer.from([0x80 | 62])), /not in the table/);
});

test('encoder: literals without indexing (static names where they exist) and indexed fields decode back', () => {
  const out: number[] = [];
  encodeIndexed(out, 3);
  encodeLiterals(out, [
    [':path', '/fedsim.v1.Fedsim/PushUpdate'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
    ['x-long', 'v'.repeat(300)],
  ]);
  assert.deepEqual(new HpackDecoder().decode(Buffer.from(out)), [
    [':method', 'POST'],
    [':path', '/fedsim.v1.Fedsim/PushUpdate'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
    ['x-long', 'v'.repeat(300)],
  ]);
});

test('writeLiteral: literals without indexing, within literalBytes, across the integer prefixes; they decode back', () => {
  const bytes = (name: string, value: string) => {
    const buf = Buffer.alloc(literalBytes(name, value) + 4, 0xee);
    const end = writeLiteral(buf, 2, name, value);
    assert.ok(end - 2 <= literalBytes(name, value), name);
    assert.equal(buf[end], 0xee, 'nothing written past the end');
    return buf.subarray(2, end);
  };
  // A static name (":path" is 4): 0000 then the index in 4 bits; a value of 5 octets.
  assert.deepEqual(bytes(':path', '/a/bc'), hex('04 05 2f612f6263'));
  // A literal name: 0x00, its length and octets, then the value's.
  assert.deepEqual(bytes('x', 'v'), hex('00 01 78 01 76'));
  // Lengths at the 7-bit prefix's edges: 126 fits, 127 needs a second octet (0), 255 is 127 + 128.
  assert.deepEqual(bytes('x', 'v'.repeat(126)).subarray(3, 4), hex('7e'));
  assert.deepEqual(bytes('x', 'v'.repeat(127)).subarray(3, 5), hex('7f 00'));
  assert.deepEqual(bytes('x', 'v'.repeat(255)).subarray(3, 6), hex('7f 80 01'));
  // An index over the 4-bit prefix (":path" is under it; "www-authenticate" is 61): 15, then 46.
  assert.deepEqual(bytes('www-authenticate', '').subarray(0, 2), hex('0f 2e'));
  const fields: [string, string][] = [
    [':path', '/fedsim.v1.Fedsim/PullModel'],
    ['grpc-timeout', '30000m'],
    ['x-fedsim-mac', `12.1733150000000.7.${'ab'.repeat(32)}`],
    ['x-fedsim-body-sha256', 'cd'.repeat(32)],
    ['x-empty', ''],
    ['y'.repeat(127), 'v'.repeat(127)],
    ['w', 'v'.repeat(20_000)],
    ['latin', 'é\u00ff'],
  ];
  for (const [name, value] of fields) {
    assert.deepEqual(new HpackDecoder().decode(bytes(name, value)), [[name, value]], name.slice(0, 20));
    const out: number[] = [];
    encodeLiterals(out, [[name, value]]);
    assert.deepEqual(Buffer.from(out), bytes(name, value));
  }
});
