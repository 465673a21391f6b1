import * as grpc from '@grpc/grpc-js';
import {
  FedsimService,
  type FedsimServer,
  type ModelChunk,
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

// grpc-js logs bind failures itself ("E No address added …") before fedsim explains them.
if (!process.env.GRPC_VERBOSITY) grpc.setLogVerbosity(grpc.logVerbosity.NONE);

/** Channel options shared by both sides: chunks are 1 MiB, so 8 MiB leaves room. */
export const GRPC_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 8 * 1024 * 1024,
  'grpc.max_send_message_length': 8 * 1024 * 1024,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5000,
};

/** Streams one published model in chunks, from its one buffer, honouring backpressure. */
async function writeAll(call: grpc.ServerWritableStream<PullRequest, ModelChunk>, model: PublishedModel): Promise<void> {
  const total = model.body.length;
  let off = 0;
  do {
    const end = Math.min(total, off + CHUNK_BYTES);
    const header = off === 0 ? { version: model.version, totalBytes: total, sha256: model.sha256, publishedAtMs: model.publishedAtMs } : undefined;
    const more = call.write({ header, data: model.body.subarray(off, end) });
    off = end;
    if (!more && off < total) {
      await new Promise<void>((resolve) => {
        const done = () => {
          call.off('drain', done);
          call.off('cancelled', done);
          resolve();
        };
        call.on('drain', done);
        call.on('cancelled', done);
      });
      if (call.cancelled) return;
    }
  } while (off < total);
}

/** The gRPC face of the FL server (fedsim.v1.Fedsim), on the same round engine as HTTP. */
export class GrpcFlServer {
  private readonly server = new grpc.Server(GRPC_OPTIONS);

  constructor(private readonly fl: FlServer, private readonly maxBodyBytes: number) {
    const impl: FedsimServer = {
      register: (call: grpc.ServerUnaryCall<RegisterRequest, RegisterReply>, cb: grpc.sendUnaryData<RegisterReply>) => {
        this.fl.in('register', 4);
        const r = this.fl.engine.register(call.request.workerIndex);
        this.fl.out('register', r.workerId.length + 8);
        cb(null, { workerId: r.workerId, modelVersion: r.version });
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
          call.on('data', (chunk: UpdateChunk) => {
            if (failed || !slot) return;
            if (chunk.header) header = chunk.header;
            if (slot.length + chunk.data.length > this.maxBodyBytes) {
              failed = true;
              done();
              this.fl.error('too-large');
              cb({ code: grpc.status.RESOURCE_EXHAUSTED, details: `update over ${this.maxBodyBytes} bytes` });
              return;
            }
            slot.write(chunk.data);
          });
          call.on('end', () => {
            if (failed || !slot) return;
            const body = slot.bytes();
            this.fl.in('update', body.length);
            if (!header) {
              done();
              this.fl.error('bad-request');
              cb({ code: grpc.status.INVALID_ARGUMENT, details: 'the first UpdateChunk must carry the header' });
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
      },
    };
    this.server.addService(FedsimService, impl);
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
