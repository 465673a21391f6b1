import type { Duplex } from 'node:stream';
import type { PassThroughLink } from './pipe.js';

/** What a link does to the bytes that cross it, computed from the faults on at that moment. */
export interface LinkEffects {
  /** Blackhole: nothing crosses (held, as TCP would retransmit after the heal). */
  held: boolean;
  delayMs: number;
  jitterMs: number;
  lossPercent: number;
  /** 0: unlimited. */
  rateBytesPerSec: number;
}

export const NO_EFFECTS: LinkEffects = { held: false, delayMs: 0, jitterMs: 0, lossPercent: 0, rateBytesPerSec: 0 };

const HIGH_WATER = 4 * 1024 * 1024;
/** A lost segment costs a retransmission timeout; back-to-back losses double it, as TCP does. */
const RTO_MS = 200;

/** Takes a view of a read, valid only during the call, if it can use it now (WorkerEnd.tryTake). */
export interface ViewSink {
  tryTake(view: Buffer): boolean;
}

const noEffects = (e: LinkEffects): boolean => e === NO_EFFECTS || (!e.held && e.delayMs === 0 && e.lossPercent === 0 && e.rateBytesPerSec === 0);

/**
 * One direction of a proxied connection: bytes from `src` to `dst` through a queue whose
 * release times carry the delay, loss and rate of the active faults.
 *
 * While no fault is on it, an in-process worker's bytes skip the link's events: its writes
 * go straight to the server's socket (`pass`), and reads from the server are handed to its
 * reader as views of the read buffer (`offerView`), as they would be without the proxy.
 */
export class Link implements PassThroughLink {
  private queue: Array<{ buf: Buffer; at: number }> = [];
  private queued = 0;
  private lastAt = 0;
  private lossStreak = 0;
  private timer: NodeJS.Timeout | null = null;
  private waitingDrain = false;
  private closed = false;
  bytes = 0;
  /** Down links of in-process workers: where a read may go without a copy. */
  viewSink: ViewSink | null = null;

  constructor(
    private readonly src: Duplex,
    private readonly dst: Duplex,
    private readonly effects: () => LinkEffects,
    private readonly random: () => number,
  ) {
    src.on('data', (buf: Buffer) => this.onData(buf));
    src.on('end', () => this.whenEmpty(() => dst.end()));
  }

  /** Re-evaluates the effects (a fault was applied or healed). */
  kick(): void {
    this.pump();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.queue = [];
  }

  /** No fault on the link and nothing of its own queued or waiting: bytes may skip it. */
  open(): boolean {
    return !this.closed && !this.waitingDrain && this.queue.length === 0 && noEffects(this.effects());
  }

  /** A write of the worker's, straight to `dst`; `callback` once it is written (or `dst` is gone). */
  pass(chunk: Buffer, callback: (error?: Error | null) => void): void {
    this.bytes += chunk.length;
    if (this.dst.destroyed) callback();
    else this.dst.write(chunk, () => callback());
  }

  /** Writes queued on the worker's end, straight to `dst` in one go. */
  passAll(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    if (this.dst.destroyed) {
      callback();
      return;
    }
    this.dst.cork();
    const last = chunks.length - 1;
    for (let i = 0; i < last; i++) {
      this.bytes += chunks[i].chunk.length;
      this.dst.write(chunks[i].chunk);
    }
    this.bytes += chunks[last].chunk.length;
    this.dst.write(chunks[last].chunk, () => callback());
    this.dst.uncork();
  }

  /** A read from `src` as a view of its read buffer: handed on as it is if it can be, else copied and forwarded. */
  offerView(view: Buffer): void {
    if (this.viewSink && this.open() && this.viewSink.tryTake(view)) {
      this.bytes += view.length;
      return;
    }
    this.onData(Buffer.from(view));
  }

  private onData(buf: Buffer): void {
    const e = this.effects();
    const now = performance.now();
    if (noEffects(e) && this.queue.length === 0) {
      // The fast path: no fault on this link; the destination's backpressure pauses the source.
      if (!this.write(buf) && !this.waitingDrain) {
        this.waitingDrain = true;
        this.src.pause();
        this.dst.once('drain', () => {
          this.waitingDrain = false;
          this.src.resume();
          this.pump();
        });
      }
      return;
    }
    let at = now + e.delayMs + (e.jitterMs ? (this.random() * 2 - 1) * e.jitterMs : 0);
    if (e.lossPercent > 0 && this.random() * 100 < e.lossPercent) {
      at += RTO_MS * 2 ** Math.min(6, this.lossStreak++);
    } else {
      this.lossStreak = 0;
    }
    if (e.rateBytesPerSec > 0) at = Math.max(at, this.lastAt) + (buf.length / e.rateBytesPerSec) * 1000;
    at = Math.max(at, this.lastAt);
    this.lastAt = at;
    this.queue.push({ buf, at });
    this.queued += buf.length;
    if (this.queued > HIGH_WATER) this.src.pause();
    this.pump();
  }

  private pump(): void {
    if (this.closed || this.waitingDrain) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.effects().held) return;
    const now = performance.now();
    while (this.queue.length > 0 && this.queue[0].at <= now) {
      const { buf } = this.queue.shift()!;
      this.queued -= buf.length;
      if (!this.write(buf)) {
        this.waitingDrain = true;
        this.dst.once('drain', () => {
          this.waitingDrain = false;
          this.pump();
        });
        return;
      }
    }
    if (this.queued <= HIGH_WATER / 2 && this.src.isPaused()) this.src.resume();
    if (this.queue.length > 0) this.timer = setTimeout(() => this.pump(), Math.max(0, this.queue[0].at - now));
    else this.flushWaiters();
  }

  private write(buf: Buffer): boolean {
    this.bytes += buf.length;
    if (this.dst.destroyed) return true;
    return this.dst.write(buf);
  }

  private waiters: Array<() => void> = [];
  private whenEmpty(fn: () => void): void {
    if (this.queue.length === 0) fn();
    else this.waiters.push(fn);
  }

  private flushWaiters(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }
}
