import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { HpackDecoder, type HeaderList, encodeIndexed, encodeLiterals } from '../../src/transport/hpack.js';
import { Http2ClientSession, type StreamHandler } from '../../src/transport/http2Session.js';

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

  constructor(readonly socket: net.Socket) {
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

async function pair(streamWindow = 65_536): Promise<{ peer: Peer; session: Http2ClientSession; closed: Promise<void>; server: net.Server }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  let onClosed!: () => void;
  const closed = new Promise<void>((r) => (onClosed = r));
  const session = new Http2ClientSession(net.connect({ host: '127.0.0.1', port }), { streamWindow, onClosed: () => onClosed() });
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
  // The answer: two 16 KiB DATA frames are half of the 64 KiB window, which is given back.
  peer.send(HEADERS, 0x4, 1, Buffer.from([0x88]));
  peer.send(DATA, 0, 1, Buffer.alloc(16_384));
  peer.send(DATA, 0, 1, Buffer.alloc(16_384));
  const wu = await peer.take((f) => f.type === WINDOW_UPDATE && f.stream === 1, 'the stream WINDOW_UPDATE');
  assert.equal(wu.payload.readUInt32BE(0), 32_768);
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
  ['a frame over 16 KiB', (p: Peer) => p.sendHeaderOnly(DATA, 20_000, 1), 6],
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
    assert.equal(r.events.length, 1);
    assert.match(r.events[0], /^died connection dropped: the server broke HTTP\/2: /);
    assert.equal(session.usable, false);
    server.close();
  });
}
