import os from 'node:os';
import type { RoundLine, ServerReport } from '../sim/flServer.js';
import {
  type CounterMap,
  type Percentiles,
  addCounters,
  decodeHistogram,
  mergeHistograms,
  percentiles,
  sumCounters,
} from '../sim/stats.js';
import type { NodeView } from '../sim/runStore.js';
import { type FaultInstanceReport, type MergedFault, mergeFaults } from '../sim/faults.js';
import { WORKER_LATENCIES, type WorkerNodeReport } from '../sim/workerStats.js';

export const SCHEMA_VERSION = 1;

export interface NodeResult {
  view: NodeView;
  report: WorkerNodeReport | null;
}

export interface SummaryInput {
  fedsimVersion: string;
  startedAt: string;
  durationMs: number;
  name: string;
  transport: string;
  payload: string;
  workers: number;
  roundsRequested: number;
  nodes: NodeResult[];
  server: { view: NodeView; report: (ServerReport & { maxRssBytes?: number }) | null } | null;
  faults: FaultInstanceReport[];
  failure: string | null;
  /** The coordinator's machine (default: this process's). */
  machine?: MachineInfo;
}

/** Where the figures were taken: numbers from a 2-core laptop and a 64-core server differ. */
export interface MachineInfo {
  hostname: string;
  platform: string;
  release: string;
  arch: string;
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  node: string;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    platform: os.platform(),
    release: os.release(),
    arch: os.arch(),
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryBytes: os.totalmem(),
    node: process.version,
  };
}

type Lat = Omit<Percentiles, 'count' | 'mean'> & { count: number; mean: number };

export interface Summary {
  schemaVersion: 1;
  fedsimVersion: string;
  machine: MachineInfo;
  name: string;
  status: 'passed' | 'failed';
  failure: string | null;
  startedAt: string;
  durationMs: number;
  transport: string;
  payload: string;
  workers: number;
  nodes: number;
  rounds: { requested: number; completed: number };
  updates: { accepted: number; duplicate: number; late: number; rejected: number };
  messages: { total: number; sent: CounterMap; received: CounterMap };
  bytes: { sent: number; received: number; sentByType: CounterMap; receivedByType: CounterMap };
  errors: { total: number; byKind: CounterMap; server: CounterMap; integrity: number };
  /** The server's last model and how many finished workers hold exactly it (null without a server report). */
  finalModel: { version: number; sha256: string; workersHolding: number; workersHoldingOther: number } | null;
  /** Safe mode: whether the server admitted only listed keys, and the requests it refused by reason. */
  auth: { safeMode: boolean; refused: CounterMap; accepted: CounterMap };
  retries: number;
  workersDone: number;
  workersFailed: number;
  registerMs: Lat;
  uploadMs: Lat;
  waitMs: Lat;
  downloadMs: Lat;
  propagationMs: Lat;
  roundMs: Lat;
  roundLines: RoundLine[];
  perNode: PerNode[];
  perChunk: PerChunk[];
  /** One row per fault instance with its recovery verdict (docs/faults.md). */
  faults: MergedFault[];
  resources: { serverMaxRssBytes: number | null; workerNodeMaxRssBytes: number | null };
}

export interface PerNode {
  id: string;
  role: string;
  chunk: string;
  host: string;
  pid: number;
  status: string;
  exitCode: number | null;
  error: string;
  clockOffsetMs: number | null;
  rttMs: number | null;
  maxRssBytes: number | null;
}

export interface PerChunk {
  chunk: string;
  host: string;
  workers: number;
  roundsDone: number;
  workersDone: number;
  workersFailed: number;
  errors: number;
  retries: number;
  messages: number;
  bytesSent: number;
  bytesReceived: number;
  uploadMs: Lat;
  downloadMs: Lat;
  propagationMs: Lat;
}

/** Merges the server's and every worker node's figures into summary.json (schema v1, docs/summary.md). */
function finalModel(server: ServerReport | null, held: Record<string, number>): Summary['finalModel'] {
  if (!server) return null;
  const key = `${server.version} ${server.modelSha256}`;
  let other = 0;
  for (const [k, n] of Object.entries(held)) if (k !== key) other += n;
  return { version: server.version, sha256: server.modelSha256, workersHolding: held[key] ?? 0, workersHoldingOther: other };
}

export function buildSummary(input: SummaryInput): Summary {
  const reports = input.nodes.map((n) => n.report).filter((r): r is WorkerNodeReport => r !== null);
  const lat = (r: WorkerNodeReport, name: (typeof WORKER_LATENCIES)[number]) => percentiles(decodeHistogram(r.histograms[name]));
  const merged = (name: (typeof WORKER_LATENCIES)[number]) => percentiles(mergeHistograms(reports.map((r) => decodeHistogram(r.histograms[name]))));
  const sent: CounterMap = {};
  const received: CounterMap = {};
  const bSent: CounterMap = {};
  const bReceived: CounterMap = {};
  const errors: CounterMap = {};
  let retries = 0;
  let integrity = 0;
  const held: Record<string, number> = {};
  let done = 0;
  let failed = 0;
  for (const r of reports) {
    addCounters(sent, r.messagesSent);
    addCounters(received, r.messagesReceived);
    addCounters(bSent, r.bytesSent);
    addCounters(bReceived, r.bytesReceived);
    addCounters(errors, r.errors);
    retries += r.retries;
    integrity += r.integrityErrors;
    for (const [k, n] of Object.entries(r.heldAtEnd ?? {})) held[k] = (held[k] ?? 0) + n;
    done += r.states.done;
    failed += r.states.failed;
  }
  const server = input.server?.report ?? null;
  const serverErrors = server?.errors ?? {};
  return {
    schemaVersion: SCHEMA_VERSION,
    fedsimVersion: input.fedsimVersion,
    machine: input.machine ?? machineInfo(),
    name: input.name,
    status: input.failure ? 'failed' : 'passed',
    failure: input.failure,
    startedAt: input.startedAt,
    durationMs: Math.round(input.durationMs),
    transport: input.transport,
    payload: input.payload,
    workers: input.workers,
    nodes: input.nodes.length,
    rounds: { requested: input.roundsRequested, completed: server?.roundsCompleted ?? 0 },
    updates: {
      accepted: server?.updates.accepted ?? 0,
      duplicate: server?.updates.duplicate ?? 0,
      late: server?.updates.late ?? 0,
      rejected: server?.updates.rejected ?? 0,
    },
    messages: { total: sumCounters(sent) + sumCounters(received), sent, received },
    bytes: { sent: sumCounters(bSent), received: sumCounters(bReceived), sentByType: bSent, receivedByType: bReceived },
    errors: { total: sumCounters(errors) + sumCounters(serverErrors), byKind: errors, server: serverErrors, integrity },
    finalModel: finalModel(server, held),
    auth: { safeMode: server?.safeMode ?? false, refused: { ...(server?.authRefused ?? {}) }, accepted: { ...(server?.authAccepted ?? {}) } },
    retries,
    workersDone: done,
    workersFailed: failed,
    registerMs: merged('registerMs'),
    uploadMs: merged('uploadMs'),
    waitMs: merged('waitMs'),
    downloadMs: merged('downloadMs'),
    propagationMs: merged('propagationMs'),
    roundMs: server ? percentiles(decodeHistogram(server.roundMs)) : percentiles(mergeHistograms([])),
    roundLines: server?.rounds ?? [],
    perNode: [...(input.server ? [input.server] : []), ...input.nodes].map((n) => ({
      id: n.view.id,
      role: n.view.role,
      chunk: n.view.chunk,
      host: n.view.host,
      pid: n.view.pid,
      status: n.view.status,
      exitCode: n.view.exitCode,
      error: n.view.error,
      clockOffsetMs: n.view.clockOffsetMs,
      rttMs: n.view.rttMs,
      maxRssBytes: n.report?.maxRssBytes ?? null,
    })),
    perChunk: input.nodes.map((n) => ({
      chunk: n.view.chunk,
      host: n.view.host,
      workers: n.report?.workers ?? 0,
      roundsDone: n.report?.roundsDone ?? 0,
      workersDone: n.report?.states.done ?? 0,
      workersFailed: n.report?.states.failed ?? 0,
      errors: n.report ? sumCounters(n.report.errors) : 0,
      retries: n.report?.retries ?? 0,
      messages: n.report ? sumCounters(n.report.messagesSent) + sumCounters(n.report.messagesReceived) : 0,
      bytesSent: n.report ? sumCounters(n.report.bytesSent) : 0,
      bytesReceived: n.report ? sumCounters(n.report.bytesReceived) : 0,
      uploadMs: n.report ? lat(n.report, 'uploadMs') : percentiles(mergeHistograms([])),
      downloadMs: n.report ? lat(n.report, 'downloadMs') : percentiles(mergeHistograms([])),
      propagationMs: n.report ? lat(n.report, 'propagationMs') : percentiles(mergeHistograms([])),
    })),
    faults: mergeFaults(input.faults),
    resources: {
      serverMaxRssBytes: server?.maxRssBytes ?? null,
      workerNodeMaxRssBytes: reports.length ? Math.max(...reports.map((r) => r.maxRssBytes ?? 0)) : null,
    },
  };
}

export const fmtMs = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`);
export const fmtMB = (bytes: number) => `${(bytes / 1e6).toFixed(bytes >= 1e8 ? 0 : 2)} MB`;

/** The final table printed after a run. */
export function formatSummaryTable(s: Summary): string {
  const rows: Array<[string, Lat]> = [
    ['round', s.roundMs],
    ['register', s.registerMs],
    ['upload', s.uploadMs],
    ['wait', s.waitMs],
    ['download', s.downloadMs],
    ['propagation', s.propagationMs],
  ];
  const head = `${'latency'.padEnd(12)}${'p50'.padStart(11)}${'p95'.padStart(11)}${'p99'.padStart(11)}${'max'.padStart(11)}${'count'.padStart(9)}`;
  const lines = rows.map(
    ([name, l]) =>
      `${name.padEnd(12)}${fmtMs(l.p50).padStart(11)}${fmtMs(l.p95).padStart(11)}${fmtMs(l.p99).padStart(11)}${fmtMs(l.max).padStart(11)}${String(l.count).padStart(9)}`,
  );
  const secs = s.durationMs / 1000;
  return [
    `fedsim ${s.status.toUpperCase()}: ${s.workers} workers in ${s.nodes} nodes over ${s.transport}, payload ${s.payload}, ${s.rounds.completed}/${s.rounds.requested} rounds in ${secs.toFixed(2)} s`,
    head,
    ...lines,
    `updates     accepted ${s.updates.accepted}, duplicate ${s.updates.duplicate}, late ${s.updates.late}, rejected ${s.updates.rejected}`,
    `traffic     ${s.messages.total} messages (${(s.messages.total / Math.max(secs, 1e-3)).toFixed(0)}/s), sent ${fmtMB(s.bytes.sent)}, received ${fmtMB(s.bytes.received)}`,
    `errors      ${s.errors.total}${s.errors.total ? ` (${Object.entries({ ...s.errors.byKind, ...s.errors.server }).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}, retries ${s.retries}`,
    ...s.faults.map(
      (f) =>
        `fault       ${f.id}#${f.instance} ${f.kind} on ${f.affected} workers (${f.target}; ${f.trigger}; ${f.backend}): ${f.verdict.toUpperCase()}` +
        (f.nextRoundAfterHealMs !== null ? `, next round ${fmtMs(f.nextRoundAfterHealMs)} after heal` : '') +
        (f.noticedAfterMs !== null ? `, noticed after ${fmtMs(f.noticedAfterMs)}${f.noticedBy ? ` (${f.noticedBy})` : ''}` : ''),
    ),
    ...(s.auth.safeMode || sumCounters(s.auth.refused) > 0
      ? [`safe mode   ${s.auth.safeMode ? 'on' : 'off'}, ${sumCounters(s.auth.refused)} requests refused${sumCounters(s.auth.refused) ? ` (${Object.entries(s.auth.refused).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}`]
      : []),
    ...(s.failure ? [`failure     ${s.failure}`] : []),
  ].join('\n');
}
