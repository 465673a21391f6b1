import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BytesPayload } from '../../src/payload/bytes.js';
import { systemClock } from '../../src/runtime/clock.js';
import { sha256Hex } from '../../src/runtime/hash.js';
import { FlServer } from '../../src/sim/flServer.js';
import type { WorkerTransport } from '../../src/sim/ports.js';
import { TransportError } from '../../src/sim/ports.js';
import { WorkerNodeStats } from '../../src/sim/workerStats.js';
import { GrpcWorkerTransport } from '../../src/transport/grpcClient.js';
import { GrpcFlServer } from '../../src/transport/grpcServer.js';
import { HttpWorkerTransport } from '../../src/transport/httpClient.js';
import type { Http2Session } from '../../src/transport/http2Session.js';
import { HttpFlServer } from '../../src/transport/httpServer.js';

// 3 MiB + 8 bytes: more than three 1 MiB chunks on both transports.
const SIZE = 3 * 1024 * 1024 + 8;

for (const kind of ['http', 'grpc'] as const) {
  describe(`${kind} transport against a real server on port 0`, () => {
    let fl: FlServer;
    let httpServer: HttpFlServer;
    let grpcServer: GrpcFlServer;
    let port = 0;
    const codec = new BytesPayload(SIZE);
    const clients: WorkerTransport[] = [];
    const client = (stats = new WorkerNodeStats(1)) => {
      const opts = { host: '127.0.0.1', port, requestTimeoutMs: 10_000 };
      const c = kind === 'http' ? new HttpWorkerTransport(opts, stats) : new GrpcWorkerTransport(opts, stats);
      clients.push(c);
      return c;
    };

    before(async () => {
      fl = new FlServer({ expectedWorkers: 2, codec, clock: systemClock, hash: sha256Hex }, 300);
      httpServer = new HttpFlServer(fl, { host: '127.0.0.1', port: 0, maxBodyBytes: 64 * 1024 * 1024 }, () => ({}));
      grpcServer = new GrpcFlServer(fl, 64 * 1024 * 1024);
      const h = await httpServer.listen();
      const g = await grpcServer.listen('127.0.0.1', 0);
      port = kind === 'http' ? h.port : g;
    });

    after(async () => {
      for (const c of clients) c.close();
      fl.engine.close();
      await Promise.all([httpServer.close(), grpcServer.close()]);
    });

    test('register, a multi-chunk update each, and both receive the averaged model', async () => {
      const stats = new WorkerNodeStats(2);
      const a = client(stats);
      const b = client(stats);
      const ra = await a.register(0);
      const rb = await b.register(1);
      assert.equal(ra.workerId, 'w0');
      assert.equal(rb.version, 0);
      const v0 = await a.pullModel(ra.workerId, -1, () => undefined);
      assert.ok(v0);
      assert.equal(v0.body.length, SIZE);
      assert.equal(sha256Hex(v0.body), v0.sha256);

      const timedOut = await a.pullModel(ra.workerId, 0, () => undefined);
      assert.equal(timedOut, null, 'no newer model within the poll timeout → empty answer');

      // A third connection long-polls while the two upload (as a waiting worker would),
      // polling again after each empty answer.
      const watcher = client();
      let headers = 0;
      const waiting = (async () => {
        for (;;) {
          const m = await watcher.pullModel('w9', 0, () => headers++);
          if (m) return m;
        }
      })();
      // One update held whole, another made as it is sent (in pooled pieces): different bytes,
      // so a mix-up between slots, or a read landing in the wrong one, shows in the mean.
      assert.equal((await a.pushUpdate(ra.workerId, 1, codec.makeUpdate(v0.body, 0, 1))).outcome, 'accepted');
      assert.equal((await b.pushUpdate(rb.workerId, 1, codec.updateSource(v0.body, 1, 1))).outcome, 'accepted');
      assert.equal((await b.pushUpdate(rb.workerId, 1, codec.makeUpdate(v0.body, 1, 1))).outcome, 'duplicate');
      const v1 = await waiting;
      assert.ok(v1);
      assert.equal(v1.version, 1);
      assert.equal(headers, 1);
      assert.equal(v1.body.length, SIZE);
      assert.equal(sha256Hex(v1.body), v1.sha256);
      // The mean of the two, as an aggregator of this process makes it.
      const mean = new BytesPayload(SIZE).createAggregator();
      mean.fold(codec.makeUpdate(v0.body, 0, 1));
      mean.fold(codec.makeUpdate(v0.body, 1, 1));
      assert.ok(v1.body.equals(mean.result(1)));
      assert.equal(fl.engine.updates.duplicate, 1);
      assert.ok(stats.bytesSent.update >= 3 * SIZE);
      // The server reads update bodies straight into their slots: all but the reads that came
      // before the body's reader (a slot) was there (over gRPC also the frame headers and
      // message prefixes, and what a read brought past them). HTTP/1.1 drops the duplicate's
      // body unread into a slot; gRPC reads it into one before the round says duplicate.
      assert.ok(fl.slots.bytesInPlace > 1.5 * SIZE && fl.slots.bytesInPlace <= (kind === 'http' ? 2 : 3) * SIZE, `in place: ${fl.slots.bytesInPlace}`);
    });

    test('a future round is rejected', async () => {
      const c = client();
      const r = await c.register(5);
      assert.equal((await c.pushUpdate(r.workerId, 99, Buffer.alloc(SIZE))).outcome, 'rejected');
    });

    test('a closed port is a retryable transport error', async () => {
      const opts = { host: '127.0.0.1', port: 1, requestTimeoutMs: 2000 };
      const c = kind === 'http' ? new HttpWorkerTransport(opts, new WorkerNodeStats(1)) : new GrpcWorkerTransport(opts, new WorkerNodeStats(1));
      clients.push(c);
      await assert.rejects(c.register(0), (e: unknown) => e instanceof TransportError && e.retryable);
    });
  });
}

for (const kind of ['http', 'grpc'] as const) {
  test(`${kind}: an update over the server's limit is refused (413 / RESOURCE_EXHAUSTED), counted, and not retried`, async () => {
    const codec = new BytesPayload(2 * 1024 * 1024);
    const fl = new FlServer({ expectedWorkers: 1, codec, clock: systemClock, hash: sha256Hex }, 300);
    const limit = 1024 * 1024;
    const hs = new HttpFlServer(fl, { host: '127.0.0.1', port: 0, maxBodyBytes: limit }, () => ({}));
    const gs = new GrpcFlServer(fl, limit);
    const h = await hs.listen();
    const g = await gs.listen('127.0.0.1', 0);
    const opts = { host: '127.0.0.1', port: kind === 'http' ? h.port : g, requestTimeoutMs: 10_000 };
    const c = kind === 'http' ? new HttpWorkerTransport(opts, new WorkerNodeStats(1)) : new GrpcWorkerTransport(opts, new WorkerNodeStats(1));
    try {
      const r = await c.register(0);
      const err = await c.pushUpdate(r.workerId, 1, codec.makeUpdate(codec.initialModel(), 0, 1)).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof TransportError, `expected a TransportError, got ${err}`);
      assert.match(err.kind, kind === 'http' ? /413/ : /RESOURCE_EXHAUSTED/);
      assert.equal(err.retryable, false);
      assert.equal(fl.errors['too-large'], 1);
      assert.equal(fl.engine.updates.accepted ?? 0, 0);
    } finally {
      c.close();
      fl.engine.close();
      await Promise.all([hs.close(), gs.close()]);
    }
  });
}

for (const kind of ['http', 'grpc'] as const) {
  test(`${kind}: an update whose worker goes away while it waits for the one slot gives the slot back`, async () => {
    // More than the upload may send before it has the slot, so it is cut in the middle: over
    // HTTP/1.1 what the sockets' buffers hold, over gRPC the window of the update first in
    // line (8 MiB, QUEUE_LEAD_BYTES), all of which may sit in the sockets' buffers.
    const codec = new BytesPayload((kind === 'http' ? 8 : 24) * 1024 * 1024);
    const fl = new FlServer({ expectedWorkers: 2, codec, clock: systemClock, hash: sha256Hex }, 300, 1);
    const hs = new HttpFlServer(fl, { host: '127.0.0.1', port: 0, maxBodyBytes: 32 << 20 }, () => ({}));
    const gs = new GrpcFlServer(fl, 32 << 20);
    const h = await hs.listen();
    const g = await gs.listen('127.0.0.1', 0);
    const opts = { host: '127.0.0.1', port: kind === 'http' ? h.port : g, requestTimeoutMs: 10_000 };
    const make = () => (kind === 'http' ? new HttpWorkerTransport(opts, new WorkerNodeStats(1)) : new GrpcWorkerTransport(opts, new WorkerNodeStats(1)));
    const leaving = make();
    const staying = make();
    const until = async (what: string, ok: () => boolean) => {
      const t0 = Date.now();
      while (!ok()) {
        if (Date.now() - t0 > 5000) assert.fail(`not within 5 s: ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    let slow: NodeJS.Timeout | undefined;
    try {
      const r = await leaving.register(0);
      const held = await fl.slots.acquire(); // the one slot, taken: the update below waits
      // by a slow upload, not a stalled one (that would lend its place and serve the line)
      slow = setInterval(() => held.write(Buffer.alloc(1)), 50);
      const lost = leaving.pushUpdate(r.workerId, 1, codec.makeUpdate(codec.initialModel(), 0, 1)).catch(() => undefined);
      await until('the update waits for the slot', () => fl.slots.waiting === 1);
      leaving.close();
      await lost;
      await new Promise((r) => setTimeout(r, 100)); // the server sees the connection go
      // Over gRPC the update leaves the line as soon as its call ends (UpdateSlots.dropGone);
      // over HTTP/1.1 it is dropped at its turn.
      if (kind === 'grpc') await until('the update left the line', () => fl.slots.waiting === 0);
      clearInterval(slow);
      held.release();
      await until('the slot is free again', () => fl.slots.busy === 0 && fl.slots.waiting === 0);
      // And the next worker's update goes through it.
      const s = await staying.register(1);
      const ack = await staying.pushUpdate(s.workerId, 1, codec.makeUpdate(codec.initialModel(), 1, 1));
      assert.equal(ack.outcome, 'accepted');
      // Nothing of the update that went away was folded or counted.
      assert.equal(fl.engine.updates.accepted, 1);
      assert.equal(fl.engine.updates.rejected ?? 0, 0);
    } finally {
      clearInterval(slow);
      staying.close();
      fl.engine.close();
      await Promise.all([hs.close(), gs.close()]);
    }
  });
}

test('grpc: an update first in line for a slot stops the reads of its connection; a long wait still answers the worker\'s keepalive PINGs, and the update is folded whole', async () => {
  // 12 MiB: more than the update first in line may send ahead (QUEUE_LEAD_BYTES, of which the
  // server holds QUEUE_HOLD_BYTES before it stops reading).
  const codec = new BytesPayload(12 * 1024 * 1024);
  const fl = new FlServer({ expectedWorkers: 1, codec, clock: systemClock, hash: sha256Hex }, 300, 1);
  const gs = new GrpcFlServer(fl, 64 << 20);
  const port = await gs.listen('127.0.0.1', 0);
  // A PING every 200 ms, each answered within 2.5 s, while the slot stays taken for 4.5 s:
  // a connection whose reads stayed stopped the whole wait would be declared dead.
  const c = new GrpcWorkerTransport({ host: '127.0.0.1', port, requestTimeoutMs: 20_000, keepaliveMs: 200, keepaliveTimeoutMs: 2500 }, new WorkerNodeStats(1));
  let slow: NodeJS.Timeout | undefined;
  try {
    const r = await c.register(0);
    const v0 = await c.pullModel(r.workerId, -1, () => undefined);
    assert.ok(v0);
    // The slot's holder is a slow upload, not a stalled one (that would lend its place).
    const held = await fl.slots.acquire();
    slow = setInterval(() => held.write(Buffer.alloc(1)), 50);
    const update = codec.makeUpdate(v0.body, 0, 1);
    let settled = false;
    const pushed = c.pushUpdate(r.workerId, 1, update).finally(() => (settled = true));
    const t0 = Date.now();
    while (fl.slots.waiting === 0) {
      if (Date.now() - t0 > 5000) assert.fail('the update did not come to wait for the slot');
      await new Promise((res) => setTimeout(res, 10));
    }
    await new Promise((res) => setTimeout(res, 4500));
    assert.equal(settled, false, 'the update waited for the slot');
    const sessions = (gs as unknown as { sessions: Set<Http2Session> }).sessions;
    assert.ok([...sessions].some((s) => s.readStops > 0), 'the connection of the update first in line was not read for a while');
    clearInterval(slow);
    held.release();
    const ack = await pushed;
    assert.equal(ack.outcome, 'accepted');
    // Folded whole: the new model is the one update.
    assert.ok(fl.engine.current.body.equals(update));
  } finally {
    clearInterval(slow);
    c.close();
    fl.engine.close();
    await gs.close();
  }
});
