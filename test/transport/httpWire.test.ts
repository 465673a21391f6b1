import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import { TransportError } from '../../src/sim/ports.js';
import { HttpConnection, MAX_HEAD_BYTES, UPLOAD_PIECE, type BodySink } from '../../src/transport/httpWire.js';

// A raw TCP server that answers each request with the bytes the test scripts, in pieces
// (each a separate write, a few ms apart, so the client sees them split), and records what it
// was sent: what fedsim's HTTP/1.1 client must make of every form of answer.
type Script = { pieces: (Buffer | string)[]; thenClose?: boolean };
let scripts: Script[] = [];
const received: string[] = [];
let connections = 0;
let server: net.Server;
let port = 0;

before(async () => {
  server = net.createServer((socket) => {
    connections++;
    let buf = '';
    socket.on('error', () => undefined);
    socket.on('data', async (c) => {
      buf += c.toString('latin1');
      // One request = head + content-length bytes.
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const len = Number(/content-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        received.push(buf.slice(0, end + 4 + len));
        buf = buf.slice(end + 4 + len);
        const s = scripts.shift();
        if (!s) continue; // no answer: the client's timeout must end it
        for (const p of s.pieces) {
          socket.write(p);
          await new Promise((r) => setTimeout(r, 3));
        }
        if (s.thenClose) socket.end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});
after(() => server.close());

class Collect implements BodySink {
  parts: Buffer[] = [];
  push(c: Buffer): void {
    // A view of the socket's read buffer, valid only during this call (BodySink).
    this.parts.push(Buffer.from(c));
  }
  get text(): string {
    return Buffer.concat(this.parts).toString();
  }
}

function conn(timeoutMs = 2000): HttpConnection {
  return new HttpConnection({ host: '127.0.0.1', port, target: `http://127.0.0.1:${port}`, timeoutMs });
}

const get = (c: HttpConnection, path = '/x') => c.request('GET', path, {}, null, () => new Collect());

async function failure(p: Promise<unknown>): Promise<TransportError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TransportError, `a TransportError, not ${String(e)}`);
    return e;
  }
  assert.fail('expected the request to fail');
}

test('content-length bodies split anywhere, on one keep-alive connection; the request carries host, headers and body', async () => {
  scripts = [
    { pieces: ['HTTP/1.1 200 OK\r\nContent-Le', 'ngth: 11\r\nX-Thing: a\r\nx-thing: b\r\n\r', '\nhello', ' world'] },
    { pieces: ['HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n'] },
  ];
  received.length = 0;
  const before = connections;
  const c = conn();
  const r = await c.request('POST', '/v1/update?round=1', { 'content-type': 'application/octet-stream', 'x-sig': 'abc' }, Buffer.from('payload'), () => new Collect());
  assert.equal(r.status, 200);
  assert.equal(r.sink.text, 'hello world');
  assert.equal(r.headers['x-thing'], 'a, b');
  assert.equal(received[0], `POST /v1/update?round=1 HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/octet-stream\r\nx-sig: abc\r\ncontent-length: 7\r\n\r\npayload`);
  const r2 = await get(c);
  assert.equal(r2.status, 201);
  assert.equal(r2.sink.text, '');
  assert.equal(connections - before, 1, 'both requests on one connection');
  c.close();
});

test('chunked bodies (extensions, trailers), 1xx interim answers and 204s', async () => {
  scripts = [
    { pieces: ['HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel', 'lo\r\n6\r\n world\r', '\n0\r\nx-trailer: 1\r\n\r\n'] },
    { pieces: ['HTTP/1.1 204 No Content\r\n\r\n'] },
    { pieces: ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n'] },
  ];
  const c = conn();
  const r = await get(c);
  assert.equal(r.status, 200);
  assert.equal(r.sink.text, 'hello world');
  const r2 = await get(c);
  assert.equal(r2.status, 204);
  const r3 = await get(c);
  assert.equal(r3.sink.text, '');
  c.close();
});

test('a body until close, and Connection: close, end the connection; the next request opens another', async () => {
  scripts = [
    { pieces: ['HTTP/1.1 200 OK\r\n\r\nall of ', 'this'], thenClose: true },
    { pieces: ['HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok'] },
    { pieces: ['HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok'] },
    { pieces: ['HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nyes'] },
  ];
  const before = connections;
  const c = conn();
  assert.equal((await get(c)).sink.text, 'all of this');
  assert.equal((await get(c)).sink.text, 'ok');
  assert.equal((await get(c)).sink.text, 'ok');
  assert.equal((await get(c)).sink.text, 'yes');
  assert.equal(connections - before, 4);
  c.close();
});

test('requests wait their turn on the connection', async () => {
  scripts = ['a', 'b', 'c'].map((x) => ({ pieces: [`HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n${x}`] }));
  const c = conn();
  const got = await Promise.all([get(c, '/1'), get(c, '/2'), get(c, '/3')]);
  assert.deepEqual(got.map((r) => r.sink.text), ['a', 'b', 'c']);
  c.close();
});

test('failures: early close, truncated body, malformed answers, timeout, refused connection, close()', async () => {
  scripts = [{ pieces: [], thenClose: true }];
  let e = await failure(get(conn(), '/early'));
  assert.equal(e.kind, 'reset');
  assert.match(e.message, /\/early: the connection closed before an answer/);
  assert.equal(e.retryable, true);

  scripts = [{ pieces: ['HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc'], thenClose: true }];
  e = await failure(get(conn(), '/short'));
  assert.equal(e.kind, 'truncated');
  assert.match(e.message, /\/short: the connection closed after 3 bytes of the body/);

  for (const [answer, message] of [
    ['SSH-2.0-OpenSSH\r\n\r\n', /not an HTTP\/1\.x status line: "SSH-2\.0-OpenSSH"/],
    ['HTTP/1.1 200 OK\r\nno colon here\r\n\r\n', /a malformed header line "no colon here"/],
    ['HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\n', /a malformed content-length "1x"/],
    ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n', /a malformed chunk size "zz"/],
    ['HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nab', /bytes after the end of the response/],
    [`HTTP/1.1 200 OK\r\nx: ${'a'.repeat(MAX_HEAD_BYTES)}`, /a response head longer than 65536 bytes/],
  ] as const) {
    scripts = [{ pieces: [answer] }];
    e = await failure(get(conn()));
    assert.equal(e.kind, 'protocol');
    assert.match(e.message, message);
  }

  scripts = []; // no answer
  e = await failure(get(conn(150), '/slow'));
  assert.equal(e.kind, 'timeout');
  assert.match(e.message, /\/slow: no answer within 150 ms/);

  const closed = await new Promise<number>((r) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => r(p));
    });
  });
  e = await failure(new HttpConnection({ host: '127.0.0.1', port: closed, target: 'http://gone', timeoutMs: 1000 }).request('GET', '/', {}, null, () => new Collect()));
  assert.equal(e.kind, 'connect-refused');
  assert.equal(e.retryable, true);

  scripts = [];
  const c = conn();
  const inFlight = get(c);
  setTimeout(() => c.close(new TransportError('stopped', 'stopped', false)), 20);
  e = await failure(inFlight);
  assert.equal(e.kind, 'stopped');
  e = await failure(get(c));
  assert.equal(e.kind, 'stopped', 'a closed connection takes no more requests');
});

test('against node:http: large bodies both ways, and a 14 MB body in pieces', async () => {
  const big = Buffer.alloc(14_000_000, 7);
  const srv = http.createServer((req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      if (req.url === '/echo-size') {
        res.writeHead(200, { 'content-length': String(n).length });
        res.end(String(n));
      } else {
        res.writeHead(200, { 'content-length': big.length });
        res.end(big);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const p = (srv.address() as net.AddressInfo).port;
  const c = new HttpConnection({ host: '127.0.0.1', port: p, target: 'x', timeoutMs: 5000 });
  const up = await c.request('POST', '/echo-size', {}, Buffer.alloc(3_000_000, 1), () => new Collect());
  assert.equal(up.sink.text, '3000000');
  const down = await c.request('GET', '/model', {}, null, () => new Collect());
  assert.ok(down.sink.parts.length > 1, 'the body arrived in pieces');
  assert.ok(Buffer.concat(down.sink.parts).equals(big));
  c.close();
  srv.close();
});

test('a slow upload that keeps going is not a timeout; an answer before the body is all out ends the connection', async () => {
  // A link that takes 60 ms per MiB written (a bandwidth fault): 8 pieces take ~480 ms, the timeout is 150 ms.
  const opened: Duplex[] = [];
  // An OpenConnection: what it reads goes to the reader the client passes.
  const slowServer = (early: boolean) => (reader: (chunk: Buffer) => void) => {
    let got = 0;
    let head = -1;
    const d: Duplex = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        got += chunk.length;
        if (head < 0) {
          const i = chunk.indexOf('\r\n\r\n');
          if (i >= 0) head = i + 4;
        }
        const total = head + 8 * UPLOAD_PIECE;
        if (early && got >= head && head > 0) {
          // Answers at once, keep-alive, before reading the body.
          if (!(d as unknown as { answered?: boolean }).answered) d.push('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly');
          (d as unknown as { answered?: boolean }).answered = true;
        }
        setTimeout(() => {
          if (!early && got === total) d.push('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone');
          cb();
        }, 60 * Math.max(1, Math.round(chunk.length / UPLOAD_PIECE)));
      },
    });
    d.on('data', reader);
    opened.push(d);
    return d;
  };
  const body = Buffer.alloc(8 * UPLOAD_PIECE, 3);
  const slow = new HttpConnection({ host: 'h', port: 1, target: 'slow', timeoutMs: 150, connect: slowServer(false) });
  const r = await slow.request('POST', '/up', {}, body, () => new Collect());
  assert.equal(r.sink.text, 'done');
  slow.close();

  const early = new HttpConnection({ host: 'h', port: 1, target: 'early', timeoutMs: 5000, connect: slowServer(true) });
  const before = opened.length;
  assert.equal((await early.request('POST', '/up', {}, body, () => new Collect())).sink.text, 'early');
  assert.ok(opened[before].destroyed, 'the connection with half a body in it is not reused');
  early.close();
});
