import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

/** An error as a socket reports it (`code` is what the transports classify by). */
export function socketError(code: 'ECONNRESET' | 'ECONNREFUSED', what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${what} ${code}`), { code, syscall: what });
}

/** How much one direction of the pipe holds before its writer waits (as a socket buffer would). */
const PIPE_BUFFER_BYTES = 1024 * 1024;

/** Queued small writes are joined into chunks of up to this size (`_writev`). */
const WRITEV_JOIN_BYTES = 256 * 1024;

/**
 * One end of an in-memory connection: what is written on one end is read on the other. A
 * write completes when the other end has taken the chunk, so a slow reader slows the writer
 * (the same backpressure as a socket, without a kernel in between).
 */
class PipeEnd extends Duplex {
  other!: PipeEnd;
  private pendingWrite: (() => void) | null = null;

  constructor() {
    // A socket's receive buffer, not a stream's 16 KiB: with the default, every 64 KiB the
    // proxy read from the server would fill the pipe, pause the server socket and resume it.
    super({ allowHalfOpen: true, highWaterMark: PIPE_BUFFER_BYTES });
  }

  override _read(): void {
    const done = this.pendingWrite;
    if (done) {
      this.pendingWrite = null;
      done();
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (chunk.length === 0) {
      process.nextTick(callback);
      return;
    }
    this.other.activity();
    this.activity();
    this.other.push(chunk);
    this.other.pendingWrite = callback;
  }

  /**
   * Writes that queued while the reader was busy go across together: small ones (an HTTP/2
   * frame header and its 16 KiB of DATA, many to a megabyte) joined into one chunk of up to
   * WRITEV_JOIN_BYTES, larger ones as they are. The proxy then forwards one chunk where it
   * would have forwarded a hundred, as the kernel joins a socket's queued writes.
   */
  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.other.activity();
    this.activity();
    let run: Buffer[] = [];
    let runBytes = 0;
    let pushed = false;
    const flushRun = () => {
      if (runBytes > 0) pushed = true;
      if (runBytes > 0) this.other.push(run.length === 1 ? run[0] : Buffer.concat(run, runBytes));
      run = [];
      runBytes = 0;
    };
    for (const { chunk } of chunks) {
      if (chunk.length === 0) continue;
      if (chunk.length >= WRITEV_JOIN_BYTES) {
        flushRun();
        this.other.push(chunk);
        pushed = true;
        continue;
      }
      if (runBytes + chunk.length > WRITEV_JOIN_BYTES) flushRun();
      run.push(chunk);
      runBytes += chunk.length;
    }
    flushRun();
    if (pushed) this.other.pendingWrite = callback;
    else process.nextTick(callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.other.push(null);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const pending = this.other.pendingWrite;
    this.other.pendingWrite = null;
    pending?.();
    // The peer of a closed end sees its connection close, as over TCP.
    if (!this.other.destroyed) this.other.destroy();
    callback(error);
  }

  /** Data moved on this end (the worker end's idle timeout counts it). */
  activity(): void {}
}

/**
 * The worker's end: what the HTTP client holds as its socket. Socket options go to the real
 * connection to the server (the proxy's upstream); the idle timeout is this end's own, so a
 * link held by a fault is noticed by the worker as it would be on a real socket.
 */
export class WorkerEnd extends PipeEnd {
  /** The proxy's connection to the server, once it exists. */
  upstream: Socket | null = null;
  /**
   * The worker's link to the server while no fault is on it: writes go straight to the
   * upstream socket instead of across the pipe and through the proxy's link.
   */
  passUp: PassThroughLink | null = null;
  private idleMs = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  readonly connecting = false;

  /**
   * `reader`, when given, takes everything that arrives (the 'data' event goes to it alone),
   * and the proxy may hand it views of its read buffer, valid only during the call, as a
   * socket opened with `onread` does: nothing is copied while no fault is on the link.
   */
  constructor(private readonly reader?: (chunk: Buffer) => void) {
    super();
    if (reader) this.on('data', reader);
  }

  /**
   * Hands `view` to the reader now if nothing that came before it is still on its way (a
   * chunk buffered on this end, or in the proxy's end); false when it must be copied and
   * go the long way.
   */
  tryTake(view: Buffer): boolean {
    if (!this.reader || this.readableLength !== 0 || this.readableFlowing !== true || this.destroyed || this.other.writableLength !== 0) return false;
    this.activity();
    this.reader(view);
    return true;
  }

  /** The link a write may skip to, if nothing written before it is still in the pipe and no fault is on. */
  private direct(): PassThroughLink | null {
    const pass = this.passUp;
    if (!pass || this.other.readableLength !== 0 || !pass.open()) return null;
    this.activity();
    return pass;
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const pass = this.direct();
    if (pass) pass.pass(chunk, callback);
    else super._write(chunk, encoding, callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    const pass = this.direct();
    if (pass) pass.passAll(chunks, callback);
    else super._writev(chunks, callback);
  }

  override activity(): void {
    this.idleTimer?.refresh();
  }

  setTimeout(ms: number, onTimeout?: () => void): this {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.idleMs = ms;
    if (onTimeout) this.once('timeout', onTimeout);
    if (ms > 0) {
      this.idleTimer = setTimeout(() => this.emit('timeout'), ms);
      this.idleTimer.unref();
    }
    return this;
  }

  setNoDelay(noDelay?: boolean): this {
    this.upstream?.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    this.upstream?.setKeepAlive(enable, initialDelay);
    return this;
  }

  ref(): this {
    this.upstream?.ref();
    return this;
  }

  unref(): this {
    this.upstream?.unref();
    return this;
  }

  get remoteAddress(): string | undefined {
    return this.upstream?.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.upstream?.remotePort;
  }

  get timeout(): number {
    return this.idleMs;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    super._destroy(error, callback);
  }
}

/** The proxy's end: the "client socket" its links read from and write to. */
export class ProxyEnd extends PipeEnd {
  /** A reset for the worker: its end fails with ECONNRESET, as when a TCP RST arrives. */
  resetAndDestroy(): this {
    this.failWorker(socketError('ECONNRESET', 'read'));
    return this;
  }

  /** The worker's end fails with `error` (what connecting to the server failed with). */
  failWorker(error: Error): void {
    if (!this.other.destroyed) this.other.destroy(error);
    if (!this.destroyed) this.destroy();
  }
}

/** A link that can take the worker's writes straight to the server while no fault is on it. */
export interface PassThroughLink {
  /** No fault on the link and nothing of its own queued: a write may go straight through. */
  open(): boolean;
  pass(chunk: Buffer, callback: (error?: Error | null) => void): void;
  passAll(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void;
}

/** A connected pair: the worker's end and the proxy's end. */
export function pipePair(reader?: (chunk: Buffer) => void): { worker: WorkerEnd; proxy: ProxyEnd } {
  const worker = new WorkerEnd(reader);
  const proxy = new ProxyEnd();
  worker.other = proxy;
  proxy.other = worker;
  return { worker, proxy };
}

/**
 * A worker end that fails with ECONNREFUSED (nothing "listens": a refuse fault), a turn of
 * the event loop later, as a refused connect does (and once the HTTP client listens for its
 * socket's errors, which it starts on the next tick).
 */
export function refusedEnd(reader?: (chunk: Buffer) => void): WorkerEnd {
  const { worker, proxy } = pipePair(reader);
  setImmediate(() => proxy.failWorker(socketError('ECONNREFUSED', 'connect')));
  return worker;
}
