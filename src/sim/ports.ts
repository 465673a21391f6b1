/**
 * The ports the pure core needs. Adapters (transport/, payload/) implement them;
 * nothing in sim/ touches sockets, processes or the terminal.
 */

import type { UpdateBody, UpdateSource } from './updateBody.js';
import type { SlotPool } from './updateSlots.js';

export interface Clock {
  /** Monotonic milliseconds, for durations. */
  now(): number;
  /** Wall-clock milliseconds since the epoch with sub-millisecond precision, for cross-process timings. */
  wallNow(): number;
  setTimer(ms: number, fn: () => void): { cancel(): void };
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** A published global model: encoded once, every pull is answered from this one buffer. */
export interface PublishedModel {
  readonly version: number;
  readonly body: Buffer;
  readonly sha256: string;
  /** Server wall clock at publish (ms since epoch). */
  readonly publishedAtMs: number;
}

export type UpdateOutcome = 'accepted' | 'duplicate' | 'late' | 'rejected';

/** What a worker's transport client can do against the server. */
export interface WorkerTransport {
  register(workerIndex: number): Promise<{ workerId: string; version: number }>;
  pushUpdate(workerId: string, round: number, body: UpdateBody): Promise<{ outcome: UpdateOutcome; reason?: string }>;
  /**
   * Long-poll for a model with version > after. Resolves null when the server's poll
   * timeout ended with no newer model. `onHeaders` fires when the first byte of the model arrives.
   */
  pullModel(workerId: string, after: number, onHeaders: () => void): Promise<PulledModel | null>;
  close(): void;
}

export interface PulledModel {
  readonly version: number;
  readonly body: Buffer;
  readonly sha256: string;
  readonly publishedAtMs: number;
}

/** A model payload kind: what the global model and the updates are, and how they aggregate. */
export interface PayloadCodec {
  readonly name: string;
  initialModel(): Buffer;
  /**
   * The update worker `workerIndex` sends in `round`, derived from the global model it holds.
   * `reuse`: the worker's previous update, sent and acknowledged; a codec may write the new
   * one into it when the size matches (no 14 MB allocation per worker per round).
   */
  makeUpdate(global: Buffer, workerIndex: number, round: number, reuse?: Buffer): Buffer;
  /**
   * The same update as `makeUpdate`, made piece by piece as it is sent (UpdateSource): what a
   * worker sends when the codec has it. Null when this codec makes its updates only whole.
   */
  updateSource?(global: Buffer, workerIndex: number, round: number): UpdateSource | null;
  /** The size of an update, bytes (a typical one where sizes vary): what the server sizes its update slots by, without making one. */
  updateBytes(): number;
  createAggregator(): Aggregator;
  /**
   * A published model that nothing refers to any more (RoundEngine.waitHeld): a codec may
   * write a later result into its buffer. Only buffers its own results returned are taken;
   * others are ignored.
   */
  recycle?(model: Buffer): void;
  /**
   * Buffers for the server's `slots` update slots in the memory this codec's aggregators sum
   * in, so an update received into one is folded where it lies (no copy). Called once, by
   * the server; null when the codec has no such memory.
   */
  slotPool?(slots: number): SlotPool | null;
}

export interface Aggregator {
  /**
   * Folds one accepted update in; returns false (and folds nothing) when the update is
   * malformed. `hold`, when given, lets the fold finish after it returns (in a thread):
   * the aggregator calls `hold()` then, and the function it returns once it has read
   * `update`, which must not change until then (UpdateSlot.hold). `result` waits for it.
   */
  fold(update: Buffer, hold?: () => () => void): boolean;
  readonly count: number;
  /** The new global model: the element-wise mean of what was folded. */
  result(version: number): Buffer;
}

/** A failure talking to the server. `kind` becomes a key of errors-by-kind. */
export class TransportError extends Error {
  constructor(
    readonly kind: string,
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

// ---- safe mode (signed requests; the crypto is in src/auth/, the wire names in transport/auth.ts)

/** What a signature covers besides the body hash (see src/auth/sign.ts). */
export interface RequestFacts {
  /** HTTP method, or "RPC" for gRPC. */
  method: string;
  /** HTTP path without the query, or the gRPC method path. */
  path: string;
  /** "" on registration (the id does not exist yet). */
  workerId: string;
  /** The update's round, the model version a pull waits after, 0 on registration. */
  round: number;
  bodySha256: string;
}

/** A worker's signer (safe mode): the auth headers of its requests. */
export interface RequestSigner {
  /** The SHA-256 (hex) of a body (one made as it is sent included), for RequestFacts.bodySha256. */
  readonly bodySha256: (body: UpdateBody) => string;
  /** The auth headers of one request: added to `into` when given, else to a new record; the record is returned (a caller that passed `into` copies them over when another one comes back). */
  headers(facts: RequestFacts, into?: Record<string, string>): Record<string, string>;
  /**
   * The worker registered: `exchangeKey` is the server's X25519 key when it opened a session
   * (the session scheme: later requests carry a MAC), '' when it did not (they stay signed).
   */
  registered(exchangeKey: string): void;
}

/** Safe mode's two ways of authenticating the requests after a registration (docs/safe-mode.md). */
export type AuthScheme = 'session' | 'ed25519';

export type CheckResult = { ok: true; publicKey: string; scheme: AuthScheme; exchangeKey?: string } | { ok: false; reason: string; publicKey: string };

/** The server's check of requests (safe mode): which pass, by which scheme, and why the others are refused. */
export interface RequestChecker {
  /**
   * The SHA-256 of a body that arrives in chunks, to compare with the signed one (hex, either
   * case). `received()` gives the bytes received so far; update() is called after each chunk
   * has joined them.
   */
  bodyDigest(received: () => Buffer): { update(chunk: Buffer): void; matches(claimedHex: string): boolean };
  /** The SHA-256 (hex) of a body held whole (a registration's). */
  bodySha256(body: Buffer): string;
  check(facts: RequestFacts, headers: (name: string) => string | undefined): CheckResult;
  /**
   * A registration succeeded: worker id → the key that registered it. With the worker's
   * exchange key (signed, from check), the key's session is opened and the server's exchange
   * key returned, for the reply; '' otherwise.
   */
  bind(workerId: string, publicKey: string, exchangeKey?: string): string;
}

