import type { Aggregator, Clock, PayloadCodec, PublishedModel, UpdateOutcome } from './ports.js';

export interface RoundEngineOptions {
  /** Workers expected in every round: a round closes once all their updates are in. */
  readonly expectedWorkers: number;
  /** A ramp: the updates that close round r, when not every worker takes part from round 1. */
  readonly expectedFor?: (round: number) => number;
  /** With `roundTimeoutMs`: after the deadline a round closes with this many updates. */
  readonly minWorkers?: number;
  readonly roundTimeoutMs?: number;
  readonly codec: PayloadCodec;
  readonly clock: Clock;
  readonly hash: (body: Buffer) => string;
}

export interface RoundClosed {
  readonly round: number;
  readonly durationMs: number;
  readonly updates: number;
  /** True when the round closed on the quorum after its deadline rather than on all updates. */
  readonly byQuorum: boolean;
  readonly model: PublishedModel;
  /** Why the round's updates could not be aggregated: the model published is then the last version's weights, unchanged. */
  readonly aggregationError?: string;
}

export interface UpdateCounts {
  accepted: number;
  duplicate: number;
  late: number;
  rejected: number;
}

/**
 * Model bytes the waiters answered in one turn of the event loop may add up to. Each answer
 * writes the model to a socket, and the kernel copies what the socket buffer takes (a few MB)
 * at once: answering 128 long-polls for a 14 MB model in one go held the server's loop for
 * 150 to 420 ms, in which it read no update, so the uploads in its slots looked stalled and
 * got spare slots from the heap (+100 MB of RSS; docs/benchmarks.md, session 25).
 */
export const ANSWER_BYTES_PER_TURN = 64 * 1024 * 1024;

interface Waiter {
  readonly after: number;
  readonly resolve: (m: PublishedModel | null) => void;
  timer: { cancel(): void } | null;
  /** A waitHeld waiter: the model it is answered with is held for it (see waitHeld). */
  readonly held?: boolean;
}

/** A model handed to a transport for sending, and the way to say it is done with it. */
export interface HeldModel {
  readonly model: PublishedModel;
  /** The transport no longer refers to the model's bytes (sent, or the connection gone). Once; later calls do nothing. */
  release(): void;
}

/**
 * The server's round engine, free of I/O. Round r trains on version r-1 and its
 * close publishes version r. Each published model is encoded once; every waiting
 * long-poll is answered from that one buffer.
 */
export class RoundEngine {
  private model: PublishedModel;
  private aggregator: Aggregator;
  private received = new Set<string>();
  /** Last round each worker had an update accepted in: a second one is a duplicate. */
  private lastAccepted = new Map<string, number>();
  private openedAt: number | null = null;
  private deadlinePassed = false;
  private deadline: { cancel(): void } | null = null;
  private waiters = new Set<Waiter>();
  /** Waiters a closed round answers a few per turn (answerInTurns), not answered yet: the model each gets. */
  private readonly answering = new Map<Waiter, PublishedModel>();
  private paused = false;
  private listeners: Array<(c: RoundClosed) => void> = [];
  /** Sends in flight per model (waitHeld); a model absent here has none. Weak: a hold never released keeps nothing alive. */
  private readonly holds = new WeakMap<PublishedModel, number>();
  /** Models given back to the codec already (once each). */
  private readonly givenBack = new WeakSet<PublishedModel>();
  readonly updates: UpdateCounts = { accepted: 0, duplicate: 0, late: 0, rejected: 0 };
  readonly registered = new Set<string>();

  constructor(private readonly opts: RoundEngineOptions) {
    if (opts.expectedWorkers < 1) throw new RangeError('expectedWorkers must be at least 1');
    this.model = this.publish(0, opts.codec.initialModel());
    this.aggregator = opts.codec.createAggregator();
  }

  get version(): number {
    return this.model.version;
  }

  get openRound(): number {
    return this.model.version + 1;
  }

  get current(): PublishedModel {
    return this.model;
  }

  get waiting(): number {
    return this.waiters.size;
  }

  onRoundClosed(fn: (c: RoundClosed) => void): void {
    this.listeners.push(fn);
  }

  register(workerIndex: number): { workerId: string; version: number } {
    const workerId = `w${workerIndex}`;
    this.registered.add(workerId);
    // Round 1 starts when the first worker shows up, not when the server started.
    if (this.openedAt === null) this.openRound_();
    return { workerId, version: this.model.version };
  }

  /** Decides an update's fate before its body is read (so a duplicate body can be skipped). */
  precheck(workerId: string, round: number): UpdateOutcome | 'ok' {
    if (!this.registered.has(workerId)) return 'rejected';
    if (this.lastAccepted.get(workerId) === round) return 'duplicate';
    if (round < this.openRound) return 'late';
    if (round > this.openRound) return 'rejected';
    return 'ok';
  }

  /** `hold`: see Aggregator.fold (the body's slot, which an accepted update keeps until folded). */
  submit(workerId: string, round: number, body: Buffer, hold?: () => () => void): { outcome: UpdateOutcome; reason?: string } {
    const pre = this.precheck(workerId, round);
    if (pre !== 'ok') {
      this.updates[pre]++;
      const reason = !this.registered.has(workerId) ? `worker ${workerId} has not registered` : `round ${round} is not open (open round: ${this.openRound})`;
      return { outcome: pre, reason: pre === 'rejected' ? reason : undefined };
    }
    if (!this.aggregator.fold(body, hold)) {
      this.updates.rejected++;
      return { outcome: 'rejected', reason: 'malformed update body' };
    }
    if (this.openedAt === null) this.openRound_();
    this.received.add(workerId);
    this.lastAccepted.set(workerId, round);
    this.updates.accepted++;
    this.maybeClose();
    return { outcome: 'accepted' };
  }

  /**
   * Long-poll: resolves with the current model when its version is > after, else waits
   * for the next publish or resolves null after timeoutMs. `cancel` drops the waiter.
   * The model is not held: code that sends its bytes uses waitHeld, or a later round may
   * write another version into the same buffer while they are still going out.
   */
  waitModel(after: number, timeoutMs: number): { promise: Promise<PublishedModel | null>; cancel(): void } {
    return this.wait(after, timeoutMs, false);
  }

  /**
   * waitModel for a transport that sends the model: the model comes held (taken when it is
   * handed out, so a round that closes before the transport's code runs again cannot give its
   * buffer away), and the transport calls `release` once nothing of it refers to the bytes. A
   * replaced model whose holds are all released goes back to the codec (PayloadCodec.recycle),
   * so the next version is written into its buffer instead of a new one: the server's memory
   * does not wait for the garbage collector to free each 14 MB version. A hold never released
   * costs memory only: that version is left to the garbage collector.
   */
  waitHeld(after: number, timeoutMs: number): { promise: Promise<HeldModel | null>; cancel(): void } {
    const w = this.wait(after, timeoutMs, true);
    return { promise: w.promise.then((m) => (m ? this.heldHandle(m) : null)), cancel: w.cancel };
  }

  private hold(model: PublishedModel): void {
    this.holds.set(model, (this.holds.get(model) ?? 0) + 1);
  }

  private heldHandle(model: PublishedModel): HeldModel {
    let released = false;
    return {
      model,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.holds.get(model) ?? 1) - 1;
        if (n > 0) this.holds.set(model, n);
        else {
          this.holds.delete(model);
          this.giveBack(model);
        }
      },
    };
  }

  /** A model that is no longer current and no longer held goes back to the codec. */
  private giveBack(model: PublishedModel): void {
    if (model === this.model || this.holds.has(model) || this.givenBack.has(model)) return;
    this.givenBack.add(model);
    this.opts.codec.recycle?.(model.body);
  }

  private wait(after: number, timeoutMs: number, held: boolean): { promise: Promise<PublishedModel | null>; cancel(): void } {
    if (this.model.version > after) {
      if (held) this.hold(this.model);
      return { promise: Promise.resolve(this.model), cancel() {} };
    }
    let waiter!: Waiter;
    const promise = new Promise<PublishedModel | null>((resolve) => {
      waiter = { after, resolve, timer: null, held };
    });
    waiter.timer = this.opts.clock.setTimer(timeoutMs, () => {
      this.waiters.delete(waiter);
      waiter.resolve(null);
    });
    this.waiters.add(waiter);
    return {
      promise,
      cancel: () => {
        if (this.waiters.delete(waiter)) {
          waiter.timer?.cancel();
          waiter.resolve(null);
        } else this.unanswer(waiter);
      },
    };
  }

  /** Stops timers and answers every waiter with "no newer model". */
  close(): void {
    this.deadline?.cancel();
    for (const w of this.waiters) {
      w.timer?.cancel();
      w.resolve(null);
    }
    this.waiters.clear();
    for (const w of [...this.answering.keys()]) this.unanswer(w);
  }

  private openRound_(): void {
    this.openedAt = this.opts.clock.now();
    this.deadlinePassed = false;
    this.deadline?.cancel();
    this.deadline = null;
    const { roundTimeoutMs, minWorkers } = this.opts;
    if (roundTimeoutMs !== undefined && minWorkers !== undefined) {
      this.deadline = this.opts.clock.setTimer(roundTimeoutMs, () => {
        this.deadlinePassed = true;
        this.maybeClose();
      });
    }
  }

  /**
   * Holds (or releases) the close of the open round: updates keep coming in, workers wait
   * for the model, and no new round starts until it is released. The round's duration
   * includes the pause.
   */
  setPaused(paused: boolean): void {
    this.paused = paused;
    if (!paused) this.maybeClose();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  private maybeClose(): void {
    if (this.paused) return;
    const n = this.received.size;
    const all = n >= (this.opts.expectedFor?.(this.openRound) ?? this.opts.expectedWorkers);
    const quorum = this.deadlinePassed && n > 0 && n >= (this.opts.minWorkers ?? this.opts.expectedWorkers);
    if (!all && !quorum) return;
    const round = this.openRound;
    const durationMs = this.opts.clock.now() - (this.openedAt ?? this.opts.clock.now());
    let body: Buffer;
    let aggregationError: string | undefined;
    try {
      body = this.aggregator.result(round);
    } catch (e) {
      // The round's mean is lost (a fold failed): the round still closes, on a copy of the
      // last version's weights, and says why; the next round aggregates afresh.
      aggregationError = (e as Error).message;
      body = Buffer.from(this.model.body);
    }
    const model = this.publish(round, body);
    this.aggregator = this.opts.codec.createAggregator();
    this.received.clear();
    this.openRound_();
    const closed: RoundClosed = { round, durationMs, updates: n, byQuorum: !all, model, ...(aggregationError === undefined ? {} : { aggregationError }) };
    for (const fn of this.listeners) fn(closed);
    // A waiter asking for a later version (a ramp worker waiting for its first round) keeps waiting.
    const waiting = this.waiters;
    this.waiters = new Set();
    const ready: Waiter[] = [];
    for (const w of waiting) {
      if (w.after >= model.version) {
        this.waiters.add(w);
        continue;
      }
      w.timer?.cancel();
      // Held now, while it is the current version (answered maybe a few turns later).
      if (w.held) this.hold(model);
      this.answering.set(w, model);
      ready.push(w);
    }
    this.answerInTurns(ready, model);
  }

  /**
   * Answers `ready` with `model`, at least one and as many as ANSWER_BYTES_PER_TURN allows per
   * turn of the event loop, in order. One cancelled (or the engine closed) meanwhile is
   * answered null then, and its hold let go.
   */
  private answerInTurns(ready: Waiter[], model: PublishedModel): void {
    const perTurn = Math.max(1, Math.floor(ANSWER_BYTES_PER_TURN / Math.max(1, model.body.length)));
    let next = 0;
    const turn = () => {
      for (let answered = 0; next < ready.length && answered < perTurn; next++) {
        const w = ready[next];
        if (!this.answering.delete(w)) continue;
        w.resolve(model);
        answered++;
      }
      if (next < ready.length) setImmediate(turn);
    };
    turn();
  }

  /** A waiter whose answer was still to come: answered null, and the hold taken for it let go. */
  private unanswer(w: Waiter): boolean {
    const model = this.answering.get(w);
    if (!model) return false;
    this.answering.delete(w);
    if (w.held) this.heldHandle(model).release();
    w.resolve(null);
    return true;
  }

  private publish(version: number, body: Buffer): PublishedModel {
    const replaced = this.model as PublishedModel | undefined;
    this.model = { version, body, sha256: this.opts.hash(body), publishedAtMs: this.opts.clock.wallNow() };
    if (replaced) this.giveBack(replaced);
    return this.model;
  }
}
