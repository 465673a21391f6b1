import type { OpenConnection } from '../runtime/readBuffer.js';
import type { ProxyRoute } from '../netem/proxy/backend.js';
import { type RampPlan, joinRound } from '../sim/ramp.js';
import { setMaxListeners } from 'node:events';
import net from 'node:net';
import { type Chunk, chunkRange, formatChunk, parseChunk } from '../config/chunk.js';
import { type PayloadSpec, parseTrain, payloadOf } from '../config/payload.js';
import { parseHostPort, parseIntFlag, parseNumberFlag, parseRange } from '../config/values.js';
import { RunError, UsageError } from '../errors.js';
import { createPayload } from '../payload/index.js';
import { OnnxNodeRunner } from '../payload/mobilenet/runner.js';
import { parseAuthScheme, workerSigners } from './safeMode.js';
import { seededRandom } from '../payload/random.js';
import { systemClock } from '../runtime/clock.js';
import type { AuthScheme, PulledModel, WorkerTransport } from '../sim/ports.js';
import { type RetryPolicy, limiter } from '../sim/retry.js';
import { sumCounters } from '../sim/stats.js';
import { type WorkerObserver, runWorker } from '../sim/worker.js';
import { WorkerNodeStats, type WorkerNodeReport } from '../sim/workerStats.js';
import type { WorkerSnapshotIn } from '../sim/runStore.js';
import { GrpcWorkerTransport } from '../transport/grpcClient.js';
import { HttpWorkerTransport } from '../transport/httpClient.js';
import { ModelVersions, bodyHasher } from './modelVersions.js';
import { emitEvent, log } from './output.js';

export interface WorkerFlags {
  chunk?: string;
  workers?: string;
  server?: string;
  transport: string;
  rounds: string;
  trainMs: string;
  payload: string;
  keys?: string;
  authScheme?: string;
  globalPayload?: string;
  updatePayload?: string;
  retries: string;
  retryBaseMs: string;
  retryMaxMs: string;
  requestTimeout: string;
  keepalive: string;
  train?: string;
  onnxThreads?: string;
  validateModel?: boolean;
  keepaliveTimeout: string;
  seed: string;
  events?: boolean;
}

/** Workers of one node that connect and register at the same time. */
const REGISTER_CONCURRENCY = 128;

export interface WorkerSettings {
  chunk: Chunk;
  workers: number;
  server: { host: string; port: number };
  transport: 'http' | 'grpc';
  rounds: number;
  trainMs: { min: number; max: number };
  payload: PayloadSpec;
  retry: RetryPolicy;
  requestTimeoutMs: number;
  /** Keepalive of worker connections (docs/scenario.md: keepalive, keepaliveTimeout). */
  keepaliveMs: number;
  keepaliveTimeoutMs: number;
  /** Safe mode: the directory of worker keys (`fedsim keys gen`); each worker signs with its own. */
  keys?: string;
  /** Safe mode: how requests after the registration are authenticated (default session). */
  authScheme?: AuthScheme;
  /** onnxruntime: forward passes per training phase (0: none), threads, and whether received models are loaded. */
  onnx?: { trainSteps: number; threads: number; validate: boolean };
  seed: number;
  /**
   * Stop the chunk at the first failed worker: without a quorum the server waits for every
   * worker, so one that gave up means no round can close again.
   */
  failFast: boolean;
  /** Where worker `index` connects, when not straight to the server (the fault proxy). */
  serverFor?: (index: number) => { host: string; port: number } | undefined;
  /** How worker `index` reaches its fault proxy, when it has one (before serverFor). */
  proxyFor?: (index: number) => ProxyRoute | undefined;
  observer?: WorkerObserver;
  /** Workers join in steps (the scenario's ramp): each worker's first round comes from the plan. */
  ramp?: RampPlan | null;
}

/** What a worker node sends up every flush: counts, not events (the store's input type). */
export type WorkerSnapshot = WorkerSnapshotIn;

/** Tries a TCP connect with the retry policy, so an unreachable server is one clear error. */
async function preflight(host: string, port: number, policy: RetryPolicy): Promise<void> {
  const started = Date.now();
  let last = '';
  for (let attempt = 0; attempt <= policy.retries; attempt++) {
    const err = await new Promise<Error | null>((resolve) => {
      const s = net.connect({ host, port });
      s.setTimeout(2000, () => s.destroy(new Error('no answer within 2 s')));
      s.once('connect', () => {
        s.destroy();
        resolve(null);
      });
      s.once('error', resolve);
    });
    if (!err) return;
    last = (err as NodeJS.ErrnoException).code ?? err.message;
    if ((err as NodeJS.ErrnoException).code === 'ENOTFOUND') break;
    if (attempt < policy.retries) await systemClock.sleep(Math.min(policy.maxMs, policy.baseMs * 2 ** attempt));
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  throw new RunError(
    `cannot reach the server at ${host}:${port} (${last}) after ${policy.retries + 1} attempts over ${secs} s: ` +
      'start `fedsim node --role server` there, or fix --server',
  );
}

export interface ChunkHandle {
  readonly first: number;
  readonly count: number;
  readonly stats: WorkerNodeStats;
  snapshot(): WorkerSnapshot;
  /** Runs every worker of the chunk to the end; rejects with a RunError when any failed. */
  run(): Promise<WorkerNodeReport>;
  stop(): void;
}

export { bodyHasher } from './modelVersions.js';

/** A worker's transport options for its route to its fault proxy. */
function routeOptions(route: ProxyRoute | undefined): { connect?: OpenConnection } {
  return route ? { connect: route.connect } : {};
}

/** Checks the server is reachable and builds the chunk's workers (not started yet). */
export async function prepareChunk(s: WorkerSettings): Promise<ChunkHandle> {
  const { first, count } = chunkRange(s.chunk, s.workers);
  const stats = new WorkerNodeStats(count);
  const abort = new AbortController();
  // Every worker of the chunk listens to this one signal.
  setMaxListeners(0, abort.signal);
  const name = formatChunk(s.chunk);
  if (count > 0) await preflight(s.server.host, s.server.port, s.retry);
  const report = () => ({ ...stats.report(), maxRssBytes: process.resourceUsage().maxRSS * 1024 });
  return {
    first,
    count,
    stats,
    snapshot: () => ({
      chunk: name,
      workers: count,
      states: { ...stats.states },
      roundsDone: stats.roundsDone,
      errors: sumCounters(stats.errors),
      retries: stats.retries,
      messages: sumCounters(stats.messagesSent) + sumCounters(stats.messagesReceived),
      bytes: sumCounters(stats.bytesSent) + sumCounters(stats.bytesReceived),
      propagation: stats.drainPropagation(),
    }),
    stop: () => abort.abort(),
    async run() {
      if (count === 0) {
        log(`worker node ${name}: no workers in this chunk (${s.workers} workers over ${s.chunk.k} chunks)`);
        return report();
      }
      log(`worker node ${name}: workers ${first}..${first + count - 1} over ${s.transport} to ${s.server.host}:${s.server.port}, ${s.rounds} rounds`);
      const codec = createPayload(s.payload);
      const admit = limiter(REGISTER_CONCURRENCY);
      const signers = s.keys ? workerSigners(s.keys, Array.from({ length: count }, (_, i) => first + i), s.authScheme) : null;
      if (signers) log(`worker node ${name}: safe mode: ${signers.size} of ${count} workers have a key in ${s.keys}${signers.size < count ? ' (the others send unsigned requests, which a safe-mode server refuses)' : ''}`);
      const onnx = s.onnx && (s.onnx.trainSteps > 0 || s.onnx.validate) ? new OnnxNodeRunner(s.onnx.threads) : null;
      const steps = s.onnx?.trainSteps ?? 0;
      const train = onnx && steps > 0 ? (m: PulledModel) => onnx.train(m.body, m.sha256, steps) : undefined;
      const validate = onnx && s.onnx?.validate ? (m: PulledModel) => onnx.validate(m.body, m.sha256) : undefined;
      const hash = bodyHasher();
      // One copy of each model version per node (the last few), however many workers hold it;
      // with onnxruntime, whose sessions are made from a version's bytes, buffers are not recycled.
      const versions = new ModelVersions({ recycle: onnx === null, forget: hash.forget });
      const heldModel = (sha: string, bytes: number) => versions.reference(sha, bytes);
      const transports: WorkerTransport[] = [];
      const results = await Promise.allSettled(
        Array.from({ length: count }, (_, i) => {
          const index = first + i;
          const join = s.ramp ? joinRound(s.ramp, s.chunk, i) : 1;
          const to = s.serverFor?.(index) ?? s.server;
          const opts = { host: to.host, port: to.port, requestTimeoutMs: s.requestTimeoutMs, keepaliveMs: s.keepaliveMs, keepaliveTimeoutMs: s.keepaliveTimeoutMs, signal: abort.signal, signer: signers?.get(index), heldModel, ...routeOptions(s.proxyFor?.(index)) };
          const transport = s.transport === 'http' ? new HttpWorkerTransport(opts, stats) : new GrpcWorkerTransport(opts, stats);
          transports.push(transport);
          return runWorker({
            index,
            rounds: s.rounds - join + 1,
            joinRound: join,
            transport,
            codec,
            clock: systemClock,
            trainMs: s.trainMs,
            retry: s.retry,
            random: seededRandom(s.seed * 1_000_003 + index),
            stats,
            hash,
            signal: abort.signal,
            admit,
            train,
            validate,
            intern: (m) => versions.hold(m),
            release: (m) => versions.release(m),
            observer: s.observer,
          }).catch((e: unknown) => {
            if (s.failFast && !abort.signal.aborted) {
              log(`worker node ${name}: worker ${index} failed (${(e as Error).message}); without a quorum no round can close: stopping the chunk`);
              abort.abort();
            }
            throw e;
          });
        }),
      );
      for (const t of transports) t.close();
      await onnx?.close();
      const failed = results.filter((r) => r.status === 'rejected').length;
      if (failed > 0) {
        const why = stats.firstError ?? (abort.signal.aborted ? 'stopped' : 'unknown error');
        throw Object.assign(new RunError(`worker node ${name}: ${failed} of ${count} workers failed; first error: ${why}`), { report: report() });
      }
      log(`worker node ${name}: ${count} workers finished ${s.rounds} rounds (${stats.retries} retries, ${sumCounters(stats.errors)} errors)`);
      return report();
    },
  };
}

function onnxFromFlags(flags: WorkerFlags): WorkerSettings['onnx'] {
  return { trainSteps: parseTrain(flags.train ?? 'sleep', '--train'), threads: parseIntFlag(flags.onnxThreads ?? '1', '--onnx-threads', 1, 64), validate: flags.validateModel === true };
}

export function workerSettingsFromFlags(flags: WorkerFlags): WorkerSettings {
  if (flags.chunk === undefined) throw new UsageError('--chunk "n of k" is required for --role worker');
  if (flags.workers === undefined) throw new UsageError('--workers W is required for --role worker: the total number of workers across all chunks');
  if (flags.server === undefined) throw new UsageError('--server HOST:PORT is required for --role worker: the server port of the chosen --transport');
  const chunk = parseChunk(flags.chunk);
  const workers = parseIntFlag(flags.workers, '--workers', 1);
  const server = parseHostPort(flags.server, '--server');
  if (flags.transport !== 'http' && flags.transport !== 'grpc') {
    throw new UsageError(`--transport "${flags.transport}" is not a transport: use http or grpc`);
  }
  return {
    chunk,
    workers,
    server,
    transport: flags.transport,
    rounds: parseIntFlag(flags.rounds, '--rounds', 1),
    trainMs: parseRange(flags.trainMs, '--train-ms'),
    payload: payloadOf({ payload: flags.payload, globalPayload: flags.globalPayload ?? null, updatePayload: flags.updatePayload ?? null }),
    retry: {
      retries: parseIntFlag(flags.retries, '--retries', 0, 100),
      baseMs: parseNumberFlag(flags.retryBaseMs, '--retry-base-ms', 1),
      maxMs: parseNumberFlag(flags.retryMaxMs, '--retry-max-ms', 1),
    },
    requestTimeoutMs: parseNumberFlag(flags.requestTimeout, '--request-timeout', 0.1) * 1000,
    keepaliveMs: parseNumberFlag(flags.keepalive, '--keepalive', 0.1) * 1000,
    keepaliveTimeoutMs: parseNumberFlag(flags.keepaliveTimeout, '--keepalive-timeout', 0.1) * 1000,
    onnx: onnxFromFlags(flags),
    keys: flags.keys,
    authScheme: parseAuthScheme(flags.authScheme ?? 'session'),
    seed: parseIntFlag(flags.seed, '--seed', 0),
    failFast: true,
  };
}

/** `fedsim node --role worker` on its own: the workers of one chunk against --server. */
export async function runWorkerNode(flags: WorkerFlags): Promise<number> {
  const settings = workerSettingsFromFlags(flags);
  const chunk = await prepareChunk(settings);
  const stop = () => chunk.stop();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  const ticker = flags.events ? setInterval(() => emitEvent({ event: 'progress', ...chunk.snapshot() }), 200) : null;
  const final = (report: WorkerNodeReport | undefined) => {
    if (ticker) clearInterval(ticker);
    if (!flags.events) return;
    emitEvent({ event: 'progress', ...chunk.snapshot() });
    if (report) emitEvent({ event: 'final', report });
  };
  try {
    final(await chunk.run());
    return 0;
  } catch (e) {
    final((e as { report?: WorkerNodeReport }).report);
    throw e;
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  }
}
