import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { HpackDecoder, type HeaderList, encodeIndexed, encodeLiterals } from '../../src/transport/hpack.js';
import { Http2Session, type Http2Stream, type StreamHandler } from '../../src/transport/http2Session.js';

// fedsim's HTTP/2 client session against a peer that writes every frame by hand: the forms
// node's server never sends (padding, priority, CONTINUATION, GOAWAY mid-call, broken frames).

interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

const DATA = 0;
const HEADERS = 1;
const RST_STREAM = 3;
const SETTINGS = 4;
const PUSH_PROMISE = 5;
const PING = 6;
const GOAWAY = 7;
const WINDOW_UPDATE = 8;
const CONTINUATION = 9;

/** One connection as the server side sees it: the client's frames, and a way to send ours. */
class Peer {
  frames: Frame[] = [];
  private waiters: (() => void)[] = [];
  private buf = Buffer.alloc(0);
  private prefaceSeen = false;
  ended = false;

  constructor(
    readonly socket: net.Socket,
    expectPreface = true,
  ) {
    this.prefaceSeen = !expectPreface;
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      if (!this.prefaceSeen) {
        if (this.buf.length < 24) return;
        assert.equal(this.buf.subarray(0, 24).toString('latin1'), 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
        this.buf = this.buf.subarray(24);
        this.prefaceSeen = true;
      }
      while (this.buf.length >= 9) {
        const len = this.buf.readUIntBE(0, 3);
        if (this.buf.length < 9 + len) break;
        this.frames.push({ type: this.buf[3], flags: this.buf[4], stream: this.buf.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(this.buf.subarray(9, 9 + len)) });
        this.buf = this.buf.subarray(9 + len);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('end', () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => undefined);
  }

  /** Waits for (and takes) the first frame that matches. */
  async take(pred: (f: Frame) => boolean, what: string): Promise<Frame> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`no ${what} came; frames: ${JSON.stringify(this.frames.map((f) => [f.type, f.flags, f.stream, f.payload.length]))}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  send(type: number, flags: number, stream: number, payload: Buffer | number[] = []): void {
    const p = Buffer.from(payload);
    const h = Buffer.alloc(9);
    h.writeUIntBE(p.length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(stream, 5);
    this.socket.write(Buffer.concat([h, p]));
  }

  /** Sends a frame header only, claiming `length` (for a frame that is too large). */
  sendHeaderOnly(type: number, length: number, stream: number): void {
    const h = Buffer.alloc(9);
    h.writeUIntBE(length, 0, 3);
    h[3] = type;
    h.writeUInt32BE(stream, 5);
    this.socket.write(h);
  }
}

async function pair(streamWindow = 65_536): Promise<{ peer: Peer; session: Http2Session; closed: Promise<void>; server: net.Server }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  let onClosed!: () => void;
  const closed = new Promise<void>((r) => (onClosed = r));
  const session = new Http2Session(net.connect({ host: '127.0.0.1', port }), { role: 'client', streamWindow, connectionWindow: 4 * 1024 * 1024, onClosed: () => onClosed() });
  const peer = new Peer(await accepted);
  peer.send(SETTINGS, 0, 0);
  return { peer, session, closed, server };
}

/** A handler that records what the stream heard. */
function recorder(): { h: StreamHandler; events: string[]; headers: HeaderList[]; data: Buffer[] } {
  const events: string[] = [];
  const headers: HeaderList[] = [];
  const data: Buffer[] = [];
  return {
    events,
    headers,
    data,
    h: {
      headers: (f, end) => {
        headers.push(f);
        events.push(end ? 'headers+end' : 'headers');
      },
      data: (c) => {
        data.push(Buffer.from(c));
        events.push('data');
      },
      end: () => events.push('end'),
      reset: (code) => events.push(`reset ${code}`),
      died: (reason) => events.push(`died ${reason}`),
    },
  };
}

function requestBlock(path: string): Buffer {
  const out: number[] = [];
  encodeIndexed(out, 3);
  encodeIndexed(out, 6);
  encodeLiterals(out, [
    [':authority', 'peer'],
    [':path', path],
  ]);
  return Buffer.from(out);
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

test('the preface and SETTINGS go out first; the server\'s SETTINGS and PING are acknowledged', async () => {
  const { peer, session, server } = await pair(123_456);
  const settings = await peer.take((f) => f.type === SETTINGS && f.flags === 0, 'SETTINGS');
  const entries = new Map<number, number>();
  for (let i = 0; i < settings.payload.length; i += 6) entries.set(settings.payload.readUInt16BE(i), settings.payload.readUInt32BE(i + 2));
  assert.equal(entries.get(2), 0, 'push disabled');
  assert.equal(entries.get(4), 123_456, 'the stream window');
  const wu = await peer.take((f) => f.type === WINDOW_UPDATE && f.stream === 0, 'a connection WINDOW_UPDATE');
  assert.ok(wu.payload.readUInt32BE(0) > 1024 * 1024, 'the connection window is raised above the default');
  await peer.take((f) => f.type === SETTINGS && f.flags === 1, 'SETTINGS ACK');
  peer.send(PING, 0, 0, Buffer.from('12345678'));
  const pong = await peer.take((f) => f.type === PING, 'PING ACK');
  assert.equal(pong.flags, 1);
  assert.equal(pong.payload.toString(), '12345678');
  let acked = false;
  assert.ok(session.ping(() => (acked = true)));
  const ping = await peer.take((f) => f.type === PING && f.flags === 0, 'our PING');
  peer.send(PING, 1, 0, ping.payload);
  await peer.take(() => false, 'nothing').catch(() => undefined);
  assert.ok(acked);
  session.destroy('done');
  server.close();
});

test('padded and prioritised HEADERS continued by CONTINUATION, padded DATA, trailers: heard in order, with the dynamic table kept across blocks', async () => {
  const { peer, session, server } = await pair();
  const r = recorder();
  const stream = session.request(requestBlock('/a'), r.h, true);
  const req = await peer.take((f) => f.type === HEADERS, 'the request HEADERS');
  assert.equal(req.stream, 1);
  assert.equal(req.flags, 0x4 | 0x1, 'END_HEADERS and END_STREAM');
  assert.deepEqual(new HpackDecoder().decode(req.payload), [
    [':method', 'POST'],
    [':scheme', 'http'],
    [':authority', 'peer'],
    [':path', '/a'],
  ]);
  // :status 200, then "x-k: v1" with incremental indexing, split across two frames.
  const block = Buffer.from([0x88, 0x40, 0x03, ...Buffer.from('x-k'), 0x02, ...Buffer.from('v1')]);
  const pad = 4;
  peer.send(HEADERS, 0x8 | 0x20, 1, Buffer.concat([Buffer.from([pad]), Buffer.alloc(5), block.subarray(0, 3), Buffer.alloc(pad)]));
  peer.send(CONTINUATION, 0x4, 1, block.subarray(3));
  peer.send(DATA, 0x8, 1, Buffer.concat([Buffer.from([3]), Buffer.from('hello'), Buffer.alloc(3)]));
  peer.send(DATA, 0, 1, Buffer.from(' world'));
  // Trailers: index 62 is the entry the first block added.
  peer.send(HEADERS, 0x4 | 0x1, 1, Buffer.from([0x80 | 62]));
  await peer.take(() => false, 'nothing').catch(() => undefined);
  assert.deepEqual(r.events, ['headers', 'data', 'data', 'headers+end']);
  assert.deepEqual(r.headers, [
    [
      [':status', '200'],
      ['x-k', 'v1'],
    ],
    [['x-k', 'v1']],
  ]);
  assert.equal(Buffer.concat(r.data).toString(), 'hello world');
  assert.equal(session.streamCount, 0, 'over both ways, the stream is forgotten');
  assert.equal(stream.id, 1);
  session.destroy('done');
  server.close();
});

test('flow control: the client sends what the server\'s windows allow and goes on after WINDOW_UPDATE; it gives back its own window', async () => {
  const { peer, session, server } = await pair(65_536);
  peer.send(SETTINGS, 0, 0, Buffer.from([0, 4, 0, 0, 0, 10])); // INITIAL_WINDOW_SIZE 10
  await peer.take((f) => f.type === SETTINGS && f.flags === 1, 'SETTINGS ACK');
  const r = recorder();
  const stream = session.request(requestBlock('/up'), r.h);
  assert.equal(stream.write(Buffer.from('abcdefghijklmnopqrstuvwxy')), false, 'more than the window: wait for drain');
  let drained = false;
  stream.onDrain(() => (drained = true));
  stream.end();
  const first = await peer.take((f) => f.type === DATA, 'the first DATA');
  assert.equal(first.payload.toString(), 'abcdefghij');
  await peer.take(() => false, 'nothing').catch(() => undefined);
  assert.equal(peer.frames.filter((f) => f.type === DATA).length, 0, 'nothing beyond the window');
  assert.equal(drained, false);
  peer.send(WINDOW_UPDATE, 0, 1, u32(10));
  assert.equal((await peer.take((f) => f.type === DATA, 'the second DATA')).payload.toString(), 'klmnopqrst');
  peer.send(WINDOW_UPDATE, 0, 1, u32(100));
  const last = await peer.take((f) => f.type === DATA, 'the last DATA');
  assert.equal(last.payload.toString(), 'uvwxy');
  assert.equal(last.flags, 1, 'END_STREAM on the last piece');
  assert.ok(drained);
  // The answer: a quarter of the 64 KiB window is given back as soon as it was read, in the
  // middle of a frame (half of a 40,000-byte frame arrives; the rest waits for the update).
  peer.send(HEADERS, 0x4, 1, Buffer.from([0x88]));
  const head = Buffer.alloc(9);
  head.writeUIntBE(40_000, 0, 3);
  head[3] = DATA;
  head.writeUInt32BE(1, 5);
  peer.socket.write(Buffer.concat([head, Buffer.alloc(20_000)]));
  const wu = await peer.take((f) => f.type === WINDOW_UPDATE && f.stream === 1, 'the stream WINDOW_UPDATE');
  assert.ok(wu.payload.readUInt32BE(0) >= 16_384 && wu.payload.readUInt32BE(0) <= 20_000, `${wu.payload.readUInt32BE(0)}`);
  peer.socket.write(Buffer.alloc(20_000));
  await peer.take(() => false, 'nothing').catch(() => undefined);
  assert.equal(r.data.reduce((n, c) => n + c.length, 0), 40_000);
  peer.send(RST_STREAM, 0, 1, u32(8));
  await peer.take(() => false, 'nothing').catch(() => undefined);
  assert.equal(r.events.at(-1), 'reset 8');
  session.destroy('done');
  server.close();
});

test('GOAWAY: a stream above the last id fails with the code, the one below runs to its end, then the connection closes', async () => {
  const { peer, session, closed, server } = await pair();
  const a = recorder();
  const b = recorder();
  session.request(requestBlock('/a'), a.h, true);
  session.request(requestBlock('/b'), b.h, true);
  await peer.take((f) => f.type === HEADERS && f.stream === 3, 'both requests');
  peer.send(GOAWAY, 0, 0, Buffer.concat([u32(1), u32(0)]));
  await peer.take(() => false, 'nothing').catch(() => undefined);
  assert.deepEqual(b.events, ['died the server closed the connection (GOAWAY code 0)']);
  assert.equal(session.usable, false, 'no new streams after GOAWAY');
  assert.deepEqual(a.events, []);
  peer.send(HEADERS, 0x4 | 0x1, 1, Buffer.from([0x88]));
  await closed;
  assert.deepEqual(a.events, ['headers+end']);
  await peer.take(() => peer.ended, 'the connection to end').catch(() => undefined);
  assert.ok(peer.ended);
  server.close();
});

for (const [name, send, code] of [
  ['a frame over 1 MiB', (p: Peer) => p.sendHeaderOnly(DATA, 2 * 1024 * 1024, 1), 6],
  ['a HEADERS frame over 64 KiB', (p: Peer) => p.sendHeaderOnly(HEADERS, 100_000, 1), 11],
  ['more DATA than the stream window', (p: Peer) => (p.send(HEADERS, 0x4, 1, Buffer.from([0x88])), p.send(DATA, 0, 1, Buffer.alloc(100_000))), 3],
  ['DATA on a stream never opened', (p: Peer) => p.send(DATA, 0, 7, Buffer.from('x')), 1],
  ['PUSH_PROMISE', (p: Peer) => p.send(PUSH_PROMISE, 0x4, 1, Buffer.from([0, 0, 0, 2, 0x88])), 1],
  ['a header block that does not decode', (p: Peer) => p.send(HEADERS, 0x4, 1, Buffer.from([0x80])), 9],
  ['a header block interrupted', (p: Peer) => (p.send(HEADERS, 0, 1, Buffer.from([0x88])), p.send(DATA, 0, 1, Buffer.from('x'))), 1],
] as const) {
  test(`a protocol error (${name}) ends the connection with GOAWAY and its code, and the stream hears why`, async () => {
    const { peer, session, closed, server } = await pair();
    const r = recorder();
    session.request(requestBlock('/a'), r.h, true);
    await peer.take((f) => f.type === HEADERS, 'the request');
    send(peer);
    const goaway = await peer.take((f) => f.type === GOAWAY, 'GOAWAY');
    assert.equal(goaway.payload.readUInt32BE(4), code);
    await closed;
    const died = r.events.filter((e) => e.startsWith('died'));
    assert.equal(died.length, 1);
    assert.equal(r.events.at(-1), died[0]);
    assert.match(died[0], /^died connection dropped: the server broke HTTP\/2: /);
    assert.equal(session.usable, false);
    server.close();
  });
}

// ---- the server side ----

/** A server session on a real socket, and a hand-written client (preface sent) talking to it. */
async function serverPair(
  onStream: (stream: Http2Stream, fields: HeaderList, end: boolean) => void,
  preface = true,
  readStopMaxMs?: number,
): Promise<{ peer: Peer; session: () => Http2Session; closed: Promise<void>; server: net.Server; accepted: () => net.Socket }> {
  let session!: Http2Session;
  let accepted!: net.Socket;
  let onClosed!: () => void;
  const closed = new Promise<void>((r) => (onClosed = r));
  const server = net.createServer((socket) => {
    accepted = socket;
    session = new Http2Session(socket, { role: 'server', streamWindow: 65_535, connectionWindow: 1024 * 1024, onStream, onClosed: () => onClosed(), readStopMaxMs });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise((r) => socket.once('connect', r));
  const peer = new Peer(socket, false);
  if (preface) socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  return { peer, session: () => session, closed, server, accepted: () => accepted };
}

test('server: a connection that does not open with the preface (an HTTP/1.1 request) gets GOAWAY PROTOCOL_ERROR and is closed', async () => {
  const { peer, closed, server } = await serverPair(() => assert.fail('no stream'), false);
  peer.socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  await closed;
  const settings = await peer.take((f) => f.type === SETTINGS, 'the server SETTINGS');
  assert.equal(settings.payload.length % 6, 0);
  for (let i = 0; i < settings.payload.length; i += 6) assert.notEqual(settings.payload.readUInt16BE(i), 2, 'a server sends no ENABLE_PUSH');
  const goaway = await peer.take((f) => f.type === GOAWAY, 'GOAWAY');
  assert.equal(goaway.payload.readUInt32BE(4), 1);
  server.close();
});

test('server: a paused stream holds its DATA and window until resumed; trailers follow the queued DATA; an early answer resets the rest (NO_ERROR)', async () => {
  const streams: { stream: Http2Stream; fields: HeaderList; got: Buffer[]; ended: boolean }[] = [];
  const { peer, session, server } = await serverPair((stream, fields) => {
    const rec = { stream, fields, got: [] as Buffer[], ended: false };
    streams.push(rec);
    stream.pause();
    stream.handler = { headers: () => {}, data: (c) => rec.got.push(Buffer.from(c)), end: () => (rec.ended = true), reset: () => {}, died: () => {} };
  });
  peer.send(HEADERS, 0x4, 1, requestBlock('/up'));
  // 48 KiB in three frames, more than half the 64 KiB window.
  for (let i = 0; i < 3; i++) peer.send(DATA, i === 2 ? 1 : 0, 1, Buffer.alloc(16_384, i + 1));
  await peer.take(() => false, 'nothing').catch(() => undefined);
  const a = streams[0];
  assert.deepEqual(a.fields.find(([n]) => n === ':path'), [':path', '/up']);
  assert.equal(a.got.length, 0, 'held while paused');
  assert.equal(peer.frames.filter((f) => f.type === WINDOW_UPDATE && f.stream === 1).length, 0, 'no window given back while paused');
  a.stream.resume();
  assert.equal(Buffer.concat(a.got).length, 49_152);
  assert.ok(a.ended);
  // The client ended the stream, so its window is not given back (nothing more may come).
  const respond = Buffer.from([0x88]);
  a.stream.respond(respond);
  // (What write returns, wait for 'drain' or not, depends on the socket's highWaterMark:
  // 16 KiB on Node 20, 64 KiB from Node 22.)
  a.stream.write(Buffer.alloc(40_000, 9));
  a.stream.endWithTrailers(Buffer.from([0x00, 0x0b, ...Buffer.from('grpc-status'), 0x01, 0x30]));
  const headers = await peer.take((f) => f.type === HEADERS && f.stream === 1, 'the response HEADERS');
  assert.equal(headers.flags, 0x4);
  let data = 0;
  while (data < 40_000) data += (await peer.take((f) => f.type === DATA && f.stream === 1, 'DATA')).payload.length;
  const trailers = await peer.take((f) => f.type === HEADERS && f.stream === 1, 'the trailers');
  assert.equal(trailers.flags, 0x4 | 0x1);
  assert.deepEqual(new HpackDecoder().decode(trailers.payload), [['grpc-status', '0']]);
  assert.equal(session().streamCount, 0);

  // An answer before the request is all in: trailers-only, then RST_STREAM NO_ERROR.
  peer.send(HEADERS, 0x4, 3, requestBlock('/early'));
  peer.send(DATA, 0, 3, Buffer.alloc(100));
  await peer.take(() => false, 'nothing').catch(() => undefined);
  const b = streams[1];
  b.stream.respond(Buffer.from([0x88, 0x00, 0x0b, ...Buffer.from('grpc-status'), 0x01, 0x38]), true);
  const only = await peer.take((f) => f.type === HEADERS && f.stream === 3, 'the trailers-only answer');
  assert.equal(only.flags, 0x4 | 0x1);
  const rst = await peer.take((f) => f.type === RST_STREAM && f.stream === 3, 'RST_STREAM');
  assert.equal(rst.payload.readUInt32BE(0), 0);
  session().destroy('done');
  server.close();
});

test('server: whenWritten runs once a stream has left its session and its bytes are written: after its trailers, or when the session dies with its DATA still queued', async () => {
  const streams: Http2Stream[] = [];
  const { peer, session, server } = await serverPair((stream) => {
    streams.push(stream);
    stream.handler = { headers: () => {}, data: () => {}, end: () => {}, reset: () => {}, died: () => {} };
  });
  const done: string[] = [];
  // Stream 1 (the request ended with its HEADERS): answered, 40 KB, trailers.
  peer.send(HEADERS, 0x5, 1, requestBlock('/pull'));
  // Stream 3: its answer is more than the client's 64 KiB window, so most of it stays queued.
  peer.send(HEADERS, 0x4, 3, requestBlock('/pull'));
  await peer.take(() => false, 'nothing').catch(() => undefined);
  const [a, b] = streams;
  a.respond(Buffer.from([0x88]));
  a.write(Buffer.alloc(40_000, 1));
  a.whenWritten(() => done.push('a'));
  assert.equal(done.length, 0, 'not while the stream is open');
  a.endWithTrailers(Buffer.from([0x00, 0x0b, ...Buffer.from('grpc-status'), 0x01, 0x30]));
  await peer.take((f) => f.type === HEADERS && f.stream === 1 && (f.flags & 0x1) === 1, 'the trailers');
  for (let i = 0; i < 20 && done.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(done, ['a'], 'after the trailers, once the socket took them');
  a.whenWritten(() => done.push('a again'));
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(done, ['a', 'a again'], 'a stream that has left: at once (once the writes before are out)');
  b.respond(Buffer.from([0x88]));
  b.write(Buffer.alloc(200_000, 2));
  b.whenWritten(() => done.push('b'));
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(done, ['a', 'a again'], 'held by flow control: the stream is still in the session');
  session().destroy('the test is over');
  for (let i = 0; i < 20 && done.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(done, ['a', 'a again', 'b'], 'the session died: its streams left');
  server.close();
});

test("server: a stream the client's GOAWAY drops, its DATA still queued, leaves its session too (whenWritten runs)", async () => {
  const streams: Http2Stream[] = [];
  const { peer, server } = await serverPair((stream) => {
    streams.push(stream);
    stream.handler = { headers: () => {}, data: () => {}, end: () => {}, reset: () => {}, died: () => {} };
  });
  peer.send(HEADERS, 0x4, 1, requestBlock('/pull'));
  await peer.take(() => false, 'nothing').catch(() => undefined);
  let done = 0;
  streams[0].respond(Buffer.from([0x88]));
  streams[0].write(Buffer.alloc(200_000, 3));
  streams[0].whenWritten(() => done++);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(done, 0);
  peer.send(GOAWAY, 0, 0, Buffer.alloc(8)); // last stream 0: the client drops stream 1
  for (let i = 0; i < 50 && done === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(done, 1);
  server.close();
});

test('server: shutdown sends GOAWAY naming the last stream, refuses new ones, and closes when the last one ends', async () => {
  const streams: Http2Stream[] = [];
  const { peer, session, closed, server } = await serverPair((stream) => {
    streams.push(stream);
  });
  peer.send(SETTINGS, 0, 0);
  peer.send(HEADERS, 0x4 | 0x1, 1, requestBlock('/a'));
  await peer.take((f) => f.type === SETTINGS && f.flags === 1, 'SETTINGS ACK');
  await peer.take(() => false, 'nothing').catch(() => undefined);
  session().shutdown();
  const goaway = await peer.take((f) => f.type === GOAWAY, 'GOAWAY');
  assert.equal(goaway.payload.readUInt32BE(0), 1);
  peer.send(HEADERS, 0x4 | 0x1, 3, requestBlock('/b'));
  const refused = await peer.take((f) => f.type === RST_STREAM && f.stream === 3, 'REFUSED_STREAM');
  assert.equal(refused.payload.readUInt32BE(0), 7);
  assert.equal(streams.length, 1);
  streams[0].respond(Buffer.from([0x88]), true);
  await closed;
  await peer.take(() => peer.ended, 'the connection to end').catch(() => undefined);
  assert.ok(peer.ended);
  server.close();
});

test("server: a paused stream's holdLimit stops the socket's reads (the rest waits in the kernel) until the stream resumes, is reset, or readStopMaxMs passes", async () => {
  const streams: { stream: Http2Stream; got: Buffer[]; ended: boolean }[] = [];
  // 3 s: the checks below, 150 ms apart, see the reads stopped however slow this machine is.
  const { peer, server, accepted, session } = await serverPair((stream) => {
    const rec = { stream, got: [] as Buffer[], ended: false };
    streams.push(rec);
    stream.pause();
    stream.holdLimit = 100 * 1024;
    stream.growWindow(1024 * 1024);
    stream.handler = { headers: () => {}, data: (c) => rec.got.push(Buffer.from(c)), end: () => (rec.ended = true), reset: () => {}, died: () => {} };
  }, true, 3000);
  /** 600 KiB in 16 KiB frames, each byte naming its frame, then END_STREAM. */
  const upload = (id: number) => {
    peer.send(HEADERS, 0x4, id, requestBlock('/up'));
    for (let i = 0; i < 40; i++) peer.send(DATA, i === 39 ? 1 : 0, id, Buffer.alloc(15_360, i));
  };
  const settle = () => new Promise((r) => setTimeout(r, 150));
  const pong = (data: string) => peer.take((f) => f.type === PING && (f.flags & 1) === 1 && f.payload.toString() === data, `the PING ACK ${data}`);
  const check = (rec: { got: Buffer[]; ended: boolean }) => {
    const all = Buffer.concat(rec.got);
    assert.equal(all.length, 40 * 15_360);
    for (let i = 0; i < 40; i++) assert.equal(all[i * 15_360], i, `frame ${i} in its place`);
    assert.ok(rec.ended);
  };

  try {
    // 1. Resumed: everything comes, in order, and the socket is read again.
    upload(1);
    await peer.take((f) => f.type === WINDOW_UPDATE && f.stream === 1, 'the grown window');
    await settle();
    assert.equal(accepted().isPaused(), true, 'the socket is not read once the stream holds its limit');
    peer.send(PING, 0, 0, Buffer.from('ping-one'));
    await settle();
    assert.equal(streams[0].got.length, 0, 'held while paused');
    streams[0].stream.resume();
    assert.equal(accepted().isPaused(), false);
    await pong('ping-one');
    await until('stream 1 has all of it', () => streams[0].ended);
    check(streams[0]);

    // 2. Reset by this side while the reads are stopped: they start again.
    upload(3);
    await settle();
    assert.equal(accepted().isPaused(), true);
    streams[1].stream.cancel(8);
    assert.equal(accepted().isPaused(), false, 'a stream that leaves lets the reads go on');
    await peer.take((f) => f.type === RST_STREAM && f.stream === 3, 'RST_STREAM');

    // 3. Never resumed: the reads start again after readStopMaxMs regardless (a PING is
    // answered), and the stream goes on holding what its window lets come.
    upload(5);
    await settle();
    assert.equal(accepted().isPaused(), true);
    peer.send(PING, 0, 0, Buffer.from('ping-two'));
    await pong('ping-two');
    assert.equal(accepted().isPaused(), false);
    await settle();
    assert.equal(accepted().isPaused(), false, 'not stopped again for the same stream');
    assert.equal(streams[2].got.length, 0, 'still held: the stream is paused');
    streams[2].stream.resume();
    await until('stream 5 has all of it', () => streams[2].ended);
    check(streams[2]);
    assert.equal(session().readStops, 3);
  } finally {
    server.close();
    accepted().destroy();
  }
});

async function until(what: string, ok: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > 5000) assert.fail(`not within 5 s: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('server: DATA read straight where the stream aims it (readTarget): only that frame\'s bytes, each aim landed once its read came or the socket closed', async () => {
  const { sharedReadServer } = await import('../../src/runtime/accept.js');
  const room = Buffer.alloc(1024 * 1024);
  let filled = 0;
  let aims = 0;
  let landed = 0;
  let inPlace = 0;
  const got: Buffer[] = [];
  let session!: Http2Session;
  let socketClosed = false;
  let aimOpenAtDeath = -1;
  const server = sharedReadServer((socket) => {
    socket.on('close', () => (socketClosed = true));
    session = new Http2Session(socket, {
      role: 'server',
      readByCaller: true,
      streamWindow: 4 * 1024 * 1024,
      connectionWindow: 4 * 1024 * 1024,
      onStream: (stream) => {
        stream.handler = {
          headers: () => {},
          data: (c) => {
            if (c.buffer === room.buffer && c.byteOffset === room.byteOffset + filled) {
              inPlace += c.length;
              filled += c.length;
            } else {
              c.copy(room, filled);
              filled += c.length;
            }
            got.push(Buffer.from(c));
          },
          end: () => {},
          reset: () => {},
          died: () => {},
          into: (max) => {
            aims++;
            let done = false;
            return {
              room: room.subarray(filled, filled + Math.min(max, 100_000)),
              landed: () => {
                assert.equal(done, false, 'landed once');
                done = true;
                landed++;
              },
            };
          },
        };
      },
      onClosed: () => {},
    });
    return Object.assign((c: Buffer) => session.received(c), { into: () => session.readTarget() });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const socket = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
  await new Promise((r) => socket.once('connect', r));
  const peer = new Peer(socket, false);
  socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  peer.send(SETTINGS, 0, 0);
  peer.send(HEADERS, 0x4, 1, requestBlock('/up'));
  // One 300 KiB DATA frame, written in parts with pauses (reads end in its middle), then a PING.
  const body = Buffer.alloc(300 * 1024);
  for (let i = 0; i < body.length; i++) body[i] = (i * 13) % 256;
  const h = Buffer.alloc(9);
  h.writeUIntBE(body.length, 0, 3);
  h[3] = DATA;
  h.writeUInt32BE(1, 5);
  socket.write(Buffer.concat([h, body.subarray(0, 1000)]));
  for (let at = 1000; at < body.length; at += 70_000) {
    await new Promise((r) => setTimeout(r, 20));
    socket.write(body.subarray(at, Math.min(body.length, at + 70_000)));
  }
  peer.send(6, 0, 0, Buffer.alloc(8, 7)); // PING
  await peer.take((f) => f.type === 6 && f.flags === 1, 'the PING ack');
  assert.ok(Buffer.concat(got).equals(body), 'the DATA whole and in order');
  assert.ok(room.subarray(0, body.length).equals(body));
  assert.ok(aims >= 2 && inPlace > 0, `aims ${aims}, in place ${inPlace}`);
  assert.equal(landed, aims, 'every aim landed (the PING came through the shared buffer: no aim between frames)');

  // An aim outstanding when the session dies lands only once the socket has closed.
  socket.write(Buffer.concat([h, body.subarray(0, 1000)]).subarray(0, 9 + 500)); // a new frame's start: the next read is aimed
  await until('the next aim', () => aims > landed);
  aimOpenAtDeath = aims - landed;
  session.destroy('done', true);
  assert.equal(aims - landed, socketClosed ? 0 : aimOpenAtDeath, 'not landed while the socket may still read');
  await until('the socket closed', () => socketClosed);
  await until('the aim landed', () => landed === aims);
  socket.destroy();
  server.close();
});

test('server: between the runs a stream reads into its slot, the next frame\'s header and the framing its `into` names are read on their own (a few bytes), so the reads after them land in the slot again', async () => {
  const { sharedReadServer } = await import('../../src/runtime/accept.js');
  const { SMALL_READ } = await import('../../src/transport/http2Session.js');
  const FRAMING = 20; // bytes at the start of each DATA frame that the stream does not read into its slot
  const room = Buffer.alloc(1024 * 1024);
  let filled = 0;
  let frameStart = 0;
  let copied = 0;
  const reads: number[] = [];
  const got: Buffer[] = [];
  let session!: Http2Session;
  const server = sharedReadServer((socket) => {
    session = new Http2Session(socket, {
      role: 'server',
      readByCaller: true,
      streamWindow: 4 * 1024 * 1024,
      connectionWindow: 4 * 1024 * 1024,
      onStream: (stream) => {
        stream.handler = {
          headers: () => {},
          data: (c) => {
            if (c.buffer === room.buffer && c.byteOffset === room.byteOffset + filled) filled += c.length;
            else {
              c.copy(room, filled);
              filled += c.length;
              copied += c.length;
            }
            got.push(Buffer.from(c));
          },
          end: () => {},
          reset: () => {},
          died: () => {},
          into: (max) => {
            const pos = filled - frameStart;
            if (pos < FRAMING) return FRAMING - pos;
            return { room: room.subarray(filled, filled + max), landed: () => {} };
          },
        };
      },
      onClosed: () => {},
    });
    return Object.assign(
      (c: Buffer) => {
        reads.push(c.length);
        session.received(c);
      },
      { into: () => session.readTarget() },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const socket = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
  await new Promise((r) => socket.once('connect', r));
  const peer = new Peer(socket, false);
  socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  peer.send(SETTINGS, 0, 0);
  peer.send(HEADERS, 0x4, 1, requestBlock('/up'));
  const frames = [100_000, 150_000].map((n, k) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = (i * 7 + k) % 251;
    return b;
  });
  const header = (n: number) => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(n, 0, 3);
    h[3] = DATA;
    h.writeUInt32BE(1, 5);
    return h;
  };
  // The first frame comes with the request (read through the shared buffer), the second once it is all in.
  socket.write(Buffer.concat([header(frames[0].length), frames[0]]));
  await until('the first frame', () => filled === frames[0].length);
  frameStart = filled;
  const readsBefore = reads.length;
  const copiedBefore = copied;
  socket.write(Buffer.concat([header(frames[1].length), frames[1]]));
  await until('the second frame', () => filled === frames[0].length + frames[1].length);
  assert.ok(Buffer.concat(got).equals(Buffer.concat(frames)), 'the DATA whole and in order');
  const second = reads.slice(readsBefore);
  assert.equal(second[0], 9, `the frame header read alone (reads: ${second.slice(0, 6).join(', ')}…)`);
  let framing = 0;
  for (const n of second.slice(1)) {
    if (framing >= FRAMING) break;
    assert.ok(n <= SMALL_READ, `a read of framing takes at most ${SMALL_READ} bytes, not ${n}`);
    framing += n;
  }
  assert.equal(framing, FRAMING, 'the framing read a few bytes at a time, and no further');
  assert.equal(copied - copiedBefore, FRAMING, 'every other byte of the second frame was read into the slot');
  socket.destroy();
  server.close();
});
