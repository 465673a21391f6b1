import net from 'node:net';
import { type OpenConnection, sharedRead } from '../runtime/readBuffer.js';
import type { Duplex } from 'node:stream';
import { TransportError } from '../sim/ports.js';
import { fromSocketError } from './errors.js';
import { PIECE_BYTES, pieceOf } from './pieces.js';
import type { UpdateBody } from '../sim/updateBody.js';
import { formatHostPort } from '../config/values.js';

/**
 * A lean HTTP/1.1 client connection: one keep-alive connection, one request at a time (a
 * simulated worker's requests are sequential), responses parsed from the socket's bytes.
 *
 * Why not node:http's client: a worker node runs hundreds of workers, and node's
 * `http.request` with an Agent costs about 250 µs of CPU a request on the benchmark machine
 * (ClientRequest, Agent bookkeeping, IncomingMessage streams, events) against about 75 µs
 * for this client (docs/benchmarks.md). That CPU is the load generator's, not the server's,
 * and on a shared host it is taken from the server under test. The server stays node:http.
 *
 * Understood: status line and headers (any split across reads, 64 KiB at most), bodies by
 * Content-Length, chunked transfer coding (trailers skipped), or until the server closes;
 * 1xx interim responses (skipped); 204/304 without a body; `Connection: close` (the next
 * request opens a new connection). Not used, so not built: pipelining, upgrades, HEAD.
 */

export type HttpHeaders = Record<string, string>;

/**
 * Where a response's body goes: `push` each piece as it arrives. A piece is valid only
 * during the call (it may be a view of the socket's read buffer, readBuffer.ts): copy,
 * compare or parse it, never keep it.
 */
export interface BodySink {
  push(c: Buffer): void;
}

/** The response: status, headers (lower-case names; repeated ones joined with ", "), and the sink that took the body. */
export interface HttpReply<S extends BodySink> {
  status: number;
  headers: HttpHeaders;
  sink: S;
}

export interface HttpConnectionOptions {
  readonly host: string;
  readonly port: number;
  /** Names the server in errors ("http://127.0.0.1:8080"). */
  readonly target: string;
  /** No byte from the server for this long ends the request in flight with a `timeout` error. */
  readonly timeoutMs: number;
  /** TCP keepalive idle time (a dead peer under a long poll is noticed). */
  readonly keepaliveMs?: number;
  /** Opens the connection instead of a TCP socket (the in-process fault proxy). */
  readonly connect?: OpenConnection;
}

/** Longest status line plus headers taken before the response is refused as malformed. */
export const MAX_HEAD_BYTES = 64 * 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');
/** Bodies longer than this go out in pieces of this size (see `send`). */
export const UPLOAD_PIECE = PIECE_BYTES;

type BodyMode = { kind: 'none' } | { kind: 'length'; left: number } | { kind: 'chunked' } | { kind: 'close' };

interface Pending<S extends BodySink> {
  readonly path: string;
  readonly makeSink: (status: number, headers: HttpHeaders) => S;
  readonly resolve: (r: HttpReply<S>) => void;
  readonly reject: (e: Error) => void;
  status: number;
  headers: HttpHeaders;
  sink: S | null;
  keepAlive: boolean;
  body: BodyMode;
  /** Bytes of the body received so far (for the error when the connection ends early). */
  got: number;
  timer: NodeJS.Timeout | null;
  /** False while a large body is still going out (an answer can come before it is all sent). */
  bodyDone: boolean;
}

export class HttpConnection {
  private socket: Duplex | null = null;
  private current: Pending<BodySink> | null = null;
  /** Unparsed bytes: a head not yet complete, or a chunk-size line split across reads. */
  private held: Buffer | null = null;
  /** Chunked body: bytes of the current chunk still to come (-1: a size line is next; -2: the CRLF after a chunk; -3: trailers). */
  private chunkLeft = -1;
  private tail: Promise<unknown> = Promise.resolve();
  private closedWith: Error | null = null;
  private readonly hostHeader: string;

  constructor(private readonly opts: HttpConnectionOptions) {
    this.hostHeader = formatHostPort(opts.host, opts.port);
  }

  /**
   * Sends one request and resolves with the whole response once its body is in. Requests
   * wait their turn: one at a time on the connection. `headers` must not carry Host,
   * Content-Length or Connection (set here). `makeSink` is called when the head arrives.
   */
  request<S extends BodySink>(method: string, path: string, headers: Record<string, string | number>, body: UpdateBody | null, makeSink: (status: number, headers: HttpHeaders) => S): Promise<HttpReply<S>> {
    const run = () => this.send(method, path, headers, body, makeSink);
    const p = this.tail.then(run, run);
    this.tail = p.catch(() => undefined);
    return p;
  }

  /** Ends the connection; a request in flight (and every later one) fails with `err`. */
  close(err: Error = new TransportError('stopped', 'stopped', false)): void {
    this.closedWith = err;
    this.drop(err);
  }

  private send<S extends BodySink>(method: string, path: string, headers: Record<string, string | number>, body: UpdateBody | null, makeSink: (status: number, headers: HttpHeaders) => S): Promise<HttpReply<S>> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise<HttpReply<S>>((resolve, reject) => {
      let socket: Duplex;
      try {
        socket = this.socket && !this.socket.destroyed ? this.socket : this.open();
      } catch (e) {
        reject(fromSocketError(e, this.opts.target));
        return;
      }
      const pending: Pending<S> = {
        path,
        makeSink,
        resolve,
        reject,
        status: 0,
        headers: {},
        sink: null,
        keepAlive: true,
        body: { kind: 'none' },
        got: 0,
        timer: null,
        bodyDone: true,
      };
      pending.timer = setTimeout(() => {
        this.drop(new TransportError('timeout', `${this.opts.target}${path}: no answer within ${this.opts.timeoutMs} ms`, true));
      }, this.opts.timeoutMs);
      this.current = pending as unknown as Pending<BodySink>;
      this.held = null;
      this.chunkLeft = -1;
      let head = `${method} ${path} HTTP/1.1\r\nhost: ${this.hostHeader}\r\n`;
      for (const name in headers) head += `${name}: ${headers[name]}\r\n`;
      if (body) head += `content-length: ${body.length}\r\n`;
      head += '\r\n';
      socket.cork();
      socket.write(head, 'latin1');
      if (body && (!Buffer.isBuffer(body) || body.length > UPLOAD_PIECE)) {
        // In pieces, each written when the last is out: every piece counts as activity for the
        // request timeout, as node:http's idle timeout counts writes, so a slow link (a
        // bandwidth fault under a 14 MB update) is not taken for a dead one. An update made as
        // it is sent (UpdateSource) is made a piece at a time, into one pooled piece when the
        // socket is a real one (its write callback comes once the kernel has the bytes).
        pending.bodyDone = false;
        const pooled = !this.opts.connect;
        const whole = body;
        const from = (at: number): void => {
          if (socket.destroyed) return;
          if (this.current === (pending as unknown as Pending<BodySink>)) pending.timer?.refresh();
          if (at >= whole.length) {
            pending.bodyDone = true;
            return;
          }
          const end = Math.min(at + UPLOAD_PIECE, whole.length);
          const piece = pieceOf(whole, at, end, pooled);
          // The callback, with an error or not, means the socket holds the piece no more.
          socket.write(piece.bytes, (err) => {
            piece.done();
            if (!err) from(end);
          });
        };
        from(0);
      } else if (Buffer.isBuffer(body) && body.length > 0) socket.write(body);
      socket.uncork();
    });
  }

  private open(): Duplex {
    const o = this.opts;
    const onData = (c: Buffer) => {
      if (this.socket === socket) this.onData(c);
    };
    // A TCP socket reads into the process's one read buffer (readBuffer.ts): nothing is
    // allocated per read. What is read is parsed, compared or copied before the next read.
    const socket = o.connect
      ? o.connect(onData)
      : net.connect({ host: o.host, port: o.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: o.keepaliveMs ?? 10_000, onread: sharedRead(onData) });
    this.socket = socket;
    socket.on('end', () => {
      if (this.socket === socket) this.onEnd();
    });
    socket.on('error', (e) => {
      if (this.socket === socket) this.drop(fromSocketError(e, o.target));
    });
    socket.on('close', () => {
      if (this.socket === socket) this.drop(null);
    });
    return socket;
  }

  /** Forgets the socket (destroying it) and fails the request in flight with `err`, or with what an early close means. */
  private drop(err: Error | null): void {
    const socket = this.socket;
    this.socket = null;
    this.held = null;
    socket?.destroy();
    const p = this.current;
    if (!p) return;
    this.current = null;
    if (p.timer) clearTimeout(p.timer);
    if (err) p.reject(err);
    else if (p.status === 0) p.reject(new TransportError('reset', `${this.opts.target}${p.path}: the connection closed before an answer`, true));
    else p.reject(new TransportError('truncated', `${this.opts.target}${p.path}: the connection closed after ${p.got} bytes of the body`, true));
  }

  private onEnd(): void {
    const p = this.current;
    if (p && p.status !== 0 && p.body.kind === 'close') {
      this.finish(p, false);
      return;
    }
    this.drop(null);
  }

  private protocolError(what: string): void {
    const p = this.current;
    this.drop(new TransportError('protocol', `${this.opts.target}${p?.path ?? ''}: ${what}`, true));
  }

  private onData(c: Buffer): void {
    const p = this.current;
    if (!p) {
      // Bytes with no request in flight: the server is not speaking HTTP/1.1 as asked.
      this.drop(null);
      return;
    }
    p.timer?.refresh();
    let buf = this.held ? Buffer.concat([this.held, c]) : c;
    this.held = null;
    while (buf.length > 0 && this.current === p) {
      if (p.status === 0) {
        const end = buf.indexOf(CRLFCRLF);
        if (end < 0) {
          if (buf.length > MAX_HEAD_BYTES) return this.protocolError(`a response head longer than ${MAX_HEAD_BYTES} bytes`);
          this.held = Buffer.from(buf); // the socket's read buffer is reused after this call
          return;
        }
        if (!this.parseHead(p, buf.toString('latin1', 0, end))) return;
        buf = buf.subarray(end + 4);
        if (p.status === 0) continue; // a 1xx interim response: the real one follows
        p.sink = p.makeSink(p.status, p.headers);
        if (p.body.kind === 'none' || (p.body.kind === 'length' && p.body.left === 0)) {
          if (buf.length > 0) return this.protocolError('bytes after the end of the response');
          return this.finish(p, p.keepAlive);
        }
        continue;
      }
      const body = p.body;
      if (body.kind === 'length') {
        const take = Math.min(body.left, buf.length);
        this.deliver(p, take === buf.length ? buf : buf.subarray(0, take));
        body.left -= take;
        buf = buf.subarray(take);
        if (body.left === 0) {
          if (buf.length > 0) return this.protocolError('bytes after the end of the response');
          return this.finish(p, p.keepAlive);
        }
      } else if (body.kind === 'close') {
        this.deliver(p, buf);
        return;
      } else {
        const rest = this.chunked(p, buf);
        if (rest === null) return;
        buf = rest;
      }
    }
  }

  private deliver(p: Pending<BodySink>, c: Buffer): void {
    p.got += c.length;
    p.sink!.push(c);
  }

  /** Consumes chunked coding from `buf`; returns what is left to parse, or null when done or waiting for more bytes. */
  private chunked(p: Pending<BodySink>, input: Buffer): Buffer | null {
    let buf = input;
    while (buf.length > 0) {
      if (this.chunkLeft > 0) {
        const take = Math.min(this.chunkLeft, buf.length);
        this.deliver(p, take === buf.length ? buf : buf.subarray(0, take));
        this.chunkLeft -= take;
        buf = buf.subarray(take);
        if (this.chunkLeft === 0) this.chunkLeft = -2;
        continue;
      }
      const eol = buf.indexOf('\r\n');
      if (eol < 0) {
        if (buf.length > MAX_HEAD_BYTES) {
          this.protocolError('a chunk-size line longer than 64 KiB');
          return null;
        }
        this.held = Buffer.from(buf); // the socket's read buffer is reused after this call
        return null;
      }
      const line = buf.toString('latin1', 0, eol);
      buf = buf.subarray(eol + 2);
      if (this.chunkLeft === -2) {
        if (line !== '') {
          this.protocolError('no CRLF after a chunk');
          return null;
        }
        this.chunkLeft = -1;
      } else if (this.chunkLeft === -3) {
        if (line === '') {
          if (buf.length > 0) {
            this.protocolError('bytes after the end of the response');
            return null;
          }
          this.finish(p, p.keepAlive);
          return null;
        }
        // A trailer field: skipped.
      } else {
        const m = /^([0-9a-fA-F]{1,12})(?:;.*)?$/.exec(line.trim());
        if (!m) {
          this.protocolError(`a malformed chunk size "${line.slice(0, 40)}"`);
          return null;
        }
        const size = parseInt(m[1], 16);
        this.chunkLeft = size === 0 ? -3 : size;
      }
    }
    return null;
  }

  /** Parses a status line and headers into `p`; false (after failing the request) when malformed. */
  private parseHead(p: Pending<BodySink>, head: string): boolean {
    const lines = head.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0]);
    if (!m) {
      this.protocolError(`not an HTTP/1.x status line: "${lines[0].slice(0, 60)}"`);
      return false;
    }
    const status = Number(m[2]);
    const headers: HttpHeaders = {};
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      const colon = line.indexOf(':');
      if (colon <= 0) {
        this.protocolError(`a malformed header line "${line.slice(0, 60)}"`);
        return false;
      }
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
    if (status >= 100 && status < 200) return true; // interim: wait for the final response
    const conn = (headers.connection ?? '').toLowerCase();
    p.keepAlive = m[1] === '1' ? !/\bclose\b/.test(conn) : /\bkeep-alive\b/.test(conn);
    p.status = status;
    p.headers = headers;
    const te = headers['transfer-encoding'];
    if (status === 204 || status === 304) p.body = { kind: 'none' };
    else if (te !== undefined && /\bchunked\s*$/i.test(te)) p.body = { kind: 'chunked' };
    else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (!/^\d+$/.test(headers['content-length']) || !Number.isSafeInteger(n)) {
        this.protocolError(`a malformed content-length "${headers['content-length'].slice(0, 40)}"`);
        return false;
      }
      p.body = { kind: 'length', left: n };
    } else {
      p.body = { kind: 'close' };
      p.keepAlive = false;
    }
    return true;
  }

  private finish(p: Pending<BodySink>, keepAlive: boolean): void {
    this.current = null;
    if (p.timer) clearTimeout(p.timer);
    // An answer that came before the whole body went out leaves the connection mid-request.
    if (!keepAlive || !p.bodyDone) {
      const socket = this.socket;
      this.socket = null;
      socket?.destroy();
    }
    p.resolve({ status: p.status, headers: p.headers, sink: p.sink! });
  }
}
