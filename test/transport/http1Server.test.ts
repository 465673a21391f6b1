import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { type Exchange, Http1Server } from '../../src/transport/http1Server.js';
import { sharedReadServer } from '../../src/runtime/accept.js';

/** Sends `raw` on a fresh connection and collects everything until the server closes it (or `ms` pass). */
async function exchange(port: number, raw: string | string[], ms = 2000): Promise<string> {
  const s = net.connect({ host: '127.0.0.1', port });
  await once(s, 'connect');
  let out = '';
  s.on('data', (d: Buffer) => (out += d.toString('latin1')));
  s.on('error', () => {});
  const closed = once(s, 'close');
  for (const part of typeof raw === 'string' ? [raw] : raw) {
    if (s.destroyed) break;
    s.write(Buffer.from(part, 'latin1'));
    await new Promise((r) => setTimeout(r, 20));
  }
  await Promise.race([closed, new Promise((r) => setTimeout(r, ms))]);
  s.destroy();
  return out;
}

describe('Http1Server (the FL server HTTP/1.1) on raw sockets', () => {
  let server: Http1Server;
  let port = 0;
  const seen: Exchange[] = [];
  let malformed: number[] = [];
  /** Bodies the /sum route read, in order. */
  const sums: number[] = [];
  const aborted: string[] = [];
  let releaseWait: (() => void) | null = null;
  let goneCount = 0;

  before(async () => {
    server = new Http1Server({ keepAliveMs: 2000, headersTimeoutMs: 300 }, (ex) => {
      seen.push(ex);
      const path = ex.target.split('?')[0];
      if (path === '/sum') {
        // Reads the body as it streams: the sum of its bytes, mod 2^32.
        let sum = 0;
        let n = 0;
        ex.readBody(
          (c) => {
            for (const b of c) sum = (sum + b) >>> 0;
            n += c.length;
          },
          (err) => {
            if (err) {
              aborted.push(err.message);
              return;
            }
            sums.push(sum);
            ex.json(200, { sum, n });
          },
        );
      } else if (path === '/later') {
        // Reads the body only after a while (it is held meanwhile).
        setTimeout(() => ex.readWhole(1 << 20).then((b) => ex.send(200, {}, b)), 100);
      } else if (path === '/refuse') {
        ex.json(401, { error: 'no' }); // the body is never read: dropped before the next request
      } else if (path === '/wait') {
        ex.onGone(() => goneCount++);
        releaseWait = () => ex.send(200, {}, 'released');
      } else if (path === '/drop') {
        // A long poll lets its header fields go once it has read them.
        const before = ex.header('x-probe') ?? null;
        ex.dropHeaders();
        ex.json(200, { before, after: ex.header('x-probe') ?? null });
      } else if (path === '/empty') {
        ex.send(204, {});
      } else ex.json(404, { error: 'no route' });
    });
    server.onMalformed = (status) => malformed.push(status);
    port = (await server.listen('127.0.0.1', 0)).port;
  });

  after(async () => {
    await server.close();
  });

  test('node:http as a client: keep-alive, a body read as it streams, 204 and 404', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ask = (method: string, path: string, body?: Buffer) =>
      new Promise<{ status: number; text: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers: body ? { 'content-length': body.length } : {} }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }));
        });
        req.on('error', reject);
        req.end(body);
      });
    const big = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    const r1 = await ask('POST', '/sum', big);
    assert.equal(r1.status, 200);
    assert.deepEqual(JSON.parse(r1.text), { sum: (big.length * 7) >>> 0, n: big.length });
    const r2 = await ask('GET', '/empty');
    assert.equal(r2.status, 204);
    assert.equal(r2.text, '');
    const r3 = await ask('GET', '/nothing');
    assert.equal(r3.status, 404);
    const r4 = await ask('POST', '/later', Buffer.alloc(300_000, 1));
    assert.equal(r4.status, 200);
    assert.equal(r4.text.length, 300_000);
    // All four on one connection.
    const sockets = new Set(seen.slice(-4).map((e) => (e as unknown as { conn: unknown }).conn));
    assert.equal(sockets.size, 1);
    agent.destroy();
  });

  test('pipelined requests are answered in order; a refused body is dropped before the next', async () => {
    const out = await exchange(
      port,
      'POST /refuse HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello' + 'POST /sum HTTP/1.1\r\ncontent-length: 3\r\n\r\n\x01\x02\x03' + 'GET /empty HTTP/1.1\r\nconnection: close\r\n\r\n',
    );
    const statuses = [...out.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['401', '200', '204']);
    assert.match(out, /\{"sum":6,"n":3\}/);
    assert.match(out, /connection: close/);
  });

  test('a head split across reads, and Expect: 100-continue', async () => {
    const out = await exchange(port, ['POST /sum HT', 'TP/1.1\r\ncontent-le', 'ngth: 2\r\nexpect: 100-continue\r\n\r', '\n', '\x05\x06'], 500);
    assert.match(out, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
    assert.match(out, /\{"sum":11,"n":2\}/);
  });

  test("send's written callback waits until the kernel has the body: not while a client that does not read holds it back", async () => {
    const big = Buffer.alloc(64 << 20, 7); // more than loopback's socket buffers hold
    let written = 0;
    const own = new Http1Server({ keepAliveMs: 2000, headersTimeoutMs: 1000 }, (ex) => ex.send(200, {}, big, false, () => written++));
    const { port: p } = await own.listen('127.0.0.1', 0);
    const s = net.connect({ host: '127.0.0.1', port: p });
    await once(s, 'connect');
    try {
      s.pause();
      s.write('GET /big HTTP/1.1\r\n\r\n');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(written, 0, 'the body is still in the socket: not written yet');
      let got = 0;
      s.on('data', (d: Buffer) => (got += d.length));
      s.resume();
      while (got < big.length) await new Promise((r) => setTimeout(r, 20));
      assert.equal(written, 1, 'called once the bytes are out');
    } finally {
      s.destroy();
      await own.close();
    }
  });

  test('dropHeaders: the fields are gone from that request only; the next one on the connection has its own', async () => {
    const out = await exchange(port, 'GET /drop HTTP/1.1\r\nx-probe: one\r\n\r\nGET /drop HTTP/1.1\r\nx-probe: two\r\nconnection: close\r\n\r\n', 1000);
    assert.match(out, /\{"before":"one","after":null\}[\s\S]*\{"before":"two","after":null\}/);
  });

  test('malformed requests: 400, 411 (chunked), 431, 505, each closing the connection', async () => {
    malformed = [];
    const cases: Array<[string, string]> = [
      ['GARBAGE\r\n\r\n', '400'],
      ['GET / HTTP/1.1\r\n folded: x\r\n\r\n', '400'],
      ['POST /sum HTTP/1.1\r\ncontent-length: 12x\r\n\r\n', '400'],
      ['POST /sum HTTP/1.1\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n', '400'],
      ['POST /sum HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n', '411'],
      [`GET / HTTP/1.1\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`, '431'],
      [`GET / HTTP/1.1\r\n${Array.from({ length: 101 }, (_, i) => `h${i}: v`).join('\r\n')}\r\n\r\n`, '431'],
      ['GET / HTTP/2.0\r\n\r\n', '505'],
    ];
    for (const [raw, status] of cases) {
      const out = await exchange(port, raw);
      assert.match(out, new RegExp(`^HTTP/1\\.1 ${status} `), `${JSON.stringify(raw.slice(0, 40))} → ${out.slice(0, 60)}`);
      assert.match(out, /connection: close/);
      assert.match(out, /"error":"/);
    }
    assert.deepEqual(malformed, cases.map(([, s]) => Number(s)));
  });

  test('a client that goes away mid-body: the reader hears it; one gone from a held request: onGone', async () => {
    const s = net.connect({ host: '127.0.0.1', port });
    await once(s, 'connect');
    s.write('POST /sum HTTP/1.1\r\ncontent-length: 1000\r\n\r\n' + 'x'.repeat(400));
    await new Promise((r) => setTimeout(r, 50));
    s.destroy();
    for (let i = 0; i < 50 && aborted.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(aborted, ['request aborted after 400 of 1000 body bytes']);

    const w = net.connect({ host: '127.0.0.1', port });
    await once(w, 'connect');
    w.write('GET /wait HTTP/1.1\r\n\r\n');
    for (let i = 0; i < 50 && !releaseWait; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(releaseWait);
    w.destroy();
    for (let i = 0; i < 50 && goneCount === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(goneCount, 1);
  });

  test('HEAD gets the head alone; HTTP/1.0 keep-alive is said; empty lines before a request are skipped', async () => {
    const out = await exchange(port, 'HEAD /nothing HTTP/1.1\r\n\r\n' + '\r\nGET /empty HTTP/1.0\r\nconnection: keep-alive\r\n\r\n' + 'GET /empty HTTP/1.1\r\nconnection: close\r\n\r\n');
    const answers = out.split(/(?=HTTP\/1\.1 )/);
    assert.equal(answers.length, 3, out);
    assert.match(answers[0], /^HTTP\/1\.1 404 Not Found\r\n[^]*content-length: \d+\r\n\r\n$/, 'no body after a HEAD answer');
    assert.match(answers[1], /^HTTP\/1\.1 204 [^]*connection: keep-alive\r\n\r\n$/);
    assert.match(answers[2], /connection: close/);
  });

  test('a head that does not arrive whole in time is cut (slow loris)', async () => {
    const start = Date.now();
    const out = await exchange(port, ['GET /empty HTTP/1.1\r\n', ...Array.from({ length: 30 }, () => 'x-a: b\r\n')], 3000);
    assert.equal(out, '');
    assert.ok(Date.now() - start < 3000, 'the server closed the connection');
  });
});

test('Http1Server: a connection is still timed out when idle after a request that outlasted the timeout', async () => {
  let release: (() => void) | null = null;
  const server = new Http1Server({ keepAliveMs: 300, headersTimeoutMs: 5000 }, (ex) => {
    release = () => ex.send(200, {}, 'late');
  });
  const { port } = await server.listen('127.0.0.1', 0);
  try {
    const s = net.connect({ host: '127.0.0.1', port });
    await once(s, 'connect');
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString('latin1')));
    const closed = once(s, 'close');
    s.write('GET /slow HTTP/1.1\r\n\r\n');
    await new Promise((r) => setTimeout(r, 700)); // the idle timeout passes while the request is held
    assert.ok(release, 'the request reached the handler');
    (release as unknown as () => void)();
    s.write('GET /partial HTTP/1.1\r\n'); // then a head that never ends
    const cut = await Promise.race([closed.then(() => true), new Promise((r) => setTimeout(() => r(false), 3000))]);
    assert.equal(cut, true, 'the idle connection was closed');
    assert.match(out, /^HTTP\/1\.1 200 OK[^]*late$/);
  } finally {
    await server.close();
  }
});

test('sharedReadServer: accepted sockets read through the shared buffer; close() waits for them', async () => {
  const got: Buffer[] = [];
  let dataEvents = 0;
  const server = sharedReadServer((socket) => {
    socket.on('data', () => dataEvents++);
    socket.on('end', () => socket.end());
    return (c) => got.push(Buffer.from(c));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const c = net.connect({ host: '127.0.0.1', port });
  await once(c, 'connect');
  const payload = Buffer.alloc(1_000_000, 3);
  c.end(payload);
  await once(c, 'close');
  assert.equal(Buffer.concat(got).length, payload.length);
  assert.equal(dataEvents, 0, 'reads go to the reader, not to data events');
  // The connection counted, and gone: close() returns.
  let closed = false;
  server.close(() => (closed = true));
  for (let i = 0; i < 50 && !closed; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(closed);
});

test('Http1Server: a body read where readBody aims it: only the body\'s bytes, every aim landed once its read came, or once the client cut the connection', async () => {
  const room = Buffer.alloc(1 << 20);
  let filled = 0;
  let inPlace = 0;
  let aims = 0;
  let landed = 0;
  const ends: Array<Error | null> = [];
  const server = new Http1Server({ keepAliveMs: 5000, headersTimeoutMs: 5000 }, (ex) => {
    filled = 0;
    ex.readBody(
      (c) => {
        if (c.buffer === room.buffer && c.byteOffset === room.byteOffset + filled) inPlace += c.length;
        else c.copy(room, filled);
        filled += c.length;
      },
      (err) => {
        ends.push(err);
        if (!err) ex.send(200, {}, `got ${filled}`);
      },
      (max) => {
        aims++;
        let done = false;
        return {
          room: room.subarray(filled, filled + Math.min(max, 50_000)),
          landed: () => {
            assert.equal(done, false, 'landed once');
            done = true;
            landed++;
          },
        };
      },
    );
  });
  const { port } = await server.listen('127.0.0.1', 0);
  try {
    const body = Buffer.alloc(300_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) % 256;
    const s = net.connect({ host: '127.0.0.1', port });
    await once(s, 'connect');
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString('latin1')));
    // The head with the body's first bytes, the rest in parts with pauses, then a second request on the same connection.
    s.write(Buffer.concat([Buffer.from(`POST /up HTTP/1.1\r\ncontent-length: ${body.length}\r\n\r\n`), body.subarray(0, 1000)]));
    for (let at = 1000; at < body.length; at += 60_000) {
      await new Promise((r) => setTimeout(r, 20));
      s.write(body.subarray(at, Math.min(body.length, at + 60_000)));
    }
    for (let i = 0; i < 100 && !out.includes('got 300000'); i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(out, /got 300000$/);
    assert.ok(room.subarray(0, body.length).equals(body), 'the body whole and in order');
    assert.ok(aims >= 2 && inPlace > 0, `aims ${aims}, in place ${inPlace}`);
    assert.equal(landed, aims, 'every aim landed; none was out when the body ended');

    // A body cut off by the client: the aim out at the cut lands with the connection's close.
    const closed = once(s, 'close');
    s.write(Buffer.concat([Buffer.from(`POST /up HTTP/1.1\r\ncontent-length: ${body.length}\r\n\r\n`), body.subarray(0, 1000)]));
    for (let i = 0; i < 100 && aims === landed; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(aims > landed, 'a read is aimed at the second body');
    s.destroy();
    await closed;
    for (let i = 0; i < 100 && landed < aims; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(landed, aims);
    assert.match(String(ends[1]), /request aborted after 1000 of 300000 body bytes/);
  } finally {
    await server.close();
  }
});
