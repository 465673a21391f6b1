import type { Duplex } from 'node:stream';

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

/**
 * One direction of a proxied connection: bytes from `src` to `dst` through a queue whose
 * release times carry the delay, loss and rate of the active faults.
 */
export class Link {
  private queue: Array<{ buf: Buffer; at: number }> = [];
  private queued = 0;
  private lastAt = 0;
  private lossStreak = 0;
  private timer: NodeJS.Timeout | null = null;
  private waitingDrain = false;
  private closed = false;
  bytes = 0;

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

  private onData(buf: Buffer): void {
    const e = this.effects();
    const now = performance.now();
    if (e.held === false && e.delayMs === 0 && e.lossPercent === 0 && e.rateBytesPerSec === 0 && this.queue.length === 0) {
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
