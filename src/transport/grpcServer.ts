import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import {
  FedsimService,
  type FedsimServer,
  ModelChunk,
  type PullRequest,
  type RegisterReply,
  type RegisterRequest,
  type UpdateAck,
  type UpdateChunk,
} from '../proto/gen/fedsim.js';
import type { UpdateSlot } from '../sim/updateSlots.js';
import type { FlServer } from '../sim/flServer.js';
import type { PublishedModel } from '../sim/ports.js';
import { shutdownGrpcServer } from '../runtime/grpc.js';
import { CHUNK_BYTES } from './headers.js';
import { AUTH, GRPC_AUTH_PATH, registerBody, registrationId } from './auth.js';

// grpc-js logs bind failures itself ("E No address added …") before fedsim explains them.
if (!process.env.GRPC_VERBOSITY) grpc.setLogVerbosity(grpc.logVerbosity.NONE);

/** The FL server's options: chunks are 1 MiB, so 8 MiB leaves room (the workers allow as much). */
export const GRPC_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 8 * 1024 * 1024,
  'grpc.max_send_message_length': 8 * 1024 * 1024,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5000,
  // Channelz (call and socket tracking for grpc-js's introspection service, which fedsim does
  // not serve) is bookkeeping on every call and every connection of the server under load.
  'grpc.enable_channelz': 0,
};

/** One metadata value as text. */
function meta(md: grpc.Metadata, name: string): string | undefined {
  const v = md.get(name)[0];
  return v === undefined ? undefined : String(v);
}

function refusal(reason: string): grpc.ServiceError {
  return Object.assign(new Error(`safe mode: request refused: ${reason}`), { code: grpc.status.UNAUTHENTICATED, details: `safe mode: request refused: ${reason}`, metadata: new grpc.Metadata() });
}

/**
 * A published model's ModelChunk messages, encoded once per version and written to every
 * pull as they are: encoding a chunk per pull copied each MiB twice more per worker (into
 * the protobuf writer, then into a Buffer) before grpc-js framed it.
 */
const encodedChunks = new WeakMap<PublishedModel, Buffer[]>();

function encodedModel(model: PublishedModel): Buffer[] {
  let chunks = encodedChunks.get(model);
  if (chunks) return chunks;
  chunks = [];
  const total = model.body.length;
  let off = 0;
  do {
    const end = Math.min(total, off + CHUNK_BYTES);
    const header = off === 0 ? { version: model.version, totalBytes: total, sha256: model.sha256, publishedAtMs: model.publishedAtMs } : undefined;
    const m = ModelChunk.encode({ header, data: model.body.subarray(off, end) }).finish();
    chunks.push(Buffer.from(m.buffer, m.byteOffset, m.byteLength));
    off = end;
  } while (off < total);
  encodedChunks.set(model, chunks);
  return chunks;
}

/** The service as served: PullModel's messages are written already encoded (encodedModel). */
const SERVED = {
  ...FedsimService,
  pullModel: { ...FedsimService.pullModel, responseSerialize: (encoded: Buffer): Buffer => encoded },
};

/** Streams one published model in chunks, from its one encoding, honouring backpressure. */
async function writeAll(call: grpc.ServerWritableStream<PullRequest, ModelChunk>, model: PublishedModel): Promise<void> {
  const chunks = encodedModel(model);
  // At most two chunks of this stream wait in grpc-js at a time (its own buffer takes 16
  // messages, 16 MiB per stream): with a hundred workers pulling a 14 MB model, memory stays
  // bounded by the streams' windows, not by the workers times the model.
  let queued = 0;
  let wake: (() => void) | null = null;
  const onCancel = () => wake?.();
  call.on('cancelled', onCancel);
  try {
    for (const chunk of chunks) {
      while (queued >= 2 && !call.cancelled) await new Promise<void>((resolve) => (wake = resolve));
      if (call.cancelled) return;
      queued++;
      // The served definition's serializer passes the encoded message through (SERVED).
      call.write(chunk as unknown as ModelChunk, () => {
        queued--;
        const w = wake;
        wake = null;
        w?.();
      });
    }
  } finally {
    call.off('cancelled', onCancel);
  }
}

/** The gRPC face of the FL server (fedsim.v1.Fedsim), on the same round engine as HTTP. */
export class GrpcFlServer {
  private readonly server = new grpc.Server(GRPC_OPTIONS);

  constructor(private readonly fl: FlServer, private readonly maxBodyBytes: number) {
    const impl: FedsimServer = {
      register: (call: grpc.ServerUnaryCall<RegisterRequest, RegisterReply>, cb: grpc.sendUnaryData<RegisterReply>) => {
        this.fl.in('register', 4);
        const claimed = meta(call.metadata, AUTH.bodySha256) ?? '';
        const facts = { method: 'RPC', path: GRPC_AUTH_PATH.register, workerId: registrationId(call.request.workerIndex), round: 0, bodySha256: claimed };
        void (async () => {
          const auth = this.fl.auth ? await this.fl.authorize(facts, (n) => meta(call.metadata, n)) : { ok: true as const, publicKey: '' };
          if (!auth.ok) return cb(refusal(auth.reason));
          if (this.fl.auth && createHash('sha256').update(registerBody(call.request.workerIndex)).digest('hex') !== claimed) {
            this.fl.refused('body-hash', auth.publicKey, facts);
            return cb(refusal('body-hash'));
          }
          const r = this.fl.engine.register(call.request.workerIndex);
          this.fl.auth?.bind(r.workerId, auth.publicKey);
          this.fl.out('register', r.workerId.length + 8);
          cb(null, { workerId: r.workerId, modelVersion: r.version });
        })();
      },
      pushUpdate: (call: grpc.ServerReadableStream<UpdateChunk, UpdateAck>, cb: grpc.sendUnaryData<UpdateAck>) => {
        let header: UpdateChunk['header'];
        let failed = false;
        let slot: UpdateSlot | null = null;
        const done = () => {
          slot?.release();
          slot = null;
        };
        call.on('cancelled', done);
        call.on('error', done);
        // The stream is read only once a slot is free (until then gRPC flow control holds it).
        void this.fl.slots.acquire().then((s) => {
          if (call.cancelled) {
            s.release();
            return;
          }
          slot = s;
          const claimed = meta(call.metadata, AUTH.bodySha256) ?? '';
          const hash = this.fl.auth ? createHash('sha256') : null;
          let publicKey = '';
          // Safe mode: the signature (checked off the event loop) covers the worker id and round the first chunk names.
          let authorized: Promise<boolean> = Promise.resolve(true);
          call.on('data', (chunk: UpdateChunk) => {
            if (failed || !slot) return;
            if (chunk.header) {
              const h = chunk.header;
              header = h;
              if (this.fl.auth) {
                authorized = this.fl
                  .authorize({ method: 'RPC', path: GRPC_AUTH_PATH.pushUpdate, workerId: h.workerId, round: h.round, bodySha256: claimed }, (n) => meta(call.metadata, n))
                  .then((auth) => {
                    if (auth.ok) {
                      publicKey = auth.publicKey;
                      return true;
                    }
                    if (!failed) {
                      failed = true;
                      done();
                      cb(refusal(auth.reason));
                    }
                    return false;
                  });
              }
            }
            hash?.update(chunk.data);
            if (slot.length + chunk.data.length > this.maxBodyBytes) {
              failed = true;
              done();
              this.fl.error('too-large');
              cb({ code: grpc.status.RESOURCE_EXHAUSTED, details: `update over ${this.maxBodyBytes} bytes` });
              return;
            }
            slot.write(chunk.data);
          });
          call.on('end', async () => {
            if (!(await authorized) || failed || !slot) return;
            const body = slot.bytes();
            this.fl.in('update', body.length);
            if (!header) {
              done();
              this.fl.error('bad-request');
              cb({ code: grpc.status.INVALID_ARGUMENT, details: 'the first UpdateChunk must carry the header' });
              return;
            }
            if (hash && hash.digest('hex') !== claimed) {
              // Signed, but not this body: nothing of it is folded.
              done();
              this.fl.refused('body-hash', publicKey, { method: 'RPC', path: GRPC_AUTH_PATH.pushUpdate, workerId: header.workerId, round: header.round, bodySha256: claimed });
              cb(refusal('body-hash'));
              return;
            }
            // Folded now, from the slot: the aggregator keeps nothing of the body.
            const ack = this.fl.engine.submit(header.workerId, header.round, body);
            done();
            this.fl.out('ack', ack.outcome.length);
            cb(null, { outcome: ack.outcome, reason: ack.reason ?? '' });
          });
        });
      },
      pullModel: (call: grpc.ServerWritableStream<PullRequest, ModelChunk>) => {
        void this.pull(call);
      },
    };
    this.server.addService(SERVED, impl);
  }

  private async pull(call: grpc.ServerWritableStream<PullRequest, ModelChunk>): Promise<void> {
    if (this.fl.auth) {
      const auth = await this.fl.authorize(
        { method: 'RPC', path: GRPC_AUTH_PATH.pullModel, workerId: call.request.workerId, round: call.request.after, bodySha256: meta(call.metadata, AUTH.bodySha256) ?? '' },
        (n) => meta(call.metadata, n),
      );
      if (!auth.ok) {
        call.emit('error', refusal(auth.reason));
        return;
      }
    }
    this.fl.in('pull', 0);
    const wait = this.fl.engine.waitModel(call.request.after, this.fl.pollTimeoutMs);
    const onCancel = () => wait.cancel();
    call.on('cancelled', onCancel);
    void wait.promise.then(async (model) => {
      call.off('cancelled', onCancel);
      if (call.cancelled) return;
      if (!model) {
        this.fl.out('empty', 0);
        call.end();
        return;
      }
      await writeAll(call, model);
      this.fl.out('model', model.body.length);
      call.end();
    });
  }

  listen(host: string, port: number): Promise<number> {
    const addr = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    return new Promise((resolve, reject) => {
      this.server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
    });
  }

  close(): Promise<void> {
    return shutdownGrpcServer(this.server, 1000);
  }

}
