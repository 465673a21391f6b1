/**
 * One HTTP/2 connection (RFC 9113), either side: framing, flow control both ways, SETTINGS,
 * PING, GOAWAY, RST_STREAM and HPACK (./hpack.ts). It carries fedsim's gRPC client
 * (grpcWire.ts) and gRPC server (grpcServer.ts); it knows nothing of gRPC.
 *
 * Why not node:http2: with a thousand simulated workers, node:http2's per-request machinery
 * (header objects built and validated, async resources bound per stream, a JS stream
 * wrapper around an in-process socket) cost more CPU than the calls' own work, on the
 * worker nodes and on the server, and all of it shares the machine with the server under
 * test (docs/benchmarks.md, session 17). This session writes frames straight onto the
 * socket and hands received DATA on as views of what the socket read, without copying.
 *
 * What is left out on purpose: TLS and ALPN (fedsim's FL protocol runs in clear h2c with
 * prior knowledge), server push (refused in SETTINGS), priorities (ignored, as RFC 9113
 * allows), the Upgrade from HTTP/1.1, and an HPACK dynamic table for what we send.
 */
import type { Duplex } from 'node:stream';
import { type HeaderList, HpackDecoder, HpackError } from './hpack.js';
import type { ReadAim } from '../runtime/readBuffer.js';

/**
 * DATA a paused stream holds beyond its first HELD_SMALL bytes is copied into blocks of this
 * size, kept for reuse (up to HELD_POOL_BLOCKS, 4 MiB: a gRPC update first in line for a
 * server slot holds 1 MiB before the session stops reading, and its whole 8 MiB window only
 * when the slot takes longer than the stop; with a 4 MiB window and no stop, at 64 workers and
 * a 14 MB model, that was 250 MB a round of fresh Buffers for V8 to collect before this
 * pool). A stream that holds less (every other waiting update: HTTP/2's default window of
 * 64 KiB) gets plain copies, so the blocks stay few.
 */
const HELD_SMALL = 64 * 1024;
const HELD_BLOCK = 256 * 1024;
const HELD_POOL_BLOCKS = 16;

/**
 * The longest a stream's `holdLimit` stops the socket's reads. Nothing of the connection is
 * read meanwhile, a keepalive PING included (fedsim's workers wait `--keepalive-timeout`, 5 s
 * by default, for its answer; docs/protocols.md).
 */
const READ_STOP_MAX_MS = 250;

const heldBlocks = {
  free: [] as Buffer[],
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(HELD_BLOCK);
  },
  give(blocks: Buffer[]): void {
    for (const b of blocks) if (this.free.length < HELD_POOL_BLOCKS) this.free.push(b);
  },
};

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const enum Type {
  DATA = 0,
  HEADERS = 1,
  PRIORITY = 2,
  RST_STREAM = 3,
  SETTINGS = 4,
  PUSH_PROMISE = 5,
  PING = 6,
  GOAWAY = 7,
  WINDOW_UPDATE = 8,
  CONTINUATION = 9,
}

const enum Flag {
  END_STREAM = 0x1,
  ACK = 0x1,
  END_HEADERS = 0x4,
  PADDED = 0x8,
  PRIORITY = 0x20,
}

/** HTTP/2 error codes (RFC 9113 §7). */
export const H2Error = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  SETTINGS_TIMEOUT: 4,
  STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  COMPRESSION_ERROR: 9,
  CONNECT_ERROR: 10,
  ENHANCE_YOUR_CALM: 11,
  INADEQUATE_SECURITY: 12,
  HTTP_1_1_REQUIRED: 13,
} as const;

const enum Setting {
  HEADER_TABLE_SIZE = 1,
  ENABLE_PUSH = 2,
  MAX_CONCURRENT_STREAMS = 3,
  INITIAL_WINDOW_SIZE = 4,
  MAX_FRAME_SIZE = 5,
  MAX_HEADER_LIST_SIZE = 6,
}

const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 2 ** 31 - 1;
/**
 * The largest frame either side of fedsim accepts (SETTINGS_MAX_FRAME_SIZE; HTTP/2's default
 * is 16 KiB). A 1 MiB model chunk then crosses as one DATA frame instead of 64: the frame
 * headers, writes and reads per megabyte drop with it. DATA is read as it streams in, so a
 * large frame is never gathered; other frames are bounded by MAX_HEADER_BLOCK.
 */
const MAX_FRAME = 1024 * 1024;
const EMPTY = Buffer.alloc(0);
/**
 * The most bytes a read between runs aimed at a slot takes (a frame header, a gRPC message's
 * prefix and its field's tag and length): a read that took the shared buffer's 64 KiB there
 * would bring that much of the update with it, to be copied into the slot (12 % of a 14 MB
 * update over gRPC, measured in session 25).
 */
export const SMALL_READ = 16;

/** A response's header block may be this large, CONTINUATIONs included. */
const MAX_HEADER_BLOCK = 64 * 1024;

/** What a stream hears from its connection. */
export interface StreamHandler {
  /** A header block: the response headers, or trailers. `end`: the server's side is closed. */
  headers(fields: HeaderList, end: boolean): void;
  /** Response bytes: a view of what the socket read (copy to keep). */
  data(chunk: Buffer): void;
  /** The server closed its side after DATA (END_STREAM on a DATA frame). */
  end(): void;
  /** The server reset the stream with this error code. */
  reset(code: number): void;
  /** The connection died (or went away before this stream was taken): the reason, for the call's error. */
  died(reason: string): void;
  /**
   * Server, optional: where up to `max` of the stream's next DATA bytes (all of the current
   * frame's) may be read straight into (an update's slot); or a count of bytes (at most
   * SMALL_READ) to read first, before asking again: framing between the runs of bytes that
   * go into the slot (a gRPC message's prefix), read on their own so the read after them
   * lands in the slot again; or null. See Http2Session.readTarget.
   */
  into?(max: number): ReadAim | number | null;
}

export interface SessionOptions {
  /** The client sends the connection preface and opens streams; the server takes them. */
  readonly role: 'client' | 'server';
  /** The stream receive window this side grants (SETTINGS_INITIAL_WINDOW_SIZE). */
  readonly streamWindow: number;
  /** This side's connection receive window. */
  readonly connectionWindow: number;
  /** Called once, when the session has died and holds no streams any more. */
  readonly onClosed: (session: Http2Session) => void;
  /**
   * The caller hands every read to `received` (a socket opened with `onread`, or a connection
   * with its own reader): the session does not listen for 'data'.
   */
  readonly readByCaller?: boolean;
  /** Server: a client opened a stream with these request headers; set `stream.handler` here. */
  readonly onStream?: (stream: Http2Stream, fields: HeaderList, end: boolean) => void;
  /** The longest a stream's `holdLimit` stops the reads (READ_STOP_MAX_MS by default). */
  readonly readStopMaxMs?: number;
}

const NO_HANDLER: StreamHandler = { headers: () => {}, data: () => {}, end: () => {}, reset: () => {}, died: () => {} };

/** One request on the connection. */
export class Http2Stream {
  sendWindow: number;
  /** The receive window this side granted the stream (SETTINGS, or more through `growWindow`). */
  recvWindow: number;
  /** What the peer may still send on the stream. */
  recvAvailable: number;
  /** Bytes read (and handed on) since the last WINDOW_UPDATE. */
  recvUnacked = 0;
  private readonly queue: Buffer[] = [];
  queued = 0;
  private endQueued = false;
  /** END_STREAM sent. */
  localClosed = false;
  /** END_STREAM or RST received. */
  remoteClosed = false;
  private drainWaiters: (() => void)[] = [];
  /** Runs once this side's END_STREAM is written. */
  onEnded: (() => void) | null = null;
  /** Runs once, when the stream leaves its session (ended both ways, reset, or the session died). */
  private onGone: (() => void) | null = null;
  /** The stream has left its session: nothing more of it is written. */
  private left = false;
  /** A header block to end the stream with, after the queued DATA (the server's trailers). */
  trailers: Buffer | null = null;
  /** While paused, received DATA is held here and its window is not given back. */
  paused = false;
  /**
   * While paused: once this many bytes are held, the session stops reading its socket until
   * the stream resumes or leaves (Http2Session.stopReading), and what the peer sends in the
   * meantime waits in the kernel's socket buffers, not here. 0: the stream holds all its
   * window allows.
   */
  holdLimit = 0;
  /** Views of `heldIn`, in order. */
  private held: Buffer[] = [];
  /** The blocks held DATA was copied into, and the next free byte of the last one. */
  private heldIn: Buffer[] = [];
  private heldAt = HELD_BLOCK;
  private heldBytes = 0;
  private heldEnd = false;

  constructor(
    readonly id: number,
    private readonly session: Http2Session,
    public handler: StreamHandler,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
    this.recvAvailable = recvWindow;
  }

  /** Grants the peer a larger receive window on this stream (a WINDOW_UPDATE for the difference). */
  growWindow(bytes: number): void {
    this.session.growWindow(this, bytes);
  }

  /** Server: sends the response headers (before any DATA). */
  respond(block: Buffer, endStream = false): void {
    if (this.localClosed || this.endQueued) return;
    this.session.sendHeaders(this, block, endStream);
  }

  /**
   * `fn` runs once the stream has left its session and the socket is done with every byte of
   * it that was written (handed to the kernel, or the socket destroyed): from then on nothing
   * refers to the buffers its DATA came from. Once per stream.
   */
  whenWritten(fn: () => void): void {
    if (this.left) this.session.afterWrites(fn);
    else this.onGone = () => this.session.afterWrites(fn);
  }

  /** @internal The session lets the stream go (see whenWritten). */
  leave(): void {
    if (this.left) return;
    this.left = true;
    const gone = this.onGone;
    this.onGone = null;
    gone?.();
  }

  /** Server: ends the response with trailers once the queued DATA is out. */
  endWithTrailers(block: Buffer): void {
    if (this.localClosed || this.endQueued) return;
    this.trailers = block;
    this.endQueued = true;
    this.session.flush(this);
  }

  /** Holds received DATA (and its window: HTTP/2 flow control holds the peer) until `resume`. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.session.startReading(this);
    while (this.held.length > 0) {
      if (this.paused) return;
      const c = this.held.shift()!;
      this.handler.data(c);
      this.session.credit(this, c.length);
    }
    this.dropHeld();
    if (this.heldEnd) {
      this.heldEnd = false;
      this.handler.end();
    }
  }

  /** Received DATA: to the handler (its window given back as it is read), or held while paused. */
  deliver(chunk: Buffer): void {
    if (this.paused) this.hold(chunk);
    else {
      this.handler.data(chunk);
      this.session.credit(this, chunk.length);
    }
  }

  /** Copies received DATA into held blocks (the socket's read buffer is reused after this call). */
  private hold(chunk: Buffer): void {
    if (this.heldBytes + chunk.length <= HELD_SMALL) {
      this.held.push(Buffer.from(chunk));
    } else {
      this.holdInBlocks(chunk);
    }
    this.heldBytes += chunk.length;
    if (this.holdLimit > 0 && this.heldBytes >= this.holdLimit) this.session.stopReading(this);
  }

  /** Copies `chunk` into the pooled blocks; `held` gets views of them. */
  private holdInBlocks(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.heldAt === HELD_BLOCK) {
        this.heldIn.push(heldBlocks.take());
        this.heldAt = 0;
      }
      const block = this.heldIn[this.heldIn.length - 1];
      const n = chunk.copy(block, this.heldAt, at);
      this.held.push(block.subarray(this.heldAt, this.heldAt + n));
      this.heldAt += n;
      at += n;
    }
  }

  /** Forgets what is held and gives the blocks back (all delivered, or the stream closed while paused). */
  dropHeld(): void {
    this.session.startReading(this);
    this.held = [];
    heldBlocks.give(this.heldIn);
    this.heldIn = [];
    this.heldAt = HELD_BLOCK;
    this.heldBytes = 0;
  }

  deliverEnd(): void {
    if (this.paused) this.heldEnd = true;
    else this.handler.end();
  }

  /** Queues request bytes; false: wait for `onDrain` before writing more. */
  write(bytes: Buffer): boolean {
    if (this.localClosed || this.endQueued) return false;
    if (bytes.length > 0) {
      this.queue.push(bytes);
      this.queued += bytes.length;
      this.session.flush(this);
    }
    return this.queued === 0 && !this.session.needsDrain();
  }

  onDrain(fn: () => void): void {
    this.drainWaiters.push(fn);
    this.session.flush(this);
  }

  /** `fn` runs once the socket is done with everything written to it so far (Http2Session.afterWrites). */
  afterWrites(fn: () => void): void {
    this.session.afterWrites(fn);
  }

  /** Sends the last bytes (if any) and END_STREAM. */
  end(bytes?: Buffer): void {
    if (this.localClosed || this.endQueued) return;
    if (bytes && bytes.length > 0) {
      this.queue.push(bytes);
      this.queued += bytes.length;
    }
    this.endQueued = true;
    this.session.flush(this);
  }

  /** Sends RST_STREAM (unless the stream is over on both sides) and forgets the stream. */
  cancel(code: number): void {
    this.session.resetStream(this, code);
  }

  /**
   * Writes what the windows allow; called by the session. Returns bytes of DATA written. A
   * frame takes as many queued writes as fit (a message's small prefix and the view of its
   * data go out as one frame, not two).
   */
  pump(maxFrame: number, connectionWindow: number, out: (header: Buffer, body: readonly Buffer[]) => void): number {
    let sent = 0;
    while (this.queue.length > 0) {
      const room = Math.min(this.sendWindow, connectionWindow - sent, maxFrame);
      if (room <= 0) break;
      const pieces: Buffer[] = [];
      let bytes = 0;
      while (this.queue.length > 0 && bytes < room) {
        const head = this.queue[0];
        if (head.length <= room - bytes) {
          pieces.push(head);
          bytes += head.length;
          this.queue.shift();
        } else {
          pieces.push(head.subarray(0, room - bytes));
          this.queue[0] = head.subarray(room - bytes);
          bytes = room;
        }
      }
      this.queued -= bytes;
      this.sendWindow -= bytes;
      sent += bytes;
      const last = this.endQueued && this.queue.length === 0 && !this.trailers;
      out(frameHeader(bytes, Type.DATA, last ? Flag.END_STREAM : 0, this.id), pieces);
      if (last) this.localClosed = true;
    }
    if (this.endQueued && this.queue.length === 0 && !this.localClosed && !this.trailers) {
      out(frameHeader(0, Type.DATA, Flag.END_STREAM, this.id), []);
      this.localClosed = true;
    }
    return sent;
  }

  /** Calls the drain waiters once nothing waits for a window or the socket. */
  drained(needsDrain: boolean): boolean {
    if (this.queued > 0 || needsDrain || this.drainWaiters.length === 0) return false;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const fn of waiters) fn();
    return true;
  }

  get waitsForDrain(): boolean {
    return this.drainWaiters.length > 0;
  }
}

function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const h = Buffer.allocUnsafe(9);
  h[0] = (length >>> 16) & 0xff;
  h[1] = (length >>> 8) & 0xff;
  h[2] = length & 0xff;
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return h;
}

/** A whole control frame (small payloads: SETTINGS, PING, GOAWAY, RST_STREAM, WINDOW_UPDATE). */
function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  return Buffer.concat([frameHeader(payload.length, type, flags, streamId), payload]);
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** A connection error: the session sends GOAWAY with `code` and dies. */
class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const enum Read {
  Preface,
  Header,
  Payload,
  DataPadLength,
  Data,
  DataPadding,
}

/** A receive window goes back once a quarter of it was read and the peer has less than half of it left. */
function timeToGiveBack(unacked: number, available: number, window: number): boolean {
  return unacked >= window / 4 && available < window / 2;
}

/**
 * One HTTP/2 connection over a connected (or connecting) socket. A client opens streams
 * with `request`; a server hears of them through `onStream`. The session dies on a socket
 * error or close, a protocol error, `destroy`, or GOAWAY (after which the streams the peer
 * took run to their end).
 */
export class Http2Session {
  private readonly streams = new Map<number, Http2Stream>();
  private nextStreamId = 1;
  /** Server: the highest stream id a client opened. */
  private lastPeerStream = 0;
  /** Server: GOAWAY sent (`shutdown`), no new streams are taken. */
  private shuttingDown = false;
  private readonly server: boolean;
  private connectionSendWindow = DEFAULT_WINDOW;
  private connectionRecvAvailable: number;
  private connectionRecvUnacked = 0;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = 16_384;
  private peerMaxStreams = Infinity;
  private readonly decoder = new HpackDecoder();
  /** Streams with bytes waiting for a window. */
  private readonly blocked = new Set<Http2Stream>();
  private corked = false;
  /** Why the session died; null while it lives. */
  private deathReason: string | null = null;
  /** A GOAWAY came: no new streams; those above this id were not taken. */
  private goawayLastStream = -1;
  private connected = false;
  private closedNotified = false;
  private readonly pings: (() => void)[] = [];
  /** The paused stream whose `holdLimit` stopped the socket's reads, and when they start again regardless. */
  private readStoppedBy: Http2Stream | null = null;
  private readStopTimer: NodeJS.Timeout | null = null;
  /** How many times a stream's `holdLimit` stopped the reads (the tests read it). */
  readStops = 0;

  // The reader's state.
  private state: Read;
  /** The stream the last reads in a DATA frame were aimed for (readTarget): its next frame's header is read on its own. */
  private aimingAt: Http2Stream | null = null;
  /** A read of a few bytes between runs aimed at a slot lands here (readTarget). */
  private small: Buffer | null = null;
  /** Where the socket's next read was aimed (readTarget), until it came or the socket closed. */
  private aim: ReadAim | null = null;
  private prefaceHave = 0;
  private readonly header = Buffer.alloc(9);
  private headerHave = 0;
  private frameLength = 0;
  private frameType = 0;
  private frameFlags = 0;
  private frameStream = 0;
  private payload: Buffer = Buffer.alloc(0);
  private payloadHave = 0;
  private dataLeft = 0;
  private padLeft = 0;
  private dataStream: Http2Stream | undefined;
  /** A header block waiting for CONTINUATION frames. */
  private block: { stream: number; end: boolean; parts: Buffer[]; bytes: number } | null = null;

  constructor(
    private readonly socket: Duplex,
    private readonly opts: SessionOptions,
  ) {
    this.server = opts.role === 'server';
    this.state = this.server ? Read.Preface : Read.Header;
    this.connectionRecvAvailable = Math.max(DEFAULT_WINDOW, opts.connectionWindow);
    socket.on('connect', () => (this.connected = true));
    if (!opts.readByCaller) socket.on('data', (chunk: Buffer) => this.received(chunk));
    const peer = this.server ? 'client' : 'server';
    socket.on('error', (err: Error) => this.die(this.connected ? `connection dropped: ${err.message}` : `could not connect: ${err.message}`));
    socket.on('end', () => this.die(this.connected ? `connection dropped: the ${peer} closed the connection` : 'could not connect: the connection closed before the server answered'));
    socket.on('close', () => this.die(this.connected ? 'connection dropped: the connection closed' : 'could not connect: the connection closed'));
    // The client's preface, then either side's SETTINGS (no push; our stream window) and
    // the connection window.
    if (!this.server) this.write(PREFACE);
    const settings = Buffer.allocUnsafe(18);
    settings.writeUInt16BE(Setting.ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(Setting.INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(opts.streamWindow, 8);
    settings.writeUInt16BE(Setting.MAX_FRAME_SIZE, 12);
    settings.writeUInt32BE(MAX_FRAME, 14);
    // A server must not send ENABLE_PUSH (RFC 9113 §6.5.2).
    this.write(frame(Type.SETTINGS, 0, 0, this.server ? settings.subarray(6) : settings));
    if (opts.connectionWindow > DEFAULT_WINDOW) this.write(frame(Type.WINDOW_UPDATE, 0, 0, u32(opts.connectionWindow - DEFAULT_WINDOW)));
  }

  /**
   * Bytes from the socket, by its 'data' event or by the caller (a socket opened with
   * `onread`). Everything read is parsed, and handed on as views, before this returns: the
   * caller may reuse `chunk` afterwards.
   */
  received(chunk: Buffer): void {
    this.connected = true;
    // The read aimed by readTarget (if any) came: this chunk.
    const aim = this.aim;
    this.aim = null;
    try {
      this.read(chunk);
    } catch (e) {
      if (e instanceof ConnectionError) this.fail(e.code, e.message);
      else if (e instanceof HpackError) this.fail(H2Error.COMPRESSION_ERROR, e.message);
      else throw e;
    } finally {
      aim?.landed();
    }
  }

  /**
   * Where the socket's next read lands (node asks after every read; `sharedRead`'s `into`):
   * in the middle of a DATA frame of a stream that reads straight into a slot (its handler's
   * `into`), that slot's room for at most the frame's bytes left, so the read holds nothing
   * but that stream's DATA; otherwise the shared read buffer (null). The aim is told it
   * landed once the next read came, or once the socket closed.
   */
  readTarget(): Buffer | null {
    this.aim?.landed(); // replaced before any read came: none will land there
    this.aim = null;
    if (this.deathReason !== null || this.readStoppedBy !== null) return null;
    if (this.state === Read.Header && this.headerHave === 0) {
      // Between two frames of a stream whose DATA goes into a slot: only the next frame's
      // header, so that the read after it lands in the slot again.
      const s = this.aimingAt;
      return s && this.readingData(s) ? this.smallRead(9) : null;
    }
    if (this.state !== Read.Data || this.dataLeft <= 0) return null;
    const s = this.dataStream;
    const plan = s && this.readingData(s) ? (s.handler.into?.(this.dataLeft) ?? null) : null;
    this.aimingAt = plan === null ? null : s!;
    if (plan === null) return null;
    if (typeof plan === 'number') return this.smallRead(Math.min(plan, this.dataLeft));
    this.aim = plan;
    return plan.room;
  }

  /** A stream whose DATA is being read now (not paused, not closed, still here). */
  private readingData(s: Http2Stream): boolean {
    return !s.paused && !s.remoteClosed && this.streams.has(s.id);
  }

  /** The session's own buffer for a read of `n` (1..SMALL_READ) bytes. */
  private smallRead(n: number): Buffer {
    this.small ??= Buffer.allocUnsafe(SMALL_READ);
    return this.small.subarray(0, Math.max(1, Math.min(n, SMALL_READ)));
  }

  /** True while new streams may be opened here. */
  get usable(): boolean {
    return !this.server && this.deathReason === null && this.goawayLastStream < 0 && this.nextStreamId < MAX_WINDOW && !this.socket.destroyed;
  }

  get dead(): boolean {
    return this.deathReason !== null;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /**
   * Opens a stream and sends its HEADERS (the encoded header block). Throws when the session
   * cannot take one (check `usable`) or the server's MAX_CONCURRENT_STREAMS is reached.
   */
  request(block: Buffer, handler: StreamHandler, endStream = false): Http2Stream {
    if (!this.usable) throw new Error(this.deathReason ?? 'the connection is closing');
    if (this.streams.size >= this.peerMaxStreams) throw new Error(`the server allows at most ${this.peerMaxStreams} concurrent calls on a connection`);
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new Http2Stream(id, this, handler, this.peerInitialWindow, this.opts.streamWindow);
    this.streams.set(id, stream);
    this.sendHeaders(stream, block, endStream);
    return stream;
  }

  /** HEADERS, then CONTINUATIONs if the block is larger than a frame. */
  sendHeaders(stream: Http2Stream, block: Buffer, endStream: boolean): void {
    if (this.deathReason !== null || !this.streams.has(stream.id)) return;
    const max = this.peerMaxFrame;
    let off = 0;
    let first = true;
    do {
      const piece = block.subarray(off, off + max);
      off += piece.length;
      const last = off >= block.length;
      const flags = (last ? Flag.END_HEADERS : 0) | (first && endStream ? Flag.END_STREAM : 0);
      this.write(frameHeader(piece.length, first ? Type.HEADERS : Type.CONTINUATION, flags, stream.id));
      this.write(piece);
      first = false;
    } while (off < block.length);
    if (endStream) this.localEnded(stream);
  }

  /** This side sent END_STREAM. A server that answered before the request was all in resets it (NO_ERROR): the client need send no more. */
  private localEnded(stream: Http2Stream): void {
    stream.localClosed = true;
    const ended = stream.onEnded;
    stream.onEnded = null;
    ended?.();
    if (stream.remoteClosed) this.forget(stream);
    else if (this.server) this.resetStream(stream, H2Error.NO_ERROR);
  }

  /**
   * `fn` runs once the socket is done with everything written so far: an empty write queued
   * behind it calls back when they are in the kernel (writes complete in order), or with an
   * error once the socket is destroyed. A socket already destroyed touches nothing any more;
   * one that was ended waits for its close.
   */
  afterWrites(fn: () => void): void {
    const s = this.socket;
    if (s.destroyed) queueMicrotask(fn);
    else if (s.writableEnded) s.once('close', () => fn());
    else s.write(EMPTY, () => fn());
  }

  /** Server: GOAWAY now (streams in flight go on, new ones are refused); the connection ends with its last stream. */
  shutdown(): void {
    if (!this.server || this.shuttingDown || this.deathReason !== null) return;
    this.shuttingDown = true;
    this.write(frame(Type.GOAWAY, 0, 0, Buffer.concat([u32(this.lastPeerStream), u32(H2Error.NO_ERROR)])));
    if (this.streams.size === 0) this.die('the server is closing', true);
  }

  /** Sends a PING; `onAck` runs when it is answered. False if the session is dead. */
  ping(onAck: () => void): boolean {
    if (this.deathReason !== null) return false;
    this.pings.push(onAck);
    this.write(frame(Type.PING, 0, 0, Buffer.alloc(8)));
    return true;
  }

  /**
   * Ends the connection: every stream hears `died(reason)`. `graceful`: GOAWAY goes out and
   * the socket is ended (a link that does not answer pings is cut at once instead).
   */
  destroy(reason: string, graceful = true): void {
    if (graceful && this.deathReason === null && !this.socket.destroyed) {
      // The last stream the peer opened (a server opens none, so a client says 0).
      this.write(frame(Type.GOAWAY, 0, 0, Buffer.concat([u32(this.lastPeerStream), u32(H2Error.NO_ERROR)])));
      this.uncork();
    }
    this.die(reason, graceful);
  }

  needsDrain(): boolean {
    return this.socket.writableNeedDrain;
  }

  // ---- writing ----

  private write(bytes: Buffer): void {
    if (this.socket.destroyed) return;
    if (!this.corked) {
      // Everything written in this turn of the event loop goes out in one writev.
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => this.uncork());
    }
    this.socket.write(bytes);
  }

  private uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  /** Writes what the stream's and the connection's windows allow, then tells waiting writers. */
  flush(stream: Http2Stream): void {
    if (this.deathReason !== null) return;
    if (!stream.localClosed) {
      const sent = stream.pump(this.peerMaxFrame, this.connectionSendWindow, (h, body) => {
        this.write(h);
        for (const b of body) this.write(b);
      });
      this.connectionSendWindow -= sent;
      // END_STREAM went out on DATA: what ending this side means is in one place.
      if (stream.localClosed) this.localEnded(stream);
    }
    if (stream.queued > 0) this.blocked.add(stream);
    else {
      this.blocked.delete(stream);
      const trailers = stream.trailers;
      if (trailers && !stream.localClosed) {
        stream.trailers = null;
        this.sendHeaders(stream, trailers, true);
      }
    }
    this.notifyDrain(stream);
  }

  /**
   * `bytes` of the stream's DATA were read (handed on, or padding): its window is given back
   * once a quarter of it was read and the peer has less than half of it left to send, even in
   * the middle of a frame. With a frame as large as the window, waiting for the frame's end
   * would make the sender stop and wait every frame; and a stream whose window holds its whole
   * message (an update in its slot) gets no WINDOW_UPDATE at all, each of which would cost a
   * write here and a wake-up of the peer.
   */
  credit(stream: Http2Stream, bytes: number): void {
    stream.recvUnacked += bytes;
    if (!timeToGiveBack(stream.recvUnacked, stream.recvAvailable, stream.recvWindow)) return;
    if (stream.remoteClosed || this.deathReason !== null || !this.streams.has(stream.id)) return;
    this.write(frame(Type.WINDOW_UPDATE, 0, stream.id, u32(stream.recvUnacked)));
    stream.recvAvailable += stream.recvUnacked;
    stream.recvUnacked = 0;
  }

  /**
   * The connection's window is given back as bytes are read off the socket (the streams'
   * windows bound what is held), on the same rule as a stream's: a quarter read, less than
   * half left.
   */
  private creditConnection(bytes: number): void {
    this.connectionRecvUnacked += bytes;
    const window = Math.max(DEFAULT_WINDOW, this.opts.connectionWindow);
    if (!timeToGiveBack(this.connectionRecvUnacked, this.connectionRecvAvailable, window) || this.deathReason !== null) return;
    this.write(frame(Type.WINDOW_UPDATE, 0, 0, u32(this.connectionRecvUnacked)));
    this.connectionRecvAvailable += this.connectionRecvUnacked;
    this.connectionRecvUnacked = 0;
  }

  growWindow(stream: Http2Stream, bytes: number): void {
    if (this.deathReason !== null || stream.remoteClosed || bytes <= stream.recvWindow || !this.streams.has(stream.id)) return;
    this.write(frame(Type.WINDOW_UPDATE, 0, stream.id, u32(bytes - stream.recvWindow)));
    stream.recvAvailable += bytes - stream.recvWindow;
    stream.recvWindow = bytes;
  }

  private notifyDrain(stream: Http2Stream): void {
    if (!stream.waitsForDrain || stream.queued > 0) return;
    if (!this.socket.writableNeedDrain) {
      stream.drained(false);
      return;
    }
    this.socket.once('drain', () => stream.drained(this.socket.writableNeedDrain) || this.notifyDrain(stream));
  }

  /** RST_STREAM (unless the stream is over both ways), and the stream is forgotten. */
  resetStream(stream: Http2Stream, code: number): void {
    if (!this.streams.has(stream.id)) return;
    if (!(stream.localClosed && stream.remoteClosed) && this.deathReason === null) this.write(frame(Type.RST_STREAM, 0, stream.id, u32(code)));
    stream.localClosed = true;
    stream.remoteClosed = true;
    this.forget(stream);
  }

  private forget(stream: Http2Stream): void {
    if (this.aimingAt === stream) this.aimingAt = null;
    stream.leave();
    stream.dropHeld();
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    if (this.streams.size === 0 && this.deathReason === null) {
      if (this.goawayLastStream >= 0) this.destroy(`the ${this.server ? 'client' : 'server'} closed the connection (GOAWAY)`);
      else if (this.shuttingDown) this.die('the server is closing', true);
    }
    this.maybeClosed();
  }

  private maybeClosed(): void {
    if (this.deathReason !== null && this.streams.size === 0 && !this.closedNotified) {
      this.closedNotified = true;
      this.opts.onClosed(this);
    }
  }

  /**
   * Stops reading the socket for `stream` (a paused stream that holds its `holdLimit`): the
   * peer's bytes wait in the kernel's buffers and the peer's send queue, as an HTTP/1.1
   * upload waits for its turn, and nothing of them is copied here. Nothing else on the
   * connection is read meanwhile (a PING, another stream), so the reads start again after
   * READ_STOP_MAX_MS at the latest, and the stream then holds what its window lets come.
   */
  stopReading(stream: Http2Stream): void {
    if (this.readStoppedBy !== null || this.deathReason !== null) return;
    this.readStoppedBy = stream;
    this.readStops++;
    this.socket.pause();
    // Not unref'd: a socket that is not read does not keep the process alive, and a server
    // closing meanwhile must still see this connection end.
    this.readStopTimer = setTimeout(() => {
      stream.holdLimit = 0;
      this.startReading(stream);
    }, this.opts.readStopMaxMs ?? READ_STOP_MAX_MS);
  }

  /** Reads start again if `stream` stopped them. */
  startReading(stream: Http2Stream): void {
    if (this.readStoppedBy !== stream) return;
    this.readStoppedBy = null;
    if (this.readStopTimer) clearTimeout(this.readStopTimer);
    this.readStopTimer = null;
    if (this.deathReason === null) this.socket.resume();
  }

  // ---- dying ----

  private fail(code: number, message: string): void {
    if (this.deathReason !== null) return;
    this.write(frame(Type.GOAWAY, 0, 0, Buffer.concat([u32(0), u32(code), Buffer.from(message, 'utf8')])));
    this.uncork();
    this.die(`connection dropped: the ${this.server ? 'client' : 'server'} broke HTTP/2: ${message}`, true);
  }

  /** `graceful`: what was written (GOAWAY) goes out before the socket closes; else it is cut. */
  private die(reason: string, graceful = false): void {
    if (this.deathReason !== null) return;
    this.deathReason = reason;
    this.aimingAt = null;
    // A read aimed at a stream's slot lands with the socket's close (a gracefully ended one
    // still reads until then), not before: no later read may land in a slot let go.
    const aim = this.aim;
    this.aim = null;
    if (aim) {
      if (this.socket.destroyed) aim.landed();
      else this.socket.once('close', () => aim.landed());
    }
    if (this.readStopTimer) clearTimeout(this.readStopTimer);
    this.readStopTimer = null;
    // Read on: a graceful end then sees the peer's close, not only its own timer.
    if (this.readStoppedBy !== null) this.socket.resume();
    this.readStoppedBy = null;
    const streams = [...this.streams.values()];
    this.streams.clear();
    this.blocked.clear();
    // Before the socket is ended: a stream's marker write (afterWrites) must queue behind its
    // bytes, not after the end, where it would be refused at once while they are still going out.
    for (const s of streams) s.leave();
    // What the streams held goes back to the pool now, not when the last reference to a
    // stream (an update waiting for its slot) goes.
    for (const s of streams) s.dropHeld();
    const socket = this.socket;
    if (!socket.destroyed) {
      if (graceful) {
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      } else socket.destroy();
    }
    this.pings.length = 0;
    for (const s of streams) s.handler.died(reason);
    this.maybeClosed();
  }

  // ---- reading ----

  private read(chunk: Buffer): void {
    let off = 0;
    const n = chunk.length;
    while (off < n && this.deathReason === null) {
      switch (this.state) {
        case Read.Preface: {
          const take = Math.min(PREFACE.length - this.prefaceHave, n - off);
          if (chunk.compare(PREFACE, this.prefaceHave, this.prefaceHave + take, off, off + take) !== 0) {
            // Not HTTP/2 with prior knowledge (an HTTP/1.1 request, say): nothing to answer in.
            throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'the connection did not start with the HTTP/2 preface');
          }
          this.prefaceHave += take;
          off += take;
          if (this.prefaceHave === PREFACE.length) this.state = Read.Header;
          break;
        }
        case Read.Header: {
          const take = Math.min(9 - this.headerHave, n - off);
          chunk.copy(this.header, this.headerHave, off, off + take);
          this.headerHave += take;
          off += take;
          if (this.headerHave < 9) return;
          this.headerHave = 0;
          this.startFrame();
          break;
        }
        case Read.Payload: {
          const take = Math.min(this.frameLength - this.payloadHave, n - off);
          chunk.copy(this.payload, this.payloadHave, off, off + take);
          this.payloadHave += take;
          off += take;
          if (this.payloadHave === this.frameLength) {
            this.state = Read.Header;
            this.onFrame(this.payload);
          }
          break;
        }
        case Read.DataPadLength: {
          this.padLeft = chunk[off++];
          this.creditPadding(1);
          this.dataLeft = this.frameLength - 1 - this.padLeft;
          if (this.dataLeft < 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a DATA frame with more padding than payload');
          this.state = Read.Data;
          if (this.dataLeft === 0) this.afterData();
          break;
        }
        case Read.Data: {
          const take = Math.min(this.dataLeft, n - off);
          const s = this.dataStream;
          this.creditConnection(take);
          if (s && !s.remoteClosed && this.streams.has(s.id)) s.deliver(off === 0 && take === n ? chunk : chunk.subarray(off, off + take));
          off += take;
          this.dataLeft -= take;
          if (this.dataLeft === 0) this.afterData();
          break;
        }
        case Read.DataPadding: {
          const take = Math.min(this.padLeft, n - off);
          off += take;
          this.padLeft -= take;
          this.creditPadding(take);
          if (this.padLeft === 0) this.endData();
          break;
        }
      }
    }
  }

  private startFrame(): void {
    const h = this.header;
    this.frameLength = (h[0] << 16) | (h[1] << 8) | h[2];
    this.frameType = h[3];
    this.frameFlags = h[4];
    this.frameStream = h.readUInt32BE(5) & 0x7fffffff;
    if (this.frameLength > MAX_FRAME) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `a frame of ${this.frameLength} bytes, over the ${MAX_FRAME} allowed`);
    if (this.frameType !== Type.DATA && this.frameLength > MAX_HEADER_BLOCK) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, `a ${this.frameType === Type.HEADERS || this.frameType === Type.CONTINUATION ? 'header block' : 'control frame'} of ${this.frameLength} bytes, over the ${MAX_HEADER_BLOCK} allowed`);
    if (this.block && this.frameType !== Type.CONTINUATION) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a header block was interrupted by another frame');
    if (this.frameType === Type.DATA) {
      if (this.frameStream === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
      // Flow control counts the whole frame, padding included.
      const peer = this.server ? 'client' : 'server';
      this.connectionRecvAvailable -= this.frameLength;
      if (this.connectionRecvAvailable < 0) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, `the ${peer} sent more than the connection window`);
      const s = this.streams.get(this.frameStream);
      this.dataStream = s;
      if (s) {
        if (s.remoteClosed) throw new ConnectionError(H2Error.STREAM_CLOSED, `DATA on stream ${s.id} after its end`);
        s.recvAvailable -= this.frameLength;
        if (s.recvAvailable < 0) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, `the ${peer} sent more than stream ${s.id}'s window`);
      } else if (this.idle(this.frameStream)) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `DATA on stream ${this.frameStream}, which was never opened`);
      if (this.frameFlags & Flag.PADDED) {
        if (this.frameLength === 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'a padded DATA frame without its pad length');
        this.state = Read.DataPadLength;
      } else {
        this.padLeft = 0;
        this.dataLeft = this.frameLength;
        this.state = Read.Data;
        if (this.frameLength === 0) this.afterData();
      }
      return;
    }
    if (this.payload.length < this.frameLength) this.payload = Buffer.allocUnsafe(Math.max(this.frameLength, 256));
    this.payloadHave = 0;
    if (this.frameLength === 0) this.onFrame(this.payload);
    else this.state = Read.Payload;
  }

  private afterData(): void {
    if (this.padLeft > 0) this.state = Read.DataPadding;
    else this.endData();
  }

  /** Padding (and the pad length) is read and dropped: its window goes back at once. */
  private creditPadding(bytes: number): void {
    this.creditConnection(bytes);
    const s = this.dataStream;
    if (s) this.credit(s, bytes);
  }

  /** The DATA frame is all read: END_STREAM. */
  private endData(): void {
    this.state = Read.Header;
    const s = this.dataStream;
    this.dataStream = undefined;
    if (!s || !this.streams.has(s.id)) return;
    if (this.frameFlags & Flag.END_STREAM) {
      s.remoteClosed = true;
      s.deliverEnd();
      if (this.streams.has(s.id) && s.localClosed) this.forget(s);
    }
  }

  private onFrame(buf: Buffer): void {
    const p = buf.subarray(0, this.frameLength);
    this.state = Read.Header;
    const id = this.frameStream;
    switch (this.frameType) {
      case Type.HEADERS: {
        if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS on stream 0');
        let start = 0;
        let end = p.length;
        if (this.frameFlags & Flag.PADDED) {
          if (p.length < 1) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'a padded HEADERS frame without its pad length');
          start = 1;
          end -= p[0];
        }
        if (this.frameFlags & Flag.PRIORITY) start += 5;
        if (end < start) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a HEADERS frame with more padding than payload');
        const fragment = Buffer.from(p.subarray(start, end)); // the payload buffer is reused
        this.block = { stream: id, end: (this.frameFlags & Flag.END_STREAM) !== 0, parts: [fragment], bytes: fragment.length };
        if (this.frameFlags & Flag.END_HEADERS) this.endBlock();
        return;
      }
      case Type.CONTINUATION: {
        const b = this.block;
        if (!b || b.stream !== id) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a CONTINUATION frame without its HEADERS');
        b.parts.push(Buffer.from(p));
        b.bytes += p.length;
        if (b.bytes > MAX_HEADER_BLOCK) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, `a header block over ${MAX_HEADER_BLOCK} bytes`);
        if (this.frameFlags & Flag.END_HEADERS) this.endBlock();
        return;
      }
      case Type.RST_STREAM: {
        if (id === 0 || p.length !== 4) throw new ConnectionError(id === 0 ? H2Error.PROTOCOL_ERROR : H2Error.FRAME_SIZE_ERROR, 'a malformed RST_STREAM');
        const s = this.streams.get(id);
        if (!s) return;
        s.remoteClosed = true;
        s.localClosed = true;
        this.forget(s);
        s.handler.reset(p.readUInt32BE(0));
        return;
      }
      case Type.SETTINGS: {
        if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'SETTINGS on a stream');
        if (this.frameFlags & Flag.ACK) return;
        if (p.length % 6 !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'a SETTINGS frame whose length is not a multiple of 6');
        for (let i = 0; i < p.length; i += 6) this.applySetting(p.readUInt16BE(i), p.readUInt32BE(i + 2));
        this.write(frameHeader(0, Type.SETTINGS, Flag.ACK, 0));
        return;
      }
      case Type.PING: {
        if (id !== 0 || p.length !== 8) throw new ConnectionError(id !== 0 ? H2Error.PROTOCOL_ERROR : H2Error.FRAME_SIZE_ERROR, 'a malformed PING');
        if (this.frameFlags & Flag.ACK) this.pings.shift()?.();
        else this.write(frame(Type.PING, Flag.ACK, 0, p));
        return;
      }
      case Type.GOAWAY: {
        if (id !== 0 || p.length < 8) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a malformed GOAWAY');
        const last = p.readUInt32BE(0) & 0x7fffffff;
        const code = p.readUInt32BE(4);
        this.goawayLastStream = last;
        // Streams the server did not take fail now; the others run to their end.
        for (const s of [...this.streams.values()]) {
          if (s.id > last) {
            this.streams.delete(s.id);
            this.blocked.delete(s);
            // Nothing more of it is written (flush sends nothing for a stream closed this way).
            s.localClosed = true;
            s.remoteClosed = true;
            s.leave();
            s.dropHeld();
            s.handler.died(`the server closed the connection (GOAWAY code ${code})`);
          }
        }
        if (this.streams.size === 0) this.die(`the server closed the connection (GOAWAY code ${code})`, true);
        return;
      }
      case Type.WINDOW_UPDATE: {
        if (p.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'a malformed WINDOW_UPDATE');
        const inc = p.readUInt32BE(0) & 0x7fffffff;
        if (id === 0) {
          if (inc === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a WINDOW_UPDATE of 0 for the connection');
          this.connectionSendWindow += inc;
          if (this.connectionSendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'the connection window overflowed');
          for (const s of [...this.blocked]) this.flush(s);
        } else {
          const s = this.streams.get(id);
          if (!s) return;
          if (inc === 0) {
            this.resetStream(s, H2Error.PROTOCOL_ERROR);
            s.handler.reset(H2Error.PROTOCOL_ERROR);
            return;
          }
          s.sendWindow += inc;
          if (s.sendWindow > MAX_WINDOW) {
            this.resetStream(s, H2Error.FLOW_CONTROL_ERROR);
            s.handler.reset(H2Error.FLOW_CONTROL_ERROR);
            return;
          }
          this.flush(s);
        }
        return;
      }
      case Type.PUSH_PROMISE:
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PUSH_PROMISE, though push was disabled');
      default:
        // PRIORITY and unknown frame types are ignored (RFC 9113 §5.5).
        return;
    }
  }

  private endBlock(): void {
    const b = this.block!;
    this.block = null;
    // Decoded even for a stream we no longer hold: the decoder's table must stay in step.
    const fields = this.decoder.decode(b.parts.length === 1 ? b.parts[0] : Buffer.concat(b.parts));
    const s = this.streams.get(b.stream);
    if (!s) {
      if (this.server && b.stream % 2 === 1 && b.stream > this.lastPeerStream) return this.newStream(b.stream, fields, b.end);
      if (this.idle(b.stream)) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `HEADERS on stream ${b.stream}, which was never opened`);
      return;
    }
    if (s.remoteClosed) throw new ConnectionError(H2Error.STREAM_CLOSED, `HEADERS on stream ${s.id} after its end`);
    if (b.end) s.remoteClosed = true;
    s.handler.headers(fields, b.end);
    if (b.end && this.streams.has(s.id) && s.localClosed) this.forget(s);
  }

  /** A stream id this side never saw opened. */
  private idle(id: number): boolean {
    return this.server ? id > this.lastPeerStream : id >= this.nextStreamId || id % 2 === 0;
  }

  /** Server: a client's new stream. Refused (REFUSED_STREAM) once GOAWAY went out. */
  private newStream(id: number, fields: HeaderList, end: boolean): void {
    this.lastPeerStream = id;
    const stream = new Http2Stream(id, this, NO_HANDLER, this.peerInitialWindow, this.opts.streamWindow);
    if (this.shuttingDown || !this.opts.onStream) {
      this.write(frame(Type.RST_STREAM, 0, id, u32(H2Error.REFUSED_STREAM)));
      return;
    }
    this.streams.set(id, stream);
    if (end) stream.remoteClosed = true;
    this.opts.onStream(stream, fields, end);
  }

  private applySetting(key: number, value: number): void {
    switch (key) {
      case Setting.ENABLE_PUSH:
        if (value > 1) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `ENABLE_PUSH ${value}`);
        return;
      case Setting.MAX_CONCURRENT_STREAMS:
        this.peerMaxStreams = value;
        return;
      case Setting.INITIAL_WINDOW_SIZE: {
        if (value > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, `INITIAL_WINDOW_SIZE ${value}`);
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) s.sendWindow += delta;
        if (delta > 0) for (const s of [...this.blocked]) this.flush(s);
        return;
      }
      case Setting.MAX_FRAME_SIZE:
        if (value < 16_384 || value > 16_777_215) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `MAX_FRAME_SIZE ${value}`);
        this.peerMaxFrame = value;
        return;
      default:
        // HEADER_TABLE_SIZE: our encoder keeps no table. MAX_HEADER_LIST_SIZE: advisory. Others: unknown, ignored.
        return;
    }
  }
}
