import { UpdateSlots } from './updateSlots.js';
import type { RequestChecker, RequestFacts } from './ports.js';
import { RoundEngine, type RoundClosed, type RoundEngineOptions } from './roundEngine.js';
import { type CounterMap, type Histogram, bump, encodeHistogram, newHistogram, recordMs, sumCounters } from './stats.js';

/** Per-round figures as the server saw them: messages and bytes since the previous close. */
export interface RoundLine {
  round: number;
  durationMs: number;
  updates: number;
  byQuorum: boolean;
  messages: number;
  bytes: number;
  publishedAtMs: number;
  /** The round's updates could not be aggregated (why): it published the last version's weights. */
  aggregationError?: string;
}

export interface ServerReport {
  version: number;
  /** SHA-256 of the last published model. */
  modelSha256: string;
  safeMode?: boolean;
  /** Safe mode: requests refused, by reason. */
  authRefused?: CounterMap;
  /** Safe mode: requests admitted, by scheme (`ed25519`: signed; `session`: a MAC under the session key). */
  authAccepted?: CounterMap;
  roundsCompleted: number;
  registered: number;
  waiting: number;
  updates: RoundEngine['updates'];
  messagesIn: CounterMap;
  messagesOut: CounterMap;
  bytesIn: CounterMap;
  bytesOut: CounterMap;
  errors: CounterMap;
  roundMs: string;
  rounds: RoundLine[];
}

/**
 * The FL server as the transports see it: the round engine plus the server's own
 * counters. Both transport adapters drive one instance, so HTTP and gRPC workers
 * can share a run.
 */
export class FlServer {
  readonly engine: RoundEngine;
  readonly messagesIn: CounterMap = {};
  readonly messagesOut: CounterMap = {};
  readonly bytesIn: CounterMap = {};
  readonly bytesOut: CounterMap = {};
  readonly errors: CounterMap = {};
  readonly roundMs: Histogram = newHistogram();
  readonly rounds: RoundLine[] = [];
  private lastMessages = 0;
  private lastBytes = 0;

  /** Safe mode: requests refused, by reason. */
  readonly authRefused: CounterMap = {};
  /** Safe mode: requests admitted, by scheme. */
  readonly authAccepted: CounterMap = {};
  /** Safe mode's check of every request (null: safe mode off). */
  auth: RequestChecker | null = null;
  /** Where refusals are told (the first of each key and reason). */
  authLog: (line: string) => void = () => undefined;
  private readonly authTold = new Set<string>();

  /** Checks a request in safe mode; counts and tells a refusal. Always passes with safe mode off. */
  authorize(facts: RequestFacts, headers: (name: string) => string | undefined): { ok: true; publicKey: string; exchangeKey?: string } | { ok: false; reason: string } {
    if (!this.auth) return { ok: true, publicKey: '' };
    const r = this.auth.check(facts, headers);
    if (r.ok) {
      bump(this.authAccepted, r.scheme);
      return r;
    }
    this.refused(r.reason, r.publicKey, facts);
    return r;
  }

  /** A refusal found after the headers (the body's hash). */
  refused(reason: string, publicKey: string, facts: RequestFacts): void {
    bump(this.authRefused, reason);
    this.error('unauthenticated');
    const key = `${publicKey.slice(0, 12)} ${reason}`;
    if (!this.authTold.has(key) && this.authTold.size < 1000) {
      this.authTold.add(key);
      this.authLog(`safe mode: refused ${facts.method} ${facts.path} from key ${publicKey ? publicKey.slice(0, 12) : '(none)'}${facts.workerId ? ` (worker ${facts.workerId})` : ''}: ${reason}`);
    }
  }

  /** Where update bodies are received (bounded memory; see updateSlots.ts). */
  readonly slots: UpdateSlots;

  constructor(opts: RoundEngineOptions, readonly pollTimeoutMs: number, updateSlots = 4) {
    // Slot buffers in the codec's fold memory where it has one: updates are folded where they were received.
    this.slots = new UpdateSlots(updateSlots, updateSlots, 250, opts.codec.slotPool?.(updateSlots) ?? null);
    this.engine = new RoundEngine(opts);
    this.engine.onRoundClosed((c) => this.onClosed(c));
  }

  onRoundClosed(fn: (line: RoundLine) => void): void {
    this.engine.onRoundClosed(() => fn(this.rounds[this.rounds.length - 1]));
  }

  in(type: string, bytes: number): void {
    bump(this.messagesIn, type);
    bump(this.bytesIn, type, bytes);
  }

  out(type: string, bytes: number): void {
    bump(this.messagesOut, type);
    bump(this.bytesOut, type, bytes);
  }

  error(kind: string): void {
    bump(this.errors, kind);
  }

  report(): ServerReport {
    return {
      version: this.engine.version,
      modelSha256: this.engine.current.sha256,
      roundsCompleted: this.rounds.length,
      registered: this.engine.registered.size,
      waiting: this.engine.waiting,
      updates: { ...this.engine.updates },
      messagesIn: { ...this.messagesIn },
      messagesOut: { ...this.messagesOut },
      bytesIn: { ...this.bytesIn },
      bytesOut: { ...this.bytesOut },
      errors: { ...this.errors },
      authRefused: { ...this.authRefused },
      authAccepted: { ...this.authAccepted },
      safeMode: this.auth !== null,
      roundMs: encodeHistogram(this.roundMs),
      rounds: [...this.rounds],
    };
  }

  private onClosed(c: RoundClosed): void {
    recordMs(this.roundMs, c.durationMs);
    const messages = sumCounters(this.messagesIn) + sumCounters(this.messagesOut);
    const bytes = sumCounters(this.bytesIn) + sumCounters(this.bytesOut);
    this.rounds.push({
      round: c.round,
      durationMs: Math.round(c.durationMs * 1000) / 1000,
      updates: c.updates,
      byQuorum: c.byQuorum,
      messages: messages - this.lastMessages,
      bytes: bytes - this.lastBytes,
      publishedAtMs: c.model.publishedAtMs,
      ...(c.aggregationError === undefined ? {} : { aggregationError: c.aggregationError }),
    });
    if (c.aggregationError !== undefined) this.error('aggregation');
    this.lastMessages = messages;
    this.lastBytes = bytes;
  }
}
