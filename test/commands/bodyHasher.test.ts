import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { bodyHasher } from '../../src/commands/nodeWorker.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('bodyHasher: a copy of a hashed body gets its hash; a body differing in one byte gets its own', () => {
  const hash = bodyHasher();
  const model = randomBytes(1 << 20);
  assert.equal(hash(model), sha(model));
  const copy = Buffer.from(model);
  assert.equal(hash(copy), sha(model));
  // A corrupted copy (the last byte) is not mistaken for the model: the worker's check fails as it must.
  const corrupt = Buffer.from(model);
  corrupt[corrupt.length - 1] ^= 1;
  assert.equal(hash(corrupt), sha(corrupt));
  assert.notEqual(hash(corrupt), sha(model));
  // Only the last two large bodies are kept; small ones are always hashed.
  const small = randomBytes(100);
  assert.equal(hash(small), sha(small));
  const [a, b] = [randomBytes(1 << 17), randomBytes(1 << 17)];
  hash(a);
  hash(b);
  assert.equal(hash(Buffer.from(model)), sha(model));
});
