import { ed25519, ed25519Fallback } from '../auth/ed25519.js';
import { type RampPlan, expectedInRound } from '../sim/ramp.js';
import { formatPayload, payloadOf, type PayloadSpec } from '../config/payload.js';
import { parseIntFlag, parseNumberFlag, parseSize } from '../config/values.js';
import { UsageError } from '../errors.js';
import { createPayload } from '../payload/index.js';
import { serverChecker } from './safeMode.js';
import { systemClock } from '../runtime/clock.js';
import { sha256Hex } from '../runtime/hash.js';
import { FlServer, type RoundLine } from '../sim/flServer.js';
import { GrpcFlServer } from '../transport/grpcServer.js';
import { HttpFlServer } from '../transport/httpServer.js';
import { emitEvent, log } from './output.js';

export interface ServerFlags {
  workers?: string;
  host: string;
  httpPort: string;
  grpcPort: string;
  minWorkers?: string;
  roundTimeout?: string;
  pollTimeout: string;
  payload: string;
  keys?: string;
  globalPayload?: string;
  updatePayload?: string;
  maxUpdateBytes: string;
  events?: boolean;
}

export interface ServerSettings {
  workers: number;
  host: string;
  httpPort: number;
  grpcPort: number;
  minWorkers?: number;
  roundTimeoutMs?: number;
  pollTimeoutMs: number;
  payload: PayloadSpec;
  maxBodyBytes: number;
  /** Safe mode: the list of admitted public keys (`fedsim keys gen` writes it). */
  keys?: string;
  /** Workers join in steps: round r closes with the workers active in it. */
  ramp?: RampPlan | null;
}

export interface ServerHandle {
  readonly fl: FlServer;
  readonly httpPort: number;
  readonly grpcPort: number;
  stop(): Promise<void>;
}

function bindError(err: unknown, what: string, host: string, port: number): Error {
  const e = err as NodeJS.ErrnoException & { details?: string };
  const text = `${e.code ?? ''} ${e.message ?? ''} ${e.details ?? ''}`;
  if (/EADDRINUSE|address already in use|No address added/i.test(text)) {
    return new UsageError(`${what} ${host}:${port} is already in use: choose another port, or 0 for a free one`);
  }
  if (/EADDRNOTAVAIL|EACCES/i.test(text)) {
    return new UsageError(`${what} ${host}:${port} cannot be bound (${e.code ?? e.message}): check --host and the port`);
  }
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * In-flight update bodies share 32 MiB: two 14 MB models at a time (a second slot lets the
 * server read one upload while the other's sender is busy: a 64-worker mobilenetv2 round
 * 4 % faster for ~10 MB of peak RSS, docs/benchmarks.md "Session 24"), sixteen 1 MiB updates,
 * one update of more than 16 MiB. As many again may be lent to uploads that start beside
 * stalled ones (UpdateSlots).
 */
export function updateSlotsFor(updateBytes: number): number {
  return Math.max(1, Math.min(16, Math.floor((32 * 1024 * 1024) / Math.max(1, updateBytes))));
}

/** Starts one round engine behind long-poll HTTP and gRPC. */
export async function startServer(s: ServerSettings, onRound: (line: RoundLine) => void): Promise<ServerHandle> {
  const codec = createPayload(s.payload);
  const fl = new FlServer(
    { expectedWorkers: s.workers, expectedFor: s.ramp ? (r) => expectedInRound(s.ramp!, r) : undefined, minWorkers: s.minWorkers, roundTimeoutMs: s.roundTimeoutMs, codec, clock: systemClock, hash: sha256Hex },
    s.pollTimeoutMs,
    updateSlotsFor(codec.updateBytes()),
  );
  const status = () => ({ server: fl.report(), workers: s.workers, payload: formatPayload(s.payload), maxRssBytes: process.resourceUsage().maxRSS * 1024 });
  const http = new HttpFlServer(fl, { host: s.host, port: s.httpPort, maxBodyBytes: s.maxBodyBytes }, status);
  const grpc = new GrpcFlServer(fl, s.maxBodyBytes);
  const httpAddr = await http.listen().catch((e: unknown) => {
    throw bindError(e, '--http-port', s.host, s.httpPort);
  });
  let grpcPort: number;
  try {
    grpcPort = await grpc.listen(s.host, s.grpcPort);
  } catch (e) {
    await http.close();
    throw bindError(e, '--grpc-port', s.host, s.grpcPort);
  }
  fl.onRoundClosed((line) => {
    log(`round ${line.round} closed in ${line.durationMs.toFixed(1)} ms with ${line.updates} updates${line.byQuorum ? ' (quorum after deadline)' : ''}`);
    onRound(line);
  });
  if (s.keys) {
    const { checker, keys } = serverChecker(s.keys);
    fl.auth = checker;
    fl.authLog = log;
    log(`server: SAFE MODE: ${keys} worker keys from ${s.keys}; every request must be signed by a listed key (unknown workers are refused); ed25519 by ${ed25519().name}${ed25519Fallback() ? ` (${ed25519Fallback()})` : ''}`);
  } else {
    log('server: safe mode is OFF: any worker is admitted (give --keys LIST to admit only listed keys)');
  }
  log(`server: long-poll HTTP on ${s.host}:${httpAddr.port}, gRPC on ${s.host}:${grpcPort}; ${s.workers} workers per round, payload ${formatPayload(s.payload)}`);
  return {
    fl,
    httpPort: httpAddr.port,
    grpcPort,
    async stop() {
      fl.engine.close();
      await Promise.all([http.close(), grpc.close()]);
    },
  };
}

export function serverSettingsFromFlags(flags: ServerFlags): ServerSettings {
  if (flags.workers === undefined) throw new UsageError('--workers W is required for --role server: the number of workers expected in each round');
  const workers = parseIntFlag(flags.workers, '--workers', 1);
  if ((flags.minWorkers === undefined) !== (flags.roundTimeout === undefined)) {
    throw new UsageError('--min-workers and --round-timeout go together: a round closes with M updates once S seconds have passed');
  }
  return {
    workers,
    host: flags.host,
    httpPort: parseIntFlag(flags.httpPort, '--http-port', 0, 65535),
    grpcPort: parseIntFlag(flags.grpcPort, '--grpc-port', 0, 65535),
    pollTimeoutMs: parseNumberFlag(flags.pollTimeout, '--poll-timeout', 0.05) * 1000,
    maxBodyBytes: parseSize(flags.maxUpdateBytes, '--max-update-bytes'),
    keys: flags.keys,
    payload: payloadOf({ payload: flags.payload, globalPayload: flags.globalPayload ?? null, updatePayload: flags.updatePayload ?? null }),
    minWorkers: flags.minWorkers !== undefined ? parseIntFlag(flags.minWorkers, '--min-workers', 1, workers) : undefined,
    roundTimeoutMs: flags.roundTimeout !== undefined ? parseNumberFlag(flags.roundTimeout, '--round-timeout', 0) * 1000 : undefined,
  };
}

function untilSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
}

/** `fedsim node --role server` on its own: serves until SIGTERM or SIGINT. */
export async function runServerNode(flags: ServerFlags): Promise<number> {
  const settings = serverSettingsFromFlags(flags);
  const server = await startServer(settings, (line) => {
    if (flags.events) emitEvent({ event: 'round', ...line });
  });
  // The one machine-readable line: the chosen ports.
  emitEvent({ event: 'listening', host: settings.host, httpPort: server.httpPort, grpcPort: server.grpcPort, pid: process.pid });
  await untilSignal();
  await server.stop();
  log(`server: stopped after ${server.fl.rounds.length} rounds`);
  return 0;
}
