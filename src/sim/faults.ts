/** Fault outcomes as events: what nodes report and the summary merges (no I/O here). */

export type Verdict = 'recovered' | 'recovered-slow' | 'degraded' | 'stuck' | 'error';

/** A fault as it happened on one node. The coordinator merges the nodes' instances. */
export interface FaultInstanceReport {
  faultId: string;
  instance: number;
  kind: string;
  backend: string;
  target: string;
  trigger: string;
  chunk: string;
  affected: number;
  appliedAtMs: number;
  healedAtMs: number | null;
  /** First failure an affected worker saw after the apply. */
  noticedAfterMs: number | null;
  /**
   * The kind of that first failure: "keepalive" (an unanswered keepalive ping), "timeout",
   * "reset", "connect-refused", a gRPC status, ... Null: no worker saw the fault fail a request
   * (TCP retransmission carried it, or nothing was in flight).
   */
  noticedBy: string | null;
  /** Heal → every affected worker had a successful exchange (the slowest of them). */
  firstExchangeAfterHealMs: number | null;
  /** Heal → every affected worker completed a round with its update in. */
  nextRoundAfterHealMs: number | null;
  /** Affected workers whose update a round closed without (quorum). */
  degradedWorkers: number;
  /** Affected workers with no progress within the watchdog after the heal. */
  stuckWorkers: number;
  verdict: Verdict;
  /** Why the backend could not apply or heal the fault (verdict `error`). */
  error?: string;
}

const ORDER: Verdict[] = ['recovered', 'recovered-slow', 'degraded', 'stuck', 'error'];

/** One fault instance across nodes: the per-node report with `chunks` for `chunk` and `id` for `faultId`. */
export type MergedFault = Omit<FaultInstanceReport, 'faultId' | 'chunk'> & { id: string; chunks: string[] };

/** One row per fault instance across nodes: counts add up, times take the worst node, the verdict the worst one. */
export function mergeFaults(reports: readonly FaultInstanceReport[]): MergedFault[] {
  const by = new Map<string, MergedFault>();
  const maxN = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));
  const minN = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.min(a, b));
  for (const r of reports) {
    const key = `${r.faultId}#${r.instance}`;
    const m = by.get(key);
    if (!m) {
      const { faultId, chunk, ...rest } = r;
      by.set(key, { ...rest, id: faultId, chunks: [chunk] });
      continue;
    }
    m.chunks.push(r.chunk);
    m.affected += r.affected;
    m.appliedAtMs = Math.min(m.appliedAtMs, r.appliedAtMs);
    m.healedAtMs = maxN(m.healedAtMs, r.healedAtMs);
    if (r.noticedAfterMs !== null && (m.noticedAfterMs === null || r.noticedAfterMs < m.noticedAfterMs)) m.noticedBy = r.noticedBy;
    m.noticedAfterMs = minN(m.noticedAfterMs, r.noticedAfterMs);
    // A worker still missing its exchange on some node leaves the whole instance without that time.
    m.firstExchangeAfterHealMs = m.firstExchangeAfterHealMs === null || r.firstExchangeAfterHealMs === null ? null : Math.max(m.firstExchangeAfterHealMs, r.firstExchangeAfterHealMs);
    m.nextRoundAfterHealMs = m.nextRoundAfterHealMs === null || r.nextRoundAfterHealMs === null ? null : Math.max(m.nextRoundAfterHealMs, r.nextRoundAfterHealMs);
    m.degradedWorkers += r.degradedWorkers;
    m.stuckWorkers += r.stuckWorkers;
    if (!m.backend.split('+').includes(r.backend)) m.backend = `${m.backend}+${r.backend}`;
    if (r.error !== undefined) m.error ??= `${r.chunk}: ${r.error}`;
    if (ORDER.indexOf(r.verdict) > ORDER.indexOf(m.verdict)) m.verdict = r.verdict;
  }
  return [...by.values()].sort((a, b) => a.appliedAtMs - b.appliedAtMs);
}
