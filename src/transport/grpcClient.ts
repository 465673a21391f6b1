import { ModelHeader, RegisterReply, RegisterRequest, UpdateAck, UpdateHeader, PullRequest } from '../proto/gen/fedsim.js';
import type { PulledModel, UpdateOutcome, WorkerTransport } from '../sim/ports.js';
import type { UpdateBody } from '../sim/updateBody.js';
import { pieceOf } from './pieces.js';
import { TransportError } from '../sim/ports.js';
import type { WorkerNodeStats } from '../sim/workerStats.js';
import { BodyBuffer, CHUNK_BYTES, type SharedBody } from './headers.js';
import { EMPTY_SHA256, GRPC_AUTH_PATH, type RequestSigner, registerBody, registrationId } from './auth.js';
import { GRPC_MAX_MESSAGE_BYTES, type GrpcCall, GrpcCode, GrpcConnection, GrpcStatusError, GrpcStoppedError, HeaderDataReader, chunkPrefix, codeName, frame, wholeMessages } from './grpcWire.js';
import type { OpenConnection } from '../runtime/readBuffer.js';
import { fedsimVersion } from '../runtime/self.js';
import { formatHostPort } from '../config/values.js';

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
   * checked, or that the node's pulls are receiving now: a received body is compared with it
   * (and fills it) in place instead of being copied (BodyBuffer).
   */
  readonly heldModel?: (sha256: string, bytes: number) => Buffer | SharedBody | undefined;
  /** Opens the worker's connection instead of a socket of its own (the in-process fault proxy). */
  readonly connect?: OpenConnection;
}

// RESOURCE_EXHAUSTED (an update over the server's limit) would fail the same way again: not retried.
// UNAUTHENTICATED (refused by safe mode) would be refused again: not retried.
const RETRYABLE = new Set<number>([GrpcCode.UNAVAILABLE, GrpcCode.DEADLINE_EXCEEDED, GrpcCode.INTERNAL, GrpcCode.UNKNOWN, GrpcCode.CANCELLED]);

const PATH = {
  register: '/fedsim.v1.Fedsim/Register',
  pushUpdate: '/fedsim.v1.Fedsim/PushUpdate',
  pullModel: '/fedsim.v1.Fedsim/PullModel',
} as const;

let agent: string | null = null;
function userAgent(): string {
  agent ??= `fedsim/${fedsimVersion()} (grpc)`;
  return agent;
}

function toTransportError(err: unknown, target: string): TransportError {
  if (err instanceof TransportError) return err;
  if (err instanceof GrpcStoppedError) return new TransportError('stopped', 'stopped', false);
  if (!(err instanceof GrpcStatusError)) return new TransportError('internal', `${target}: ${(err as Error).message}`, false);
  const name = codeName(err.code);
  if (err.code === GrpcCode.UNAUTHENTICATED) return new TransportError('unauthenticated', `${target}: gRPC UNAUTHENTICATED: ${err.details}`, false);
  return new TransportError(`grpc-${name}`, `${target}: gRPC ${name}: ${err.details}`, RETRYABLE.has(err.code));
}


/**
 * One worker's gRPC client (src/transport/grpcWire.ts, on node:http2). Every worker owns its
 * HTTP/2 connection, as a real worker process would.
 */
export class GrpcWorkerTransport implements WorkerTransport {
  private readonly conn: GrpcConnection;
  private readonly target: string;

  constructor(private readonly opts: GrpcClientOptions, private readonly stats: WorkerNodeStats) {
    this.target = formatHostPort(opts.host, opts.port);
    this.conn = new GrpcConnection({
      host: opts.host,
      port: opts.port,
      createConnection: opts.connect,
      // A black-holed connection is noticed by an unanswered ping, not after minutes of TCP retransmission.
      keepaliveMs: opts.keepaliveMs ?? 10_000,
      keepaliveTimeoutMs: opts.keepaliveTimeoutMs ?? 5_000,
      maxMessageBytes: GRPC_MAX_MESSAGE_BYTES,
      signal: opts.signal,
      userAgent: userAgent(),
    });
  }

  /** Waits for the call's status; a failure becomes a TransportError naming the server. */
  private ended(call: GrpcCall): Promise<void> {
    return call.status.catch((e: unknown) => {
      throw toTransportError(e, this.target);
    });
  }

  /** Safe mode: the signed facts as call metadata (none with safe mode off). */
  private metadata(path: string, workerId: string, round: number, body: UpdateBody | null): Record<string, string> | undefined {
    if (!this.opts.signer) return undefined;
    const bodySha256 = body ? this.opts.signer.bodySha256(body) : EMPTY_SHA256;
    return this.opts.signer.headers({ method: 'RPC', path, workerId, round, bodySha256 });
  }

  async register(workerIndex: number): Promise<{ workerId: string; version: number }> {
    this.stats.sent('register', 4);
    let reply: RegisterReply | null = null;
    const call = this.conn.call({
      path: PATH.register,
      metadata: this.metadata(GRPC_AUTH_PATH.register, registrationId(workerIndex), 0, registerBody(workerIndex)),
      timeoutMs: this.opts.requestTimeoutMs,
      sink: wholeMessages((m) => (reply = RegisterReply.decode(m))),
    });
    call.end(frame(RegisterRequest.encode({ workerIndex }).finish()));
    await this.ended(call);
    const r = reply as RegisterReply | null;
    if (!r) throw new TransportError('grpc-INTERNAL', `${this.target}: gRPC INTERNAL: Register ended OK without a reply`, true);
    this.stats.received('register', r.workerId.length + 8);
    this.opts.signer?.registered(r.exchangeKey);
    return { workerId: r.workerId, version: r.modelVersion };
  }

  async pushUpdate(workerId: string, round: number, body: UpdateBody): Promise<{ outcome: UpdateOutcome; reason?: string }> {
    this.stats.sent('update', body.length);
    let ack: UpdateAck | null = null;
    const call = this.conn.call({
      path: PATH.pushUpdate,
      metadata: this.metadata(GRPC_AUTH_PATH.pushUpdate, workerId, round, body),
      timeoutMs: this.opts.requestTimeoutMs,
      sink: wholeMessages((m) => (ack = UpdateAck.decode(m))),
    });
    // The first chunk carries the header; the data go out as views of a body held whole, or,
    // made as it is sent, a piece at a time (pieces.ts) while the call takes more. A pooled
    // piece goes back once it has left the call's queue and the socket is done with it.
    const header = UpdateHeader.encode({ workerId, round, totalBytes: body.length }).finish();
    const pooled = !this.opts.connect;
    let written: Array<() => void> = [];
    const handedOn = () => {
      if (written.length === 0) return;
      const done = written;
      written = [];
      call.afterWrites(() => {
        for (const d of done) d();
      });
    };
    let off = 0;
    const pump = () => {
      handedOn();
      do {
        const end = Math.min(body.length, off + CHUNK_BYTES);
        call.write(chunkPrefix(off === 0 ? header : null, end - off));
        let more = true;
        if (end > off) {
          const piece = pieceOf(body, off, end, pooled);
          written.push(piece.done);
          more = call.write(piece.bytes);
        }
        off = end;
        if (more) handedOn();
        else if (off < body.length) {
          call.onDrain(pump);
          return;
        }
      } while (off < body.length);
      call.end();
    };
    pump();
    try {
      await this.ended(call);
    } catch (e) {
      // Failed: the pieces not yet given back go once the stream has left its connection and
      // the socket is done with its bytes (its queue may still hold views of them until then).
      const left = written;
      written = [];
      call.whenWritten(() => {
        for (const d of left) d();
      });
      throw e;
    }
    // Answered: the server has every byte, so the socket holds none of the last pieces.
    handedOn();
    const a = ack as UpdateAck | null;
    if (!a) throw new TransportError('grpc-INTERNAL', `${this.target}: gRPC INTERNAL: PushUpdate ended OK without an ack`, true);
    this.stats.received('ack', a.outcome.length);
    return { outcome: a.outcome as UpdateOutcome, reason: a.reason || undefined };
  }

  async pullModel(workerId: string, after: number, onHeaders: () => void): Promise<PulledModel | null> {
    this.stats.sent('pull', 0);
    let header: ModelHeader | null = null;
    let body = new BodyBuffer(-1);
    const reader = new HeaderDataReader(
      (b) => ModelHeader.decode(b),
      (h) => {
        if (header) return;
        header = h;
        // The header says how big the model is: one buffer, filled as the chunks come.
        body = new BodyBuffer(h.totalBytes, this.opts.heldModel?.(h.sha256, h.totalBytes));
        onHeaders();
      },
      (data) => body.push(data),
    );
    const call = this.conn.call({
      path: PATH.pullModel,
      metadata: this.metadata(GRPC_AUTH_PATH.pullModel, workerId, after, null),
      timeoutMs: this.opts.requestTimeoutMs,
      sink: reader,
    });
    call.end(frame(PullRequest.encode({ workerId, after }).finish()));
    await this.ended(call);
    const h = header as ModelHeader | null;
    if (!h) {
      if (body.length > 0) throw new TransportError('grpc-INTERNAL', `${this.target}: gRPC INTERNAL: model data came before the model header`, true);
      this.stats.received('empty', 0);
      return null;
    }
    const n = body.length;
    if (n !== h.totalBytes) throw new TransportError('truncated', `${this.target}: model v${h.version} ended after ${n} of ${h.totalBytes} bytes`, true);
    this.stats.received('model', n);
    return { version: h.version, sha256: h.sha256, publishedAtMs: h.publishedAtMs, body: body.bytes() };
  }

  close(): void {
    this.conn.close();
  }
}
