import type { RunStore, StoreEvent } from '../sim/runStore.js';
import { type RampPlan, expectedInRound } from '../sim/ramp.js';
import { type Percentiles, mergeHistograms, percentiles, percentilesOf } from '../sim/stats.js';
import { LAT_AGGS, type Threshold, cmp } from './thresholds.js';

/** Metrics a ramp step can be judged by: figures that belong to the step's own rounds. */
export const STEP_METRICS = ['round_ms', 'propagation_ms', 'errors'] as const;

type Lat = Percentiles;

export interface RampStepResult {
  /** Workers active in the step (the sum over chunks of their share). */
  workers: number;
  firstRound: number;
  lastRound: number;
  /** Rounds of the step the server closed (fewer than planned: the run ended inside the step). */
  roundsClosed: number;
  roundMs: Lat | null;
  propagationMs: Lat | null;
  errors: number;
  /** Each step-judged threshold: its figure in this step and whether it held. */
  thresholds: Array<{ metric: string; expr: string; value: number | null; ok: boolean }>;
  /** Every round closed and every step threshold held. */
  held: boolean;
}

export interface RampResult {
  steps: RampStepResult[];
  hold: number;
  /** The thresholds the steps are judged by ("round_ms p(95)<2000"). */
  limits: string[];
  /** The largest step such that it and every step before it held; null when the first did not. */
  capacity: { workers: number; limits: string[] } | null;
  /** The first step that did not hold, and why. */
  brokeAt: { workers: number; why: string } | null;
}

/**
 * Watches a ramp run: the errors so far at each closed round, so each step gets its own
 * error count; at the end it judges every step by the thresholds on step metrics and names
 * the capacity: "3000 workers at round_ms p(95)<2000".
 */
export class RampRecorder {
  private readonly errorsAtRound = new Map<number, number>();
  private readonly unsubscribe: () => void;

  constructor(private readonly store: RunStore, private readonly plan: RampPlan) {
    this.unsubscribe = store.subscribe((e: StoreEvent) => {
      if (e.type === 'rounds') for (const r of e.rounds) this.errorsAtRound.set(r.round, store.errors());
    });
  }

  close(): void {
    this.unsubscribe();
  }

  result(thresholds: readonly Threshold[]): RampResult {
    const { plan, store } = this;
    const judged = thresholds.filter((t) => (STEP_METRICS as readonly string[]).includes(t.metric));
    const limits = judged.map((t) => `${t.metric} ${t.expr}`);
    const steps: RampStepResult[] = [];
    let errorsBefore = 0;
    for (let s = 0; s < plan.steps.length; s++) {
      const firstRound = s * plan.hold + 1;
      const lastRound = firstRound + plan.hold - 1;
      const lines = store.rounds.filter((r) => r.round >= firstRound && r.round <= lastRound);
      const hists = lines.map((l) => store.propagationOf(l.round)).filter((h) => h !== undefined);
      const prop = hists.length ? percentiles(mergeHistograms(hists)) : null;
      const lastClosed = lines.length ? lines[lines.length - 1].round : null;
      // Errors up to the step's last closed round (the end of the run for the step it ended in).
      const errorsAfter = lastClosed !== null && lastClosed === lastRound ? (this.errorsAtRound.get(lastClosed) ?? store.errors()) : store.errors();
      const step: RampStepResult = {
        workers: expectedInRound(plan, firstRound),
        firstRound,
        lastRound,
        roundsClosed: lines.length,
        roundMs: percentilesOf(lines.map((l) => l.durationMs)),
        propagationMs: prop && prop.count > 0 ? prop : null,
        errors: Math.max(0, errorsAfter - errorsBefore),
        thresholds: [],
        held: false,
      };
      errorsBefore = errorsAfter;
      for (const t of judged) {
        const figures = t.metric === 'round_ms' ? step.roundMs : t.metric === 'propagation_ms' ? step.propagationMs : null;
        const value = t.metric === 'errors' ? step.errors : figures ? figures[LAT_AGGS[t.agg]] : null;
        step.thresholds.push({ metric: t.metric, expr: t.expr, value, ok: value !== null && cmp(value, t.op, t.target) });
      }
      step.held = step.roundsClosed === plan.hold && step.thresholds.every((x) => x.ok);
      steps.push(step);
      if (lines.length === 0) break;
    }
    let capacity: RampResult['capacity'] = null;
    let brokeAt: RampResult['brokeAt'] = null;
    for (const st of steps) {
      if (!st.held) {
        const failed = st.thresholds.filter((x) => !x.ok).map((x) => `${x.metric} ${x.expr} measured ${x.value ?? 'nothing'}`);
        const why = st.roundsClosed < plan.hold ? `${st.roundsClosed} of its ${plan.hold} rounds closed` : failed.join('; ');
        brokeAt = { workers: st.workers, why };
        break;
      }
      capacity = { workers: st.workers, limits };
    }
    return { steps, hold: plan.hold, limits, capacity, brokeAt };
  }
}

/** The lines printed after a ramp run: a row per step, then the capacity. */
export function formatRamp(r: RampResult): string[] {
  const ms = (l: Lat | null, k: 'p95' | 'p99') => (l ? `${l[k].toFixed(1)} ms` : 'n/a');
  const out = [`ramp        ${r.steps.length} steps of ${r.hold} rounds${r.limits.length ? `, judged by ${r.limits.join(', ')}` : ' (no threshold on round_ms, propagation_ms or errors to judge them by)'}`];
  for (const s of r.steps) {
    out.push(
      `  step ${String(s.workers).padStart(6)} workers  rounds ${s.firstRound}..${s.lastRound} (${s.roundsClosed} closed)  round p95 ${ms(s.roundMs, 'p95')}  propagation p99 ${ms(s.propagationMs, 'p99')}  errors ${s.errors}  ${s.held ? 'held' : 'BROKE'}`,
    );
  }
  if (r.limits.length) {
    out.push(
      r.capacity
        ? `capacity    ${r.capacity.workers} workers at ${r.limits.join(' and ')}${r.brokeAt ? ` (the step of ${r.brokeAt.workers} broke: ${r.brokeAt.why})` : ' (every step held: the ramp did not reach the limit)'}`
        : `capacity    below the first step (${r.brokeAt?.workers} workers broke: ${r.brokeAt?.why})`,
    );
  }
  return out;
}
