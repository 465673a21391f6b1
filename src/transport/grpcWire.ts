/**
 * The client side of gRPC over HTTP/2, on fedsim's own HTTP/2 session (http2Session.ts): what a fedsim worker needs
 * of it and no more (unary, client-streaming and server-streaming calls; deadlines;
 * keepalive pings; cancellation; statuses from trailers, trailers-only answers, HTTP
 * statuses and RST_STREAM codes as gRPC's HTTP/2 protocol document maps them).
 *
 * Why not @grpc/grpc-js on the worker side: a worker node runs hundreds or thousands of
 * simulated workers, each with its own connection, and grpc-js's per-call machinery
 * (channel and call stacks, filters, metadata objects, a copy of every message into a frame
 * and another out of it) cost these nodes about twice the CPU of the HTTP client for the
 * same calls. The wire is the same: fedsim's server (grpcServer.ts) and any other gRPC server
 * see ordinary gRPC calls. docs/architecture.md records the choice.
 *
 * What is left out on purpose: compression (never offered, so a server must not compress),
 * TLS (fedsim's FL protocol runs in clear, docs/protocols.md), name resolution beyond one
 * address, retries (fedsim's retry policy is the only one).
 */
import net from 'node:net';
import { type OpenConnection, sharedRead } from '../runtime/readBuffer.js';
import { formatHostPort } from '../config/values.js';
import { type HeaderList, encodeIndexed, encodeLiterals, headerValue, literalBytes, writeLiteral } from './hpack.js';
import { H2Error, Http2Session, type Http2Stream, type StreamHandler } from './http2Session.js';

/** Both sides allow messages of 8 MiB: chunks are 1 MiB (docs/protocols.md). */
export const GRPC_MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

/**
 * The stream window a worker grants the server: 16 MiB, a whole MobileNetV2 in flight. The
 * worker reads what arrives at once (nothing piles up here), and the server's side of it is
 * views of the one framing of the model, so a large window costs neither side memory. With
 * 1 MiB (session 15 to 17) every 1 MiB chunk waited for the worker's WINDOW_UPDATE to cross
 * two busy event loops: a 4 MiB model took 12.7 ms to download against 5.0 ms with 16 MiB,
 * and 7.7 ms over HTTP/1.1 (docs/benchmarks.md, session 17).
 */
const DOWNLOAD_WINDOW_BYTES = 16 * 1024 * 1024;

/** gRPC status codes (grpc/doc/statuscodes.md). */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const CODE_NAMES: string[] = [];
for (const [name, code] of Object.entries(GrpcCode)) CODE_NAMES[code] = name;

/** The name of a status code ("UNAVAILABLE"), or its number for a code gRPC does not define. */
export function codeName(code: number): string {
  return CODE_NAMES[code] ?? String(code);
}

/** A call that ended with a status other than OK (or that could not be made). */
export class GrpcStatusError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`${codeName(code)}: ${details}`);
    this.name = 'GrpcStatusError';
  }
}

/** The call was cancelled because its connection's abort signal fired (the node is stopping). */
export class GrpcStoppedError extends Error {
  constructor() {
    super('stopped');
    this.name = 'GrpcStoppedError';
  }
}

/** Receives the messages of a response as they arrive, without gathering them first. */
export interface MessageSink {
  /** A message of `length` bytes starts. */
  start(length: number): void;
  /** The next bytes of the current message (a view into the received data: copy to keep). */
  data(chunk: Buffer): void;
  /** The current message is complete. */
  end(): void;
}

/** A sink that gathers each (small) message whole and hands it on. */
export function wholeMessages(onMessage: (message: Buffer) => void): MessageSink {
  let buf: Buffer | null = null;
  let at = 0;
  return {
    start(length) {
      buf = Buffer.allocUnsafe(length);
      at = 0;
    },
    data(chunk) {
      chunk.copy(buf!, at);
      at += chunk.length;
    },
    end() {
      const b = buf!;
      buf = null;
      onMessage(b);
    },
  };
}

/**
 * Splits the response's DATA into gRPC length-prefixed messages (1 byte compressed flag,
 * 4 bytes big-endian length, the message) and passes their bytes on as they come.
 */
export class FrameDecoder {
  private header = Buffer.alloc(5);
  private headerHave = 0;
  /** Bytes of the current message still to come; -1 between messages. */
  private remaining = -1;

  constructor(
    private readonly sink: MessageSink,
    private readonly maxMessageBytes: number,
  ) {}

  /** True between messages: a stream may end here. */
  get atBoundary(): boolean {
    return this.remaining < 0 && this.headerHave === 0;
  }

  /** True while a message's 5-byte prefix is being read (between messages). */
  get inPrefix(): boolean {
    return this.remaining < 0;
  }

  /** How many of the next `max` bytes are the current message's (they go to the sink as they are): 0 between messages. */
  room(max: number): number {
    return this.remaining > 0 ? Math.min(max, this.remaining) : 0;
  }

  /** Throws GrpcStatusError for a compressed or oversized message. */
  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.remaining < 0) {
        const take = Math.min(5 - this.headerHave, chunk.length - off);
        chunk.copy(this.header, this.headerHave, off, off + take);
        this.headerHave += take;
        off += take;
        if (this.headerHave < 5) return;
        this.headerHave = 0;
        if (this.header[0] !== 0) throw new GrpcStatusError(GrpcCode.INTERNAL, 'received a compressed message, but no compression was offered');
        const length = this.header.readUInt32BE(1);
        if (length > this.maxMessageBytes) throw new GrpcStatusError(GrpcCode.RESOURCE_EXHAUSTED, `received a message of ${length} bytes, over the limit of ${this.maxMessageBytes}`);
        this.remaining = length;
        this.sink.start(length);
        if (length === 0) {
          this.remaining = -1;
          this.sink.end();
        }
        continue;
      }
      const take = Math.min(this.remaining, chunk.length - off);
      this.sink.data(off === 0 && take === chunk.length ? chunk : chunk.subarray(off, off + take));
      off += take;
      this.remaining -= take;
      if (this.remaining === 0) {
        this.remaining = -1;
        this.sink.end();
      }
    }
  }
}

/**
 * The framed start of a chunk message (UpdateChunk or ModelChunk: `header` = 1, `data` = 2)
 * whose data, `dataBytes` long, follow as they are: a body goes out as views, never copied
 * into its messages.
 */
export function chunkPrefix(header: Uint8Array | null, dataBytes: number): Buffer {
  const head: number[] = [];
  if (header) head.push(0x0a, ...varint(header.length));
  const dataTag = dataBytes > 0 ? [0x12, ...varint(dataBytes)] : [];
  const messageBytes = head.length + (header?.length ?? 0) + dataTag.length + dataBytes;
  const out = Buffer.allocUnsafe(5 + head.length + (header?.length ?? 0) + dataTag.length);
  // The message's 5-byte gRPC prefix: not compressed, its length.
  out[0] = 0;
  out.writeUInt32BE(messageBytes, 1);
  let at = 5;
  out.set(head, at);
  at += head.length;
  if (header) {
    out.set(header, at);
    at += header.length;
  }
  out.set(dataTag, at);
  return out;
}

/** A whole framed message. */
export function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(message.length + 5);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** grpc-timeout: at most 8 digits, in the finest unit that fits. */
export function grpcTimeout(ms: number): string {
  const m = Math.max(0, Math.ceil(ms));
  if (m < 1e8) return `${m}m`;
  const s = Math.ceil(m / 1000);
  if (s < 1e8) return `${s}S`;
  return `${Math.min(99_999_999, Math.ceil(s / 3600))}H`;
}

const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** A grpc-timeout header in milliseconds; undefined when absent or malformed (no deadline). */
export function parseGrpcTimeout(raw: string | string[] | undefined): number | undefined {
  const m = /^(\d{1,8})([HMSmun])$/.exec(Array.isArray(raw) ? (raw[0] ?? '') : (raw ?? ''));
  return m ? Number(m[1]) * TIMEOUT_UNIT_MS[m[2]] : undefined;
}

/** grpc-message on the wire: printable ASCII except '%' as is, the rest percent-encoded (UTF-8). */
export function encodeGrpcMessage(message: string): string {
  return message.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c));
}

/** gRPC's mapping of an HTTP status that is not 200 (grpc/doc/http-grpc-status-mapping.md). */
function httpStatusCode(status: number): number {
  switch (status) {
    case 400:
      return GrpcCode.INTERNAL;
    case 401:
      return GrpcCode.UNAUTHENTICATED;
    case 403:
      return GrpcCode.PERMISSION_DENIED;
    case 404:
      return GrpcCode.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcCode.UNAVAILABLE;
    default:
      return GrpcCode.UNKNOWN;
  }
}

/** gRPC's mapping of a RST_STREAM error code that ended a call before its status. */
function rstCode(code: number): number {
  switch (code) {
    case H2Error.REFUSED_STREAM:
      return GrpcCode.UNAVAILABLE;
    case H2Error.CANCEL:
      return GrpcCode.CANCELLED;
    case H2Error.ENHANCE_YOUR_CALM:
      return GrpcCode.RESOURCE_EXHAUSTED;
    case H2Error.INADEQUATE_SECURITY:
      return GrpcCode.PERMISSION_DENIED;
    default:
      return GrpcCode.INTERNAL;
  }
}

/** grpc-message is percent-encoded (grpc/doc/PROTOCOL-HTTP2.md). */
function decodeMessage(raw: string | undefined): string {
  if (!raw) return '';
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

export interface GrpcConnectionOptions {
  /** host:port for the :authority header (and the TCP connection unless `createConnection`). */
  readonly host: string;
  readonly port: number;
  /** Opens the connection's transport instead of a TCP socket (the in-process fault proxy). */
  readonly createConnection?: OpenConnection;
  /** A ping every this often while a call is in flight; one unanswered for `keepaliveTimeoutMs` kills the connection. */
  readonly keepaliveMs: number;
  readonly keepaliveTimeoutMs: number;
  /** Larger received messages fail the call with RESOURCE_EXHAUSTED. */
  readonly maxMessageBytes: number;
  /** Aborting cancels every call in flight on this connection. */
  readonly signal?: AbortSignal;
  /** Extra request headers on every call (user-agent). */
  readonly userAgent?: string;
}

export interface CallOptions {
  /** The method's path, "/package.Service/Method". */
  readonly path: string;
  /** Custom metadata: lower-case ASCII names and values. */
  readonly metadata?: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly sink: MessageSink;
}

/** A call in flight: write request messages, then `end()`; `status` settles when it is over. */
export interface GrpcCall {
  /** Writes bytes of the request (framed by the caller); false: wait for `onDrain`. */
  write(bytes: Buffer): boolean;
  onDrain(fn: () => void): void;
  /** `fn` runs once the socket is done with every byte written to it so far (Http2Session.afterWrites): bytes still in the call's queue are not among them. */
  afterWrites(fn: () => void): void;
  /** `fn` runs once the call's stream has left its connection and the socket is done with every byte of it (Http2Stream.whenWritten): nothing refers to what it wrote any more. */
  whenWritten(fn: () => void): void;
  end(bytes?: Buffer): void;
  /** Resolves when the call ends with OK; rejects with GrpcStatusError or GrpcStoppedError. */
  readonly status: Promise<void>;
}

interface LiveCall {
  cancel(): void;
}

function failedCall(status: Promise<void>): GrpcCall {
  return { write: () => false, onDrain: () => {}, afterWrites: (fn) => queueMicrotask(fn), whenWritten: (fn) => queueMicrotask(fn), end: () => {}, status };
}

/**
 * One HTTP/2 connection to a gRPC server for one worker (http2Session.ts), opened on first
 * use and opened again by the next call after it died. A dead connection fails the calls on
 * it with UNAVAILABLE at once; pacing reconnects is the caller's retry policy.
 */
export class GrpcConnection {
  private session: Http2Session | null = null;
  private readonly calls = new Set<LiveCall>();
  private pingTimer: NodeJS.Timeout | null = null;
  private pingDeadline: NodeJS.Timeout | null = null;
  private closed = false;
  /** The header fields every call starts with, encoded once: before :path, and after it. */
  private readonly headPrefix: Buffer;
  private readonly headSuffix: Buffer;

  constructor(private readonly opts: GrpcConnectionOptions) {
    const prefix: number[] = [];
    encodeIndexed(prefix, 3); // :method: POST
    encodeIndexed(prefix, 6); // :scheme: http
    encodeLiterals(prefix, [[':authority', formatHostPort(opts.host, opts.port)]]);
    this.headPrefix = Buffer.from(prefix);
    const suffix: number[] = [];
    encodeLiterals(suffix, [
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
    ]);
    if (opts.userAgent) encodeLiterals(suffix, [['user-agent', opts.userAgent]]);
    this.headSuffix = Buffer.from(suffix);
    // One listener per connection, not one per call.
    opts.signal?.addEventListener('abort', () => this.stop(), { once: true });
  }

  private stop(): void {
    for (const c of [...this.calls]) c.cancel();
  }

  private open(): Http2Session {
    const current = this.session;
    if (current && current.usable) return current;
    // A TCP socket reads into the process's one read buffer (readBuffer.ts): nothing is
    // allocated per read; the session parses each read, and its streams copy or compare
    // what they keep, before the next.
    let session: Http2Session | null = null;
    const socket = this.opts.createConnection
      ? this.opts.createConnection((c) => session?.received(c))
      : net.connect({ host: this.opts.host, port: this.opts.port, noDelay: true, onread: sharedRead((c) => session?.received(c)) });
    const s = new Http2Session(socket, {
      role: 'client',
      readByCaller: true,
      // A model streams to the worker without waiting on WINDOW_UPDATEs (DOWNLOAD_WINDOW_BYTES).
      // (The server keeps HTTP/2's default for uploads until an update has its slot: updates
      // that wait would otherwise sit in its memory.)
      streamWindow: DOWNLOAD_WINDOW_BYTES,
      // Room for the stream windows of a worker's few calls.
      connectionWindow: 4 * DOWNLOAD_WINDOW_BYTES,
      onClosed: (dead) => {
        if (this.session === dead) {
          this.session = null;
          this.stopPings();
        }
      },
    });
    session = s;
    this.session = s;
    return s;
  }

  /** Pings while calls are in flight (a long-poll on a black-holed link is noticed). */
  private startPings(): void {
    if (this.pingTimer || this.opts.keepaliveMs <= 0) return;
    this.pingTimer = setInterval(() => this.ping(), this.opts.keepaliveMs);
    this.pingTimer.unref();
  }

  private stopPings(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.pingDeadline) clearTimeout(this.pingDeadline);
    this.pingTimer = null;
    this.pingDeadline = null;
  }

  private ping(): void {
    const s = this.session;
    if (!s || s.dead || this.pingDeadline) return;
    const timeoutMs = this.opts.keepaliveTimeoutMs;
    const deadline = setTimeout(() => {
      if (this.pingDeadline === deadline) this.pingDeadline = null;
      s.destroy(`connection dropped: keepalive ping unanswered for ${timeoutMs} ms`, false);
    }, timeoutMs);
    deadline.unref();
    this.pingDeadline = deadline;
    const sent = s.ping(() => {
      clearTimeout(deadline);
      if (this.pingDeadline === deadline) this.pingDeadline = null;
    });
    if (!sent) {
      clearTimeout(deadline);
      this.pingDeadline = null;
    }
  }

  /** A call's header block, written straight into one Buffer. */
  private headerBlock(o: CallOptions): Buffer {
    const timeout = grpcTimeout(o.timeoutMs);
    const meta = o.metadata;
    let size = this.headPrefix.length + this.headSuffix.length + literalBytes(':path', o.path) + literalBytes('grpc-timeout', timeout);
    if (meta) for (const name in meta) size += literalBytes(name, meta[name]);
    const buf = Buffer.allocUnsafe(size);
    let at = this.headPrefix.copy(buf, 0);
    at = writeLiteral(buf, at, ':path', o.path);
    at += this.headSuffix.copy(buf, at);
    at = writeLiteral(buf, at, 'grpc-timeout', timeout);
    if (meta) for (const name in meta) at = writeLiteral(buf, at, name, meta[name]);
    return buf.subarray(0, at);
  }

  /** Starts a call. Never throws: a failure to start shows in `status`. */
  call(o: CallOptions): GrpcCall {
    let settle!: (err: Error | null) => void;
    const status = new Promise<void>((resolve, reject) => {
      let done = false;
      settle = (err) => {
        if (done) return;
        done = true;
        if (err) reject(err);
        else resolve();
      };
    });
    if (this.closed) {
      settle(new GrpcStatusError(GrpcCode.UNAVAILABLE, 'the connection is closed'));
      return failedCall(status);
    }
    if (this.opts.signal?.aborted) {
      settle(new GrpcStoppedError());
      return failedCall(status);
    }

    const decoder = new FrameDecoder(o.sink, this.opts.maxMessageBytes);
    let responded = false;
    let stream: Http2Stream | null = null;
    let deadline: NodeJS.Timeout | null = null;
    const live: LiveCall = { cancel: () => finish(new GrpcStoppedError(), H2Error.CANCEL) };
    /** The call is over: the stream is reset if it is still open (`code`), the status settles. */
    const finish = (result: Error | null, code: number = H2Error.CANCEL) => {
      if (!this.calls.delete(live)) return;
      if (deadline) clearTimeout(deadline);
      if (this.calls.size === 0) this.stopPings();
      stream?.cancel(code);
      settle(result);
    };
    const statusFrom = (h: HeaderList): Error | null => {
      const raw = headerValue(h, 'grpc-status');
      const code = Number(raw);
      if (raw === undefined || raw === '' || !Number.isInteger(code)) return new GrpcStatusError(GrpcCode.UNKNOWN, `the server sent a grpc-status that is not a number (${String(raw)})`);
      if (code === GrpcCode.OK) return null;
      return new GrpcStatusError(code, decodeMessage(headerValue(h, 'grpc-message')));
    };

    const handler: StreamHandler = {
      headers: (h, end) => {
        if (!responded) {
          responded = true;
          const httpStatus = Number(headerValue(h, ':status'));
          if (httpStatus !== 200) return finish(new GrpcStatusError(httpStatusCode(httpStatus), `the server answered HTTP ${httpStatus}`));
          const ct = headerValue(h, 'content-type') ?? '';
          if (!ct.startsWith('application/grpc')) return finish(new GrpcStatusError(GrpcCode.UNKNOWN, `the server answered content-type "${ct}", not application/grpc`));
          // Trailers-only: the status is in the headers and nothing follows.
          if (headerValue(h, 'grpc-status') !== undefined) return finish(statusFrom(h), H2Error.NO_ERROR);
          if (end) finish(new GrpcStatusError(GrpcCode.UNKNOWN, 'the stream ended without a status'));
          return;
        }
        // Trailers. The call is over even if the request was still going out (a refused update).
        const s = statusFrom(h);
        finish(s === null && !decoder.atBoundary ? new GrpcStatusError(GrpcCode.INTERNAL, 'the stream ended inside a message') : s, H2Error.NO_ERROR);
      },
      data: (chunk) => {
        if (!responded) return finish(new GrpcStatusError(GrpcCode.INTERNAL, 'the server sent data before its headers'));
        try {
          decoder.push(chunk);
        } catch (e) {
          finish(e instanceof GrpcStatusError ? e : new GrpcStatusError(GrpcCode.INTERNAL, `a response message could not be read: ${(e as Error).message}`));
        }
      },
      end: () => finish(new GrpcStatusError(GrpcCode.UNKNOWN, responded ? 'the stream ended without a status' : 'the stream ended without an answer')),
      reset: (code) =>
        finish(
          code === H2Error.NO_ERROR
            ? new GrpcStatusError(GrpcCode.UNKNOWN, responded ? 'the stream ended without a status' : 'the stream ended without an answer')
            : new GrpcStatusError(rstCode(code), `the server reset the stream (RST_STREAM code ${code})`),
        ),
      died: (reason) => finish(new GrpcStatusError(GrpcCode.UNAVAILABLE, reason)),
    };

    this.calls.add(live);
    try {
      stream = this.open().request(this.headerBlock(o), handler);
    } catch (e) {
      finish(new GrpcStatusError(GrpcCode.UNAVAILABLE, (e as Error).message));
      return failedCall(status);
    }
    this.startPings();
    deadline = setTimeout(() => finish(new GrpcStatusError(GrpcCode.DEADLINE_EXCEEDED, `no answer within the deadline of ${o.timeoutMs} ms`)), o.timeoutMs);

    const s = stream;
    return {
      write: (bytes) => s.write(bytes),
      onDrain: (fn) => s.onDrain(fn),
      afterWrites: (fn) => s.afterWrites(fn),
      whenWritten: (fn) => s.whenWritten(fn),
      end: (bytes) => s.end(bytes),
      status,
    };
  }

  /** Closes the connection; calls in flight are cancelled. */
  close(): void {
    this.closed = true;
    this.stopPings();
    const s = this.session;
    this.session = null;
    s?.destroy('the connection is closed');
  }
}

const enum Field {
  Tag,
  Length,
  SkipVarint,
  Embedded,
  Bytes,
  Skip,
}

/**
 * Reads a stream of protobuf messages shaped `{ M header = 1; bytes data = 2; }` (fedsim's
 * ModelChunk) without gathering them: the small header is decoded whole, the data bytes go
 * to `onData` as views of what arrived (no copy), other fields are skipped.
 */
export class HeaderDataReader<H> implements MessageSink {
  private state = Field.Tag;
  private value = 0;
  private scale = 1;
  private field = 0;
  private left = 0;
  private embedded: Buffer | null = null;
  private embeddedAt = 0;

  constructor(
    private readonly decodeHeader: (bytes: Buffer) => H,
    private readonly onHeader: (header: H) => void,
    private readonly onData: (bytes: Buffer) => void,
  ) {}

  start(): void {
    this.state = Field.Tag;
    this.value = 0;
    this.scale = 1;
  }

  /** True while a field's tag or length (a few bytes) is being read. */
  get framing(): boolean {
    return this.state === Field.Tag || this.state === Field.Length || this.state === Field.SkipVarint;
  }

  /** How many of the next `max` bytes of the message are data bytes (to `onData` as they are): 0 outside the data field. */
  dataRoom(max: number): number {
    return this.state === Field.Bytes && this.field === 2 ? Math.min(max, this.left) : 0;
  }

  data(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case Field.Tag:
        case Field.Length:
        case Field.SkipVarint: {
          const b = chunk[i++];
          this.value += (b & 0x7f) * this.scale;
          this.scale *= 128;
          if (b & 0x80) {
            if (this.scale > 2 ** 63) throw new Error('a varint is longer than 10 bytes');
            continue;
          }
          const v = this.value;
          this.value = 0;
          this.scale = 1;
          if (this.state === Field.Tag) {
            this.field = Math.floor(v / 8);
            const wire = v % 8;
            if (wire === 0) this.state = Field.SkipVarint;
            else if (wire === 1 || wire === 5) {
              this.left = wire === 1 ? 8 : 4;
              this.state = Field.Skip;
            } else if (wire === 2) this.state = Field.Length;
            else throw new Error(`field ${this.field} has wire type ${wire}, which this message does not use`);
          } else if (this.state === Field.Length) {
            this.left = v;
            if (this.field === 1) {
              this.embedded = Buffer.allocUnsafe(v);
              this.embeddedAt = 0;
              this.state = Field.Embedded;
              if (v === 0) this.finishEmbedded();
            } else this.state = v === 0 ? Field.Tag : this.field === 2 ? Field.Bytes : Field.Skip;
          } else this.state = Field.Tag;
          break;
        }
        case Field.Bytes: {
          const take = Math.min(this.left, n - i);
          this.onData(i === 0 && take === n ? chunk : chunk.subarray(i, i + take));
          i += take;
          this.left -= take;
          if (this.left === 0) this.state = Field.Tag;
          break;
        }
        case Field.Embedded: {
          const take = Math.min(this.left, n - i);
          chunk.copy(this.embedded!, this.embeddedAt, i, i + take);
          this.embeddedAt += take;
          i += take;
          this.left -= take;
          if (this.left === 0) this.finishEmbedded();
          break;
        }
        case Field.Skip: {
          const take = Math.min(this.left, n - i);
          i += take;
          this.left -= take;
          if (this.left === 0) this.state = Field.Tag;
          break;
        }
      }
    }
  }

  private finishEmbedded(): void {
    const bytes = this.embedded!;
    this.embedded = null;
    this.state = Field.Tag;
    this.onHeader(this.decodeHeader(bytes));
  }

  end(): void {
    if (this.state !== Field.Tag || this.scale !== 1) throw new Error('a message ended inside a field');
  }
}

/** A protobuf varint (lengths and tags of hand-built messages). */
export function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}
