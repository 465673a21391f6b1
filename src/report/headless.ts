import type { RunStore, StoreEvent } from '../sim/runStore.js';
import { percentilesOf } from '../sim/stats.js';
import { fmtMB, fmtMs } from './summary.js';

export interface HeadlessOptions {
  /** Shortest gap between two round lines: a line every round or every `everyMs`, whichever is rarer. */
  everyMs?: number;
  /** While no round closes, a progress line after this much silence. */
  quietMs?: number;
  /** The clock (tests drive their own). */
  now?: () => number;
  /** Workers that take version v (a ramp: those active in round v); default all. */
  holders?: (version: number) => number;
}

/**
 * The plain sink (no terminal, `--headless`, CI logs): one compact line when a round is
 * complete (every worker holds the version it published): the first at once, then at most
 * one every 2 s, so a run of 500 fast rounds prints a line every 2 s and a run of slow
 * rounds a line per round;
 * notable events are printed by the coordinator itself. While no round closes, a progress
 * line with the workers' states says the run is alive.
 */
export class HeadlessSink {
  private nextRound = 0;
  /** The newest complete round not printed yet. */
  private pending: number | null = null;
  private printedRound = 0;
  private lastPrinted: number;
  private lastCount = { at: 0, messages: 0, bytes: 0 };
  private readonly everyMs: number;
  private readonly quietMs: number;
  private readonly now: () => number;
  private readonly holders: (version: number) => number;
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private closed = false;

  constructor(private readonly store: RunStore, private readonly print: (line: string) => void, opts: HeadlessOptions = {}) {
    this.everyMs = opts.everyMs ?? 2000;
    this.quietMs = opts.quietMs ?? 10_000;
    this.now = opts.now ?? (() => performance.now());
    this.holders = opts.holders ?? (() => store.totalWorkers);
    this.lastPrinted = this.now();
    this.lastCount.at = this.lastPrinted;
    this.unsubscribe = store.subscribe((e) => this.on(e));
    this.timer = setInterval(() => this.tick(), 250);
    this.timer.unref();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.collect(true);
    if (this.pending !== null) this.roundLine();
    clearInterval(this.timer);
    this.unsubscribe();
  }

  /** Called by the timer: a held round line once its gap has passed, or a progress line after silence. */
  tick(): void {
    if (this.closed) return;
    const now = this.now();
    if (this.pending !== null && now - this.lastPrinted >= this.everyMs) this.roundLine();
    else if (this.store.phase === 'running' && now - this.lastPrinted >= this.quietMs) this.say(this.progressLine());
  }

  private on(e: StoreEvent): void {
    if (e.type === 'rounds' || e.type === 'workerSnapshot') this.collect(false);
    else if (e.type === 'phase' && (e.phase === 'finishing' || e.phase === 'done')) this.collect(true);
    if (this.pending !== null && this.now() - this.lastPrinted >= this.everyMs) this.roundLine();
  }

  /** Marks the rounds whose published version every expected worker now holds (all of them when `force`). */
  private collect(force: boolean): void {
    const s = this.store;
    // Called on every worker snapshot: only a count is read here (percentiles of a histogram
    // cost a walk of all its buckets; the coordinator spent a quarter of its CPU on them).
    while (this.nextRound < s.rounds.length) {
      const round = s.rounds[this.nextRound].round;
      if (!force && s.propagationCount(round) < this.expectedHolders(round)) return;
      this.nextRound++;
      this.pending = round;
      // The first complete round is printed at once: it says the run is under way.
      if (this.printedRound === 0) this.roundLine();
    }
  }

  /** Workers that will receive version v: all (or those of the ramp step), less those in lost nodes. */
  private expectedHolders(v: number): number {
    let lost = 0;
    for (const n of this.store.nodes.values()) {
      if (n.role === 'worker' && n.status === 'lost') lost += this.store.chunks.get(n.chunk)?.workers ?? 0;
    }
    return Math.max(1, this.holders(v) - lost);
  }

  /**
   * `round  37/500  52.3 ms (p95 61.0 ms)  propagation p99 4.8 ms  1520 msg/s  0.40 MB/s  errors 0`:
   * the newest complete round, the p95 of all closed rounds, and the traffic since the last line.
   */
  private roundLine(): void {
    const s = this.store;
    const line = s.rounds.find((r) => r.round === this.pending);
    if (!line) return;
    const row = s.roundRow(line);
    const total = String(s.totalRounds);
    const p95 = percentilesOf(s.rounds.map((r) => r.durationMs))?.p95 ?? row.durationMs;
    const { messages, bytes } = this.traffic();
    const now = this.now();
    const secs = Math.max((now - this.lastCount.at) / 1000, 1e-3);
    const rate = `${Math.round((messages - this.lastCount.messages) / secs)} msg/s  ${fmtMB((bytes - this.lastCount.bytes) / secs)}/s`;
    this.lastCount = { at: now, messages, bytes };
    const skipped = row.round - this.printedRound - 1;
    this.printedRound = row.round;
    this.pending = null;
    this.say(
      `round ${String(row.round).padStart(total.length)}/${total}` +
        `  ${fmtMs(row.durationMs)} (p95 ${fmtMs(p95)})` +
        `  propagation p99 ${row.propagationP99 === null ? 'n/a' : fmtMs(row.propagationP99)}` +
        `  ${rate}  errors ${s.errors()}` +
        (row.byQuorum ? '  closed on quorum' : '') +
        (skipped > 0 ? `  (+${skipped} round${skipped === 1 ? '' : 's'} since the last line)` : ''),
    );
  }

  private traffic(): { messages: number; bytes: number } {
    let messages = 0;
    let bytes = 0;
    for (const c of this.store.chunks.values()) {
      messages += c.messages;
      bytes += c.bytes;
    }
    return { messages, bytes };
  }

  progressLine(): string {
    const st = this.store.states();
    const parts = this.store.chunks.size === 0 ? [] : Object.entries(st)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k} ${n}`);
    return `… ${this.store.rounds.length}/${this.store.totalRounds} rounds closed; workers: ${parts.join(', ') || 'none reported yet'}`;
  }

  private say(line: string): void {
    this.lastPrinted = this.now();
    this.print(line);
  }
}
