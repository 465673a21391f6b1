import { parsePayload, formatPayload } from '../config/payload.js';
import { parseIntFlag, parseNumberFlag, parseSize } from '../config/values.js';
import { UsageError } from '../errors.js';
import { createPayload } from '../payload/index.js';
import { systemClock } from '../runtime/clock.js';
import { sha256Hex } from '../runtime/hash.js';
import { FlServer } from '../sim/flServer.js';
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
  maxUpdateBytes: string;
  events?: boolean;
}

function portInUse(err: unknown, what: string, host: string, port: number): Error {
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

/** `fedsim node --role server`: one round engine behind long-poll HTTP and gRPC. */
export async function runServerNode(flags: ServerFlags): Promise<number> {
  if (flags.workers === undefined) throw new UsageError('--workers W is required for --role server: the number of workers expected in each round');
  const workers = parseIntFlag(flags.workers, '--workers', 1);
  const httpPort = parseIntFlag(flags.httpPort, '--http-port', 0, 65535);
  const grpcPort = parseIntFlag(flags.grpcPort, '--grpc-port', 0, 65535);
  const pollTimeoutMs = parseNumberFlag(flags.pollTimeout, '--poll-timeout', 0.05) * 1000;
  const maxBodyBytes = parseSize(flags.maxUpdateBytes, '--max-update-bytes');
  const spec = parsePayload(flags.payload);
  let minWorkers: number | undefined;
  let roundTimeoutMs: number | undefined;
  if ((flags.minWorkers === undefined) !== (flags.roundTimeout === undefined)) {
    throw new UsageError('--min-workers and --round-timeout go together: a round closes with M updates once S seconds have passed');
  }
  if (flags.minWorkers !== undefined && flags.roundTimeout !== undefined) {
    minWorkers = parseIntFlag(flags.minWorkers, '--min-workers', 1, workers);
    roundTimeoutMs = parseNumberFlag(flags.roundTimeout, '--round-timeout', 0) * 1000;
  }

  const fl = new FlServer(
    { expectedWorkers: workers, minWorkers, roundTimeoutMs, codec: createPayload(spec), clock: systemClock, hash: sha256Hex },
    pollTimeoutMs,
  );
  const status = () => ({ server: fl.report(), workers, payload: formatPayload(spec), maxRssBytes: process.resourceUsage().maxRSS * 1024 });
  const http = new HttpFlServer(fl, { host: flags.host, port: httpPort, maxBodyBytes }, status);
  const grpc = new GrpcFlServer(fl, maxBodyBytes);

  const httpAddr = await http.listen().catch((e: unknown) => {
    throw portInUse(e, '--http-port', flags.host, httpPort);
  });
  let boundGrpc: number;
  try {
    boundGrpc = await grpc.listen(flags.host, grpcPort);
  } catch (e) {
    await http.close();
    throw portInUse(e, '--grpc-port', flags.host, grpcPort);
  }

  fl.onRoundClosed((line) => {
    if (flags.events) emitEvent({ event: 'round', ...line });
    log(`round ${line.round} closed in ${line.durationMs.toFixed(1)} ms with ${line.updates} updates${line.byQuorum ? ' (quorum after deadline)' : ''}`);
  });

  // The one machine-readable line: the chosen ports.
  emitEvent({ event: 'listening', host: flags.host, httpPort: httpAddr.port, grpcPort: boundGrpc, pid: process.pid });
  log(`server: long-poll HTTP on ${flags.host}:${httpAddr.port}, gRPC on ${flags.host}:${boundGrpc}; ${workers} workers per round, payload ${formatPayload(spec)}`);

  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  fl.engine.close();
  await Promise.all([http.close(), grpc.close()]);
  log(`server: stopped after ${fl.rounds.length} rounds`);
  return 0;
}
