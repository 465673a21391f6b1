import type { FaultInstanceReport, Verdict } from './faults.js';
import type { RoundLine } from './flServer.js';
import { type Histogram, decodeHistogram, newHistogram, percentileMs } from './stats.js';
import { WORKER_STATES, type WorkerState } from './workerStats.js';

export type NodeStatus = 'attached' | 'ready' | 'running' | 'missing' | 'finished' | 'lost' | 'failed';

export interface NodeView {
  id: string;
  role: 'server' | 'worker';
  chunk: string;
  host: string;
  pid: number;
  status: NodeStatus;
  /** Coordinator monotonic ms of the last message. */
  lastHeardAt: number;
  cpuPercent: number;
  rssBytes: number;
  /** p99 event-loop delay over the last beat, ms. */
  loopDelayMs?: number;
  openFds?: number;
  /** Node clock minus coordinator clock, ms (best sample so far). */
  clockOffsetMs: number | null;
  rttMs: number | null;
  exitCode: number | null;
  error: string;
}

export interface ChunkView {
  chunk: string;
  workers: number;
  states: Record<WorkerState, number>;
  roundsDone: number;
  errors: number;
  retries: number;
  messages: number;
  bytes: number;
}

/** A worker node's snapshot: its chunk's view plus propagation samples per version since the last one. */
export interface WorkerSnapshotIn extends ChunkView {
  propagation: Array<{ version: number; histogram: string }>;
}

export type RunPhase = 'waiting' | 'running' | 'finishing' | 'done';

/** A fault instance as the run sees it: applied on some nodes, healed, judged. */
export interface FaultView {
  /** "id#n". */
  instanceId: string;
  kind: string;
  target: string;
  backend: string;
  chunks: string[];
  affected: number;
  /** Coordinator monotonic ms when the first node applied it. */
  appliedAt: number;
  durationMs: number;
  healedAt: number | null;
  /** The worst verdict reported so far (null: none yet). */
  verdict: Verdict | null;
}

const VERDICT_ORDER: Verdict[] = ['recovered', 'recovered-slow', 'degraded', 'stuck', 'error'];

export type StoreEvent =
  | { type: 'node'; node: NodeView }
  | { type: 'phase'; phase: RunPhase; at: number }
  | { type: 'workerSnapshot'; snapshot: WorkerSnapshotIn }
  | { type: 'rounds'; rounds: RoundLine[] }
  | { type: 'notable'; text: string }
  | { type: 'faultApplied'; instanceId: string; kind: string; target: string; backend: string; chunk: string; affected: number; durationMs: number; at: number }
  | { type: 'faultHealed'; instanceId: string; at: number }
  | { type: 'faultReport'; report: FaultInstanceReport; at: number }
  | { type: 'paused'; paused: boolean };

/** A round line once the workers' propagation for its version is in. */
export interface RoundRow extends RoundLine {
  propagationP99: number | null;
  propagationCount: number;
}

/**
 * The coordinator's one store: it reduces node events into run state. Sinks (headless
 * lines now, the TUI later) subscribe and read; nothing else writes.
 */
export class RunStore {
  phase: RunPhase = 'waiting';
  startedAt: number | null = null;
  readonly nodes = new Map<string, NodeView>();
  readonly chunks = new Map<string, ChunkView>();
  readonly rounds: RoundLine[] = [];
  readonly notable: string[] = [];
  readonly faults = new Map<string, FaultView>();
  /** New rounds held by hand (the TUI's `p`). */
  paused = false;
  private readonly prop = new Map<number, Histogram>();
  private readonly subscribers: Array<(e: StoreEvent) => void> = [];

  constructor(readonly totalWorkers: number, readonly totalRounds: number) {}

  subscribe(fn: (e: StoreEvent) => void): () => void {
    this.subscribers.push(fn);
    return () => this.subscribers.splice(this.subscribers.indexOf(fn), 1);
  }

  apply(e: StoreEvent): void {
    switch (e.type) {
      case 'node':
        this.nodes.set(e.node.id, { ...e.node });
        break;
      case 'phase':
        this.phase = e.phase;
        if (e.phase === 'running') this.startedAt = e.at;
        break;
      case 'workerSnapshot': {
        const { propagation, ...view } = e.snapshot;
        this.chunks.set(view.chunk, { ...view, states: { ...view.states } });
        for (const p of propagation) {
          let h = this.prop.get(p.version);
          if (!h) this.prop.set(p.version, (h = newHistogram()));
          h.add(decodeHistogram(p.histogram));
        }
        break;
      }
      case 'rounds':
        this.rounds.push(...e.rounds);
        break;
      case 'notable':
        this.notable.push(e.text);
        if (this.notable.length > 200) this.notable.shift();
        break;
      case 'faultApplied': {
        const f = this.faults.get(e.instanceId);
        if (f) {
          if (!f.chunks.includes(e.chunk)) {
            f.chunks.push(e.chunk);
            f.affected += e.affected;
          }
          if (!f.backend.split('+').includes(e.backend)) f.backend += `+${e.backend}`;
        } else {
          const { type: _t, chunk, at, ...rest } = e;
          this.faults.set(e.instanceId, { ...rest, chunks: [chunk], appliedAt: at, healedAt: null, verdict: null });
        }
        break;
      }
      case 'faultHealed': {
        const f = this.faults.get(e.instanceId);
        if (f && f.healedAt === null) f.healedAt = e.at;
        break;
      }
      case 'faultReport': {
        const r = e.report;
        const id = `${r.faultId}#${r.instance}`;
        let f = this.faults.get(id);
        if (!f) {
          f = { instanceId: id, kind: r.kind, target: r.target, backend: r.backend, chunks: [r.chunk], affected: r.affected, appliedAt: e.at, durationMs: 0, healedAt: e.at, verdict: null };
          this.faults.set(id, f);
        }
        f.healedAt ??= e.at;
        if (f.verdict === null || VERDICT_ORDER.indexOf(r.verdict) > VERDICT_ORDER.indexOf(f.verdict)) f.verdict = r.verdict;
        break;
      }
      case 'paused':
        this.paused = e.paused;
        break;
    }
    for (const fn of this.subscribers) fn(e);
  }

  /** Workers per state, summed over chunks. */
  states(): Record<WorkerState, number> {
    const out = Object.fromEntries(WORKER_STATES.map((s) => [s, 0])) as Record<WorkerState, number>;
    let reported = 0;
    for (const c of this.chunks.values()) {
      reported += c.workers;
      for (const s of WORKER_STATES) out[s] += c.states[s];
    }
    // The workers of a chunk whose node has not reported yet exist all the same: idle until
    // its first snapshot, so the states always add up to the run's workers.
    out.idle += Math.max(0, this.totalWorkers - reported);
    return out;
  }

  /** Round `r` with the propagation of the version it published, as far as the workers have reported it. */
  roundRow(line: RoundLine): RoundRow {
    const h = this.prop.get(line.round);
    return { ...line, propagationP99: h ? percentileMs(h, 99) : null, propagationCount: h?.totalCount ?? 0 };
  }

  /** How many workers reported holding version `v` (a count, without the percentiles roundRow computes). */
  propagationCount(v: number): number {
    return this.prop.get(v)?.totalCount ?? 0;
  }

  /** The propagation samples of version `v` so far (undefined: none reported). */
  propagationOf(v: number): Histogram | undefined {
    return this.prop.get(v);
  }

  errors(): number {
    let n = 0;
    for (const c of this.chunks.values()) n += c.errors;
    return n;
  }
}
