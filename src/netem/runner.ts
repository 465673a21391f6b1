import { seededRandom } from '../payload/random.js';
import type { Clock } from '../sim/ports.js';
import type { WorkerObserver } from '../sim/worker.js';
import type { WorkerState } from '../sim/workerStats.js';
import type { FaultSpec } from './spec.js';
import { describeTarget, isTargeted } from './targets.js';

import type { FaultInstanceReport, Verdict } from '../sim/faults.js';

export type { FaultInstanceReport, Verdict };

export interface FaultBackend {
  readonly name: string;
  /** The carrier of one fault, where a backend dispatches to several. */
  nameOf?(f: FaultSpec): string;
  apply(f: FaultSpec, instanceId: string, workers: readonly number[]): void | Promise<void>;
  heal(f: FaultSpec, instanceId: string, workers: readonly number[]): Promise<void>;
  close(): Promise<void>;
}

interface Instance {
  spec: FaultSpec;
  n: number;
  workers: number[];
  appliedAt: number;
  appliedWall: number;
  healedAt: number | null;
  healedWall: number | null;
  noticed: number | null;
  noticedBy: string | null;
  firstOk: Map<number, number>;
  roundOk: Map<number, number>;
  degraded: Set<number>;
  done: boolean;
  /** The backend could not apply or heal it. */
  error: string | null;
  watchdog: { cancel(): void } | null;
}

export interface FaultRunnerOptions {
  faults: readonly FaultSpec[];
  chunk: { n: number; k: number; first: number; count: number; total: number };
  backend: FaultBackend | null;
  clock: Clock;
  recoveryTargetMs: number;
  watchdogMs: number;
  /** A finished instance (applied, healed, verdict). */
  onInstance: (r: FaultInstanceReport) => void;
  /** An instance went on here (for the coordinator's view of active faults). */
  onApplied?: (instanceId: string, info: { kind: string; target: string; backend: string; affected: number; durationMs: number }) => void;
  /** A local trigger fired for a fault whose targets may live on other nodes too. */
  onFired: (faultId: string, instance: number) => void;
  log: (line: string) => void;
  /** A fault goes on (`on`) or off a worker, now in state `current`: it shows as `cut` meanwhile. */
  onCut?: (worker: number, on: boolean, current: WorkerState | undefined) => void;
}

const triggerText = (f: FaultSpec): string => {
  const t = f.trigger;
  switch (t.type) {
    case 'log':
      return `log /${t.pattern}/ on ${typeof t.source === 'string' ? t.source : `chunk ${t.source.chunk}`} (match ${t.nth})`;
    case 'phase':
      return `phase ${t.phase} (occurrence ${t.nth})`;
    case 'round':
      return `round ${t.round}`;
    case 'time':
      return `at ${t.atMs / 1000} s`;
    case 'manual':
      return 'by hand';
  }
};

/**
 * How a fault showed at a worker. Through a blackhole no packet comes back, so a
 * connection that dropped (gRPC "Connection dropped") or timed out at the socket
 * (ETIMEDOUT) was ended by a keepalive: gRPC pings or TCP keepalive probes went unanswered.
 */
export function noticedBy(f: FaultSpec, kind: string, message: string): string {
  if (f.kind === 'blackhole' && /Connection dropped|ETIMEDOUT|keepalive/i.test(message)) return 'keepalive';
  return kind;
}

/**
 * The faults of one node: local triggers (phases of its workers, its log lines), applying
 * and healing through the backend, and the recovery figures of the workers it affected.
 * Round, time and manual triggers, and log lines of other nodes, arrive as `fire(id)`.
 */
export class FaultRunner implements WorkerObserver {
  private readonly matches = new Map<string, number>();
  private readonly fired = new Map<string, number>();
  private readonly rng = new Map<string, () => number>();
  private readonly instances: Instance[] = [];
  private readonly targets = new Map<string, number[]>();
  private readonly regexes = new Map<string, RegExp>();
  private readonly wantsLines: boolean;
  private readonly doneWorkers = new Set<number>();
  private readonly failedWorkers = new Set<number>();
  /** The state of each of the node's workers, for the `cut` overlay. */
  private readonly current = new Map<number, WorkerState>();

  constructor(private readonly o: FaultRunnerOptions) {
    const { first, count, n, total } = o.chunk;
    for (const f of o.faults) {
      const ws: number[] = [];
      for (let i = first; i < first + count; i++) if (isTargeted(f.target, i, n, first, count, total, f.seed)) ws.push(i);
      this.targets.set(f.id, ws);
      this.rng.set(f.id, seededRandom(f.seed * 7919 + 17));
      if (f.trigger.type === 'log') this.regexes.set(f.id, new RegExp(f.trigger.pattern));
    }
    this.wantsLines = o.faults.some((f) => f.trigger.type === 'log');
  }

  /** Whether per-worker lines are worth making (a log trigger exists). */
  get watchesLines(): boolean {
    return this.wantsLines;
  }

  /** A log line of this node; `source` is "server" or "chunk N". */
  line(text: string, source: string): void {
    for (const f of this.o.faults) {
      const t = f.trigger;
      if (t.type !== 'log') continue;
      const src = typeof t.source === 'string' ? t.source : `chunk ${t.source.chunk}`;
      if (src !== 'any' && src !== source) continue;
      if (!this.regexes.get(f.id)!.test(text)) continue;
      const seen = (this.matches.get(f.id) ?? 0) + 1;
      this.matches.set(f.id, seen);
      if (seen !== t.nth) continue;
      this.o.log(`fault ${f.id}: trigger matched "${text}"`);
      this.trigger(f, t.delayMs, true);
    }
  }

  // ---- WorkerObserver -----------------------------------------------------------------

  state(index: number, s: WorkerState): void {
    this.current.set(index, s);
    if (s === 'done' || s === 'failed') (s === 'done' ? this.doneWorkers : this.failedWorkers).add(index);
    if (this.wantsLines) this.line(`worker ${index} ${s}`, `chunk ${this.o.chunk.n}`);
    for (const f of this.o.faults) {
      const t = f.trigger;
      if (t.type !== 'phase' || t.phase !== s) continue;
      if (!this.targets.get(f.id)!.includes(index)) continue;
      const seen = (this.matches.get(f.id) ?? 0) + 1;
      this.matches.set(f.id, seen);
      if (seen < t.nth || (seen > t.nth && !this.repeatable(f))) continue;
      this.trigger(f, t.delayMs, false);
    }
  }

  success(index: number): void {
    const now = this.o.clock.now();
    for (const inst of this.instances) {
      if (inst.done || inst.healedAt === null || !inst.workers.includes(index)) continue;
      if (!inst.firstOk.has(index)) inst.firstOk.set(index, now - inst.healedAt);
    }
  }

  failure(index: number, kind: string, message = ''): void {
    const now = this.o.clock.now();
    for (const inst of this.instances) {
      if (inst.done || inst.noticed !== null || !inst.workers.includes(index)) continue;
      inst.noticed = now - inst.appliedAt;
      inst.noticedBy = noticedBy(inst.spec, kind, message);
    }
  }

  round(index: number, outcome: string): void {
    const now = this.o.clock.now();
    for (const inst of this.instances) {
      if (inst.done || !inst.workers.includes(index)) continue;
      if (outcome === 'late') inst.degraded.add(index);
      if (inst.healedAt !== null && outcome === 'accepted' && !inst.roundOk.has(index)) {
        inst.roundOk.set(index, now - inst.healedAt);
        this.maybeFinish(inst);
      }
    }
  }

  // ---- firing ------------------------------------------------------------------------

  /** Fires a fault on this node's targets (a command from the coordinator). */
  fire(faultId: string, instance: number): void {
    const f = this.o.faults.find((x) => x.id === faultId);
    if (f) this.apply(f, instance);
  }

  /** Heals instance "faultId#n" now, before its duration ends (a command by hand). */
  healNow(faultId: string, n: number): void {
    const inst = this.instances.find((i) => i.spec.id === faultId && i.n === n);
    if (inst && inst.healedAt === null) void this.heal(inst);
  }

  /** Ends the run: heals what is on and reports every instance. */
  async finish(): Promise<void> {
    for (const inst of this.instances) {
      if (inst.healedAt === null) await this.heal(inst);
      inst.watchdog?.cancel();
      this.report(inst);
    }
    await this.o.backend?.close();
  }

  /** Phase triggers fire again (up to maxCount) on later occurrences once the previous instance healed. */
  private repeatable(f: FaultSpec): boolean {
    return this.instances.filter((i) => i.spec.id === f.id).every((i) => i.healedAt !== null);
  }

  private trigger(f: FaultSpec, delayMs: number, relay: boolean): void {
    const count = this.fired.get(f.id) ?? 0;
    if (count >= f.maxCount) return;
    if (this.rng.get(f.id)!() >= f.probability) {
      this.o.log(`fault ${f.id}: trigger fired, skipped by probability ${f.probability}`);
      return;
    }
    const n = count + 1;
    this.fired.set(f.id, n);
    const go = () => {
      this.apply(f, n);
      if (relay) this.o.onFired(f.id, n);
    };
    if (delayMs > 0) this.o.clock.setTimer(delayMs, go);
    else go();
  }

  private apply(f: FaultSpec, n: number): void {
    const workers = this.targets.get(f.id) ?? [];
    if (workers.length === 0 || !this.o.backend) return;
    if (this.instances.some((i) => i.spec.id === f.id && i.n === n)) return;
    const inst: Instance = {
      spec: f,
      n,
      workers,
      appliedAt: this.o.clock.now(),
      appliedWall: this.o.clock.wallNow(),
      healedAt: null,
      healedWall: null,
      noticed: null,
      noticedBy: null,
      firstOk: new Map(),
      roundOk: new Map(),
      degraded: new Set(),
      done: false,
      error: null,
      watchdog: null,
    };
    this.instances.push(inst);
    const carrier = this.o.backend.nameOf?.(f) ?? this.o.backend.name;
    try {
      const p = this.o.backend.apply(f, `${f.id}#${n}`, workers);
      if (p) p.catch((e: Error) => this.failed(inst, 'apply', e));
    } catch (e) {
      this.failed(inst, 'apply', e as Error);
    }
    for (const w of workers) this.o.onCut?.(w, true, this.current.get(w));
    this.o.onApplied?.(`${f.id}#${n}`, { kind: f.kind, target: describeTarget(f.target), backend: carrier, affected: workers.length, durationMs: f.durationMs });
    this.o.log(`fault ${f.id}#${n}: ${f.kind} on ${workers.length} workers (${describeTarget(f.target)}) for ${f.durationMs / 1000} s via ${carrier}`);
    this.o.clock.setTimer(f.durationMs, () => void this.heal(inst));
  }

  private async heal(inst: Instance): Promise<void> {
    if (inst.healedAt !== null) return;
    inst.healedAt = this.o.clock.now();
    inst.healedWall = this.o.clock.wallNow();
    try {
      await this.o.backend?.heal(inst.spec, `${inst.spec.id}#${inst.n}`, inst.workers);
    } catch (e) {
      this.failed(inst, 'heal', e as Error);
    }
    for (const w of inst.workers) this.o.onCut?.(w, false, this.current.get(w));
    this.o.log(`fault ${inst.spec.id}#${inst.n}: healed`);
    inst.watchdog = this.o.clock.setTimer(this.o.watchdogMs, () => {
      if (!inst.done) this.report(inst);
    });
  }

  private failed(inst: Instance, what: 'apply' | 'heal', e: Error): void {
    inst.error ??= `${what}: ${e.message}`;
    this.o.log(`fault ${inst.spec.id}#${inst.n}: could not ${what}: ${e.message}`);
  }

  private maybeFinish(inst: Instance): void {
    if (inst.roundOk.size + inst.degraded.size >= inst.workers.length && inst.workers.every((w) => inst.roundOk.has(w) || inst.degraded.has(w))) {
      inst.watchdog?.cancel();
      this.report(inst);
    }
  }

  private report(inst: Instance): void {
    if (inst.done) return;
    inst.done = true;
    const max = (m: Map<number, number>) => (m.size === inst.workers.length ? Math.max(...m.values()) : null);
    // Progress after the heal: a round with the worker's update in, a round that went on
    // without it (degraded), or at least an exchange / the end of its rounds. A worker that
    // failed, or showed nothing of that, is stuck.
    const progressed = (w: number) =>
      !this.failedWorkers.has(w) && (inst.roundOk.has(w) || inst.degraded.has(w) || inst.firstOk.has(w) || this.doneWorkers.has(w));
    const stuck = inst.workers.filter((w) => !progressed(w)).length;
    const nextRound = max(inst.roundOk);
    let verdict: Verdict;
    if (inst.error !== null) verdict = 'error';
    else if (stuck > 0) verdict = 'stuck';
    else if (inst.degraded.size > 0) verdict = 'degraded';
    else if (nextRound !== null && nextRound > this.o.recoveryTargetMs) verdict = 'recovered-slow';
    else verdict = 'recovered';
    const r3 = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);
    this.o.onInstance({
      faultId: inst.spec.id,
      instance: inst.n,
      kind: inst.spec.kind,
      backend: this.o.backend?.nameOf?.(inst.spec) ?? this.o.backend?.name ?? 'none',
      target: describeTarget(inst.spec.target),
      trigger: triggerText(inst.spec),
      chunk: `${this.o.chunk.n} of ${this.o.chunk.k}`,
      affected: inst.workers.length,
      appliedAtMs: inst.appliedWall,
      healedAtMs: inst.healedWall,
      noticedAfterMs: r3(inst.noticed),
      noticedBy: inst.noticedBy,
      firstExchangeAfterHealMs: r3(max(inst.firstOk)),
      nextRoundAfterHealMs: r3(nextRound),
      degradedWorkers: inst.degraded.size,
      stuckWorkers: stuck,
      verdict,
      ...(inst.error !== null ? { error: inst.error } : {}),
    });
  }
}
