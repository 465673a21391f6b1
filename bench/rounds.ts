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
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type CaseDef, type CaseResult, LOOPBACK_BYTES, LOOPBACK_PASS_MS, LOOPBACK_PASSES, MiB, ROOT, type Transport, makeTempRoot, mb, measureLoopback, runCase, sec, table, runBench } from './lib.js';

// Rounds 2 to 5 carry every process's warm-up (JIT tiers, heap growth) and run up to twice
// as long as later ones; 10 rounds weigh them as a run of some length would, and every
// round's time is printed below the table.
const CASES: CaseDef[] = [
  { id: '1000', workers: 1000, payload: 'string', rounds: 10 },
  { id: 'bytes', workers: 100, payload: 'bytes:1MiB', rounds: 10 },
  { id: '10000', workers: 10000, payload: 'string', rounds: 3 },
];
const TRANSPORTS: Transport[] = ['http', 'grpc'];

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
  const tmpRoot = makeTempRoot('rounds');

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
  console.log('every round, in seconds (round 1 first):');
  for (const r of results) {
    const lines = r.summary?.roundLines ?? [];
    console.log(`  ${String(r.def.workers).padStart(5)} ${r.def.payload.padEnd(10)} ${r.transport.padEnd(4)}  ${lines.map((l) => (l.durationMs / 1000).toFixed(2)).join(' ')}`);
  }
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

runBench('rounds', main);
