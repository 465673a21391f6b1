import assert from 'node:assert/strict';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import { pipePair } from '../../src/netem/proxy/pipe.js';
import { sharedRead } from '../../src/runtime/readBuffer.js';
import { WorkerProxy } from '../../src/netem/proxy/proxy.js';
import { type FaultSpec, parseFault } from '../../src/netem/spec.js';

// An echo server upstream; the proxy sits between a client and it. Real sockets, no root.
let echo: net.Server;
let echoPort = 0;
before(async () => {
  echo = net.createServer((s) => {
    s.on('error', () => undefined); // resets are what some tests do
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as net.AddressInfo).port;
});
after(() => echo.close());

const fault = (raw: Record<string, unknown>): FaultSpec => parseFault({ manual: true, ...raw }, 0, () => '');

/**
 * - tcp: the worker connects to the proxy over loopback;
 * - in-process: the worker's end of an in-memory socket, read through its 'data' event;
 * - in-process-reader: the same with a reader (how fedsim's transports open it), which the
 *   proxy hands its reads as views while no fault is on the link.
 */
type Mode = 'tcp' | 'in-process' | 'in-process-reader';

/** Ends opened with a reader: their bytes come as the 'bytes' event (copies of what the reader got). */
const withReader = new WeakSet<Duplex>();
const bytesEvent = (s: Duplex): string => (withReader.has(s) ? 'bytes' : 'data');

/**
 * A connection of the worker through proxy `p`: over loopback TCP (gRPC workers) or in
 * process (HTTP workers); the same faults must do the same to both.
 */
async function open(p: WorkerProxy, mode: Mode): Promise<Duplex> {
  if (mode !== 'tcp') {
    const end: Duplex = mode === 'in-process' ? p.connect() : p.connect((c) => end.emit('bytes', Buffer.from(c)));
    if (mode === 'in-process-reader') withReader.add(end);
    // A refused or reset connection fails a little later, as a TCP connect does.
    const failed = await new Promise<Error | null>((resolve) => {
      end.once('error', resolve);
      setTimeout(() => resolve(null), 50);
    });
    if (failed) throw failed;
    return end;
  }
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: p.address.port }, () => resolve(s));
    s.once('error', reject);
  });
}

/** What a new connection fails with ('' when it works). */
async function failureOf(p: WorkerProxy, mode: Mode): Promise<string> {
  try {
    const s = await open(p, mode);
    const code = await new Promise<string>((resolve) => {
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      s.once('close', () => setImmediate(() => resolve('closed')));
      setTimeout(() => resolve(''), 300);
    });
    s.destroy();
    return code;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'error';
  }
}

function roundTrip(s: Duplex, bytes: number): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    let got = 0;
    const onData = (d: Buffer) => {
      got += d.length;
      if (got >= bytes) {
        s.off(bytesEvent(s), onData);
        resolve(performance.now() - t0);
      }
    };
    s.on(bytesEvent(s), onData);
    s.once('error', reject);
    s.write(Buffer.alloc(bytes, 7));
  });
}

async function proxy(mode: Mode): Promise<WorkerProxy> {
  const p = new WorkerProxy({ host: '127.0.0.1', port: echoPort }, Math.random);
  if (mode === 'tcp') await p.listen();
  return p;
}

for (const mode of ['tcp', 'in-process', 'in-process-reader'] as const) {

  test(`${mode}: no fault: bytes pass both ways unchanged`, async () => {
    const p = await proxy(mode);
    const s = await open(p, mode);
    await roundTrip(s, 1 << 20);
    s.destroy();
    await p.close();
  });

  test(`${mode}: blackhole holds the stream (nothing lost) and it resumes after the heal`, async () => {
    const p = await proxy(mode);
    const s = await open(p, mode);
    p.apply(fault({ id: 'b', kind: 'blackhole' }));
    let got = 0;
    s.on(bytesEvent(s), (d: Buffer) => (got += d.length));
    s.write(Buffer.alloc(1000));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(got, 0, 'nothing crosses while the blackhole is on');
    await p.heal('b');
    const t0 = Date.now();
    while (got < 1000 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got, 1000, 'every byte arrives after the heal');
    s.destroy();
    await p.close();
  });

  test(`${mode}: one direction only: an "up" blackhole still lets data down`, async () => {
    const p = await proxy(mode);
    const s = await open(p, mode);
    p.apply(fault({ id: 'u', kind: 'blackhole', direction: 'down' }));
    let got = 0;
    s.on(bytesEvent(s), (d: Buffer) => (got += d.length));
    s.write(Buffer.alloc(100));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(got, 0, 'the echo is held on its way down');
    await p.heal('u');
    const t0 = Date.now();
    while (got < 100 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got, 100);
    s.destroy();
    await p.close();
  });

  test(`${mode}: reset: open connections get ECONNRESET, new ones too until the heal`, async () => {
    const p = await proxy(mode);
    const s = await open(p, mode);
    const err = new Promise<string>((resolve) => {
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? ''));
      s.once('close', () => setImmediate(() => resolve('closed')));
    });
    p.apply(fault({ id: 'r', kind: 'reset' }));
    // A Unix socket has no RST: the connection just closes (gRPC sees UNAVAILABLE either way).
    const reset = 'ECONNRESET';
    assert.equal(await err, reset);
    assert.equal(await failureOf(p, mode), reset, 'a new connection is reset too');
    await p.heal('r');
    const s3 = await open(p, mode);
    await roundTrip(s3, 100);
    s3.destroy();
    await p.close();
  });

  test(`${mode}: refuse: new connections are refused while open ones go on; the heal listens again`, async () => {
    const p = await proxy(mode);
    const opened = await open(p, mode);
    p.apply(fault({ id: 'x', kind: 'refuse' }));
    // While refused, a Unix socket's file is gone: ENOENT (gRPC reports both as UNAVAILABLE).
    assert.equal(await failureOf(p, mode), 'ECONNREFUSED');
    await roundTrip(opened, 100);
    await p.heal('x');
    const s = await open(p, mode);
    await roundTrip(s, 100);
    s.destroy();
    opened.destroy();
    await p.close();
  });

  // Faults that only add time are checked with lower bounds: a busy machine can only add more.
  test(`${mode}: delay adds at least the delay each way`, async () => {
    const p = await proxy(mode);
    const s = await open(p, mode);
    p.apply(fault({ id: 'd', kind: 'delay', delay: '150ms' }));
    assert.ok((await roundTrip(s, 10)) >= 290, 'two crossings of 150 ms');
    await p.heal('d');
    s.destroy();
    await p.close();
  });

  test(`${mode}: loss of 100% costs a retransmission timeout per crossing`, async () => {
    const p = await proxy(mode);
    const s = await open(p, mode);
    p.apply(fault({ id: 'l', kind: 'loss', loss: 100, direction: 'up' }));
    assert.ok((await roundTrip(s, 10)) >= 190);
    await p.heal('l');
    s.destroy();
    await p.close();
  });

  test(`${mode}: bandwidth caps the rate`, async () => {
    const p = await proxy(mode);
    const s = await open(p, mode);
    p.apply(fault({ id: 'w', kind: 'bandwidth', rate: '4mbit', direction: 'up' }));
    // 250 KB at 500 KB/s: at least half a second.
    assert.ok((await roundTrip(s, 250_000)) >= 450);
    await p.heal('w');
    s.destroy();
    await p.close();
  });
}

test('in-process: an idle worker end times out like a socket (a held link is noticed), and a refused upstream is ECONNREFUSED', async () => {
  const p = await proxy('in-process');
  const s = (await open(p, 'in-process')) as ReturnType<WorkerProxy['connect']>;
  await roundTrip(s, 100);
  p.apply(fault({ id: 'b', kind: 'blackhole' }));
  const t0 = performance.now();
  const timedOut = new Promise<number>((resolve) => s.setTimeout(200, () => resolve(performance.now() - t0)));
  s.write(Buffer.alloc(10));
  assert.ok((await timedOut) >= 190, 'no answer for the idle time');
  s.destroy();
  await p.close();
  // Nothing listens upstream: the worker sees the refusal itself, as without the proxy.
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const q = new WorkerProxy({ host: '127.0.0.1', port }, Math.random);
  assert.equal(await failureOf(q, 'in-process'), 'ECONNREFUSED');
  await q.close();
});

test('in-process backend: each targeted worker gets a route whose connections go through its proxy; others get none', async () => {
  const { ProxyBackend } = await import('../../src/netem/proxy/backend.js');
  const b = await ProxyBackend.start([3, 4], { host: '127.0.0.1', port: echoPort }, 1, 'in-process');
  const route = b.routeOf(3);
  assert.ok(route);
  assert.equal(b.routeOf(5), undefined);
  assert.equal(b.addressOf(3), undefined);
  const s: Duplex = route.connect((c) => s.emit('bytes', Buffer.from(c)));
  withReader.add(s);
  await roundTrip(s, 1000);
  s.destroy();
  await b.close();
});

test('in-process with a reader: no fault, reads arrive as views of the read buffer and writes skip the pipe; faults switching on and off mid-stream keep every byte in order', async () => {
  const p = await proxy('in-process');
  const shared = sharedRead(() => undefined).buffer.buffer;
  let views = 0;
  let copies = 0;
  const got: Buffer[] = [];
  const end = p.connect((c) => {
    if (c.buffer === shared) views++;
    else copies++;
    got.push(Buffer.from(c));
  });
  let crossedPipe = 0;
  const proxyEnd = (end as unknown as { other: Duplex }).other;
  proxyEnd.on('data', (c: Buffer) => (crossedPipe += c.length));
  const total = 24 << 20;
  const sent = Buffer.alloc(total);
  for (let i = 0; i < total; i += 4) sent.writeUInt32LE(i / 4, i);
  const arrived = () => got.reduce((n, c) => n + c.length, 0);
  // Write in 256 KiB pieces, each after the last is taken, while a delay fault goes on and
  // off every few pieces: the bytes switch between the direct path and the link's queue.
  for (let at = 0, i = 0; at < total; at += 256 << 10, i++) {
    if (i === 16) p.apply(fault({ id: 'd', kind: 'delay', delay: '5ms' }));
    if (i === 40) await p.heal('d');
    if (i === 60) p.apply(fault({ id: 'd2', kind: 'bandwidth', rate: '800mbit', direction: 'down' }));
    if (i === 72) await p.heal('d2');
    await new Promise<void>((r) => end.write(sent.subarray(at, at + (256 << 10)), () => r()));
  }
  const t0 = Date.now();
  while (arrived() < total && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 10));
  assert.equal(arrived(), total);
  assert.ok(Buffer.concat(got).equals(sent), 'every byte, in order, through every switch of path');
  assert.ok(views > 0, 'reads handed on as views while no fault was on');
  assert.ok(copies > 0, 'reads copied while a fault was on');
  assert.ok(crossedPipe > 0 && crossedPipe < total, `writes crossed the pipe only while a fault was on (${crossedPipe} of ${total} bytes)`);
  end.destroy();
  await p.close();
});

test('the in-memory pipe joins queued small writes (frame headers and 16 KiB pieces) into chunks of up to 256 KiB, in order, and passes large ones as they are', async () => {
  const { worker, proxy } = pipePair();
  const got: Buffer[] = [];
  proxy.on('data', (c: Buffer) => got.push(c));
  const sent: Buffer[] = [];
  worker.cork();
  for (let i = 0; i < 64; i++) {
    const head = Buffer.alloc(9, i);
    const piece = Buffer.alloc(16_384, 255 - i);
    sent.push(head, piece);
    worker.write(head);
    worker.write(piece);
  }
  const big = Buffer.alloc(512 * 1024, 7);
  sent.push(big);
  worker.write(big);
  worker.uncork();
  await new Promise<void>((r) => worker.write(Buffer.alloc(0), () => r()));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(Buffer.concat(got), Buffer.concat(sent));
  // 64 × (9 + 16,384) bytes is four 256 KiB runs and a bit; the large write goes whole.
  assert.ok(got.length <= 7, `${got.length} chunks`);
  assert.ok(got.some((c) => c === big));
  worker.destroy();
});
