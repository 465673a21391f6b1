/**
 * `npm run bench -- mobilenet`: mobilenetv2 both ways (a ~14 MB ONNX model down, a ~14 MB
 * update up, for every worker every round) over http and grpc with 16, 64 and 128 workers:
 * seconds per round, GB/s the server moved, the server's peak RSS, beside raw loopback TCP
 * throughput measured in the same run.
 *
 * Targets: at 64 workers at least half of loopback; server peak RSS flat as workers grow
 * (under 10× the model plus the runtime's baseline). A MISSED target does not change the
 * exit code; a failed run does (1). FEDSIM_BENCH_CASES=16,64,http picks a subset.
 *
 * Each case runs 10 rounds and is judged on rounds 5..10, the steady state: round 1 registers
 * every worker, and rounds 2..4 carry the warm-up of every process (the JIT compiling the hot
 * paths, first touches of the buffers that are reused later); they run up to about 40 % longer
 * than later ones (docs/benchmarks.md, session 27) and are shown in a column of their own.
 * The two transports run one after the other at each size, so drift of the machine weighs on
 * both alike. Loopback is measured before the cases, before each case and after them, and the
 * reference is the median of all its passes: single passes here ranged from 3.0 to 6.8 GB/s
 * within one run and the machine drifts over minutes, so passes spread over the same minutes
 * as the cases say more of them than passes at the ends alone (docs/benchmarks.md, session
 * 28). The median of the passes at the two ends alone is printed beside it.
 */
import os from 'node:os';
import { mobilenetOf } from '../src/payload/mobilenet.js';
import { type CaseResult, type LoopbackPass, type Transport, makeTempRoot, median, measureLoopback, runCase, table, runBench } from './lib.js';

const SIZES = [16, 64, 128];
const ROUNDS = 10;
/** Rounds 1..WARM are warm-up: the figures are rounds WARM+1..ROUNDS. */
const WARM = 4;

function pick(): { sizes: number[]; transports: Transport[] } {
  const raw = (process.env.FEDSIM_BENCH_CASES ?? '').split(',').map((t) => t.trim()).filter(Boolean);
  const sizes = raw.filter((t) => /^\d+$/.test(t)).map(Number);
  const ts = raw.filter((t): t is Transport => t === 'http' || t === 'grpc');
  return { sizes: sizes.length ? sizes : SIZES, transports: ts.length ? ts : ['http', 'grpc'] };
}

/** Bytes the server moved per second over rounds from..to (it counts what it received and sent in each round). */
function rate(r: CaseResult, from = WARM + 1, to = ROUNDS): { gbps: number | null; perRound: number | null } {
  const later = (r.summary?.roundLines ?? []).filter((l) => l.round >= from && l.round <= to);
  const ms = later.reduce((a, l) => a + l.durationMs, 0);
  if (later.length === 0 || ms <= 0) return { gbps: null, perRound: null };
  return { gbps: later.reduce((a, l) => a + l.bytes, 0) / 1e9 / (ms / 1000), perRound: ms / later.length };
}

async function main(): Promise<number> {
  makeTempRoot('mobilenet');
  const { sizes, transports } = pick();
  const model = mobilenetOf(1).bytes.length;
  console.log(`fedsim bench mobilenet — ${new Date().toISOString()}`);
  console.log(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown cpu'}), node ${process.version}; model ${(model / 1e6).toFixed(2)} MB`);
  console.log('\n== loopback TCP (reference, before the cases)');
  const before = await measureLoopback();
  console.log(`   ${before.passes.map((p) => p.mbps.toFixed(0)).join(', ')} MB/s`);
  let failed = false;
  // The runtime's own baseline: the server's peak RSS in the same kind of run with a string payload.
  const base = await runCase({ id: 'baseline', workers: 16, payload: 'string', rounds: ROUNDS }, 'http', 120_000);
  const baseline = base.summary?.resources.serverMaxRssBytes ?? null;
  console.log(`   server baseline (string payload): ${baseline === null ? 'n/a' : `${(baseline / 1e6).toFixed(0)} MB`}`);
  const results: Array<{ t: Transport; w: number; status: string; perRound: number | null; gbps: number | null; warmRound: number | null; serverRss: number | null }> = [];
  const rss: Record<string, Array<[number, number]>> = {};
  const at64: Record<string, number | null> = {};
  const spread: LoopbackPass[] = [];
  for (const w of sizes) {
    for (const t of transports) {
      const near = await measureLoopback();
      spread.push(...near.passes);
      console.log(`\n== loopback TCP (reference, before the next case): ${near.passes.map((p) => p.mbps.toFixed(0)).join(', ')} MB/s`);
      const r = await runCase({ id: `mn${w}`, workers: w, payload: 'mobilenetv2', rounds: ROUNDS }, t, 600_000);
      if (!r.ok) failed = true;
      const { gbps, perRound } = rate(r);
      const warmRound = rate(r, 2, WARM).perRound;
      const each = (r.summary?.roundLines ?? []).map((l) => (l.durationMs / 1000).toFixed(2));
      if (each.length) console.log(`   every round (s): ${each.join(' ')}`);
      const serverRss = r.summary?.resources.serverMaxRssBytes ?? null;
      if (serverRss !== null) (rss[t] ??= []).push([w, serverRss]);
      // A run that failed is judged on nothing, not on the rounds it finished.
      if (w === 64) at64[t] = r.ok ? gbps : null;
      results.push({ t, w, status: r.status, perRound, gbps, warmRound, serverRss });
    }
  }
  console.log('\n== loopback TCP (reference, after the cases)');
  const after = await measureLoopback();
  console.log(`   ${after.passes.map((p) => p.mbps.toFixed(0)).join(', ')} MB/s`);
  const ends = [...before.passes, ...after.passes];
  const all = [...ends, ...spread];
  const lb = { mbps: median(all.map((p) => p.mbps)) };
  const rows: string[][] = [];
  for (const t of transports) {
    for (const { w, status, perRound, gbps, warmRound, serverRss } of results.filter((x) => x.t === t)) {
      rows.push([
        t,
        String(w),
        status,
        warmRound === null ? 'n/a' : `${(warmRound / 1000).toFixed(2)} s`,
        perRound === null ? 'n/a' : `${(perRound / 1000).toFixed(2)} s`,
        gbps === null ? 'n/a' : gbps.toFixed(3),
        gbps === null ? 'n/a' : `${((gbps * 1000) / lb.mbps).toFixed(2)}`,
        serverRss === null ? 'n/a' : `${(serverRss / 1e6).toFixed(0)} MB`,
      ]);
    }
  }
  console.log(`\n== results (rounds ${WARM + 1}..${ROUNDS}, after the warm-up of rounds 1..${WARM}; GB/s = bytes the server received and sent / round time)`);
  console.log(table(['transport', 'workers', 'status', `warm-up s/round (2..${WARM})`, 's/round', 'GB/s', 'x loopback', 'server RSS'], rows, [false, true, false, true, true, true, true, true]));
  console.log(`loopback TCP: ${(lb.mbps / 1000).toFixed(3)} GB/s (the median of ${all.length} passes: before, between and after the cases; of the ${ends.length} before and after them alone: ${(median(ends.map((p) => p.mbps)) / 1000).toFixed(3)} GB/s)`);
  console.log('\n== targets');
  const trows: string[][] = [];
  for (const t of transports) {
    const g = at64[t];
    trows.push([`64 workers >= 1/2 loopback (${(lb.mbps / 2000).toFixed(3)} GB/s)`, t, g == null ? 'n/a' : `${g.toFixed(3)} GB/s`, g == null ? 'MISSED (no figure)' : g * 1000 >= lb.mbps / 2 ? 'MET' : 'MISSED']);
    const pts = rss[t] ?? [];
    const max = Math.max(...pts.map(([, b]) => b));
    const min = Math.min(...pts.map(([, b]) => b));
    const limit = 10 * model + (baseline ?? 0);
    trows.push([
      `server RSS flat, < 10x model + baseline (${(limit / 1e6).toFixed(0)} MB)`,
      t,
      pts.length ? pts.map(([w, b]) => `${w}: ${(b / 1e6).toFixed(0)} MB`).join(', ') : 'n/a',
      pts.length === 0 || baseline === null ? 'MISSED (no figure)' : max < limit && max - min < 2 * model ? 'MET' : 'MISSED',
    ]);
  }
  console.log(table(['target', 'transport', 'measured', 'result'], trows, [false, false, false, false]));
  console.log(`\nbench mobilenet: ${failed ? 'a run failed (exit 1)' : 'every run completed (exit 0)'}; a MISSED target alone does not change the exit code`);
  return failed ? 1 : 0;
}

runBench('mobilenet', main);
