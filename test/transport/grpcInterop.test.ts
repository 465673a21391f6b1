import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { BytesPayload } from '../../src/payload/bytes.js';
import { FedsimClient, type ModelChunk } from '../../src/proto/gen/fedsim.js';
import { systemClock } from '../../src/runtime/clock.js';
import { sha256Hex } from '../../src/runtime/hash.js';
import { FlServer } from '../../src/sim/flServer.js';
import { GrpcFlServer } from '../../src/transport/grpcServer.js';

// fedsim's gRPC server (node:http2) called by grpc-js's own client: the server speaks
// standard gRPC, not only to fedsim's workers.
const SIZE = 2 * 1024 * 1024 + 12; // three ModelChunks

let fl: FlServer;
let server: GrpcFlServer;
let port = 0;
const clients: grpc.Client[] = [];
const client = () => {
  const c = new FedsimClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': 8 << 20 });
  clients.push(c);
  return c;
};

before(async () => {
  fl = new FlServer({ expectedWorkers: 1, codec: new BytesPayload(SIZE), clock: systemClock, hash: sha256Hex }, 300);
  server = new GrpcFlServer(fl, 16 * 1024 * 1024);
  port = await server.listen('127.0.0.1', 0);
});

after(async () => {
  for (const c of clients) c.close();
  fl.engine.close();
  await server.close();
});

function pull(c: InstanceType<typeof FedsimClient>, workerId: string, after: number, deadlineMs = 5000): Promise<{ chunks: ModelChunk[]; err: grpc.ServiceError | null }> {
  return new Promise((resolve) => {
    const chunks: ModelChunk[] = [];
    const call = c.pullModel({ workerId, after }, new grpc.Metadata(), { deadline: new Date(Date.now() + deadlineMs) });
    call.on('data', (m: ModelChunk) => chunks.push(m));
    call.on('error', (err: grpc.ServiceError) => resolve({ chunks, err }));
    call.on('end', () => resolve({ chunks, err: null }));
  });
}

test('grpc-js client: register, stream an update in chunks, pull the averaged model in chunks', async () => {
  const c = client();
  const reg = await new Promise<{ workerId: string; modelVersion: number }>((resolve, reject) => c.register({ workerIndex: 0 }, (err, r) => (err ? reject(err) : resolve(r))));
  assert.equal(reg.workerId, 'w0');
  const first = await pull(c, reg.workerId, -1);
  assert.equal(first.err, null);
  assert.equal(first.chunks.length, 3);
  const model = Buffer.concat(first.chunks.map((m) => Buffer.from(m.data)));
  assert.equal(first.chunks[0].header?.totalBytes, SIZE);
  assert.equal(sha256Hex(model), first.chunks[0].header?.sha256);

  const update = new BytesPayload(SIZE).makeUpdate(model, 0, 1);
  const ack = await new Promise<{ outcome: string }>((resolve, reject) => {
    const call = c.pushUpdate((err, a) => (err ? reject(err) : resolve(a)));
    call.write({ header: { workerId: reg.workerId, round: 1, totalBytes: update.length }, data: update.subarray(0, 1 << 20) });
    call.write({ data: update.subarray(1 << 20) });
    call.end();
  });
  assert.equal(ack.outcome, 'accepted');
  const next = await pull(c, reg.workerId, 0);
  assert.equal(next.err, null);
  assert.equal(next.chunks[0].header?.version, 1);
  // One worker: the new model is its update.
  assert.deepEqual(Buffer.concat(next.chunks.map((m) => Buffer.from(m.data))), update);
});

test('grpc-js client: an empty long-poll ends OK with no chunk; a deadline under it ends DEADLINE_EXCEEDED', async () => {
  const c = client();
  const empty = await pull(c, 'w0', 99);
  assert.equal(empty.err, null);
  assert.equal(empty.chunks.length, 0);
  const late = await pull(c, 'w0', 99, 100);
  assert.equal(late.err?.code, grpc.status.DEADLINE_EXCEEDED);
});

test('grpc-js client: an update without a header is INVALID_ARGUMENT, one over the limit RESOURCE_EXHAUSTED', async () => {
  const c = client();
  const send = (chunks: { header?: { workerId: string; round: number; totalBytes: number }; data: Buffer }[]) =>
    new Promise<grpc.ServiceError | null>((resolve) => {
      const call = c.pushUpdate((err) => resolve(err));
      for (const m of chunks) call.write(m);
      call.end();
    });
  assert.equal((await send([{ data: Buffer.alloc(8) }]))?.code, grpc.status.INVALID_ARGUMENT);
  const big = Buffer.alloc(4 << 20);
  const chunks = Array.from({ length: 5 }, (_, i) => ({ ...(i === 0 ? { header: { workerId: 'w0', round: 2, totalBytes: 20 << 20 } } : {}), data: big }));
  assert.equal((await send(chunks))?.code, grpc.status.RESOURCE_EXHAUSTED);
});

test('an unknown method is UNIMPLEMENTED; a request that is not gRPC gets an HTTP answer', async () => {
  const Generic = grpc.makeGenericClientConstructor(
    { nope: { path: '/fedsim.v1.Fedsim/Nope', requestStream: false, responseStream: false, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b } },
    'Nope',
  );
  const g = new Generic(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  clients.push(g);
  const err = await new Promise<grpc.ServiceError>((resolve) => (g as unknown as { nope: (b: Buffer, cb: (e: grpc.ServiceError) => void) => void }).nope(Buffer.alloc(0), resolve));
  assert.equal(err.code, grpc.status.UNIMPLEMENTED);
  assert.match(err.details, /Register, PushUpdate and PullModel/);

  const session = http2.connect(`http://127.0.0.1:${port}`);
  const status = await new Promise<number>((resolve, reject) => {
    const req = session.request({ ':method': 'GET', ':path': '/' });
    req.on('response', (h) => resolve(Number(h[':status'])));
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 405);
  session.close();
});
