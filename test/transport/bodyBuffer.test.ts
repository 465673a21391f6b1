import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { BodyBuffer, SharedBody } from '../../src/transport/headers.js';

const chunks = (b: Buffer, size: number) => Array.from({ length: Math.ceil(b.length / size) }, (_, i) => b.subarray(i * size, (i + 1) * size));

test('BodyBuffer: with a declared length, chunks fill one buffer', () => {
  const data = randomBytes(300_000);
  const body = new BodyBuffer(data.length);
  for (const c of chunks(data, 65_536)) body.push(c);
  assert.equal(body.length, data.length);
  assert.deepEqual(body.bytes(), data);
});

test('BodyBuffer: a body equal to the reference is the reference itself (nothing copied)', () => {
  const held = randomBytes(300_000);
  const body = new BodyBuffer(held.length, held);
  for (const c of chunks(Buffer.from(held), 65_536)) body.push(c);
  assert.equal(body.matchesReference, true);
  assert.equal(body.bytes(), held, 'the same Buffer object');
});

test('BodyBuffer: a body that differs from the reference becomes its own bytes, whole and exact', () => {
  const held = randomBytes(300_000);
  for (const at of [0, 65_535, 65_536, 200_000, 299_999]) {
    const got = Buffer.from(held);
    got[at] ^= 0xff;
    const body = new BodyBuffer(held.length, held);
    for (const c of chunks(got, 65_536)) body.push(c);
    assert.equal(body.matchesReference, false, `flipped byte ${at}`);
    assert.notEqual(body.bytes(), held);
    assert.deepEqual(body.bytes(), got, `flipped byte ${at}: the received bytes, not the reference's`);
    assert.equal(held[at] === got[at], false, 'the reference is untouched');
  }
});

test('BodyBuffer: a reference of another length is not used; a longer body than the reference spills and keeps every byte', () => {
  const held = randomBytes(1000);
  const other = new BodyBuffer(2000, held);
  const data = randomBytes(2000);
  other.push(data);
  assert.deepEqual(other.bytes(), data);
  const longer = new BodyBuffer(1000, held);
  longer.push(held);
  longer.push(Buffer.from('extra'));
  assert.equal(longer.length, 1005);
  assert.deepEqual(longer.bytes(), Buffer.concat([held, Buffer.from('extra')]));
  const short = new BodyBuffer(1000, held);
  short.push(held.subarray(0, 400));
  assert.equal(short.length, 400);
  assert.deepEqual(short.bytes(), held.subarray(0, 400));
});

test('HTTP client: a pulled copy of a held version is compared in place; a corrupted copy comes back as its own bytes', async () => {
  const { createServer } = await import('node:http');
  const { createHash } = await import('node:crypto');
  const { HttpWorkerTransport } = await import('../../src/transport/httpClient.js');
  const { WorkerNodeStats } = await import('../../src/sim/workerStats.js');
  const { H } = await import('../../src/transport/headers.js');
  const model = randomBytes(200_000);
  const sha = createHash('sha256').update(model).digest('hex');
  let served = 0;
  const server = createServer((req, res) => {
    const body = Buffer.from(model);
    if (served++ === 2) body[150_000] ^= 1; // the third copy is corrupted in transit
    res.writeHead(200, { 'content-length': body.length, [H.version]: '1', [H.sha256]: sha, [H.publishedAt]: String(Date.now()) });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    const held = Buffer.from(model);
    const asked: string[] = [];
    const heldModel = (s: string, n: number) => {
      asked.push(`${s.slice(0, 8)} ${n}`);
      return s === sha && n === held.length ? held : undefined;
    };
    const t = new HttpWorkerTransport({ host: '127.0.0.1', port, requestTimeoutMs: 5000, heldModel }, new WorkerNodeStats(1));
    const first = await t.pullModel('w0', 0, () => undefined);
    const second = await t.pullModel('w0', 0, () => undefined);
    const third = await t.pullModel('w0', 0, () => undefined);
    t.close();
    assert.deepEqual(asked, [`${sha.slice(0, 8)} 200000`, `${sha.slice(0, 8)} 200000`, `${sha.slice(0, 8)} 200000`]);
    assert.equal(first!.body, held, 'an equal copy is the held buffer');
    assert.equal(second!.body, held);
    assert.notEqual(third!.body, held);
    assert.notEqual(createHash('sha256').update(third!.body).digest('hex'), sha, 'the corrupted copy fails its SHA-256 check');
    assert.equal(third!.body[150_000], model[150_000] ^ 1);
  } finally {
    server.close();
  }
});

test('BodyBuffer: pulls sharing a SharedBody in step fill it together (the first to reach a byte writes it) and are all that one buffer', () => {
  const data = randomBytes(300_000);
  const shared = new SharedBody(Buffer.alloc(data.length));
  const a = new BodyBuffer(data.length, shared);
  const b = new BodyBuffer(data.length, shared);
  const c = new BodyBuffer(data.length, shared);
  // a leads, then b overtakes it; c follows behind both.
  a.push(data.subarray(0, 70_000));
  b.push(data.subarray(0, 50_000));
  b.push(data.subarray(50_000, 200_000));
  assert.equal(shared.filled, 200_000);
  a.push(data.subarray(70_000, 250_000));
  c.push(data.subarray(0, 250_000));
  a.push(data.subarray(250_000));
  b.push(data.subarray(200_000));
  c.push(data.subarray(250_000));
  for (const body of [a, b, c]) {
    assert.ok(body.matchesReference);
    assert.equal(body.bytes(), shared.buffer);
  }
  assert.deepEqual(shared.buffer, data);
});

test('BodyBuffer: a pull that differs from what another wrote into the SharedBody gets its own exact bytes, and the shared bytes stay as written', () => {
  const data = randomBytes(200_000);
  const other = Buffer.from(data);
  other[150_000] ^= 1;
  const shared = new SharedBody(Buffer.alloc(data.length));
  const first = new BodyBuffer(data.length, shared);
  const second = new BodyBuffer(data.length, shared);
  first.push(data);
  second.push(other.subarray(0, 100_000));
  second.push(other.subarray(100_000));
  assert.ok(!second.matchesReference);
  assert.deepEqual(second.bytes(), other);
  assert.notEqual(second.bytes().buffer, shared.buffer.buffer);
  assert.deepEqual(first.bytes(), data);
  assert.deepEqual(shared.buffer, data);
});
