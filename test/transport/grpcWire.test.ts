import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { ModelHeader, ModelChunk, UpdateHeader } from '../../src/proto/gen/fedsim.js';
import { holderWindow } from '../../src/transport/grpcServer.js';
import { CHUNK_BYTES } from '../../src/transport/headers.js';
import { FrameDecoder, GrpcCode, GrpcConnection, GrpcStatusError, GrpcStoppedError, HeaderDataReader, chunkPrefix, frame, grpcTimeout, wholeMessages } from '../../src/transport/grpcWire.js';

// A raw HTTP/2 server whose every path answers the way the test names: what fedsim's gRPC
// client must make of answers a well-behaved grpc-js server never gives.
type Handler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;
const handlers = new Map<string, Handler>();
let server: http2.Http2Server;
let port = 0;
const seenHeaders: http2.IncomingHttpHeaders[] = [];

before(async () => {
  server = http2.createServer();
  server.on('stream', (stream, headers) => {
    seenHeaders.push(headers);
    stream.on('error', () => undefined);
    const h = handlers.get(String(headers[':path']));
    if (h) h(stream, headers);
    else stream.respond({ ':status': 404 }, { endStream: true });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});
after(() => server.close());

function conn(extra: Partial<ConstructorParameters<typeof GrpcConnection>[0]> = {}): GrpcConnection {
  return new GrpcConnection({ host: '127.0.0.1', port, keepaliveMs: 10_000, keepaliveTimeoutMs: 5_000, maxMessageBytes: 1024, ...extra });
}

/** Calls `path` with one request message; the messages received and the error (null: OK). */
async function callOnce(c: GrpcConnection, path: string, timeoutMs = 2000): Promise<{ messages: Buffer[]; err: Error | null }> {
  const messages: Buffer[] = [];
  const call = c.call({ path, timeoutMs, sink: wholeMessages((m) => messages.push(m)), metadata: { 'x-test': 'yes' } });
  call.end(frame(Buffer.from('hi')));
  try {
    await call.status;
    return { messages, err: null };
  } catch (e) {
    return { messages, err: e as Error };
  }
}

function ok(stream: http2.ServerHttp2Stream, body: Buffer[], trailers: http2.OutgoingHttpHeaders = { 'grpc-status': '0' }): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers(trailers));
  for (const b of body) stream.write(b);
  stream.end();
}

test('grpcTimeout: milliseconds while they fit 8 digits, then seconds, then hours', () => {
  assert.equal(grpcTimeout(1500), '1500m');
  assert.equal(grpcTimeout(0.2), '1m');
  assert.equal(grpcTimeout(99_999_999), '99999999m');
  assert.equal(grpcTimeout(100_000_000), '100000S');
  assert.equal(grpcTimeout(1e12), '277778H');
});

test('FrameDecoder: messages split anywhere, and several in one chunk, come out whole', () => {
  const msgs = [Buffer.from('a'), Buffer.alloc(0), Buffer.alloc(300, 7), Buffer.from('the end')];
  const wire = Buffer.concat(msgs.map((m) => frame(m)));
  for (let step = 1; step <= wire.length; step += step < 8 ? 1 : 37) {
    const got: Buffer[] = [];
    const d = new FrameDecoder(wholeMessages((m) => got.push(m)), 1024);
    for (let i = 0; i < wire.length; i += step) d.push(wire.subarray(i, i + step));
    assert.deepEqual(got, msgs, `step ${step}`);
    assert.ok(d.atBoundary);
  }
});

test('FrameDecoder: a compressed message is INTERNAL, an oversized one RESOURCE_EXHAUSTED', () => {
  const d = new FrameDecoder(wholeMessages(() => undefined), 10);
  const compressed = frame(Buffer.from('x'));
  compressed[0] = 1;
  assert.throws(() => d.push(compressed), (e: GrpcStatusError) => e.code === GrpcCode.INTERNAL);
  assert.throws(() => new FrameDecoder(wholeMessages(() => undefined), 10).push(frame(Buffer.alloc(11))), (e: GrpcStatusError) => e.code === GrpcCode.RESOURCE_EXHAUSTED);
});

test('HeaderDataReader: ModelChunk messages split at every byte give the header once and the data bytes in order', () => {
  const data = Buffer.from(Array.from({ length: 200 }, (_, i) => i));
  const header = { version: 7, totalBytes: 200, sha256: 'ab'.repeat(32), publishedAtMs: 1234.5 };
  const first = Buffer.from(ModelChunk.encode({ header, data: data.subarray(0, 150) }).finish());
  const second = Buffer.from(ModelChunk.encode({ data: data.subarray(150) }).finish());
  // An unknown varint field (9) and an unknown length-delimited field (10) are skipped.
  const unknown = Buffer.from([0x48, 0x96, 0x01, 0x52, 0x02, 0xff, 0xff]);
  const wire = Buffer.concat([frame(first), frame(Buffer.concat([unknown, second]))]);
  for (const step of [1, 2, 3, 5, 64, wire.length]) {
    const headers: ModelHeader[] = [];
    const parts: Buffer[] = [];
    const d = new FrameDecoder(new HeaderDataReader((b) => ModelHeader.decode(b), (h) => headers.push(h), (b) => parts.push(Buffer.from(b))), 1024);
    for (let i = 0; i < wire.length; i += step) d.push(wire.subarray(i, i + step));
    assert.deepEqual(headers, [header], `step ${step}`);
    assert.deepEqual(Buffer.concat(parts), data, `step ${step}`);
  }
  // A message that ends inside a field is malformed.
  const d = new FrameDecoder(new HeaderDataReader((b) => ModelHeader.decode(b), () => undefined, () => undefined), 1024);
  assert.throws(() => d.push(frame(Buffer.from([0x12, 0x05, 1, 2]))), /inside a field/);
});

test('a unary call: headers on the wire, messages in order, OK from the trailers', async () => {
  handlers.set('/t.S/Ok', (s) => ok(s, [frame(Buffer.from('one')), frame(Buffer.from('two'))]));
  const c = conn({ userAgent: 'fedsim/test' });
  const r = await callOnce(c, '/t.S/Ok');
  assert.equal(r.err, null);
  assert.deepEqual(r.messages.map(String), ['one', 'two']);
  const h = seenHeaders.at(-1)!;
  assert.equal(h['content-type'], 'application/grpc');
  assert.equal(h.te, 'trailers');
  assert.equal(h['x-test'], 'yes');
  assert.equal(h['user-agent'], 'fedsim/test');
  assert.match(String(h['grpc-timeout']), /^\d+m$/);
  c.close();
});

test('statuses: from trailers (message percent-decoded), trailers-only, HTTP status, content-type, RST_STREAM, no status', async () => {
  handlers.set('/t.S/Denied', (s) => ok(s, [], { 'grpc-status': String(GrpcCode.PERMISSION_DENIED), 'grpc-message': 'no%20way%3A%20100%25' }));
  handlers.set('/t.S/TrailersOnly', (s) => s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'gone' }, { endStream: true }));
  handlers.set('/t.S/Http503', (s) => s.respond({ ':status': 503 }, { endStream: true }));
  handlers.set('/t.S/Html', (s) => {
    s.respond({ ':status': 200, 'content-type': 'text/html' });
    s.end('<html>');
  });
  handlers.set('/t.S/Refused', (s) => s.close(http2.constants.NGHTTP2_REFUSED_STREAM));
  handlers.set('/t.S/Reset', (s) => s.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
  handlers.set('/t.S/NoStatus', (s) => {
    s.respond({ ':status': 200, 'content-type': 'application/grpc' });
    s.end(frame(Buffer.from('x')));
  });
  handlers.set('/t.S/Partial', (s) => ok(s, [frame(Buffer.from('whole')).subarray(0, 6)]));
  const c = conn();
  const cases: [string, number, RegExp][] = [
    ['/t.S/Denied', GrpcCode.PERMISSION_DENIED, /^no way: 100%$/],
    ['/t.S/TrailersOnly', GrpcCode.NOT_FOUND, /^gone$/],
    ['/t.S/Http503', GrpcCode.UNAVAILABLE, /HTTP 503/],
    ['/t.S/Missing', GrpcCode.UNIMPLEMENTED, /HTTP 404/],
    ['/t.S/Html', GrpcCode.UNKNOWN, /text\/html/],
    ['/t.S/Refused', GrpcCode.UNAVAILABLE, /RST_STREAM code 7/],
    ['/t.S/Reset', GrpcCode.INTERNAL, /RST_STREAM code 2/],
    ['/t.S/NoStatus', GrpcCode.UNKNOWN, /without a status/],
    ['/t.S/Partial', GrpcCode.INTERNAL, /inside a message/],
  ];
  for (const [path, code, details] of cases) {
    const r = await callOnce(c, path);
    assert.ok(r.err instanceof GrpcStatusError, `${path}: ${String(r.err)}`);
    assert.equal(r.err.code, code, `${path}: ${r.err.message}`);
    assert.match(r.err.details, details, path);
  }
  c.close();
});

test('a deadline ends a call the server holds: DEADLINE_EXCEEDED, and the stream is cancelled', async () => {
  let cancelled: Promise<void> | null = null;
  handlers.set('/t.S/Hold', (s) => {
    cancelled = new Promise((r) => s.on('close', () => r()));
  });
  const c = conn();
  const r = await callOnce(c, '/t.S/Hold', 150);
  assert.ok(r.err instanceof GrpcStatusError);
  assert.equal(r.err.code, GrpcCode.DEADLINE_EXCEEDED);
  await cancelled;
  c.close();
});

test('the abort signal cancels every call in flight on the connection (stopped), and later calls at once', async () => {
  handlers.set('/t.S/Hold', () => undefined);
  const abort = new AbortController();
  const c = conn({ signal: abort.signal });
  const calls = [callOnce(c, '/t.S/Hold', 5000), callOnce(c, '/t.S/Hold', 5000)];
  await new Promise((r) => setTimeout(r, 50));
  abort.abort();
  for (const r of await Promise.all(calls)) assert.ok(r.err instanceof GrpcStoppedError, String(r.err));
  assert.ok((await callOnce(c, '/t.S/Hold')).err instanceof GrpcStoppedError);
  c.close();
});

test('nothing listening: UNAVAILABLE naming the refused connect; the next call connects again once the server is up', async () => {
  const spare = net.createServer();
  await new Promise<void>((r) => spare.listen(0, '127.0.0.1', r));
  const sparePort = (spare.address() as net.AddressInfo).port;
  await new Promise<void>((r) => spare.close(() => r()));
  const c = new GrpcConnection({ host: '127.0.0.1', port: sparePort, keepaliveMs: 10_000, keepaliveTimeoutMs: 5_000, maxMessageBytes: 1024 });
  const r = await callOnce(c, '/t.S/Ok');
  assert.ok(r.err instanceof GrpcStatusError);
  assert.equal(r.err.code, GrpcCode.UNAVAILABLE);
  assert.match(r.err.details, /could not connect: .*ECONNREFUSED/);
  const late = http2.createServer();
  late.on('stream', (s) => ok(s, [frame(Buffer.from('up'))]));
  await new Promise<void>((res) => late.listen(sparePort, '127.0.0.1', res));
  const again = await callOnce(c, '/t.S/Ok');
  assert.equal(again.err, null);
  assert.deepEqual(again.messages.map(String), ['up']);
  c.close();
  await new Promise<void>((res) => late.close(() => res()));
});

test('keepalive: a connection whose pings go unanswered is dropped and the call fails UNAVAILABLE naming keepalive', async () => {
  // A TCP server that accepts and then never answers anything: a black hole after the handshake.
  const sockets: net.Socket[] = [];
  const hole = net.createServer((s) => sockets.push(s));
  await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
  const c = new GrpcConnection({ host: '127.0.0.1', port: (hole.address() as net.AddressInfo).port, keepaliveMs: 100, keepaliveTimeoutMs: 100, maxMessageBytes: 1024 });
  const r = await callOnce(c, '/t.S/Hold', 10_000);
  assert.ok(r.err instanceof GrpcStatusError, String(r.err));
  assert.equal(r.err.code, GrpcCode.UNAVAILABLE);
  assert.match(r.err.details, /keepalive ping unanswered/);
  c.close();
  for (const s of sockets) s.destroy();
  await new Promise<void>((res) => hole.close(() => res()));
});

test('a closed connection refuses new calls with UNAVAILABLE', async () => {
  const c = conn();
  c.close();
  const r = await callOnce(c, '/t.S/Ok');
  assert.ok(r.err instanceof GrpcStatusError);
  assert.equal(r.err.code, GrpcCode.UNAVAILABLE);
});

test("holderWindow: a slot's stream may send its whole update as the client frames it (1 MiB chunks, the header on the first), bounded by the server's limit", () => {
  const header = UpdateHeader.encode({ workerId: 'w123456', round: 1_000_000, totalBytes: 0 }).finish();
  /** The bytes of an update's messages on the wire, as GrpcWorkerTransport.pushUpdate writes them. */
  const framed = (total: number) => {
    let n = 0;
    for (let off = 0; off === 0 || off < total; off += CHUNK_BYTES) {
      const data = Math.min(CHUNK_BYTES, total - off);
      n += chunkPrefix(off === 0 ? UpdateHeader.encode({ workerId: 'w123456', round: 1_000_000, totalBytes: total }).finish() : null, data).length + data;
    }
    return n;
  };
  assert.ok(header.length < 64);
  const max = 64 * 1024 * 1024;
  for (const total of [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 13_967_566, 3 * CHUNK_BYTES + 8, max]) {
    const w = holderWindow(total, max);
    assert.ok(w >= 4 * 1024 * 1024, 'never below the least window of a slot');
    // Twice the update: Http2Session.credit gives a window back only once less than half of it is left.
    assert.ok(w >= 2 * framed(total), `${total} bytes: a window of ${w} needs no WINDOW_UPDATE for the framed ${framed(total)}`);
    assert.ok(w <= Math.max(4 * 1024 * 1024, 2 * total + 1024 * 1024), `${total} bytes: a window of ${w} is not far over twice the update`);
  }
  // A size the worker declares is bounded by what the server takes.
  assert.equal(holderWindow(2 ** 40, max), holderWindow(max, max));
  assert.equal(holderWindow(-5, max), holderWindow(0, max));
  assert.ok(holderWindow(2 ** 31, 2 ** 31) <= 2 ** 31 - 1, "within HTTP/2's window limit");
});
