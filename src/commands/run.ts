import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { formatPayload, parsePayload } from '../config/payload.js';
import { parseIntFlag, parseNumberFlag, parseRange } from '../config/values.js';
import { RunError, UsageError } from '../errors.js';
import { buildSummary, formatRoundLine, formatSummaryTable, type NodeResult } from '../report/summary.js';
import { fedsimVersion } from '../runtime/self.js';
import type { RoundLine, ServerReport } from '../sim/flServer.js';
import { type Histogram, decodeHistogram, newHistogram, percentiles } from '../sim/stats.js';
import type { WorkerNodeReport } from '../sim/workerStats.js';
import { ChildNode } from './children.js';
import { log } from './output.js';

export interface RunFlags {
  workers: string;
  nodes: string;
  rounds: string;
  transport: string;
  payload: string;
  trainMs: string;
  minWorkers?: string;
  roundTimeout?: string;
  pollTimeout: string;
  retries: string;
  seed: string;
  out?: string;
  headless?: boolean;
}

function timestamp(d: Date): string {
  return d.toISOString().replace(/[:]/g, '').replace(/\..+/, '');
}

/**
 * Per-round lines need the server's round figures and the workers' propagation for the
 * version that round published; a line is printed once every worker holds that version
 * (or when the workers are finished).
 */
class RoundPrinter {
  private pending: RoundLine[] = [];
  private prop = new Map<number, Histogram>();
  errors = 0;

  constructor(private readonly workers: number, private readonly rounds: number) {}

  round(line: RoundLine): void {
    this.pending.push(line);
    this.flush(false);
  }

  propagation(version: number, encoded: string): void {
    let h = this.prop.get(version);
    if (!h) this.prop.set(version, (h = newHistogram()));
    h.add(decodeHistogram(encoded));
    this.flush(false);
  }

  flush(force: boolean): void {
    while (this.pending.length > 0) {
      const line = this.pending[0];
      const h = this.prop.get(line.round);
      if (!force && (!h || h.totalCount < this.workers)) return;
      this.pending.shift();
      log(formatRoundLine(line, this.rounds, h ? percentiles(h).p99 : null, this.errors));
      this.prop.delete(line.round);
    }
  }
}

/** `fedsim run`: a server node and K worker nodes as child processes on loopback. */
export async function runRun(flags: RunFlags): Promise<number> {
  const workers = parseIntFlag(flags.workers, '--workers', 1);
  const nodes = parseIntFlag(flags.nodes, '--nodes', 1, 1024);
  const rounds = parseIntFlag(flags.rounds, '--rounds', 1);
  if (flags.transport !== 'http' && flags.transport !== 'grpc') {
    throw new UsageError(`--transport "${flags.transport}" is not a transport: use http or grpc`);
  }
  const payload = parsePayload(flags.payload);
  parseRange(flags.trainMs, '--train-ms');
  parseNumberFlag(flags.pollTimeout, '--poll-timeout', 0.05);
  parseIntFlag(flags.retries, '--retries', 0, 100);
  if (nodes > workers) throw new UsageError(`--nodes ${nodes} is more than --workers ${workers}: each node needs at least one worker`);

  const started = new Date();
  const outDir = path.resolve(flags.out ?? path.join('fedsim-runs', timestamp(started)));
  try {
    mkdirSync(path.join(outDir, 'logs'), { recursive: true });
  } catch (e) {
    throw new UsageError(`--out ${outDir} cannot be created (${(e as Error).message}): choose a writable directory`);
  }
  const t0 = performance.now();
  log(`fedsim run: ${workers} workers in ${nodes} nodes over ${flags.transport}, payload ${formatPayload(payload)}, ${rounds} rounds → ${outDir}`);

  const printer = new RoundPrinter(workers, rounds);
  let listening: { httpPort: number; grpcPort: number } | null = null;
  let onListening: () => void = () => undefined;
  const serverArgs = ['node', '--role', 'server', '--workers', String(workers), '--http-port', '0', '--grpc-port', '0', '--payload', flags.payload, '--poll-timeout', flags.pollTimeout, '--events'];
  if (flags.minWorkers !== undefined) serverArgs.push('--min-workers', flags.minWorkers);
  if (flags.roundTimeout !== undefined) serverArgs.push('--round-timeout', flags.roundTimeout);
  const server = new ChildNode('server', serverArgs, path.join(outDir, 'logs', 'server.log'), (ev) => {
    if (ev.event === 'listening') {
      listening = { httpPort: Number(ev.httpPort), grpcPort: Number(ev.grpcPort) };
      onListening();
    } else if (ev.event === 'round') {
      printer.round(ev as unknown as RoundLine);
    }
  });

  const children: ChildNode[] = [server];
  const interrupted = new Promise<string>((resolve) => {
    const stop = (sig: string) => resolve(`interrupted by ${sig}`);
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });

  try {
    const ready = await Promise.race([
      new Promise<'ok'>((resolve) => (onListening = () => resolve('ok'))),
      server.exited.then((code) => `the server node exited (code ${code}) before listening:\n${server.lastLines()}`),
      new Promise<string>((resolve) => setTimeout(() => resolve('the server node did not start listening within 15 s'), 15_000).unref()),
      interrupted,
    ]);
    if (ready !== 'ok' || !listening) throw new RunError(String(ready));
    const ports: { httpPort: number; grpcPort: number } = listening;
    const port = flags.transport === 'http' ? ports.httpPort : ports.grpcPort;

    const results: NodeResult[] = [];
    const workerNodes = Array.from({ length: nodes }, (_, i) => {
      const chunk = `${i + 1} of ${nodes}`;
      const result: NodeResult = { chunk, workers: 0, exitCode: null, report: null };
      results.push(result);
      const child = new ChildNode(
        `worker ${chunk}`,
        ['node', '--role', 'worker', '--chunk', chunk, '--workers', String(workers), '--server', `127.0.0.1:${port}`,
          '--transport', flags.transport, '--rounds', String(rounds), '--train-ms', flags.trainMs, '--payload', flags.payload,
          '--retries', flags.retries, '--seed', flags.seed, '--request-timeout', String(Number(flags.pollTimeout) + 30), '--events'],
        path.join(outDir, 'logs', `worker-${i + 1}.log`),
        (ev) => {
          if (ev.event === 'progress') {
            for (const p of ev.propagation as Array<{ version: number; histogram: string }>) printer.propagation(p.version, p.histogram);
          } else if (ev.event === 'final') {
            result.report = ev.report as WorkerNodeReport;
            result.workers = result.report.workers;
            printer.errors += Object.values(result.report.errors).reduce((a, b) => a + b, 0);
          }
        },
      );
      children.push(child);
      return child.exited.then((code) => (result.exitCode = code));
    });

    const outcome = await Promise.race([Promise.all(workerNodes).then(() => 'done'), interrupted]);
    printer.flush(true);

    let serverReport: ServerReport | null = null;
    let serverRss: number | null = null;
    try {
      const res = await fetch(`http://127.0.0.1:${ports.httpPort}/v1/status`, { signal: AbortSignal.timeout(5000) });
      const status = (await res.json()) as { server: ServerReport; maxRssBytes: number };
      serverReport = status.server;
      serverRss = status.maxRssBytes;
    } catch (e) {
      log(`fedsim run: could not read the server's figures: ${(e as Error).message}`);
    }
    await Promise.all(children.map((c) => c.stop()));

    const failures: string[] = [];
    if (outcome !== 'done') failures.push(outcome);
    for (const [i, r] of results.entries()) {
      if (r.exitCode !== 0) failures.push(`worker node ${r.chunk} exited with code ${r.exitCode}: ${workerNodes.length && children[i + 1].lastLines(1)}`);
    }
    const completed = serverReport?.roundsCompleted ?? 0;
    if (failures.length === 0 && completed < rounds) failures.push(`${completed} of ${rounds} rounds completed`);

    const summary = buildSummary({
      fedsimVersion: fedsimVersion(),
      startedAt: started.toISOString(),
      durationMs: performance.now() - t0,
      transport: flags.transport,
      payload: formatPayload(payload),
      workers,
      nodes: results,
      roundsRequested: rounds,
      server: serverReport,
      serverMaxRssBytes: serverRss,
      failure: failures.length ? failures.join('; ') : null,
    });
    writeFileSync(path.join(outDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    log('');
    log(formatSummaryTable(summary));
    log(`summary: ${path.join(outDir, 'summary.json')}  logs: ${path.join(outDir, 'logs')}`);
    if (failures.length) throw new RunError(failures.join('; '));
    return 0;
  } finally {
    await Promise.all(children.map((c) => c.stop()));
  }
}
