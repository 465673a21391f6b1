import { UsageError } from '../errors.js';

export const FAULT_KINDS = ['blackhole', 'reset', 'refuse', 'delay', 'loss', 'bandwidth'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
export const PHASES = ['training', 'sending', 'waiting', 'receiving'] as const;
export type Phase = (typeof PHASES)[number];
export type Direction = 'up' | 'down' | 'both';
export type BackendName = 'auto' | 'proxy' | 'iptables' | 'netem';

export type Trigger =
  | { type: 'log'; pattern: string; source: 'server' | 'any' | { chunk: number }; nth: number; delayMs: number }
  | { type: 'phase'; phase: Phase; nth: number; delayMs: number }
  | { type: 'round'; round: number; delayMs: number }
  | { type: 'time'; atMs: number }
  | { type: 'manual' };

export type Target =
  | { scope: 'server' }
  | { scope: 'workers'; chunk?: number; ids?: number[]; mode: 'one' | 'all' | { fixed: number } | { percent: number } };

/** One fault of the scenario's plan, validated. */
export interface FaultSpec {
  id: string;
  kind: FaultKind;
  direction: Direction;
  /** How long the fault stays on before it is healed (the reconnection timeout). */
  durationMs: number;
  /** Times the fault may fire (each fire is applied, then healed). */
  maxCount: number;
  /** Chance that a trigger firing applies the fault, drawn from `seed`. */
  probability: number;
  seed: number;
  delayMs: number;
  jitterMs: number;
  lossPercent: number;
  rateBytesPerSec: number;
  target: Target;
  trigger: Trigger;
  backend: BackendName;
}

const DUR_RE = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/;

/** "20s", "500ms", "1.5m", or a number of seconds. */
export function parseDuration(v: unknown, what: string): number {
  if (typeof v === 'number' && v >= 0) return v * 1000;
  const m = DUR_RE.exec(String(v));
  if (!m) throw new UsageError(`${what} "${v}" is not a duration: write e.g. 20s, 500ms or 1.5m`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

/** "10mbit", "1MB/s", "512kbit" → bytes per second. */
export function parseRate(v: unknown, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|b\/s|kb\/s|mb\/s|gb\/s|bps|kbps|mbps|gbps)?\s*$/i.exec(String(v));
  if (!m) throw new UsageError(`${what} "${v}" is not a rate: write e.g. 10mbit or 1MB/s`);
  const n = Number(m[1]);
  const unit = (m[2] ?? 'b/s').toLowerCase();
  const bits: Record<string, number> = { bit: 1, bps: 1, kbit: 1e3, kbps: 1e3, mbit: 1e6, mbps: 1e6, gbit: 1e9, gbps: 1e9 };
  const bytes: Record<string, number> = { 'b/s': 1, 'kb/s': 1e3, 'mb/s': 1e6, 'gb/s': 1e9 };
  const r = unit in bits ? (n * bits[unit]) / 8 : n * bytes[unit];
  if (r < 1) throw new UsageError(`${what} "${v}" is below 1 byte per second`);
  return r;
}

/** "chunk 2", "server", "ids 3,4,9", "all", "one", "fixed:5", "percent:10", "chunk 2 percent:50". */
export function parseTarget(v: unknown, what: string): Target {
  const s = String(v ?? 'all').trim().toLowerCase();
  if (s === 'server') return { scope: 'server' };
  let rest = s;
  let chunk: number | undefined;
  let ids: number[] | undefined;
  const cm = /^chunk\s*(\d+)\s*/.exec(rest);
  if (cm) {
    chunk = Number(cm[1]);
    if (chunk < 1) throw new UsageError(`${what} "${v}": chunks count from 1`);
    rest = rest.slice(cm[0].length);
  }
  const im = /^ids?\s+([\d,\s]+)$/.exec(rest);
  if (im) {
    ids = im[1].split(/[,\s]+/).filter(Boolean).map(Number);
    return { scope: 'workers', chunk, ids, mode: 'all' };
  }
  if (rest === '' || rest === 'all') return { scope: 'workers', chunk, mode: 'all' };
  if (rest === 'one') return { scope: 'workers', chunk, mode: 'one' };
  const fm = /^fixed:(\d+)$/.exec(rest);
  if (fm && Number(fm[1]) > 0) return { scope: 'workers', chunk, mode: { fixed: Number(fm[1]) } };
  const pm = /^percent:(\d+(?:\.\d+)?)$/.exec(rest);
  if (pm && Number(pm[1]) > 0 && Number(pm[1]) <= 100) return { scope: 'workers', chunk, mode: { percent: Number(pm[1]) } };
  throw new UsageError(`${what} "${v}" is not a target: use server, all, one, fixed:N, percent:P, ids 1,2,3, optionally after "chunk N" (e.g. "chunk 2", "chunk 1 one")`);
}

export function parseTrigger(raw: Record<string, unknown>, what: string): Trigger {
  const nth = raw.nth === undefined ? 1 : Number(raw.nth);
  if (!Number.isInteger(nth) || nth < 1) throw new UsageError(`${what}.nth must be a whole number >= 1`);
  const delayMs = raw.after === undefined ? 0 : parseDuration(raw.after, `${what}.after`);
  if (typeof raw.onLog === 'string') {
    try {
      new RegExp(raw.onLog);
    } catch (e) {
      throw new UsageError(`${what}.onLog "${raw.onLog}" is not a regular expression: ${(e as Error).message}`);
    }
    const src = String(raw.logSource ?? 'any').trim().toLowerCase();
    const cm = /^chunk\s*(\d+)$/.exec(src);
    const source = src === 'server' || src === 'any' ? src : cm ? { chunk: Number(cm[1]) } : null;
    if (source === null) throw new UsageError(`${what}.logSource "${raw.logSource}" must be server, any or "chunk N"`);
    return { type: 'log', pattern: raw.onLog, source, nth, delayMs };
  }
  if (raw.onPhase !== undefined) {
    if (!PHASES.includes(raw.onPhase as Phase)) throw new UsageError(`${what}.onPhase "${raw.onPhase}" must be one of ${PHASES.join(', ')}`);
    return { type: 'phase', phase: raw.onPhase as Phase, nth, delayMs };
  }
  if (raw.onRound !== undefined) {
    const round = Number(raw.onRound);
    if (!Number.isInteger(round) || round < 1) throw new UsageError(`${what}.onRound must be a round number >= 1`);
    return { type: 'round', round, delayMs };
  }
  if (raw.at !== undefined) return { type: 'time', atMs: parseDuration(raw.at, `${what}.at`) };
  if (raw.manual === true) return { type: 'manual' };
  throw new UsageError(`${what} needs a trigger: onLog, onPhase, onRound, at, or manual: true`);
}

const FAULT_KEYS = new Set([
  'id', 'kind', 'direction', 'duration', 'maxCount', 'probability', 'seed', 'delay', 'jitter', 'loss', 'rate', 'target', 'backend',
  'onLog', 'logSource', 'nth', 'after', 'onPhase', 'onRound', 'at', 'manual',
]);

/** One entry of the scenario's `faults:` list. */
export function parseFault(raw: unknown, index: number, where: (key: string) => string): FaultSpec {
  const what = `faults[${index}]`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new UsageError(`${where('')}${what} must be a mapping (see docs/faults.md)`);
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!FAULT_KEYS.has(k)) throw new UsageError(`${where(k)}${what}: unknown key "${k}": allowed keys are ${[...FAULT_KEYS].join(', ')}`);
  const kind = String(r.kind ?? 'blackhole') as FaultKind;
  if (!FAULT_KINDS.includes(kind)) throw new UsageError(`${where('kind')}${what}.kind "${r.kind}" must be one of ${FAULT_KINDS.join(', ')}`);
  const direction = String(r.direction ?? 'both') as Direction;
  if (!['up', 'down', 'both'].includes(direction)) throw new UsageError(`${where('direction')}${what}.direction "${r.direction}" must be up, down or both`);
  const backend = String(r.backend ?? 'auto') as BackendName;
  if (!['auto', 'proxy', 'iptables', 'netem'].includes(backend)) throw new UsageError(`${where('backend')}${what}.backend "${r.backend}" must be auto, proxy, iptables or netem`);
  const probability = r.probability === undefined ? 1 : Number(r.probability);
  if (!(probability > 0 && probability <= 1)) throw new UsageError(`${where('probability')}${what}.probability must be in (0, 1]`);
  const maxCount = r.maxCount === undefined ? 1 : Number(r.maxCount);
  if (!Number.isInteger(maxCount) || maxCount < 1) throw new UsageError(`${where('maxCount')}${what}.maxCount must be a whole number >= 1`);
  const lossPercent = r.loss === undefined ? 0 : Number(r.loss);
  if (kind === 'loss' && !(lossPercent > 0 && lossPercent <= 100)) throw new UsageError(`${where('loss')}${what}.loss must be a percentage in (0, 100] for a loss fault`);
  if (kind === 'delay' && r.delay === undefined) throw new UsageError(`${where('delay')}${what}: a delay fault needs delay (e.g. 200ms)`);
  if (kind === 'bandwidth' && r.rate === undefined) throw new UsageError(`${where('rate')}${what}: a bandwidth fault needs rate (e.g. 10mbit)`);
  return {
    id: String(r.id ?? `fault-${index + 1}`),
    kind,
    direction,
    durationMs: parseDuration(r.duration ?? '10s', `${where('duration')}${what}.duration`),
    maxCount,
    probability,
    seed: r.seed === undefined ? 1 : Number(r.seed),
    delayMs: r.delay === undefined ? 0 : parseDuration(r.delay, `${where('delay')}${what}.delay`),
    jitterMs: r.jitter === undefined ? 0 : parseDuration(r.jitter, `${where('jitter')}${what}.jitter`),
    lossPercent,
    rateBytesPerSec: r.rate === undefined ? 0 : parseRate(r.rate, `${where('rate')}${what}.rate`),
    target: parseTarget(r.target, `${where('target')}${what}.target`),
    trigger: parseTrigger(r, `${where('')}${what}`),
    backend,
  };
}
