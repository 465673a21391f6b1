import { once } from 'node:events';
import { type WriteStream, createWriteStream } from 'node:fs';
import path from 'node:path';
import { type Gzip, createGzip } from 'node:zlib';
import type { RunStore, StoreEvent } from '../sim/runStore.js';
import { WORKER_STATES } from '../sim/workerStats.js';

/** The columns of stats_history.csv, in order (docs/summary.md, "The run directory"). */
export const HISTORY_COLUMNS = [
  'elapsed_s', 'phase', 'rounds_closed', 'messages', 'bytes', 'errors', 'retries',
  ...WORKER_STATES.map((s) => `workers_${s}`),
  'last_round_ms', 'propagation_p99_ms', 'faults_on',
  'max_node_cpu_percent', 'max_node_rss_mb', 'max_loop_delay_ms', 'max_open_fds',
] as const;

export type HistoryColumn = (typeof HISTORY_COLUMNS)[number];

/** A stats_history.csv row as values: `phase` a string, an empty cell null, the rest numbers. */
export type HistoryRow = Record<HistoryColumn, number | string | null>;

/** A fault instance's window in seconds on the rows' `elapsed_s` clock (`toS` null: never healed). */
export interface FaultWindow {
  id: string;
  kind: string;
  target: string;
  chunks: string[];
  fromS: number;
  toS: number | null;
  verdict: string | null;
}

/**
 * Evidence of a run beside summary.json: `events.ndjson.gz` (every event the coordinator's
 * store saw, with its time) and `stats_history.csv` (one row a second). It only reads the
 * store; it writes as the run goes, so a killed run still leaves what it had.
 */
export class RunRecorder {
  private readonly gz: Gzip;
  private readonly events: WriteStream;
  private readonly csv: WriteStream;
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private readonly t0 = performance.now();
  private closed = false;
  /** The rows written so far, kept for report.html (one a second, so a day is 86,400 rows). */
  private readonly history: HistoryRow[] = [];

  constructor(private readonly store: RunStore, outDir: string) {
    this.events = createWriteStream(path.join(outDir, 'events.ndjson.gz'));
    this.gz = createGzip();
    this.gz.pipe(this.events);
    this.csv = createWriteStream(path.join(outDir, 'stats_history.csv'));
    this.csv.write(`${HISTORY_COLUMNS.join(',')}\n`);
    this.unsubscribe = store.subscribe((e) => this.event(e));
    this.timer = setInterval(() => this.row(), 1000);
    this.timer.unref();
  }

  private event(e: StoreEvent): void {
    this.gz.write(`${JSON.stringify({ tMs: Math.round((performance.now() - this.t0) * 1000) / 1000, ...e })}\n`);
  }

  private row(): void {
    const s = this.store;
    let messages = 0;
    let bytes = 0;
    let errors = 0;
    let retries = 0;
    for (const c of s.chunks.values()) {
      messages += c.messages;
      bytes += c.bytes;
      errors += c.errors;
      retries += c.retries;
    }
    const states = s.states();
    const last = s.rounds[s.rounds.length - 1];
    const p99 = last ? s.roundRow(last).propagationP99 : null;
    const on = [...s.faults.values()].filter((f) => f.healedAt === null).length;
    const cells = [
      ((performance.now() - this.t0) / 1000).toFixed(1), s.phase, s.rounds.length, messages, bytes, errors, retries,
      ...WORKER_STATES.map((st) => states[st]),
      last ? last.durationMs.toFixed(1) : '', p99 === null ? '' : p99.toFixed(1), on,
      ...this.resources(),
    ];
    this.csv.write(`${cells.join(',')}\n`);
    // Parsed from the very cells written, so the report and the CSV cannot disagree.
    const row = {} as HistoryRow;
    HISTORY_COLUMNS.forEach((col, i) => {
      const cell = String(cells[i]);
      row[col] = col === 'phase' ? cell : cell === '' ? null : Number(cell);
    });
    this.history.push(row);
  }

  /** Every row written so far (the last one included once closed). */
  rows(): readonly HistoryRow[] {
    return this.history;
  }

  /** The store's fault instances, their times moved to this recorder's clock (both are the coordinator's monotonic ms). */
  faultWindows(): FaultWindow[] {
    const s = (ms: number) => Math.round(ms - this.t0) / 1000;
    return [...this.store.faults.values()].map((f) => ({
      id: f.instanceId,
      kind: f.kind,
      target: f.target,
      chunks: [...f.chunks],
      fromS: s(f.appliedAt),
      toS: f.healedAt === null ? null : s(f.healedAt),
      verdict: f.verdict,
    }));
  }

  /** The busiest node's CPU, memory, event-loop delay and open files, from the last heartbeats. */
  private resources(): string[] {
    let cpu = 0;
    let rss = 0;
    let lag = 0;
    let fds = 0;
    for (const n of this.store.nodes.values()) {
      cpu = Math.max(cpu, n.cpuPercent);
      rss = Math.max(rss, n.rssBytes);
      lag = Math.max(lag, n.loopDelayMs ?? 0);
      fds = Math.max(fds, n.openFds ?? 0);
    }
    return [cpu.toFixed(0), (rss / 1e6).toFixed(0), lag.toFixed(1), String(fds)];
  }

  /** A last row, then both files are flushed and closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.unsubscribe();
    this.row();
    this.csv.end();
    this.gz.end();
    await Promise.all([once(this.csv, 'finish'), once(this.events, 'finish')]);
  }
}
