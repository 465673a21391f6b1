import {
  type CounterMap,
  type Histogram,
  bump,
  encodeHistogram,
  newHistogram,
  recordMs,
} from './stats.js';

export const WORKER_STATES = [
  'idle', 'registering', 'fetching', 'training', 'sending', 'waiting', 'receiving', 'retrying', 'cut', 'failed', 'done',
] as const;
export type WorkerState = (typeof WORKER_STATES)[number];

export const WORKER_LATENCIES = ['registerMs', 'uploadMs', 'waitMs', 'downloadMs', 'propagationMs'] as const;
export type WorkerLatency = (typeof WORKER_LATENCIES)[number];

/** What a worker node reports: plain counters plus encoded histograms. */
export interface WorkerNodeReport {
  workers: number;
  states: Record<WorkerState, number>;
  roundsDone: number;
  histograms: Record<WorkerLatency, string>;
  messagesSent: CounterMap;
  messagesReceived: CounterMap;
  bytesSent: CounterMap;
  bytesReceived: CounterMap;
  updates: CounterMap;
  retries: number;
  errors: CounterMap;
  integrityErrors: number;
  /** The model each worker held when it finished: "VERSION SHA256" → workers. */
  heldAtEnd?: Record<string, number>;
  firstError?: string;
  /** Peak resident set of the node process, bytes (set by the node, not the core). */
  maxRssBytes?: number;
}

/**
 * The figures of one worker node. Every worker's state machine adds to these plain
 * fields; nothing here allocates per event except histogram records.
 */
export class WorkerNodeStats {
  readonly states = Object.fromEntries(WORKER_STATES.map((s) => [s, 0])) as Record<WorkerState, number>;
  readonly hist = Object.fromEntries(WORKER_LATENCIES.map((n) => [n, newHistogram()])) as Record<WorkerLatency, Histogram>;
  /** Propagation per model version since the last drain, for per-round lines. */
  private propByVersion = new Map<number, Histogram>();
  readonly messagesSent: CounterMap = {};
  readonly messagesReceived: CounterMap = {};
  readonly bytesSent: CounterMap = {};
  readonly bytesReceived: CounterMap = {};
  readonly updates: CounterMap = {};
  readonly errors: CounterMap = {};
  retries = 0;
  roundsDone = 0;
  integrityErrors = 0;
  readonly heldAtEnd: Record<string, number> = {};
  firstError: string | undefined;

  /** Workers a fault is on: counted as `cut` until it heals, whatever they are doing. */
  private readonly cut = new Set<number>();
  /** The state each cut worker is really in. */
  private readonly under = new Map<number, WorkerState>();

  constructor(
    readonly workers: number,
    /** Index of the node's first worker (workers carry global indices). */
    readonly first = 0,
  ) {
    this.states.idle = workers;
  }

  move(from: WorkerState, to: WorkerState, index = -1): void {
    if (this.cut.has(index)) {
      this.under.set(index, to);
      return;
    }
    this.states[from]--;
    this.states[to]++;
  }

  /**
   * A fault goes on (or off) a worker. Cut workers count as `cut`; a worker that already
   * finished or failed keeps that state. `current` is what the worker is doing now.
   */
  setCut(index: number, on: boolean, current?: WorkerState): void {
    if (on) {
      if (this.cut.has(index) || current === undefined || current === 'done' || current === 'failed') return;
      this.cut.add(index);
      this.under.set(index, current);
      this.states[current]--;
      this.states.cut++;
    } else {
      if (!this.cut.delete(index)) return;
      const s = this.under.get(index)!;
      this.under.delete(index);
      this.states.cut--;
      this.states[s]++;
    }
  }

  latency(name: WorkerLatency, ms: number): void {
    recordMs(this.hist[name], ms);
  }

  /** Clock correction for cross-node propagation (server clock vs this node's), from the coordinator. */
  propagationShiftMs = 0;

  propagation(version: number, rawMs: number): void {
    const ms = Math.max(0, rawMs + this.propagationShiftMs);
    recordMs(this.hist.propagationMs, ms);
    let h = this.propByVersion.get(version);
    if (!h) this.propByVersion.set(version, (h = newHistogram()));
    recordMs(h, ms);
  }

  sent(type: string, bytes: number): void {
    bump(this.messagesSent, type);
    bump(this.bytesSent, type, bytes);
  }

  received(type: string, bytes: number): void {
    bump(this.messagesReceived, type);
    bump(this.bytesReceived, type, bytes);
  }

  /** The first message of each error kind, for notable log lines. */
  readonly firstErrorByKind = new Map<string, string>();

  error(kind: string, message: string): void {
    bump(this.errors, kind);
    this.firstError ??= message;
    if (!this.firstErrorByKind.has(kind)) this.firstErrorByKind.set(kind, message);
  }

  /** Propagation histograms per version recorded since the last call, encoded. */
  drainPropagation(): Array<{ version: number; histogram: string }> {
    const out = [...this.propByVersion].map(([version, h]) => ({ version, histogram: encodeHistogram(h) }));
    this.propByVersion.clear();
    return out;
  }

  report(): WorkerNodeReport {
    return {
      workers: this.workers,
      states: { ...this.states },
      roundsDone: this.roundsDone,
      histograms: Object.fromEntries(WORKER_LATENCIES.map((n) => [n, encodeHistogram(this.hist[n])])) as Record<WorkerLatency, string>,
      messagesSent: { ...this.messagesSent },
      messagesReceived: { ...this.messagesReceived },
      bytesSent: { ...this.bytesSent },
      bytesReceived: { ...this.bytesReceived },
      updates: { ...this.updates },
      retries: this.retries,
      errors: { ...this.errors },
      integrityErrors: this.integrityErrors,
      heldAtEnd: { ...this.heldAtEnd },
      firstError: this.firstError,
    };
  }
}
