/**
 * `npm run bench -- auth`: what safe mode costs. 1000 workers in 4 nodes, string payload,
 * over http and grpc: seconds per round with safe mode off and on (every request signed by
 * the worker's ed25519 key and verified by the server), in the same run. Target: safe mode
 * costs under 20 %. The loopback reference of the other benchmarks is printed too.
 * A MISSED target does not change the exit code; a failed run does (1).
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { type CaseResult, FEDSIM, type Transport, makeTempRoot, measureLoopback, runCase, table, runBench } from './lib.js';

const WORKERS = 1000;
const ROUNDS = 5;
const TARGET = 0.2;

async function main(): Promise<number> {
  const tmp = makeTempRoot('auth');
  console.log(`fedsim bench auth — ${new Date().toISOString()}`);
  console.log(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown cpu'}), node ${process.version}`);
  const lb = await measureLoopback();
  console.log(`loopback TCP reference: ${lb.mbps.toFixed(0)} MB/s`);
  const keys = path.join(tmp, 'keys');
  const g = spawnSync(process.execPath, [FEDSIM, 'keys', 'gen', '--workers', String(WORKERS), '--out', keys], { encoding: 'utf8' });
  if (g.status !== 0) throw new Error(`fedsim keys gen failed: ${g.stderr}`);
  let failed = false;
  const rows: string[][] = [];
  for (const t of ['http', 'grpc'] as Transport[]) {
    const base = { id: 'auth', workers: WORKERS, payload: 'string', rounds: ROUNDS };
    const off = await runCase({ ...base, label: 'off' }, t, 300_000);
    const on = await runCase({ ...base, label: 'on', extraArgs: ['--keys', keys] }, t, 300_000);
    if (!off.ok || !on.ok) failed = true;
    const cost = off.perRoundMs && on.perRoundMs ? on.perRoundMs / off.perRoundMs - 1 : null;
    const s = (r: CaseResult) => (r.perRoundMs === null ? 'n/a' : `${(r.perRoundMs / 1000).toFixed(3)} s`);
    rows.push([t, s(off), s(on), cost === null ? 'n/a' : `${(cost * 100).toFixed(1)} %`, cost === null ? 'MISSED (no figure)' : cost < TARGET ? 'MET' : 'MISSED']);
  }
  console.log(`\n== ${WORKERS} workers, 4 nodes, string, s/round = mean of rounds 2..${ROUNDS}`);
  console.log(table(['transport', 'safe mode off', 'safe mode on', 'cost', `target < ${TARGET * 100} %`], rows, [false, true, true, true, false]));
  console.log(`\nbench auth: ${failed ? 'a run failed (exit 1)' : 'every run completed (exit 0)'}; a MISSED target alone does not change the exit code`);
  return failed ? 1 : 0;
}

runBench('auth', main);
