import type { Clock } from '../../src/sim/ports.js';

/** A clock the test moves by hand. */
export class FakeClock implements Clock {
  t = 0;
  private timers: Array<{ at: number; fn: () => void; live: boolean }> = [];

  now(): number {
    return this.t;
  }

  wallNow(): number {
    return 1_700_000_000_000 + this.t;
  }

  setTimer(ms: number, fn: () => void) {
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimer(ms, resolve));
  }

  advance(ms: number): void {
    this.t += ms;
    const due = this.timers.filter((x) => x.live && x.at <= this.t);
    this.timers = this.timers.filter((x) => !due.includes(x));
    for (const x of due) {
      x.live = false;
      x.fn();
    }
  }
}
