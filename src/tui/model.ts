import type { NodeView, RunStore } from '../sim/runStore.js';
import { WORKER_STATES, type WorkerState } from '../sim/workerStats.js';

/** What the screen shows: plain data, built from the store by one pure function. */
export interface ScreenModel {
  width: number;
  height: number;
  color: boolean;
  name: string;
  transport: string;
  payload: string;
  phase: string;
  paused: boolean;
  round: number;
  rounds: number;
  elapsedMs: number;
  lastRoundMs: number | null;
  p95RoundMs: number | null;
  propagationP99Ms: number | null;
  messagesPerSec: number;
  mbPerSec: number;
  errors: number;
  chunks: ChunkRow[];
  selected: number;
  faults: FaultRow[];
  nodes: NodeRow[];
  roundMs: number[];
  log: string[];
  message: string;
  help: boolean;
  handFaults: boolean;
}

export interface ChunkRow {
  /** 1-based chunk number. */
  n: number;
  label: string;
  host: string;
  workers: number;
  states: Record<WorkerState, number>;
  /** Rounds every worker of the chunk has completed (the slowest worker's count, on average). */
  roundsDone: number;
  errors: number;
  status: string;
}

export interface FaultRow {
  id: string;
  kind: string;
  target: string;
  backend: string;
  /** Ms until the heal, null once healed. */
  leftMs: number | null;
  verdict: string | null;
}

export interface NodeRow {
  id: string;
  role: string;
  host: string;
  status: string;
  beatAgoMs: number;
  cpuPercent: number;
  rssBytes: number;
  clockOffsetMs: number | null;
  loopDelayMs: number | null;
  openFds: number | null;
}

export interface RunMeta {
  name: string;
  transport: string;
  payload: string;
  nodes: number;
  handFaults: boolean;
}

export interface UiState {
  selected: number;
  help: boolean;
  message: string;
  width: number;
  height: number;
  color: boolean;
}

/** Messages and bytes per second from successive totals (the adapter keeps one). */
export class RateMeter {
  private last: { at: number; messages: number; bytes: number } | null = null;
  messagesPerSec = 0;
  mbPerSec = 0;

  sample(at: number, messages: number, bytes: number): void {
    if (this.last && at - this.last.at >= 500) {
      const s = (at - this.last.at) / 1000;
      this.messagesPerSec = Math.max(0, (messages - this.last.messages) / s);
      this.mbPerSec = Math.max(0, (bytes - this.last.bytes) / 1e6 / s);
      this.last = { at, messages, bytes };
    } else if (!this.last) {
      this.last = { at, messages, bytes };
    }
  }
}

const p95 = (xs: number[]): number | null => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * 0.95) - 1)];
};

const chunkN = (label: string): number => Number(/^(\d+)/.exec(label)?.[1] ?? 0);

/** The screen's data at `now` (coordinator monotonic ms). Cost: per chunk and node, never per worker. */
export function screenModel(store: RunStore, meta: RunMeta, ui: UiState, rates: RateMeter, now: number): ScreenModel {
  const nodesByChunk = new Map<string, NodeView>();
  for (const n of store.nodes.values()) if (n.role === 'worker') nodesByChunk.set(n.chunk, n);
  const chunks: ChunkRow[] = [];
  for (let n = 1; n <= meta.nodes; n++) {
    const label = `${n} of ${meta.nodes}`;
    const c = store.chunks.get(label);
    const node = nodesByChunk.get(label);
    const states = c ? { ...c.states } : (Object.fromEntries(WORKER_STATES.map((s) => [s, 0])) as Record<WorkerState, number>);
    chunks.push({
      n,
      label,
      host: node?.host ?? '',
      workers: c?.workers ?? 0,
      states,
      roundsDone: c && c.workers > 0 ? Math.floor(c.roundsDone / c.workers) : 0,
      errors: c?.errors ?? 0,
      status: node?.status ?? 'expected',
    });
  }
  let messages = 0;
  let bytes = 0;
  for (const c of store.chunks.values()) {
    messages += c.messages;
    bytes += c.bytes;
  }
  rates.sample(now, messages, bytes);
  const durations = store.rounds.map((r) => r.durationMs);
  const last = store.rounds[store.rounds.length - 1];
  // Propagation of the newest round whose model the workers have reported holding.
  let propagationP99Ms: number | null = null;
  for (let i = store.rounds.length - 1; i >= 0 && i >= store.rounds.length - 3; i--) {
    const row = store.roundRow(store.rounds[i]);
    if (row.propagationCount > 0) {
      propagationP99Ms = row.propagationP99;
      break;
    }
  }
  const faults: FaultRow[] = [...store.faults.values()]
    .sort((a, b) => b.appliedAt - a.appliedAt)
    .map((f) => ({
      id: f.instanceId,
      kind: f.kind,
      target: f.target,
      backend: f.backend,
      leftMs: f.healedAt === null ? Math.max(0, f.appliedAt + f.durationMs - now) : null,
      verdict: f.verdict,
    }));
  const nodes: NodeRow[] = [...store.nodes.values()]
    .sort((a, b) => (a.role === b.role ? chunkN(a.chunk) - chunkN(b.chunk) : a.role === 'server' ? -1 : 1))
    .map((n) => ({
      id: n.id,
      role: n.role,
      host: n.host,
      status: n.status,
      beatAgoMs: Math.max(0, now - n.lastHeardAt),
      cpuPercent: n.cpuPercent,
      rssBytes: n.rssBytes,
      clockOffsetMs: n.clockOffsetMs,
      loopDelayMs: n.loopDelayMs ?? null,
      openFds: n.openFds ?? null,
    }));
  return {
    width: ui.width,
    height: ui.height,
    color: ui.color,
    name: meta.name,
    transport: meta.transport,
    payload: meta.payload,
    phase: store.phase,
    paused: store.paused,
    round: Math.min(store.totalRounds, store.rounds.length + (store.phase === 'running' ? 1 : 0)),
    rounds: store.totalRounds,
    elapsedMs: store.startedAt === null ? 0 : now - store.startedAt,
    lastRoundMs: last ? last.durationMs : null,
    p95RoundMs: p95(durations),
    propagationP99Ms,
    messagesPerSec: rates.messagesPerSec,
    mbPerSec: rates.mbPerSec,
    errors: store.errors(),
    chunks,
    selected: Math.min(Math.max(1, ui.selected), Math.max(1, meta.nodes)),
    faults,
    nodes,
    roundMs: durations.slice(-60),
    log: store.notable.slice(-20),
    message: ui.message,
    help: ui.help,
    handFaults: meta.handFaults,
  };
}

/**
 * Splits `width` cells among the states in proportion to their counts (largest
 * remainder), so a bar always fills its width and a state with any worker shows.
 */
export function barCells(states: Record<WorkerState, number>, total: number, width: number): Array<[WorkerState, number]> {
  if (total <= 0 || width <= 0) return [];
  const parts = WORKER_STATES.map((s) => {
    const exact = (states[s] / total) * width;
    return { s, cells: Math.floor(exact), rest: exact - Math.floor(exact), count: states[s] };
  });
  let left = width - parts.reduce((a, p) => a + p.cells, 0);
  // A state with workers but no cell gets one first, then the largest remainders.
  for (const p of parts) if (left > 0 && p.count > 0 && p.cells === 0) {
    p.cells = 1;
    p.rest = -1;
    left--;
  }
  for (const p of [...parts].sort((a, b) => b.rest - a.rest)) {
    if (left <= 0) break;
    if (p.count === 0) continue;
    p.cells++;
    left--;
  }
  // Over-allotted by the "at least one" rule: take back from the largest.
  while (left < 0) {
    const big = parts.reduce((a, b) => (b.cells > a.cells ? b : a));
    big.cells--;
    left++;
  }
  return parts.filter((p) => p.cells > 0).map((p) => [p.s, p.cells]);
}

const BLOCKS = '▁▂▃▄▅▆▇█';

/** A sparkline of the last `width` values, scaled to their max. */
export function sparkline(xs: number[], width: number): string {
  const v = xs.slice(-width);
  if (v.length === 0) return '';
  const max = Math.max(...v, 1e-9);
  return v.map((x) => BLOCKS[Math.min(7, Math.floor((x / max) * 7.999))]).join('');
}

export function fmtMs(ms: number | null): string {
  if (ms === null) return '–';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}

export function fmtDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${(ms / 1000).toFixed(1)}s`;
}
