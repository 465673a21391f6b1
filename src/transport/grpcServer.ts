/**
 * The gRPC face of the FL server (fedsim.v1.Fedsim, src/proto/fedsim.proto) on fedsim's
 * own HTTP/2 session (http2Session.ts), on the same round engine as HTTP.
 *
 * Why not @grpc/grpc-js here (it served this until session 15): measured per round of
 * 1,000 workers, the grpc-js server spent 0.61 CPU-seconds where the HTTP server spends
 * 0.16 for the same calls, and every model chunk it sent was copied into a frame per
 * worker. This server answers with buffers framed once per published model, reads update
 * chunks straight into the update's slot, and keeps no per-call machinery beyond a deadline
 * timer. The wire is standard gRPC (grpc/doc/PROTOCOL-HTTP2.md): tests call it with
 * grpc-js's own client as well as fedsim's. docs/architecture.md records the choice.
 */
import type net from 'node:net';
import { sharedReadServer } from '../runtime/accept.js';
import type { ReadAim } from '../runtime/readBuffer.js';
import { ModelHeader, PullRequest, RegisterReply, RegisterRequest, UpdateAck, UpdateHeader } from '../proto/gen/fedsim.js';
import type { UpdateSlot } from '../sim/updateSlots.js';
import type { FlServer } from '../sim/flServer.js';
import type { PublishedModel } from '../sim/ports.js';
import { CHUNK_BYTES } from './headers.js';
import { AUTH, EMPTY_SHA256, GRPC_AUTH_PATH, registerBody, registrationId } from './auth.js';
import { type HeaderList, encodeIndexed, encodeLiterals, headerValue } from './hpack.js';
import { type Http2Stream, Http2Session, SMALL_READ } from './http2Session.js';
import { FrameDecoder, GRPC_MAX_MESSAGE_BYTES, GrpcCode, GrpcStatusError, HeaderDataReader, chunkPrefix, encodeGrpcMessage, frame, parseGrpcTimeout, wholeMessages } from './grpcWire.js';

/**
 * The least window an update's stream gets once it has a slot (it starts with HTTP/2's
 * default 64 KiB, all the other waiting updates may hold here). Four 1 MiB chunks: an update
 * of up to 2 MiB needs no WINDOW_UPDATE at all (Http2Session.credit gives the window back
 * only once less than half of it is left). A larger update gets twice its size once its
 * header is read (holderWindow). What the slot's stream holds here is still bounded: its data
 * goes into the slot as it comes.
 */
const UPLOAD_WINDOW_BYTES = 4 * 1024 * 1024;

/**
 * The update first in line for a slot may send this much ahead (bounded by the largest update
 * the server takes, with UPLOAD_WINDOW_BYTES at least), so the slot does not sit idle when it
 * frees while the worker reads a WINDOW_UPDATE and writes on: at 64 workers and a 14 MB model
 * that took 1 to 6 ms an update, the worker nodes' event loops being busy (docs/benchmarks.md,
 * "Session 23"; 8 MiB left a median of 0.6 ms an update of such waits, 4 MiB 1.0 ms, 16 MiB
 * 0.5 ms). The server holds QUEUE_HOLD_BYTES of it (the first bytes, ready when the slot
 * frees) and then stops reading that connection, so the rest waits in the kernel's socket
 * buffers and the worker's send queue, as an HTTP/1.1 upload waits for its turn, and is not
 * copied here twice. If the slot has not freed within READ_STOP_MAX_MS (a slow upload holds
 * it), the reads start again and the stream holds what its window lets come: at most this
 * much, for one stream at a time (only the first in line has it).
 */
const QUEUE_LEAD_BYTES = 8 * 1024 * 1024;
const QUEUE_HOLD_BYTES = 1024 * 1024;

/**
 * The window of the stream that holds a slot, once its header names the update's size: twice
 * the update and its framing, so the worker never stops to wait for a WINDOW_UPDATE in the
 * middle of it and the server sends none for the stream (Http2Session.credit gives a window
 * back once less than half of it is left; the connection's is given back as the socket is
 * read). With UPLOAD_WINDOW_BYTES alone, a 14 MB update waited about twice,
 * each time for the worker's event loop to read the WINDOW_UPDATE and write on (1 ms or more
 * on a busy node: docs/benchmarks.md "Session 23"). This holds no memory here: a slot's data
 * goes into the slot as it comes, and more than `maxBodyBytes` is refused. A size the worker
 * declares is bounded by `maxBodyBytes`.
 */
export function holderWindow(totalBytes: number, maxBodyBytes: number): number {
  const bytes = Math.min(Math.max(0, totalBytes), maxBodyBytes);
  // Each chunk's framing: the 5-byte gRPC prefix and the data field's tag and length.
  const framing = Math.ceil(bytes / CHUNK_BYTES) * 16 + 4096;
  return Math.min(2 ** 31 - 1, Math.max(UPLOAD_WINDOW_BYTES, 2 * (bytes + framing)));
}

const PATH = {
  register: '/fedsim.v1.Fedsim/Register',
  pushUpdate: '/fedsim.v1.Fedsim/PushUpdate',
  pullModel: '/fedsim.v1.Fedsim/PullModel',
} as const;

/**
 * A published model's ModelChunk messages, framed once per version and written to every
 * pull as they are: nothing is encoded or copied per worker. Each message is its framed
 * start (the 5-byte prefix, the header on the first, the data's tag and length) and a view
 * of the model's body: the model is not copied into its messages either (a 14 MB model
 * held twice was 14 MB more of the server's memory per version).
 */
const framedChunks = new WeakMap<PublishedModel, Buffer[]>();

function framedModel(model: PublishedModel): Buffer[] {
  let chunks = framedChunks.get(model);
  if (chunks) return chunks;
  chunks = [];
  const total = model.body.length;
  let off = 0;
  do {
    const end = Math.min(total, off + CHUNK_BYTES);
    const header = off === 0 ? ModelHeader.encode({ version: model.version, totalBytes: total, sha256: model.sha256, publishedAtMs: model.publishedAtMs }).finish() : null;
    chunks.push(chunkPrefix(header, end - off));
    if (end > off) chunks.push(model.body.subarray(off, end));
    off = end;
  } while (off < total);
  framedChunks.set(model, chunks);
  return chunks;
}

/** Framed acks without a reason (nearly every ack), encoded once each. */
const plainAcks = new Map<string, Buffer>();

function ackMessage(outcome: string, reason: string): Buffer {
  if (reason) return frame(UpdateAck.encode({ outcome, reason }).finish());
  let m = plainAcks.get(outcome);
  if (!m) plainAcks.set(outcome, (m = frame(UpdateAck.encode({ outcome, reason }).finish())));
  return m;
}

/** `:status: 200` and `content-type: application/grpc`, encoded once. */
const RESPONSE_HEADERS = (() => {
  const out: number[] = [];
  encodeIndexed(out, 8);
  encodeLiterals(out, [['content-type', 'application/grpc']]);
  return Buffer.from(out);
})();

/** A status as a header block: trailers, or (with the response headers first) trailers-only. */
function statusBlock(code: number, message: string, withResponseHeaders: boolean): Buffer {
  const out: number[] = [];
  const fields: [string, string][] = [['grpc-status', String(code)]];
  if (message) fields.push(['grpc-message', encodeGrpcMessage(message)]);
  encodeLiterals(out, fields);
  return withResponseHeaders ? Buffer.concat([RESPONSE_HEADERS, Buffer.from(out)]) : Buffer.from(out);
}

const OK_TRAILERS = statusBlock(GrpcCode.OK, '', false);

/** One call on the server: its metadata, its deadline, and how it answers. */
class ServerCall {
  /** The call ended before it was answered (the client cancelled, the connection died, or the deadline passed). */
  cancelled = false;
  private answered = false;
  private headersSent = false;
  private readonly timer: NodeJS.Timeout | null;
  private readonly onCancel: (() => void)[] = [];
  private onData: ((chunk: Buffer) => void) | null = null;
  private onEnd: (() => void) | null = null;
  private into: ((max: number) => ReadAim | number | null) | null = null;

  constructor(
    readonly stream: Http2Stream,
    private readonly headers: HeaderList,
    endAtHeaders: boolean,
  ) {
    // The request's bytes wait (and flow control holds the client) until `read` is called.
    stream.pause();
    stream.handler = {
      // Trailers on a request (gRPC clients send none) end it like END_STREAM on DATA.
      headers: (_fields, end) => {
        if (end) stream.deliverEnd();
      },
      data: (chunk) => this.onData?.(chunk),
      end: () => this.onEnd?.(),
      reset: () => this.cancel(),
      died: () => this.cancel(),
      into: (max) => this.into?.(max) ?? null,
    };
    if (endAtHeaders) stream.deliverEnd();
    const timeoutMs = parseGrpcTimeout(this.meta('grpc-timeout'));
    this.timer =
      timeoutMs === undefined
        ? null
        : setTimeout(() => {
            if (this.answered || this.cancelled) return;
            // What waits on the call lets go first (a held long-poll, an update's slot), then the status goes out.
            this.cancel();
            this.sendStatus(GrpcCode.DEADLINE_EXCEEDED, 'deadline exceeded');
          }, Math.max(1, timeoutMs));
  }

  meta(name: string): string | undefined {
    return headerValue(this.headers, name);
  }

  /**
   * Reads the request: its bytes as they come (views: copy to keep), then its end. `into`, when
   * given, names where up to `max` of the next request bytes may be read straight into (an
   * update's slot: StreamHandler.into).
   */
  read(onData: (chunk: Buffer) => void, onEnd: () => void, into?: (max: number) => ReadAim | number | null): void {
    this.onData = onData;
    this.onEnd = onEnd;
    this.into = into ?? null;
    this.stream.resume();
  }

  /** Runs `fn` if the call ends unanswered. */
  whenCancelled(fn: () => void): void {
    if (this.cancelled) fn();
    else this.onCancel.push(fn);
  }

  private cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.answered || this.cancelled) return;
    this.cancelled = true;
    for (const fn of this.onCancel.splice(0)) fn();
  }

  /** Queues framed response bytes (views: they must not change); they go out as flow control allows. */
  send(bytes: Buffer): boolean {
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond(RESPONSE_HEADERS);
    }
    return this.stream.write(bytes);
  }

  /**
   * Ends the call with a status: in the trailers, or trailers-only when nothing was sent.
   * `sent` runs once the status is written, behind everything queued before it (not if the
   * call is cut first).
   */
  finish(code: number, message = '', sent?: () => void): void {
    if (this.answered || this.cancelled) return;
    this.answered = true;
    if (this.timer) clearTimeout(this.timer);
    if (sent) this.stream.onEnded = sent;
    this.sendStatus(code, message);
  }

  private sendStatus(code: number, message: string): void {
    if (this.stream.localClosed) return;
    if (this.headersSent) this.stream.endWithTrailers(code === GrpcCode.OK && !message ? OK_TRAILERS : statusBlock(code, message, false));
    else this.stream.respond(statusBlock(code, message, true), true);
  }

  fail(err: GrpcStatusError): void {
    this.finish(err.code, err.details);
  }
}

function refusal(reason: string): GrpcStatusError {
  return new GrpcStatusError(GrpcCode.UNAUTHENTICATED, `safe mode: request refused: ${reason}`);
}

/** The one request message of a unary or server-streaming call (or the error that stopped it). */
function readRequest(call: ServerCall): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let message: Buffer | null = null;
    let failed = false;
    const decoder = new FrameDecoder(
      wholeMessages((m) => {
        message ??= m;
      }),
      GRPC_MAX_MESSAGE_BYTES,
    );
    // After a failure the rest is read and dropped, so the client is not held by flow control.
    call.read(
      (chunk) => {
        if (failed) return;
        try {
          decoder.push(chunk);
        } catch (e) {
          failed = true;
          reject(e);
        }
      },
      () => {
        if (failed) return;
        if (message && decoder.atBoundary) resolve(message);
        else reject(new GrpcStatusError(GrpcCode.INTERNAL, message ? 'the request ended inside a message' : 'the request carried no message'));
      },
    );
  });
}

/** The gRPC face of the FL server (fedsim.v1.Fedsim), on the same round engine as HTTP. */
export class GrpcFlServer {
  private readonly server: net.Server;
  private readonly sessions = new Set<Http2Session>();

  /** The window of the update first in line (QUEUE_LEAD_BYTES). */
  private readonly leadWindow: number;

  constructor(private readonly fl: FlServer, private readonly maxBodyBytes: number) {
    this.leadWindow = Math.max(UPLOAD_WINDOW_BYTES, Math.min(QUEUE_LEAD_BYTES, maxBodyBytes));
    // Reads land in the process's shared buffer and are parsed in place (runtime/accept.ts).
    this.server = sharedReadServer((socket) => {
      socket.setNoDelay(true);
      const session = new Http2Session(socket, {
        role: 'server',
        readByCaller: true,
        // HTTP/2's default stream window for uploads: an update that waits for a slot holds
        // at most this much here, not its whole megabytes. (Not less: a client may send the
        // default's worth before it has read our SETTINGS, RFC 9113 §6.9.2, and a retried
        // update is often the first stream of its connection.)
        streamWindow: 65_535,
        // The streams' windows bound what a connection holds (a worker has an update and a
        // pull open at most); a large connection window only spares WINDOW_UPDATEs (it is
        // given back as the socket is read), and is more than the window of an update first in line.
        connectionWindow: 4 * QUEUE_LEAD_BYTES,
        onStream: (stream, fields, end) => this.dispatch(stream, fields, end),
        // A dead connection ends its calls through their streams.
        onClosed: (s) => this.sessions.delete(s),
      });
      this.sessions.add(session);
      // An update's DATA may be read straight into its slot (Http2Session.readTarget).
      return Object.assign((chunk: Buffer) => session.received(chunk), { into: () => session.readTarget() });
    });
  }

  private dispatch(stream: Http2Stream, headers: HeaderList, end: boolean): void {
    const method = headerValue(headers, ':method');
    const contentType = headerValue(headers, 'content-type') ?? '';
    if (method !== 'POST' || !contentType.startsWith('application/grpc')) {
      // Not a gRPC request: an HTTP answer, as gRPC's protocol asks.
      const out: number[] = [];
      encodeLiterals(out, [[':status', method !== 'POST' ? '405' : '415']]);
      stream.respond(Buffer.from(out), true);
      return;
    }
    const call = new ServerCall(stream, headers, end);
    const path = headerValue(headers, ':path');
    const failed = (e: unknown) => {
      if (e instanceof GrpcStatusError) {
        if (e.code === GrpcCode.RESOURCE_EXHAUSTED || e.code === GrpcCode.INTERNAL) this.fl.error(e.code === GrpcCode.RESOURCE_EXHAUSTED ? 'too-large' : 'bad-request');
        call.fail(e);
      } else call.fail(new GrpcStatusError(GrpcCode.INTERNAL, (e as Error).message));
    };
    switch (path) {
      case PATH.register:
        this.register(call).catch(failed);
        return;
      case PATH.pushUpdate:
        this.pushUpdate(call, failed);
        return;
      case PATH.pullModel:
        this.pull(call).catch(failed);
        return;
      default:
        call.finish(GrpcCode.UNIMPLEMENTED, `method ${String(path)} is not served here (fedsim.v1.Fedsim has Register, PushUpdate and PullModel)`);
    }
  }

  private async register(call: ServerCall): Promise<void> {
    const request = RegisterRequest.decode(await readRequest(call));
    this.fl.in('register', 4);
    const claimed = call.meta(AUTH.bodySha256) ?? EMPTY_SHA256;
    const facts = { method: 'RPC', path: GRPC_AUTH_PATH.register, workerId: registrationId(request.workerIndex), round: 0, bodySha256: claimed };
    const auth = this.fl.authorize(facts, (n) => call.meta(n));
    if (!auth.ok) return call.fail(refusal(auth.reason));
    if (this.fl.auth && this.fl.auth.bodySha256(registerBody(request.workerIndex)) !== claimed) {
      this.fl.refused('body-hash', auth.publicKey, facts);
      return call.fail(refusal('body-hash'));
    }
    if (call.cancelled) return;
    const r = this.fl.engine.register(request.workerIndex);
    const exchangeKey = this.fl.auth?.bind(r.workerId, auth.publicKey, auth.exchangeKey) ?? '';
    this.fl.out('register', r.workerId.length + 8);
    call.send(frame(RegisterReply.encode({ workerId: r.workerId, modelVersion: r.version, exchangeKey }).finish()));
    call.finish(GrpcCode.OK);
  }

  /**
   * The update's chunks go straight into a slot as they arrive (no message is gathered
   * first). The stream is read only once a slot is free: until then HTTP/2 flow control
   * holds the worker.
   */
  private pushUpdate(call: ServerCall, failed: (e: unknown) => void): void {
    let slot: UpdateSlot | null = null;
    let over = false;
    const release = () => {
      slot?.release();
      slot = null;
    };
    // A refused update is answered at once; the rest of it is read and dropped.
    const stop = (e: GrpcStatusError) => {
      if (over) return;
      over = true;
      release();
      failed(e);
    };
    // First in line for a slot: the stream may send QUEUE_LEAD_BYTES ahead, of which this
    // session holds QUEUE_HOLD_BYTES and the kernel the rest. The others hold HTTP/2's
    // default 64 KiB. A call that ends while it waits leaves the line (its turn and its lead
    // go to the next).
    const turn = this.fl.slots.acquire(
      () => {
        call.stream.holdLimit = QUEUE_HOLD_BYTES;
        call.stream.growWindow(this.leadWindow);
      },
      () => call.cancelled,
    );
    call.whenCancelled(() => {
      release();
      this.fl.slots.dropGone();
    });
    turn.then((s) => {
      if (call.cancelled) {
        s.release();
        return;
      }
      slot = s;
      const claimed = call.meta(AUTH.bodySha256) ?? EMPTY_SHA256;
      const hash = this.fl.auth ? this.fl.auth.bodyDigest(() => s.bytes()) : null;
      let header: UpdateHeader | null = null;
      let publicKey = '';
      // Safe mode: the signature covers the worker id and round the first chunk names.
      let authorized = true;
      const reader = new HeaderDataReader(
        (b) => UpdateHeader.decode(b),
        (h) => {
          if (header) return;
          header = h;
          // Room for the whole update at once (from the codec's pool when it fits there),
          // not grown as it comes; a declared size over the limit is refused as it arrives.
          if (h.totalBytes <= this.maxBodyBytes) slot?.reserve(h.totalBytes);
          // The slot's stream may send its whole update without waiting on a WINDOW_UPDATE
          // (once safe mode has let it in).
          const grow = () => call.stream.growWindow(holderWindow(h.totalBytes, this.maxBodyBytes));
          if (!this.fl.auth) return grow();
          const auth = this.fl.authorize({ method: 'RPC', path: GRPC_AUTH_PATH.pushUpdate, workerId: h.workerId, round: h.round, bodySha256: claimed }, (n) => call.meta(n));
          if (auth.ok) {
            publicKey = auth.publicKey;
            grow();
          } else {
            authorized = false;
            stop(refusal(auth.reason));
          }
        },
        (data) => {
          if (over || !slot) return;
          if (slot.length + data.length > this.maxBodyBytes) {
            stop(new GrpcStatusError(GrpcCode.RESOURCE_EXHAUSTED, `update over ${this.maxBodyBytes} bytes`));
            return;
          }
          slot.write(data);
          hash?.update(data); // after the write: the digest reads the slot
        },
      );
      const decoder = new FrameDecoder(reader, GRPC_MAX_MESSAGE_BYTES);
      call.stream.growWindow(UPLOAD_WINDOW_BYTES);
      const onData = (chunk: Buffer) => {
        if (over) return;
        try {
          decoder.push(chunk);
        } catch (e) {
          stop(e instanceof GrpcStatusError ? e : new GrpcStatusError(GrpcCode.INTERNAL, `an update chunk could not be read: ${(e as Error).message}`));
        }
      };
      // The socket reads the update's data bytes straight into the slot: a frame's bytes left,
      // within the message, within its data field (the view comes back, and write() counts it).
      // The framing between (a message's prefix, a field's tag and length) is read a few bytes
      // at a time, so the read after it lands in the slot again. The rest (the header, before
      // which the slot has no room yet, and any field skipped) goes through the shared buffer.
      const into = (max: number) => {
        if (over || !slot || !authorized || !header) return null;
        const n = reader.dataRoom(decoder.room(max));
        if (n > 0) return slot.aim(n);
        return decoder.inPrefix || reader.framing ? SMALL_READ : null;
      };
      call.read(onData, () => {
        void (async () => {
          if (!authorized || over || !slot || call.cancelled) return;
          const h = header as UpdateHeader | null;
          if (!decoder.atBoundary) return stop(new GrpcStatusError(GrpcCode.INTERNAL, 'the update ended inside a chunk'));
          if (!h) {
            over = true;
            release();
            this.fl.error('bad-request');
            call.finish(GrpcCode.INVALID_ARGUMENT, 'the first UpdateChunk must carry the header');
            return;
          }
          const body = slot.bytes();
          this.fl.in('update', body.length);
          if (hash && !hash.matches(claimed)) {
            // Signed, but not this body: nothing of it is folded.
            over = true;
            release();
            this.fl.refused('body-hash', publicKey, { method: 'RPC', path: GRPC_AUTH_PATH.pushUpdate, workerId: h.workerId, round: h.round, bodySha256: claimed });
            call.fail(refusal('body-hash'));
            return;
          }
          // Folded from the slot (which a fold in a thread holds until it is done): the
          // aggregator keeps nothing of the body.
          const ack = this.fl.engine.submit(h.workerId, h.round, body, () => s.hold());
          over = true;
          release();
          this.fl.out('ack', ack.outcome.length);
          call.send(ackMessage(ack.outcome, ack.reason ?? ''));
          call.finish(GrpcCode.OK);
        })().catch((e: unknown) => {
          const err = new GrpcStatusError(GrpcCode.INTERNAL, `the update could not be taken: ${(e as Error).message}`);
          if (!over) return stop(err);
          // Taken, and its answer failed: the call ends with the error (its slot is released already).
          try {
            failed(err);
          } catch {
            // The call is gone.
          }
        });
      }, into);
    }).catch((e: unknown) => stop(new GrpcStatusError(GrpcCode.INTERNAL, `the update could not be read: ${(e as Error).message}`)));
  }

  private async pull(call: ServerCall): Promise<void> {
    const request = PullRequest.decode(await readRequest(call));
    if (this.fl.auth) {
      const auth = this.fl.authorize(
        { method: 'RPC', path: GRPC_AUTH_PATH.pullModel, workerId: request.workerId, round: request.after, bodySha256: call.meta(AUTH.bodySha256) ?? EMPTY_SHA256 },
        (n) => call.meta(n),
      );
      if (!auth.ok) return call.fail(refusal(auth.reason));
    }
    if (call.cancelled) return;
    this.fl.in('pull', 0);
    const wait = this.fl.engine.waitHeld(request.after, this.fl.pollTimeoutMs);
    call.whenCancelled(() => wait.cancel());
    const held = await wait.promise;
    if (call.cancelled) {
      held?.release();
      return;
    }
    if (!held) {
      // The poll timeout ended first: status OK and no chunk (the gRPC "204").
      this.fl.out('empty', 0);
      call.finish(GrpcCode.OK);
      return;
    }
    const model = held.model;
    // The model's one framing, queued whole on the stream with the status behind it: the
    // queue holds views of the shared chunks (nothing is copied per pull), and the session
    // writes them as the worker's window lets them go, then the trailers at once. Waiting for
    // the socket to drain before the status cost each pull a turn of this busy event loop.
    for (const chunk of framedModel(model)) call.send(chunk);
    call.finish(GrpcCode.OK, '', () => this.fl.out('model', model.body.length));
    // The model's buffer is given back (for a later version) once the stream is over and the
    // socket is done with every byte of it.
    call.stream.whenWritten(held.release);
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.server.once('error', onError);
      this.server.listen({ host, port }, () => {
        this.server.off('error', onError);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stops taking connections; calls in flight get `graceMs` to end, then every connection is closed. */
  close(graceMs = 1000): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) {
        for (const s of this.sessions) s.destroy('the server is closing', false);
        resolve();
        return;
      }
      const timer = setTimeout(() => {
        for (const s of this.sessions) s.destroy('the server is closing', false);
      }, graceMs);
      timer.unref();
      this.server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      for (const s of this.sessions) s.shutdown();
    });
  }
}
