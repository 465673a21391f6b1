/**
 * `npm run bench -- rounds`: how long a round takes through the real CLI, and how close a
 * bytes:1MiB run comes to this machine's raw loopback TCP throughput.
 *
 * 1. Loopback: a `net` receiver in a child process (so sender and receiver are separate
 *    processes, as in a real run) discards what a sender in this process writes in 1 MiB
 *    buffers with backpressure. Bounded in bytes and in time.
 * 2. `node bin/fedsim.js run --headless ...` for each case and transport; the figures come
 *    from the run's summary.json.
 * 3. A table, then the targets with MET/MISSED. A missed target is not an error: the exit
 *    code is 1 only when a run (or the loopback measurement) itself failed.
 *
 * Environment: FEDSIM_BENCH_CASES picks a subset (docs/benchmarks.md);
 * FEDSIM_BENCH_TIMEOUT_S is the per-case limit (default 180); FEDSIM_BENCH_KEEP=1 keeps the temp dir.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

// dist/bench/rounds.js → the package root
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const FEDSIM = path.join(ROOT, 'bin', 'fedsim.js');

const MiB = 1024 * 1024;
const MB = 1e6;
const NODES = 4;
const LOOPBACK_BYTES = 2 * 1024 * MiB; // per pass
const LOOPBACK_PASS_MS = 10_000; // a pass stops writing after this long even if bytes remain
const LOOPBACK_PASSES = 3;
const LOOPBACK_LIMIT_MS = 60_000; // the whole loopback measurement
const BYTES_PAYLOAD = MiB; // bytes:1MiB

type Transport = 'http' | 'grpc';
type CaseId = '1000' | '10000' | 'bytes';

interface CaseDef {
  id: CaseId;
  workers: number;
  payload: string;
  rounds: number;
}

const CASES: CaseDef[] = [
  { id: '1000', workers: 1000, payload: 'string', rounds: 5 },
  { id: 'bytes', workers: 100, payload: 'bytes:1MiB', rounds: 3 },
  { id: '10000', workers: 10000, payload: 'string', rounds: 3 },
];
const TRANSPORTS: Transport[] = ['http', 'grpc'];

/** The part of summary.json this benchmark reads (schema v1, docs/summary.md). */
interface SummaryJson {
  status: 'passed' | 'failed';
  failure: string | null;
  durationMs: number;
  rounds: { requested: number; completed: number };
  roundMs: { p50: number; p95: number; p99: number; max: number; count: number };
  roundLines: Array<{ round: number; durationMs: number; bytes: number; updates: number }>;
  bytes: { sent: number; received: number };
  resources: { serverMaxRssBytes: number | null; workerNodeMaxRssBytes: number | null };
}

interface CaseResult {
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
/** FEDSIM_BENCH_KEEP=1 keeps the temp dir (every run's summary.json and node logs) for a post-mortem. */
const KEEP = Boolean(process.env.FEDSIM_BENCH_KEEP && process.env.FEDSIM_BENCH_KEEP !== '0');

function killGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    // ESRCH: the group is already gone
  }
}

function startChild(args: string[], stdio: StdioOptions): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: ROOT, detached: true, stdio });
  live.add(child);
  child.once('exit', () => {
    // Grandchildren (a CLI's server and worker nodes) must not outlive their parent.
    killGroup(child, 'SIGKILL');
    live.delete(child);
  });
  return child;
}

function cleanupSync(): void {
  for (const c of live) killGroup(c, 'SIGKILL');
  live.clear();
  if (tmpRoot) {
    if (KEEP) process.stderr.write(`bench rounds: FEDSIM_BENCH_KEEP is set: kept ${tmpRoot} (run directories, logs, summary.json)\n`);
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

interface LoopbackPass {
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

async function measureLoopback(): Promise<{ passes: LoopbackPass[]; mbps: number }> {
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
      const port = Number((JSON.parse(first) as { port: number }).port);
      const passes: LoopbackPass[] = [];
      for (let i = 0; i < LOOPBACK_PASSES; i++) passes.push(await loopbackPass(port));
      return passes;
    })();
    const passes = await Promise.race([work, limit]);
    const sorted = passes.map((p) => p.mbps).sort((a, b) => a - b);
    return { passes, mbps: sorted[Math.floor(sorted.length / 2)] };
  } finally {
    clearTimeout(timer);
    child.stdin!.end();
    killGroup(child, 'SIGTERM');
  }
}

// ---------------------------------------------------------------- fedsim run

function cliArgs(def: CaseDef, transport: Transport, out: string): string[] {
  return ['run', '--workers', String(def.workers), '--nodes', String(NODES), '--rounds', String(def.rounds), '--train-ms', '0',
    '--transport', transport, '--payload', def.payload, '--out', out, '--headless'];
}

async function runCase(def: CaseDef, transport: Transport, timeoutMs: number): Promise<CaseResult> {
  const out = path.join(tmpRoot!, `${def.id}-${transport}`);
  const args = cliArgs(def, transport, out);
  console.log(`\n== ${def.workers} workers, ${transport}, payload ${def.payload}, ${def.rounds} rounds`);
  console.log(`   node bin/fedsim.js ${args.map((a) => (a === out ? '<tmpdir>' : a)).join(' ')}`);

  const t0 = performance.now();
  const child = startChild([FEDSIM, ...args], ['ignore', 'ignore', 'pipe']);
  const log = createWriteStream(path.join(tmpRoot!, `${def.id}-${transport}.log`));
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
  if (def.id === 'bytes' && later.length > 0 && laterMs > 0) {
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

const sec = (ms: number | null) => (ms === null ? 'n/a' : `${(ms / 1000).toFixed(3)} s`);
const mb = (bytes: number | null | undefined) => (bytes === null || bytes === undefined ? 'n/a' : `${(bytes / MB).toFixed(0)} MB`);

function table(head: string[], rows: string[][], rightAlign: boolean[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => (rightAlign[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

function parseSelection(raw: string | undefined): { cases: CaseDef[]; transports: Transport[] } {
  if (!raw || !raw.trim()) return { cases: CASES, transports: TRANSPORTS };
  const tokens = raw.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
  const known = new Set<string>([...CASES.map((c) => c.id), ...TRANSPORTS]);
  const unknown = tokens.filter((t) => !known.has(t));
  if (unknown.length) {
    process.stderr.write(`bench rounds: FEDSIM_BENCH_CASES has unknown ${unknown.map((u) => `"${u}"`).join(', ')}: use any of 1000, 10000, bytes, http, grpc (comma-separated)\n`);
    process.exit(2);
  }
  const ids = tokens.filter((t) => CASES.some((c) => c.id === t));
  const ts = tokens.filter((t): t is Transport => (TRANSPORTS as string[]).includes(t));
  return {
    cases: ids.length ? CASES.filter((c) => ids.includes(c.id)) : CASES,
    transports: ts.length ? TRANSPORTS.filter((t) => ts.includes(t)) : TRANSPORTS,
  };
}

async function main(): Promise<number> {
  const { cases, transports } = parseSelection(process.env.FEDSIM_BENCH_CASES);
  const timeoutS = Number(process.env.FEDSIM_BENCH_TIMEOUT_S ?? 180);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) {
    process.stderr.write(`bench rounds: FEDSIM_BENCH_TIMEOUT_S "${process.env.FEDSIM_BENCH_TIMEOUT_S}" is not a positive number of seconds\n`);
    return 2;
  }
  if (!existsSync(path.join(ROOT, 'dist', 'src', 'cli.js'))) {
    process.stderr.write('bench rounds: dist/src/cli.js is missing: build first (npm run bench does)\n');
    return 2;
  }
  tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'fedsim-bench-'));

  console.log(`fedsim bench rounds — ${new Date().toISOString()}`);
  console.log(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown cpu'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, node ${process.version}, ${os.platform()} ${os.release()}`);
  console.log(`cases: ${cases.map((c) => c.id).join(', ')} × ${transports.join(', ')}; per-case limit ${timeoutS} s; temp dir ${tmpRoot}`);

  let failed = false;
  console.log(`\n== loopback TCP: ${LOOPBACK_PASSES} passes of up to ${LOOPBACK_BYTES / MiB / 1024} GiB (or ${LOOPBACK_PASS_MS / 1000} s) in 1 MiB writes to a receiver in a child process`);
  let loopback: number | null = null;
  try {
    const lb = await measureLoopback();
    for (const [i, p] of lb.passes.entries()) {
      console.log(`   pass ${i + 1}: ${(p.bytes / MiB).toFixed(0)} MiB in ${(p.ms / 1000).toFixed(3)} s = ${p.mbps.toFixed(0)} MB/s`);
    }
    loopback = lb.mbps;
    console.log(`   loopback: ${loopback.toFixed(0)} MB/s (median of ${lb.passes.length} passes; 1 MB = 1e6 bytes)`);
  } catch (e) {
    failed = true;
    console.log(`   ERROR: loopback measurement failed: ${(e as Error).message}`);
  }

  const results: CaseResult[] = [];
  for (const def of cases) {
    for (const t of transports) {
      const r = await runCase(def, t, timeoutS * 1000);
      if (!r.ok) failed = true;
      results.push(r);
    }
  }

  console.log('\n== results (s/round = mean of rounds 2..R; round 1 includes registration and connection setup)');
  const rows = results.map((r) => [
    String(r.def.workers),
    r.def.payload,
    r.transport,
    String(r.def.rounds),
    r.status,
    r.summary ? `${r.summary.rounds.completed}/${r.summary.rounds.requested}` : 'n/a',
    sec(r.round1Ms),
    sec(r.perRoundMs),
    r.mbps === null ? '' : `${r.mbps.toFixed(0)}`,
    r.mbps === null || loopback === null ? '' : `${(r.mbps / loopback).toFixed(2)}`,
    mb(r.summary?.resources.serverMaxRssBytes),
    mb(r.summary?.resources.workerNodeMaxRssBytes),
    `${(r.wallMs / 1000).toFixed(1)} s`,
  ]);
  console.log(
    table(
      ['workers', 'payload', 'transport', 'R', 'status', 'rounds', 'round 1', 's/round', 'MB/s', 'x loopback', 'server RSS', 'max node RSS', 'wall'],
      rows,
      [true, false, false, true, false, true, true, true, true, true, true, true, true],
    ),
  );
  console.log(`loopback TCP: ${loopback === null ? 'n/a (failed)' : `${loopback.toFixed(0)} MB/s`}`);
  console.log('MB/s (bytes:1MiB only) = (R-1) × 100 workers × 2 × 1 MiB (update up + model down) / sum of durations of rounds 2..R');
  console.log('RSS = peak resident set size of the server node and of the largest of the 4 worker nodes');

  console.log('\n== targets');
  const targetRows: string[][] = [];
  for (const r of results) {
    let target: string;
    let measured: string;
    let met: boolean | null;
    if (r.def.id === 'bytes') {
      target = `bytes:1MiB >= 1/3 loopback${loopback === null ? '' : ` (>= ${(loopback / 3).toFixed(0)} MB/s)`}`;
      measured = r.mbps === null ? 'n/a' : `${r.mbps.toFixed(0)} MB/s${loopback === null ? '' : ` = ${(r.mbps / loopback).toFixed(2)}x`}`;
      met = r.mbps === null || loopback === null ? null : r.mbps >= loopback / 3;
    } else {
      const limitS = r.def.id === '1000' ? 0.5 : 5;
      target = `${r.def.workers.toLocaleString('en-US')} workers < ${limitS} s/round`;
      measured = r.perRoundMs === null ? 'n/a' : `${(r.perRoundMs / 1000).toFixed(3)} s/round`;
      met = r.perRoundMs === null ? null : r.perRoundMs < limitS * 1000;
    }
    let verdict = met === null ? 'MISSED (no figure)' : met ? 'MET' : 'MISSED';
    if (!r.ok) verdict = met === null ? `MISSED (run ${r.status})` : `${verdict} (run ${r.status}, partial figure)`;
    if (r.def.id === 'bytes' && loopback === null) verdict = 'MISSED (no loopback figure)';
    targetRows.push([target, r.transport, measured, verdict]);
  }
  console.log(table(['target', 'transport', 'measured', 'result'], targetRows, [false, false, true, false]));

  const errors = results.filter((r) => !r.ok);
  if (errors.length) {
    console.log('\n== failed runs');
    for (const r of errors) console.log(`${r.def.workers} workers ${r.def.payload} ${r.transport}: ${r.error}`);
  }
  console.log(`\nbench rounds: ${failed ? 'a run failed (exit 1)' : 'every run completed (exit 0)'}; a MISSED target alone does not change the exit code`);
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    cleanupSync();
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`bench rounds: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    cleanupSync();
    process.exit(1);
  },
);
