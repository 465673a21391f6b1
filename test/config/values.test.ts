import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePayload, payloadDirections, payloadOf } from '../../src/config/payload.js';
import { formatHostPort, parseHostPort, parseRange, parseSize } from '../../src/config/values.js';
import { UsageError } from '../../src/errors.js';

test('sizes', () => {
  assert.equal(parseSize('1MiB', 'x'), 1048576);
  assert.equal(parseSize('1MB', 'x'), 1_000_000);
  assert.equal(parseSize('4096', 'x'), 4096);
  assert.equal(parseSize('2 KiB', 'x'), 2048);
  assert.throws(() => parseSize('1 parsec', 'x'), UsageError);
  assert.throws(() => parseSize('0', 'x'), UsageError);
});

test('payloads', () => {
  assert.deepEqual(parsePayload('string'), { kind: 'string' });
  assert.deepEqual(parsePayload('bytes:1MiB'), { kind: 'bytes', size: 1048576 });
  assert.throws(() => parsePayload('bytes:3'), /multiple of 4/);
  assert.throws(() => parsePayload('bytes:2GiB'), /"bytes:2GiB": at most 1GiB/);
  assert.deepEqual(parsePayload('bytes:1GiB'), { kind: 'bytes', size: 1024 ** 3 });
  assert.deepEqual(parsePayload('mobilenetv2'), { kind: 'mobilenetv2' });
  assert.deepEqual(parsePayload('mobilenet'), { kind: 'mobilenetv2' });
  assert.throws(() => parsePayload('resnet'), /"resnet" is not a payload: use "string", "bytes:SIZE" \(e\.g\. bytes:1MiB\) or "mobilenetv2"/);
  assert.deepEqual(payloadOf({ payload: 'string' }), { kind: 'string' });
  assert.deepEqual(payloadOf({ payload: 'string', globalPayload: 'mobilenetv2' }), { kind: 'pair', global: { kind: 'mobilenetv2' }, update: { kind: 'string' } });
  assert.deepEqual(payloadDirections(payloadOf({ payload: 'string', globalPayload: 'mobilenetv2' })), [{ kind: 'mobilenetv2' }, { kind: 'string' }]);
  assert.deepEqual(payloadDirections(payloadOf({ payload: 'bytes:4' })), [{ kind: 'bytes', size: 4 }]);
});

test('ranges and addresses', () => {
  assert.deepEqual(parseRange('50..200', 'x'), { min: 50, max: 200 });
  assert.deepEqual(parseRange('7', 'x'), { min: 7, max: 7 });
  assert.throws(() => parseRange('9..1', 'x'), UsageError);
  assert.deepEqual(parseHostPort('127.0.0.1:7070', 'x'), { host: '127.0.0.1', port: 7070 });
  assert.deepEqual(parseHostPort('[::1]:80', 'x'), { host: '::1', port: 80 });
  assert.equal(formatHostPort('::1', 80), '[::1]:80');
  assert.equal(formatHostPort('127.0.0.1', 7070), '127.0.0.1:7070');
  assert.deepEqual(parseHostPort(formatHostPort('fe80::2', 9), 'x'), { host: 'fe80::2', port: 9 });
  assert.deepEqual(parseHostPort('7070', 'x'), { host: '127.0.0.1', port: 7070 });
  assert.throws(() => parseHostPort('nowhere', 'x'), /HOST:PORT/);
  assert.throws(() => parseHostPort('h:70000', 'x'), UsageError);
});
