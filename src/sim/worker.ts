import type { Clock, PayloadCodec, PulledModel, WorkerTransport } from './ports.js';
import { TransportError } from './ports.js';
import { type RetryPolicy, withRetry } from './retry.js';
import type { WorkerNodeStats, WorkerState } from './workerStats.js';

export interface WorkerContext {
  readonly index: number;
  /** Rounds this worker completes: each is update sent → newer global model held. */
  readonly rounds: number;
  /**
   * A ramp: the round of this worker's first update (1: from the start). Before it the worker
   * is idle, waiting for the model that round trains on, and registers once it is out.
   */
  readonly joinRound?: number;
  readonly transport: WorkerTransport;
  readonly codec: PayloadCodec;
  readonly clock: Clock;
  readonly trainMs: { readonly min: number; readonly max: number };
  readonly retry: RetryPolicy;
  readonly random: () => number;
  readonly stats: WorkerNodeStats;
  readonly hash: (body: Buffer) => string;
  readonly signal: AbortSignal;
  /**
   * Limits how many workers of a node connect and register at once: thousands of
   * simultaneous connects overflow the server's listen backlog (resets), which is the
   * machine's limit, not the system under test's.
   */
  readonly admit?: <T>(op: () => Promise<T>) => Promise<T>;
  /** A compute phase after the sleep of `trainMs` (onnxruntime forward passes of the held model). */
  readonly train?: (held: PulledModel) => Promise<void>;
  /** Checks a received model beyond its SHA-256 (loads it in onnxruntime); throws when it is unusable. */
  readonly validate?: (model: PulledModel) => Promise<void>;
  /**
   * Keeps one copy per model version in the node: a worker that received (and checked) a
   * version another worker of its node already holds keeps that copy and drops its own.
   */
  readonly intern?: (model: PulledModel) => PulledModel;
  /** The worker no longer refers to a model `intern` gave it (its buffer may then serve a later version). */
  readonly release?: (model: PulledModel) => void;
  /** Fault triggers and recovery verdicts watch these (optional; nothing is paid without it). */
  readonly observer?: WorkerObserver;
}

export interface WorkerObserver {
  state(index: number, state: WorkerState): void;
  /** A request to the server succeeded. */
  success(index: number): void;
  /** A request failed (and will be retried). */
  failure(index: number, kind: string, message: string): void;
  /** A round finished for this worker: its update was accepted (or late: the round went on without it). */
  round(index: number, outcome: string): void;
}

/**
 * One simulated worker as an async state machine:
 * idle → registering → fetching → (training → sending → waiting → receiving)×R → done,
 * with retrying while it backs off and failed when it gives up.
 */
export async function runWorker(ctx: WorkerContext): Promise<void> {
  const { stats, clock, transport } = ctx;
  let state: WorkerState = 'idle';
  const obs = ctx.observer;
  const enter = (next: WorkerState) => {
    stats.move(state, next, ctx.index);
    state = next;
    obs?.state(ctx.index, next);
  };
  // While it backs off the worker shows as retrying; the next attempt runs in the state it came from.
  let resume: WorkerState | null = null;
  const attempt = <T>(op: () => Promise<T>) =>
    withRetry(
      () => {
        if (resume) {
          enter(resume);
          resume = null;
        }
        if (!obs) return op();
        return op().then((v) => {
          obs.success(ctx.index);
          return v;
        });
      },
      ctx.retry,
      clock,
      ctx.random,
      {
        onRetry: (err) => {
          stats.retries++;
          stats.error(err.kind, err.message);
          obs?.failure(ctx.index, err.kind, err.message);
          resume = state;
          enter('retrying');
        },
      },
      ctx.signal,
    );

  // The model the worker holds (given back to the node when it is done with it).
  let held: PulledModel | null = null;
  try {
    const join = ctx.joinRound ?? 1;
    if (join > 1) {
      // A ramp worker joins when its step starts: idle until the model its first round trains
      // on is out (a long-poll before it registers), then it registers like a new device.
      enter('idle');
      const first = await pull(ctx, '', join - 2, attempt, () => undefined, false);
      ctx.release?.(first);
    }
    enter('registering');
    let t = clock.now();
    const register = () => attempt(() => transport.register(ctx.index));
    const reg = await (ctx.admit ? ctx.admit(register) : register());
    stats.latency('registerMs', clock.now() - t);
    const workerId = reg.workerId;

    enter('fetching');
    held = await pull(ctx, workerId, join - 2, attempt, () => undefined, false);

    // The run's R rounds end with model version start+R. A worker that fell behind (its
    // update came late and a quorum closed the round without it) catches up by fetching the
    // newest model, so it may do fewer rounds of its own but stops at the same version.
    const lastVersion = join > 1 ? join - 1 + ctx.rounds : held.version + ctx.rounds;
    let spare: Buffer | undefined;
    for (let done = 0; done < ctx.rounds && held.version < lastVersion; ) {
      if (ctx.signal.aborted) throw new Error('stopped');
      enter('training');
      const { min, max } = ctx.trainMs;
      if (max > 0) await clock.sleep(min + ctx.random() * (max - min), ctx.signal);
      if (ctx.train) await ctx.train(held);

      enter('sending');
      const round = held.version + 1;
      // Made as it is sent when the codec can (nothing held per worker), else whole, into the last one.
      const update = ctx.codec.updateSource?.(held.body, ctx.index, round) ?? ctx.codec.makeUpdate(held.body, ctx.index, round, spare);
      t = clock.now();
      const ack = await attempt(() => transport.pushUpdate(workerId, round, update));
      stats.latency('uploadMs', clock.now() - t);
      stats.updates[ack.outcome] = (stats.updates[ack.outcome] ?? 0) + 1;
      // Sent and answered: the transport holds no reference to it any more.
      if (Buffer.isBuffer(update)) spare = update;
      if (ack.outcome === 'rejected') {
        throw new TransportError('rejected', `worker ${ctx.index}: the server rejected its update for round ${round}: ${ack.reason ?? 'no reason given'}`, false);
      }

      enter('waiting');
      const waitStart = clock.now();
      let headersAt = 0;
      const next = await pull(ctx, workerId, held.version, attempt, () => {
        headersAt = clock.now();
        if (state === 'waiting') enter('receiving');
      }, true);
      const end = clock.now();
      if (headersAt === 0) headersAt = end;
      stats.latency('waitMs', headersAt - waitStart);
      stats.latency('downloadMs', end - headersAt);
      ctx.release?.(held);
      held = next;
      done++;
      stats.roundsDone++;
      obs?.round(ctx.index, ack.outcome);
    }
    const key = `${held.version} ${held.sha256}`;
    stats.heldAtEnd[key] = (stats.heldAtEnd[key] ?? 0) + 1;
    ctx.release?.(held);
    held = null;
    enter('done');
  } catch (err) {
    if (held) ctx.release?.(held);
    enter('failed');
    // A worker stopped by its node (the run is ending) has no error to count.
    if (ctx.signal.aborted) throw new Error('stopped');
    const msg = err instanceof Error ? err.message : String(err);
    if (!(err instanceof TransportError)) stats.error('internal', msg);
    else stats.error(err.kind, msg);
    throw err;
  }
}

/** Long-polls until a model newer than `after` is held whole, checking its SHA-256. */
async function pull(
  ctx: WorkerContext,
  workerId: string,
  after: number,
  attempt: <T>(op: () => Promise<T>) => Promise<T>,
  onHeaders: () => void,
  /** The first fetch of a model published before the worker came is not propagation. */
  measure: boolean,
): Promise<PulledModel> {
  const { stats, clock } = ctx;
  for (;;) {
    if (ctx.signal.aborted) throw new Error('stopped');
    let heldAt = 0;
    const got = await attempt(async () => {
      const m = await ctx.transport.pullModel(workerId, after, onHeaders);
      heldAt = clock.wallNow();
      // A corrupted model is fetched again, within the retry budget and with backoff.
      if (m && ctx.hash(m.body) !== m.sha256) {
        stats.integrityErrors++;
        throw new TransportError('integrity', `worker ${ctx.index}: model v${m.version} failed its SHA-256 check`, true);
      }
      return m;
    });
    // Only a model newer than asked for ends the wait.
    if (got === null || got.version <= after) continue;
    if (measure) stats.propagation(got.version, heldAt - got.publishedAtMs);
    if (ctx.validate) {
      try {
        await ctx.validate(got);
      } catch (e) {
        throw new TransportError('invalid-model', `worker ${ctx.index}: model v${got.version} does not run in onnxruntime: ${(e as Error).message}`, false);
      }
    }
    if (ctx.intern) return ctx.intern(got);
    return got;
  }
}
