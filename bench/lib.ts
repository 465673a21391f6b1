/** What the benchmarks share: child process groups, the loopback reference, fedsim runs, tables. */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

// dist/bench/lib.js → the package root
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FEDSIM = path.join(ROOT, 'bin', 'fedsim.js');

export const MiB = 1024 * 1024;
export const MB = 1e6;
const NODES = 4;
export const LOOPBACK_BYTES = 2 * 1024 * MiB; // per pass
export const LOOPBACK_PASS_MS = 10_000; // a pass stops writing after this long even if bytes remain
export const LOOPBACK_PASSES = 3;
const LOOPBACK_LIMIT_MS = 60_000; // the whole loopback measurement
const BYTES_PAYLOAD = MiB; // bytes:1MiB

/** The median of `xs` (the mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
}

export type Transport = 'http' | 'grpc';
export type CaseId = string;

export interface CaseDef {
  id: CaseId;
  workers: number;
  payload: string;
  rounds: number;
  /** Extra CLI arguments (placed first), and a label for file names when one id runs twice. */
  extraArgs?: string[];
  label?: string;
}



/** The part of summary.json this benchmark reads (schema v1, docs/summary.md). */
export interface SummaryJson {
  status: 'passed' | 'failed';
  failure: string | null;
  durationMs: number;
  rounds: { requested: number; completed: number };
  roundMs: { p50: number; p95: number; p99: number; max: number; count: number };
  roundLines: Array<{ round: number; durationMs: number; bytes: number; updates: number }>;
  bytes: { sent: number; received: number };
  resources: { serverMaxRssBytes: number | null; workerNodeMaxRssBytes: number | null };
}

export interface CaseResult {
  def: CaseDef;
  transport: Transport;
  ok: boolean;
  status: string; // passed | failed | killed
  error: string | null;
  wallMs: number;
  summary: SummaryJson | null;
  round1Ms: number | null;
  laterRounds: number; // rounds 2..R that completed
  perRoundMs: number | null; // mean of rounds 2..R
  mbps: number | null; // bytes case: payload MB/s in rounds 2..R
  serverCountedMB: number | null; // bytes case: what the server counted in rounds 2..R
}

// ---------------------------------------------------------------- child processes

/** Every child is the leader of its own process group, so it and whatever it starts can be killed together. */
const live = new Set<ChildProcess>();
let tmpRoot: string | null = null;
let benchName = 'bench';

/** Makes the run's temp dir (removed at exit unless FEDSIM_BENCH_KEEP=1). */
export function makeTempRoot(name: string): string {
  benchName = name;
  tmpRoot = mkdtempSync(path.join(os.tmpdir(), `fedsim-bench-${name}-`));
  return tmpRoot;
}
/** FEDSIM_BENCH_KEEP=1 keeps the temp dir (every run's summary.json and node logs) for a post-mortem. */
const KEEP = Boolean(process.env.FEDSIM_BENCH_KEEP && process.env.FEDSIM_BENCH_KEEP !== '0');

export function killGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    // ESRCH: the group is already gone
  }
}

export function startChild(args: string[], stdio: StdioOptions): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: ROOT, detached: true, stdio });
  live.add(child);
  child.once('exit', () => {
    // Grandchildren (a CLI's server and worker nodes) must not outlive their parent.
    killGroup(child, 'SIGKILL');
    live.delete(child);
  });
  return child;
}

export function cleanupSync(): void {
  for (const c of live) killGroup(c, 'SIGKILL');
  live.clear();
  if (tmpRoot) {
    if (KEEP) process.stderr.write(`bench ${benchName}: FEDSIM_BENCH_KEEP is set: kept ${tmpRoot} (run directories, logs, summary.json)\n`);
    else rmSync(tmpRoot, { recursive: true, force: true });
    tmpRoot = null;
  }
}

process.on('exit', cleanupSync);
for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]] as const) {
  process.on(sig, () => {
    process.stderr.write(`\nbench: ${sig}: stopping every child process\n`);
    cleanupSync();
    process.exit(128 + n);
  });
}

// ---------------------------------------------------------------- loopback

const RECEIVER = `
const net = require('node:net');
const srv = net.createServer({ allowHalfOpen: true }, (s) => {
  let n = 0;
  s.on('data', (c) => { n += c.length; });
  s.on('end', () => s.end(String(n)));
  s.on('error', () => {});
});
srv.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: srv.address().port }) + '\\n'));
process.stdin.on('end', () => process.exit(0)); // the parent went away
process.stdin.resume();
`;

export interface LoopbackPass {
  bytes: number;
  ms: number;
  mbps: number;
}

async function loopbackPass(port: number): Promise<LoopbackPass> {
  const sock = net.connect({ host: '127.0.0.1', port });
  sock.on('error', () => undefined); // surfaced through once() below
  await once(sock, 'connect');
  let reply = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => (reply += d));
  const ended = once(sock, 'end');
  ended.catch(() => undefined); // an error while writing is raised by the write loop
  const buf = Buffer.alloc(MiB, 0xa5);
  let sent = 0;
  const t0 = performance.now();
  while (sent < LOOPBACK_BYTES && performance.now() - t0 < LOOPBACK_PASS_MS) {
    sent += buf.length;
    if (!sock.write(buf)) await once(sock, 'drain');
  }
  sock.end();
  await ended; // the receiver answers with its byte count once it has read everything
  const ms = performance.now() - t0;
  sock.destroy();
  if (Number(reply) !== sent) throw new Error(`the receiver counted ${reply || 'nothing'} bytes of ${sent}`);
  return { bytes: sent, ms, mbps: sent / MB / (ms / 1000) };
}

/**
 * Raw TCP throughput to a receiver in a child process: the machine's reference. `via` maps
 * the receiver's port to the port the sender connects to (e.g. a proxy in front of it).
 */
export async function measureLoopback(via?: (port: number) => Promise<number>): Promise<{ passes: LoopbackPass[]; mbps: number }> {
  const child = startChild(['-e', RECEIVER], ['pipe', 'pipe', 'pipe']);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let timer: NodeJS.Timeout | undefined;
  try {
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`loopback measurement exceeded ${LOOPBACK_LIMIT_MS / 1000} s`)), LOOPBACK_LIMIT_MS);
    });
    const work = (async () => {
      const rl = createInterface({ input: child.stdout! });
      const first = await Promise.race([
        once(rl, 'line').then(([l]) => String(l)),
        once(child, 'exit').then(([code]) => {
          throw new Error(`the loopback receiver exited (code ${code}) before listening: ${stderr.trim()}`);
        }),
      ]);
      const receiverPort = Number((JSON.parse(first) as { port: number }).port);
      const port = via ? await via(receiverPort) : receiverPort;
      const passes: LoopbackPass[] = [];
      for (let i = 0; i < LOOPBACK_PASSES; i++) passes.push(await loopbackPass(port));
      return passes;
    })();
    const passes = await Promise.race([work, limit]);
    return { passes, mbps: median(passes.map((p) => p.mbps)) };
  } finally {
    clearTimeout(timer);
    child.stdin!.end();
    killGroup(child, 'SIGTERM');
  }
}

// ---------------------------------------------------------------- fedsim run

function cliArgs(def: CaseDef, transport: Transport, out: string): string[] {
  return ['run', ...(def.extraArgs ?? []), '--workers', String(def.workers), '--nodes', String(NODES), '--rounds', String(def.rounds), '--train-ms', '0',
    '--transport', transport, '--payload', def.payload, '--out', out, '--headless'];
}

export async function runCase(def: CaseDef, transport: Transport, timeoutMs: number): Promise<CaseResult> {
  const out = path.join(tmpRoot!, `${def.label ?? def.id}-${transport}`);
  const args = cliArgs(def, transport, out);
  console.log(`\n== ${def.workers} workers, ${transport}, payload ${def.payload}, ${def.rounds} rounds`);
  console.log(`   node bin/fedsim.js ${args.map((a) => (a === out ? '<tmpdir>' : a)).join(' ')}`);

  const t0 = performance.now();
  const child = startChild([FEDSIM, ...args], ['ignore', 'ignore', 'pipe']);
  const log = createWriteStream(path.join(tmpRoot!, `${def.label ?? def.id}-${transport}.log`));
  const tail: string[] = [];
  const notable: string[] = []; // the CLI's own notes on trouble, shown when the run fails
  let progress = ''; // the CLI's last "… n/R rounds closed; workers: …" line
  createInterface({ input: child.stderr! }).on('line', (line) => {
    log.write(`${line}\n`);
    tail.push(line);
    if (tail.length > 15) tail.shift();
    if (/^round \d/.test(line)) console.log(`   ${line}`);
    else if (/rounds closed; workers:/.test(line)) progress = line;
    else if (/error|lost|failed|missing|ECONN|UNAVAILABLE|EMFILE/i.test(line) && !/^(errors|failure|fedsim|run failed|summary)\b/.test(line) && !/^\S+\s+[\d.]+ m?s\s/.test(line)) {
      notable.push(line.length > 400 ? `${line.slice(0, 400)}…` : line);
      if (notable.length > 8) notable.shift();
    }
  });
  let killed = false;
  let hardKill: NodeJS.Timeout | undefined;
  const timer = setTimeout(() => {
    killed = true;
    console.log(`   ... exceeded ${timeoutMs / 1000} s: sending SIGTERM (the CLI writes what it has to summary.json)`);
    child.kill('SIGTERM');
    hardKill = setTimeout(() => killGroup(child, 'SIGKILL'), 15_000);
  }, timeoutMs);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  clearTimeout(hardKill);
  await new Promise((r) => setImmediate(r)); // let the last stderr lines arrive
  log.end();
  const wallMs = performance.now() - t0;

  const summaryPath = path.join(out, 'summary.json');
  let summary: SummaryJson | null = null;
  let readError: string | null = null;
  if (existsSync(summaryPath)) {
    try {
      summary = JSON.parse(readFileSync(summaryPath, 'utf8')) as SummaryJson;
    } catch (e) {
      readError = `summary.json is not readable: ${(e as Error).message}`;
    }
  } else {
    readError = 'no summary.json was written';
  }

  const ok = !killed && code === 0 && summary?.status === 'passed';
  let error: string | null = null;
  if (!ok) {
    const parts: string[] = [];
    if (killed) parts.push(`killed after exceeding ${timeoutMs / 1000} s`);
    parts.push(`fedsim exited with ${signal ? `signal ${signal}` : `code ${code}`}`);
    if (summary?.failure) parts.push(`failure: ${summary.failure}`);
    if (readError) parts.push(readError);
    error = parts.join('; ');
  }

  const lines = summary?.roundLines ?? [];
  const first = lines.find((l) => l.round === 1);
  const later = lines.filter((l) => l.round > 1);
  const laterMs = later.reduce((a, l) => a + l.durationMs, 0);
  let mbps: number | null = null;
  let serverCountedMB: number | null = null;
  if (def.payload.startsWith('bytes:') && later.length > 0 && laterMs > 0) {
    // Each later round moves every worker's model download (1 MiB) and update upload (1 MiB).
    const moved = later.length * def.workers * 2 * BYTES_PAYLOAD;
    mbps = moved / MB / (laterMs / 1000);
    serverCountedMB = later.reduce((a, l) => a + l.bytes, 0) / MB;
  }
  const result: CaseResult = {
    def,
    transport,
    ok,
    status: ok ? 'passed' : killed ? 'killed' : 'failed',
    error,
    wallMs,
    summary,
    round1Ms: first ? first.durationMs : null,
    laterRounds: later.length,
    perRoundMs: later.length ? laterMs / later.length : null,
    mbps,
    serverCountedMB,
  };
  console.log(
    `   -> ${result.status} in ${(wallMs / 1000).toFixed(1)} s` +
      (summary ? `, ${summary.rounds.completed}/${summary.rounds.requested} rounds` : '') +
      (serverCountedMB !== null ? `, server counted ${serverCountedMB.toFixed(1)} MB in rounds 2..${def.rounds}` : ''),
  );
  if (!ok) {
    console.log(`   ERROR: ${error}`);
    if (progress) console.log(`   last progress line: ${progress}`);
    if (notable.length) {
      console.log('   trouble reported by fedsim during the run:');
      for (const l of notable) console.log(`   | ${l}`);
    }
    if (!summary?.failure) {
      // Without a failure in summary.json, the CLI's last words are the only account.
      console.log('   last lines of fedsim output:');
      for (const l of tail) console.log(`   | ${l}`);
    }
  }
  return result;
}

// ---------------------------------------------------------------- report

export const sec = (ms: number | null) => (ms === null ? 'n/a' : `${(ms / 1000).toFixed(3)} s`);
export const mb = (bytes: number | null | undefined) => (bytes === null || bytes === undefined ? 'n/a' : `${(bytes / MB).toFixed(0)} MB`);

export function table(head: string[], rows: string[][], rightAlign: boolean[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => (rightAlign[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}


/** Runs a benchmark's main: its exit code, every child process group killed, the temp dir removed (or kept). */
export function runBench(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => {
      cleanupSync();
      process.exit(code);
    },
    (err: unknown) => {
      process.stderr.write(`bench ${name}: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      cleanupSync();
      process.exit(1);
    },
  );
}
