import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
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

async function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

function roundTrip(s: net.Socket, bytes: number): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    let got = 0;
    const onData = (d: Buffer) => {
      got += d.length;
      if (got >= bytes) {
        s.off('data', onData);
        resolve(performance.now() - t0);
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(Buffer.alloc(bytes, 7));
  });
}

async function proxy(): Promise<WorkerProxy> {
  const p = new WorkerProxy({ host: '127.0.0.1', port: echoPort }, Math.random);
  await p.listen();
  return p;
}

test('no fault: bytes pass both ways unchanged', async () => {
  const p = await proxy();
  const s = await connect(p.address.port);
  await roundTrip(s, 1 << 20);
  s.destroy();
  await p.close();
});

test('blackhole holds the stream (nothing lost) and it resumes after the heal', async () => {
  const p = await proxy();
  const s = await connect(p.address.port);
  p.apply(fault({ id: 'b', kind: 'blackhole' }));
  let got = 0;
  s.on('data', (d) => (got += d.length));
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

test('one direction only: an "up" blackhole still lets data down', async () => {
  const p = await proxy();
  const s = await connect(p.address.port);
  p.apply(fault({ id: 'u', kind: 'blackhole', direction: 'down' }));
  let got = 0;
  s.on('data', (d) => (got += d.length));
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

test('reset: open connections get ECONNRESET, new ones too until the heal', async () => {
  const p = await proxy();
  const s = await connect(p.address.port);
  const err = new Promise<string>((resolve) => s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? '')));
  p.apply(fault({ id: 'r', kind: 'reset' }));
  assert.equal(await err, 'ECONNRESET');
  const s2 = net.connect({ host: '127.0.0.1', port: p.address.port });
  assert.equal(await new Promise<string>((resolve) => s2.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? ''))), 'ECONNRESET');
  await p.heal('r');
  const s3 = await connect(p.address.port);
  await roundTrip(s3, 100);
  s3.destroy();
  await p.close();
});

test('refuse: new connections are refused while open ones go on; the heal listens again', async () => {
  const p = await proxy();
  const open = await connect(p.address.port);
  p.apply(fault({ id: 'x', kind: 'refuse' }));
  await assert.rejects(connect(p.address.port), /ECONNREFUSED/);
  await roundTrip(open, 100);
  await p.heal('x');
  const s = await connect(p.address.port);
  await roundTrip(s, 100);
  s.destroy();
  open.destroy();
  await p.close();
});

// Faults that only add time are checked with lower bounds: a busy machine can only add more.
test('delay adds at least the delay each way', async () => {
  const p = await proxy();
  const s = await connect(p.address.port);
  p.apply(fault({ id: 'd', kind: 'delay', delay: '150ms' }));
  assert.ok((await roundTrip(s, 10)) >= 290, 'two crossings of 150 ms');
  await p.heal('d');
  s.destroy();
  await p.close();
});

test('loss of 100% costs a retransmission timeout per crossing', async () => {
  const p = await proxy();
  const s = await connect(p.address.port);
  p.apply(fault({ id: 'l', kind: 'loss', loss: 100, direction: 'up' }));
  assert.ok((await roundTrip(s, 10)) >= 190);
  await p.heal('l');
  s.destroy();
  await p.close();
});

test('bandwidth caps the rate', async () => {
  const p = await proxy();
  const s = await connect(p.address.port);
  p.apply(fault({ id: 'w', kind: 'bandwidth', rate: '4mbit', direction: 'up' }));
  // 250 KB at 500 KB/s: at least half a second.
  assert.ok((await roundTrip(s, 250_000)) >= 450);
  await p.heal('w');
  s.destroy();
  await p.close();
});
