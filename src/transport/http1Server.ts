/**
 * The FL server's HTTP/1.1, on sockets that read into the process's shared read buffer
 * (runtime/accept.ts). node:http parses in C++ and hands every body chunk to JavaScript as a
 * new Buffer: at 64 workers and a 14 MB model, 900 MB of short-lived buffers a round, whose
 * garbage collection and copies were the largest share of the server's CPU after the fold.
 * Here a body arrives as views of the read buffer, and goes straight into its update slot.
 *
 * What it speaks (RFC 9112, the server side, for the FL protocol's requests):
 * - requests with no body or a Content-Length body, keep-alive and pipelining (one request at
 *   a time: the next is parsed once the answer to this one is out and its body read);
 *   `Expect: 100-continue` answered at once;
 * - Transfer-Encoding (chunked bodies) is refused with 411 Length Required, which RFC 9112
 *   §6.3 allows: every fedsim client sends Content-Length;
 * - a malformed request gets 400, a head over 16 KiB or 100 fields 431, an HTTP version other
 *   than 1.x 505, each with `connection: close`;
 * - a connection idle between requests for `keepAliveMs` is closed, and one whose request
 *   head has not arrived whole within `headersTimeoutMs` (a slow-loris client) too.
 */
import type net from 'node:net';
import { sharedReadServer } from '../runtime/accept.js';
import type { ReadAim } from '../runtime/readBuffer.js';

const MAX_HEAD_BYTES = 16 * 1024;
const MAX_FIELDS = 100;


const REASONS: Record<number, string> = {
  100: 'Continue',
  200: 'OK',
  202: 'Accepted',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  409: 'Conflict',
  411: 'Length Required',
  413: 'Content Too Large',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  505: 'HTTP Version Not Supported',
};

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const NO_FIELDS: Map<string, string> = new Map();

export type HeaderValues = Record<string, string | number>;

/** One request and its answer. */
export class Exchange {
  /** The body's bytes not yet read off the connection. */
  bodyLeft: number;
  /** True once the answer's bytes are handed to the socket. */
  sent = false;
  /** True once the connection closed (the client went away, or the server closed it). */
  gone = false;
  private onData: ((chunk: Buffer) => void) | null = null;
  private onEnd: ((err: Error | null) => void) | null = null;
  /** Where the body's next bytes may be read straight into (readBody's `into`). */
  private into: ((max: number) => ReadAim | null) | null = null;
  private readonly held: Buffer[] = [];
  private discarding = false;
  /** @internal Runs once the body is all read (the connection's next request). */
  whenBodyDone: (() => void) | null = null;
  private readonly goneListeners = new Set<() => void>();

  constructor(
    private readonly conn: Connection,
    readonly method: string,
    /** The request-target as sent: the path and the query. */
    readonly target: string,
    private fields: Map<string, string>,
    readonly contentLength: number,
  ) {
    this.bodyLeft = contentLength;
  }

  /** The first value of a header field (`name` in lower case). */
  header(name: string): string | undefined {
    return this.fields.get(name);
  }

  /**
   * The handler has read every header it needs: the fields are let go (a long poll waits a
   * round, and what it holds that long is copied by each young-generation collection and then
   * promoted). header() answers undefined from here on.
   */
  dropHeaders(): void {
    this.fields = NO_FIELDS;
  }

  /**
   * Reads the body: `onData` gets its bytes (views valid only during the call: copy what you
   * keep), then `onEnd(null)` once it is whole, or `onEnd(error)` if the connection closes
   * first. Call it once.
   *
   * `into`, when given, names where up to `max` of the body's next bytes may be read straight
   * into (an update's slot, UpdateSlot.aim): the socket's next read lands there instead of the
   * shared read buffer, and `onData` gets a view of it (nothing to copy). The aim is told
   * when that read came, or when the connection closed before it did.
   */
  readBody(onData: (chunk: Buffer) => void, onEnd: (err: Error | null) => void, into?: (max: number) => ReadAim | null): void {
    this.onData = onData;
    this.onEnd = onEnd;
    this.into = into ?? null;
    for (const c of this.held.splice(0)) onData(c);
    if (this.bodyLeft === 0) {
      this.finishBody(null);
      return;
    }
    if (this.gone) {
      this.finishBody(new Error(`request aborted after ${this.contentLength - this.bodyLeft} of ${this.contentLength} body bytes`));
      return;
    }
    this.conn.resume();
  }

  /** Reads the body into one buffer (a few bytes: a registration), refusing more than `limit`. */
  readWhole(limit: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.contentLength > limit) {
        reject(new TooLarge(`body of ${this.contentLength} bytes is over the limit of ${limit} bytes`));
        return;
      }
      const out = Buffer.allocUnsafe(this.contentLength);
      let at = 0;
      this.readBody(
        (c) => {
          c.copy(out, at);
          at += c.length;
        },
        (err) => (err ? reject(err) : resolve(out)),
      );
    });
  }

  /** Reads the body and drops it; `onEnd` once it is all read (not if the connection closes first). */
  discardBody(onEnd?: () => void): void {
    this.discarding = true;
    this.readBody(
      () => {},
      (err) => {
        if (!err) onEnd?.();
      },
    );
  }

  /** Calls `fn` once if the connection closes before the answer is out; returns the way to stop listening. */
  onGone(fn: () => void): () => void {
    this.goneListeners.add(fn);
    return () => this.goneListeners.delete(fn);
  }

  /**
   * Answers: status, header fields (content-length is set from `body`), the body. With
   * `close`, the connection closes once the answer is out (the body is not read). Returns the
   * body's byte count. `written`, if given, is called once when nothing of this request's
   * sockets refers to `body` any more: its bytes were handed to the kernel, or the connection
   * died first (or it was never written).
   */
  send(status: number, headers: HeaderValues, body?: Buffer | string, close = false, written?: () => void): number {
    if (this.sent) throw new Error('send: this request was answered already');
    this.sent = true;
    const bytes = body === undefined ? null : typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    let head = `HTTP/1.1 ${status} ${REASONS[status] ?? 'Unknown'}\r\n`;
    for (const k in headers) head += `${k}: ${headers[k]}\r\n`;
    if (status !== 204 && status !== 304) head += `content-length: ${bytes?.length ?? 0}\r\n`;
    const closing = close || this.conn.closeAfter;
    if (closing) head += 'connection: close\r\n';
    else if (this.conn.http10) head += 'connection: keep-alive\r\n';
    head += '\r\n';
    // HEAD: the answer's head alone (its content-length says what GET would send).
    this.conn.write(head, this.method === 'HEAD' ? null : bytes, closing, written);
    if (!closing) this.conn.answered(this);
    return bytes?.length ?? 0;
  }

  /** Sends JSON; returns the body's byte count. */
  json(status: number, value: unknown, close = false): number {
    return this.send(status, { 'content-type': 'application/json' }, JSON.stringify(value), close);
  }

  /** @internal Body bytes from the connection. */
  body(c: Buffer): void {
    this.bodyLeft -= c.length;
    if (this.onData) this.onData(c);
    else if (!this.discarding) {
      // Not asked for yet (an update waiting for a slot): what this read brought is copied
      // (the read buffer is reused after this call), and the connection reads no more until
      // the handler asks: a waiting request holds at most one read (runtime/readBuffer.ts).
      this.held.push(Buffer.from(c));
      if (this.bodyLeft > 0) this.conn.pause();
    }
    if (this.bodyLeft === 0) {
      if (this.onEnd) this.finishBody(null);
      const done = this.whenBodyDone;
      this.whenBodyDone = null;
      done?.();
    }
  }

  /** @internal Where the next read of the body may land (readBody's `into`), or null. */
  readTarget(): ReadAim | null {
    return this.into && this.bodyLeft > 0 && !this.gone ? this.into(this.bodyLeft) : null;
  }

  /** @internal True once a reader (or a discard) has the body. */
  get claimed(): boolean {
    return this.onData !== null || this.discarding;
  }

  /** @internal The connection closed. */
  closed(): void {
    if (this.gone) return;
    this.gone = true;
    if (this.bodyLeft > 0 && this.onEnd) this.finishBody(new Error(`request aborted after ${this.contentLength - this.bodyLeft} of ${this.contentLength} body bytes`));
    if (!this.sent) for (const fn of [...this.goneListeners]) fn();
    this.goneListeners.clear();
  }

  private finishBody(err: Error | null): void {
    const end = this.onEnd;
    this.onEnd = null;
    this.onData = null;
    this.into = null;
    end?.(err);
  }
}

export class TooLarge extends Error {}

/** A request that is not one: answered with `status` and the connection closed. */
class Malformed extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

class Connection {
  /** Head bytes of the next request, when a read ended inside them. */
  private headBuf: Buffer | null = null;
  /** Cuts a connection whose request head has not come whole in time (a slow-loris client). */
  private headTimer: NodeJS.Timeout | null = null;
  private current: Exchange | null = null;
  /** Bytes after the current request (a pipelined next one), held until it is answered. */
  private pending: Buffer | null = null;
  private paused = false;
  /** Where the socket's next read was aimed (readTarget), until that read came or the socket is gone. */
  private aim: ReadAim | null = null;
  /** The current request asked for the connection to close after it (Connection: close, HTTP/1.0). */
  closeAfter = false;
  /** The current request is HTTP/1.0 (its keep-alive is said out loud). */
  http10 = false;
  private dead = false;

  constructor(
    readonly socket: net.Socket,
    private readonly server: Http1Server,
  ) {
    socket.setNoDelay(true);
    // No byte either way for keepAliveMs: a connection idle between requests, or one closing
    // whose last answer no longer moves, is closed. A request being answered (a held
    // long-poll, an update waiting for its slot) is not timed here.
    socket.setTimeout(server.opts.keepAliveMs);
    socket.on('timeout', () => {
      if (this.dead || !this.current) this.destroy();
    });
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.destroy());
    // A client's FIN ends the connection, as with node:http: a request in progress is aborted
    // (a held long-poll lets go, a body cut short is not an update), and what was already
    // queued to it is still written before node closes this side.
    socket.on('end', () => this.abort());
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
  }

  /**
   * Where the socket's next read lands (node asks after every read): the current body's
   * target (an update's slot), or the shared read buffer (null). The aim is told it landed
   * after that read, or once the socket is destroyed.
   */
  readTarget(): Buffer | null {
    this.aim?.landed(); // replaced before any read came: none will land there
    this.aim = null;
    const ex = this.current;
    this.aim = ex && !this.dead && !this.paused ? ex.readTarget() : null;
    return this.aim?.room ?? null;
  }

  /** Bytes read off the socket: views of the shared read buffer (or of a body's target), valid only during the call. */
  read(chunk: Buffer): void {
    const aim = this.aim;
    this.aim = null;
    try {
      this.readChunk(chunk);
    } finally {
      aim?.landed();
    }
  }

  private readChunk(chunk: Buffer): void {
    let c = chunk;
    while (c.length > 0 && !this.dead) {
      const ex = this.current;
      if (ex && ex.bodyLeft > 0) {
        const take = Math.min(ex.bodyLeft, c.length);
        ex.body(take === c.length ? c : c.subarray(0, take));
        c = c.subarray(take);
        continue;
      }
      if (ex) {
        // A pipelined request behind one not yet answered: held (copied) until then.
        this.pending = this.pending ? Buffer.concat([this.pending, c]) : Buffer.from(c);
        if (this.pending.length > MAX_HEAD_BYTES) this.pause();
        return;
      }
      c = this.head(c);
    }
  }

  /** Parses (part of) a request head; returns the bytes after it. */
  private head(chunk: Buffer): Buffer {
    let c = chunk;
    if (!this.headBuf) {
      // Empty lines before a request line are ignored (RFC 9112 §2.2).
      let i = 0;
      while (i < c.length && (c[i] === 13 || c[i] === 10)) i++;
      if (i === c.length) return Buffer.alloc(0);
      c = c.subarray(i);
    }
    const prior = this.headBuf?.length ?? 0;
    const buf = this.headBuf ? Buffer.concat([this.headBuf, c]) : c;
    // A head may end across reads: search from just before where this read's bytes start.
    const end = buf.indexOf(CRLFCRLF, Math.max(0, prior - 3));
    if (end < 0) {
      if (buf.length > MAX_HEAD_BYTES) return this.refuse(new Malformed(431, `a request head over ${MAX_HEAD_BYTES} bytes`));
      this.headBuf = Buffer.from(buf); // the read buffer is reused after this call
      this.headTimer ??= setTimeout(() => {
        if (this.headBuf) this.destroy();
      }, this.server.opts.headersTimeoutMs);
      return Buffer.alloc(0);
    }
    this.headBuf = null;
    this.clearHeadTimer();
    if (end + 4 > MAX_HEAD_BYTES) return this.refuse(new Malformed(431, `a request head over ${MAX_HEAD_BYTES} bytes`));
    const rest = buf.subarray(end + 4);
    let ex: Exchange;
    try {
      ex = this.parse(buf.toString('latin1', 0, end));
    } catch (e) {
      if (e instanceof Malformed) return this.refuse(e);
      throw e;
    }
    this.current = ex;
    if (ex.bodyLeft > 0 && ex.header('expect')?.toLowerCase() === '100-continue') this.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
    this.server.dispatch(ex);
    return rest;
  }

  private parse(text: string): Exchange {
    const lines = text.split('\r\n');
    const line = lines[0];
    const sp1 = line.indexOf(' ');
    const sp2 = line.lastIndexOf(' ');
    if (sp1 <= 0 || sp2 <= sp1 + 1) throw new Malformed(400, 'a malformed request line');
    const method = line.slice(0, sp1);
    const target = line.slice(sp1 + 1, sp2);
    const version = line.slice(sp2 + 1);
    if (!TOKEN.test(method) || target.includes(' ')) throw new Malformed(400, 'a malformed request line');
    if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') {
      throw /^HTTP\/\d\.\d$/.test(version) ? new Malformed(505, `${version} is not served here: use HTTP/1.1`) : new Malformed(400, 'a malformed request line');
    }
    if (lines.length - 1 > MAX_FIELDS) throw new Malformed(431, `more than ${MAX_FIELDS} header fields`);
    const fields = new Map<string, string>();
    let length: string | undefined;
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i];
      const colon = l.indexOf(':');
      if (colon <= 0) throw new Malformed(400, l.length > 0 && (l[0] === ' ' || l[0] === '\t') ? 'a folded header field (obsolete line folding)' : 'a malformed header field');
      const name = l.slice(0, colon).toLowerCase();
      if (!TOKEN.test(name)) throw new Malformed(400, 'a malformed header field name');
      const value = l.slice(colon + 1).trim();
      if (name === 'content-length') {
        if (length !== undefined && length !== value) throw new Malformed(400, 'two different Content-Length fields');
        length = value;
      }
      if (!fields.has(name)) fields.set(name, value);
    }
    if (fields.has('transfer-encoding')) throw new Malformed(411, 'a body in Transfer-Encoding: send it with Content-Length (this server takes no chunked bodies)');
    if (length !== undefined && !/^\d{1,15}$/.test(length)) throw new Malformed(400, `a malformed Content-Length "${length.slice(0, 20)}"`);
    const connection = fields.get('connection')?.toLowerCase() ?? '';
    this.http10 = version === 'HTTP/1.0';
    this.closeAfter = this.http10 ? !connection.includes('keep-alive') : connection.includes('close');
    return new Exchange(this, method, target, fields, length === undefined ? 0 : Number(length));
  }

  /** Answers a malformed request and closes the connection; nothing after it is read. */
  private refuse(e: Malformed): Buffer {
    this.server.onMalformed?.(e.status);
    const body = JSON.stringify({ error: e.message });
    this.write(`HTTP/1.1 ${e.status} ${REASONS[e.status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`, Buffer.from(body), true);
    return Buffer.alloc(0);
  }

  write(head: string, body: Buffer | null, close: boolean, written?: () => void): void {
    if (this.dead) {
      if (written) queueMicrotask(written);
      return;
    }
    const s = this.socket;
    s.cork();
    s.write(head, 'latin1');
    // The socket calls back once the bytes are in the kernel, or with an error once it is
    // destroyed (no longer touching them either way).
    if (body && body.length > 0) s.write(body, written);
    else if (written) queueMicrotask(written);
    s.uncork();
    if (close) {
      this.dead = true;
      // Once the answer is handed to the kernel, the connection goes (unread bytes or not);
      // an answer that stops moving is cut by the idle timeout.
      s.end(() => s.destroy());
      this.current?.closed();
      this.server.forget(this);
      this.clearHeadTimer();
    }
  }

  /** The answer to `ex` is out: once its body is read too, the next request. */
  answered(ex: Exchange): void {
    if (this.current !== ex) return;
    if (ex.bodyLeft > 0) {
      // The next request starts after this one's body. A body nobody reads (the handler
      // refused the request) is read and dropped.
      ex.whenBodyDone = () => this.next(ex);
      if (!ex.claimed) ex.discardBody();
      return;
    }
    this.next(ex);
  }

  private next(ex: Exchange): void {
    if (this.current !== ex || this.dead) return;
    this.current = null;
    const p = this.pending;
    this.pending = null;
    this.resume();
    // Replayed, not read off the socket: no aimed read lands with it.
    if (p) this.readChunk(p);
  }

  /** The client ended its side: the request in progress is aborted; node ends ours once what is queued is written. */
  private abort(): void {
    if (!this.dead) {
      this.dead = true;
      this.server.forget(this);
    }
    this.clearHeadTimer();
    this.current?.closed();
  }

  destroy(): void {
    this.abort();
    this.socket.destroy();
    // No read comes after this: an aimed one will not land.
    this.aim?.landed();
    this.aim = null;
  }

  private clearHeadTimer(): void {
    if (this.headTimer) clearTimeout(this.headTimer);
    this.headTimer = null;
  }
}

export interface Http1ServerOptions {
  /** A connection idle this long between requests is closed. */
  readonly keepAliveMs: number;
  /** A request head must arrive whole within this. */
  readonly headersTimeoutMs: number;
}

/** An HTTP/1.1 server: `handler` gets each request (see Exchange) in order per connection. */
export class Http1Server {
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  /** Counts a malformed request (its status), answered and closed here. */
  onMalformed: ((status: number) => void) | null = null;

  constructor(
    readonly opts: Http1ServerOptions,
    private readonly handler: (ex: Exchange) => void,
  ) {
    this.server = sharedReadServer((socket) => {
      const conn = new Connection(socket, this);
      this.connections.add(conn);
      return Object.assign((chunk: Buffer) => conn.read(chunk), { into: () => conn.readTarget() });
    });
  }

  /** @internal */
  dispatch(ex: Exchange): void {
    this.handler(ex);
  }

  /** @internal */
  forget(conn: Connection): void {
    this.connections.delete(conn);
  }

  listen(host: string, port: number, backlog = 4096): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port, backlog }, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  /** Stops listening and closes every connection (requests in progress see their connection gone). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const c of [...this.connections]) c.destroy();
    });
  }
}
