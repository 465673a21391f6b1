import type { RunStore, StoreEvent } from '../sim/runStore.js';
import { mergeHistograms, percentiles, percentilesOf } from '../sim/stats.js';
import { LAT_AGGS, type Threshold, cmp } from './thresholds.js';

/** A threshold's figure from the run store, while the run goes (null: no figure yet). */
export function liveValue(t: Threshold, store: RunStore): number | null {
  switch (t.metric) {
    case 'round_ms':
      return store.rounds.length === 0 ? (t.agg === 'count' ? 0 : null) : percentilesOf(store.rounds.map((r) => r.durationMs))![LAT_AGGS[t.agg]];
    case 'propagation_ms': {
      // Merged only when a threshold asks (at most once a round or a second), not at every snapshot.
      const all = mergeHistograms(store.rounds.map((r) => store.propagationOf(r.round)).filter((h) => h !== undefined));
      if (all.totalCount === 0) return t.agg === 'count' ? 0 : null;
      return percentiles(all)[LAT_AGGS[t.agg]];
    }
    case 'errors':
      return store.errors();
    case 'retries': {
      let n = 0;
      for (const c of store.chunks.values()) n += c.retries;
      return n;
    }
    case 'faults_recovered': {
      const judged = [...store.faults.values()].filter((f) => f.verdict !== null);
      const ok = judged.filter((f) => f.verdict === 'recovered').length;
      return t.agg === 'count' ? ok : judged.length === 0 ? 1 : ok / judged.length;
    }
    case 'rounds.completed':
      return store.rounds.length;
    case 'updates.accepted':
      return store.rounds.reduce((a, r) => a + r.updates, 0);
    default:
      return null;
  }
}

/**
 * k6's abortOnFail: the thresholds that carry it are checked on the live store (at each
 * closed round, fault verdict, and at most once a second otherwise), and the first that
 * fails stops the run. A threshold without a figure yet is not failed: it waits.
 */
export class AbortWatch {
  private readonly watched: Threshold[];
  private readonly unsubscribe: () => void;
  private lastCheck = 0;
  /** Why the run was stopped (null: it was not). */
  abortedBy: string | null = null;

  constructor(private readonly store: RunStore, thresholds: readonly Threshold[], private readonly abort: (reason: string) => void, private readonly now = () => performance.now()) {
    this.watched = thresholds.filter((t) => t.abortOnFail);
    this.unsubscribe = this.watched.length ? store.subscribe((e) => this.on(e)) : () => undefined;
  }

  private on(e: StoreEvent): void {
    if (this.abortedBy !== null || this.store.phase !== 'running') return;
    const due = e.type === 'rounds' || e.type === 'faultReport' || this.now() - this.lastCheck >= 1000;
    if (due) this.check();
  }

  check(): void {
    this.lastCheck = this.now();
    const since = this.store.startedAt === null ? 0 : this.now() - this.store.startedAt;
    for (const t of this.watched) {
      if (since < t.delayAbortEvalMs) continue;
      const v = liveValue(t, this.store);
      if (v === null || cmp(v, t.op, t.target)) continue;
      this.abortedBy = `threshold ${t.metric}: ${t.expr} failed during the run (measured ${Math.round(v * 1000) / 1000}) and has abortOnFail`;
      this.abort(this.abortedBy);
      return;
    }
  }

  close(): void {
    this.unsubscribe();
  }
}
