import type { RunStore, StoreEvent } from '../sim/runStore.js';
import { formatRoundLine } from './summary.js';

/**
 * The plain sink: a line per notable event and per round (once every worker holds the
 * version that round published), and a progress line when nothing else was said for a while.
 */
export class HeadlessSink {
  private nextRound = 0;
  private lastPrinted = performance.now();
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: () => void;

  constructor(private readonly store: RunStore, private readonly print: (line: string) => void, progressEveryMs = 5000) {
    this.unsubscribe = store.subscribe((e) => this.on(e));
    this.timer = setInterval(() => {
      if (store.phase === 'running' && performance.now() - this.lastPrinted >= progressEveryMs) this.say(this.progressLine());
    }, 1000);
    this.timer.unref();
  }

  private closed = false;

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.flushRounds(true);
    clearInterval(this.timer);
    this.unsubscribe();
  }

  private on(e: StoreEvent): void {
    if (e.type === 'rounds' || e.type === 'workerSnapshot') this.flushRounds(false);
    else if (e.type === 'phase' && (e.phase === 'finishing' || e.phase === 'done')) this.flushRounds(true);
  }

  private flushRounds(force: boolean): void {
    const s = this.store;
    while (this.nextRound < s.rounds.length) {
      const row = s.roundRow(s.rounds[this.nextRound]);
      if (!force && row.propagationCount < this.expectedHolders()) return;
      this.nextRound++;
      this.say(formatRoundLine(row, s.totalRounds, row.propagationP99, s.errors()));
    }
  }

  /** Workers that will receive a version: all, less those in lost nodes. */
  private expectedHolders(): number {
    let lost = 0;
    for (const n of this.store.nodes.values()) {
      if (n.role === 'worker' && n.status === 'lost') lost += this.store.chunks.get(n.chunk)?.workers ?? 0;
    }
    return this.store.totalWorkers - lost;
  }

  progressLine(): string {
    const st = this.store.states();
    const parts = Object.entries(st)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k} ${n}`);
    return `… ${this.store.rounds.length}/${this.store.totalRounds} rounds closed; workers: ${parts.join(', ') || 'none reported yet'}`;
  }

  private say(line: string): void {
    this.lastPrinted = performance.now();
    this.print(line);
  }
}
