import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { FedsimClient, type ModelChunk } from '../proto/gen/fedsim.js';
import type { PulledModel, UpdateOutcome, WorkerTransport } from '../sim/ports.js';
import { TransportError } from '../sim/ports.js';
import type { WorkerNodeStats } from '../sim/workerStats.js';
import { GRPC_OPTIONS } from './grpcServer.js';
import { BodyBuffer, CHUNK_BYTES } from './headers.js';
import { EMPTY_SHA256, GRPC_AUTH_PATH, type RequestSigner, registerBody, registrationId } from './auth.js';

export interface GrpcClientOptions {
  readonly host: string;
  readonly port: number;
  readonly requestTimeoutMs: number;
  /** Keepalive ping interval, and how long a ping may go unanswered before the connection is dead. */
  readonly keepaliveMs?: number;
  readonly keepaliveTimeoutMs?: number;
  /** Aborting cancels the call in flight at once (the node is stopping). */
  readonly signal?: AbortSignal;
  /** Safe mode: signs every call with this worker's key. */
  readonly signer?: RequestSigner;
  /**
   * A copy of the model with this SHA-256 and size that the node already holds and has
   * checked: a received body is compared with it in place instead of copied (BodyBuffer).
   */
  readonly heldModel?: (sha256: string, bytes: number) => Buffer | undefined;
  /** Connects to this Unix socket instead of host:port (the worker's fault proxy). */
  readonly socketPath?: string;
}

// RESOURCE_EXHAUSTED (an update over the server's limit) would fail the same way again: not retried.
// UNAUTHENTICATED (refused by safe mode) would be refused again: not retried.
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.CANCELLED]);

function toTransportError(err: grpc.ServiceError, target: string): TransportError {
  const name = grpc.status[err.code] ?? String(err.code);
  if (err.code === grpc.status.UNAUTHENTICATED) return new TransportError('unauthenticated', `${target}: gRPC UNAUTHENTICATED: ${err.details || err.message}`, false);
  return new TransportError(`grpc-${name}`, `${target}: gRPC ${name}: ${err.details || err.message}`, RETRYABLE.has(err.code));
}

/**
 * One worker's gRPC client. Every worker owns its channel with a local subchannel
 * pool, so each worker has its own HTTP/2 connection as a real worker process would.
 */
export class GrpcWorkerTransport implements WorkerTransport {
  private readonly client: InstanceType<typeof FedsimClient>;
  private readonly target: string;

  constructor(private readonly opts: GrpcClientOptions, private readonly stats: WorkerNodeStats) {
    this.target = opts.socketPath ? `unix:${opts.socketPath}` : opts.host.includes(':') ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
    this.client = new FedsimClient(this.target, grpc.credentials.createInsecure(), {
      ...GRPC_OPTIONS,
      'grpc.use_local_subchannel_pool': process.env.FEDSIM_GRPC_SHARED ? 0 : 1,
      'grpc.enable_retries': 0,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
      // A black-holed connection is noticed by an unanswered ping, not after minutes of TCP retransmission.
      'grpc.keepalive_time_ms': opts.keepaliveMs ?? 10_000,
      'grpc.keepalive_timeout_ms': opts.keepaliveTimeoutMs ?? 5_000,
    });
  }

  /** Safe mode: the signed facts as call metadata (empty metadata with safe mode off). */
  private metadata(path: string, workerId: string, round: number, body: Buffer | null): grpc.Metadata {
    const md = new grpc.Metadata();
    if (!this.opts.signer) return md;
    const bodySha256 = body ? createHash('sha256').update(body).digest('hex') : EMPTY_SHA256;
    for (const [k, v] of Object.entries(this.opts.signer({ method: 'RPC', path, workerId, round, bodySha256 }))) md.set(k, v);
    return md;
  }

  private deadline(): Date {
    return new Date(Date.now() + this.opts.requestTimeoutMs);
  }

  /** Cancels `call` when the node stops; returns the error to reject with instead of CANCELLED. */
  private guard(call: grpc.Call, reject: (e: Error) => void): void {
    const signal = this.opts.signal;
    if (!signal) return;
    const onAbort = () => {
      reject(new TransportError('stopped', 'stopped', false));
      call.cancel();
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    call.on('status', () => signal.removeEventListener('abort', onAbort));
  }

  register(workerIndex: number): Promise<{ workerId: string; version: number }> {
    this.stats.sent('register', 4);
    return new Promise((resolve, reject) => {
      const md = this.metadata(GRPC_AUTH_PATH.register, registrationId(workerIndex), 0, registerBody(workerIndex));
      const call = this.client.register({ workerIndex }, md, { deadline: this.deadline() }, (err, reply) => {
        if (err) return reject(toTransportError(err, this.target));
        this.stats.received('register', reply.workerId.length + 8);
        resolve({ workerId: reply.workerId, version: reply.modelVersion });
      });
      this.guard(call, reject);
    });
  }

  pushUpdate(workerId: string, round: number, body: Buffer): Promise<{ outcome: UpdateOutcome; reason?: string }> {
    this.stats.sent('update', body.length);
    return new Promise((resolve, reject) => {
      const call = this.client.pushUpdate(this.metadata(GRPC_AUTH_PATH.pushUpdate, workerId, round, body), { deadline: this.deadline() }, (err, ack) => {
        if (err) return reject(toTransportError(err, this.target));
        this.stats.received('ack', ack.outcome.length);
        resolve({ outcome: ack.outcome as UpdateOutcome, reason: ack.reason || undefined });
      });
      this.guard(call, reject);
      const header = { workerId, round, totalBytes: body.length };
      let off = 0;
      const pump = () => {
        do {
          const end = Math.min(body.length, off + CHUNK_BYTES);
          const more = call.write({ header: off === 0 ? header : undefined, data: body.subarray(off, end) });
          off = end;
          if (!more && off < body.length) {
            call.once('drain', pump);
            return;
          }
        } while (off < body.length);
        call.end();
      };
      pump();
    });
  }

  pullModel(workerId: string, after: number, onHeaders: () => void): Promise<PulledModel | null> {
    this.stats.sent('pull', 0);
    return new Promise((resolve, reject) => {
      const call = this.client.pullModel({ workerId, after }, this.metadata(GRPC_AUTH_PATH.pullModel, workerId, after, null), { deadline: this.deadline() });
      this.guard(call, reject);
      let header: ModelChunk['header'];
      let body = new BodyBuffer(-1);
      call.on('data', (chunk: ModelChunk) => {
        if (chunk.header) {
          header = chunk.header;
          // The header says how big the model is: one buffer, filled as the chunks come.
          if (body.length === 0) body = new BodyBuffer(header.totalBytes, this.opts.heldModel?.(header.sha256, header.totalBytes));
          onHeaders();
        }
        body.push(chunk.data);
      });
      call.on('error', (err: grpc.ServiceError) => reject(toTransportError(err, this.target)));
      call.on('end', () => {
        if (!header) {
          this.stats.received('empty', 0);
          resolve(null);
          return;
        }
        const n = body.length;
        if (n !== header.totalBytes) {
          reject(new TransportError('truncated', `${this.target}: model v${header.version} ended after ${n} of ${header.totalBytes} bytes`, true));
          return;
        }
        this.stats.received('model', n);
        resolve({
          version: header.version,
          sha256: header.sha256,
          publishedAtMs: header.publishedAtMs,
          body: body.bytes(),
        });
      });
    });
  }

  close(): void {
    this.client.close();
  }
}
