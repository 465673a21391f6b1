import net from 'node:net';
import { chunkRange, formatChunk, parseChunk } from '../config/chunk.js';
import { parsePayload } from '../config/payload.js';
import { parseHostPort, parseIntFlag, parseNumberFlag, parseRange } from '../config/values.js';
import { RunError, UsageError } from '../errors.js';
import { createPayload } from '../payload/index.js';
import { seededRandom } from '../payload/random.js';
import { systemClock } from '../runtime/clock.js';
import { sha256Hex } from '../runtime/hash.js';
import type { WorkerTransport } from '../sim/ports.js';
import { type RetryPolicy } from '../sim/retry.js';
import { runWorker } from '../sim/worker.js';
import { WorkerNodeStats } from '../sim/workerStats.js';
import { sumCounters } from '../sim/stats.js';
import { GrpcWorkerTransport } from '../transport/grpcClient.js';
import { HttpWorkerTransport } from '../transport/httpClient.js';
import { emitEvent, log } from './output.js';

export interface WorkerFlags {
  chunk?: string;
  workers?: string;
  server?: string;
  transport: string;
  rounds: string;
  trainMs: string;
  payload: string;
  retries: string;
  retryBaseMs: string;
  retryMaxMs: string;
  requestTimeout: string;
  seed: string;
  events?: boolean;
}

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

/** `fedsim node --role worker`: the workers of one chunk, one async state machine each. */
export async function runWorkerNode(flags: WorkerFlags): Promise<number> {
  if (flags.chunk === undefined) throw new UsageError('--chunk "n of k" is required for --role worker');
  if (flags.workers === undefined) throw new UsageError('--workers W is required for --role worker: the total number of workers across all chunks');
  if (flags.server === undefined) throw new UsageError('--server HOST:PORT is required for --role worker: the server port of the chosen --transport');
  const chunk = parseChunk(flags.chunk);
  const total = parseIntFlag(flags.workers, '--workers', 1);
  const server = parseHostPort(flags.server, '--server');
  if (flags.transport !== 'http' && flags.transport !== 'grpc') {
    throw new UsageError(`--transport "${flags.transport}" is not a transport: use http or grpc`);
  }
  const rounds = parseIntFlag(flags.rounds, '--rounds', 1);
  const trainMs = parseRange(flags.trainMs, '--train-ms');
  const spec = parsePayload(flags.payload);
  const retry: RetryPolicy = {
    retries: parseIntFlag(flags.retries, '--retries', 0, 100),
    baseMs: parseNumberFlag(flags.retryBaseMs, '--retry-base-ms', 1),
    maxMs: parseNumberFlag(flags.retryMaxMs, '--retry-max-ms', 1),
  };
  const requestTimeoutMs = parseNumberFlag(flags.requestTimeout, '--request-timeout', 0.1) * 1000;
  const seed = parseIntFlag(flags.seed, '--seed', 0);
  const { first, count } = chunkRange(chunk, total);
  if (count === 0) {
    log(`worker node ${formatChunk(chunk)}: no workers in this chunk (${total} workers over ${chunk.k} chunks)`);
    if (flags.events) emitEvent({ event: 'final', report: new WorkerNodeStats(0).report() });
    return 0;
  }

  await preflight(server.host, server.port, retry);

  const stats = new WorkerNodeStats(count);
  const codec = createPayload(spec);
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  log(`worker node ${formatChunk(chunk)}: workers ${first}..${first + count - 1} over ${flags.transport} to ${server.host}:${server.port}, ${rounds} rounds`);

  const flush = () => {
    if (flags.events) {
      emitEvent({
        event: 'progress',
        states: stats.states,
        roundsDone: stats.roundsDone,
        errors: sumCounters(stats.errors),
        propagation: stats.drainPropagation(),
      });
    }
  };
  const ticker = setInterval(flush, 200);

  const transports: WorkerTransport[] = [];
  const results = await Promise.allSettled(
    Array.from({ length: count }, (_, i) => {
      const index = first + i;
      const opts = { host: server.host, port: server.port, requestTimeoutMs };
      const transport = flags.transport === 'http' ? new HttpWorkerTransport(opts, stats) : new GrpcWorkerTransport(opts, stats);
      transports.push(transport);
      return runWorker({
        index,
        rounds,
        transport,
        codec,
        clock: systemClock,
        trainMs,
        retry,
        random: seededRandom(seed * 1_000_003 + index),
        stats,
        hash: sha256Hex,
        signal: abort.signal,
      });
    }),
  );
  clearInterval(ticker);
  flush();
  for (const t of transports) t.close();
  process.off('SIGTERM', stop);
  process.off('SIGINT', stop);

  const failed = results.filter((r) => r.status === 'rejected').length;
  if (flags.events) emitEvent({ event: 'final', report: { ...stats.report(), maxRssBytes: process.resourceUsage().maxRSS * 1024 } });
  const errors = sumCounters(stats.errors);
  if (failed > 0) {
    const why = abort.signal.aborted ? 'stopped by a signal' : (stats.firstError ?? 'unknown error');
    throw new RunError(`worker node ${formatChunk(chunk)}: ${failed} of ${count} workers failed; first error: ${why}`);
  }
  log(`worker node ${formatChunk(chunk)}: ${count} workers finished ${rounds} rounds (${stats.retries} retries, ${errors} errors)`);
  return 0;
}
