import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { BIN, ROOT, runCli, tempDir } from '../helpers/cli.js';
import { requireRoot, requireTool } from '../helpers/privileged.js';

/** `iptables -S` inside namespace `ns`. */
const rules = (ns: string) => spawnSync('ip', ['netns', 'exec', ns, 'iptables', '-w', '-S'], { encoding: 'utf8' }).stdout;
/** `iptables -t nat -S` inside namespace `ns`. */
const natRules = (ns: string) => spawnSync('ip', ['netns', 'exec', ns, 'iptables', '-w', '-t', 'nat', '-S'], { encoding: 'utf8' }).stdout;

async function until(what: string, ok: () => boolean, timeoutMs = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > timeoutMs) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A namespace of the test's own, with loopback up: a run inside it shares nothing with the host. */
function makeNs(t: { after: (fn: () => void) => void }): string {
  // Not fedsim-*: `fedsim netns clean` in another test file must never see it.
  const ns = `fstest-${process.pid.toString(36)}${Math.floor(Math.random() * 1e4)}`;
  assert.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0);
  assert.equal(spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']).status, 0);
  t.after(() => spawnSync('ip', ['netns', 'del', ns]));
  return ns;
}

function scenario(dir: string, extra: string): string {
  const file = path.join(dir, 'scenario.yaml');
  writeFileSync(
    file,
    `name: ipt\nworkers: 12\nnodes: 2\nrounds: 4\ntrainMs: 200..300\nretries: 30\nretryMaxMs: 300\npollTimeout: 5\nrequestTimeout: 20\nfaultBackend: iptables\n${extra}`,
  );
  return file;
}

/** `fedsim run` inside namespace `ns`, in its own process group (so a test can kill all of it). */
function runIn(ns: string, args: string[], env: NodeJS.ProcessEnv): { p: ChildProcess; out: () => string; exit: Promise<number | null> } {
  const p = spawn('ip', ['netns', 'exec', ns, process.execPath, BIN, 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, detached: true });
  let out = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((r) => p.on('close', (c) => r(c)));
  return { p, out: () => out, exit };
}

test('iptables backend under fedsim run --netns: the rule is in the node namespace while the fault is on, gone after heal; verdict recovered', async (t) => {
  if (!requireRoot(t) || !requireTool(t, 'iptables', ['-V'])) return;
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = scenario(dir, 'faults:\n  - id: cut2\n    kind: blackhole\n    onRound: 2\n    duration: 2s\n    target: chunk 2\n');
  const seen: string[] = [];
  let healedSeen = false;
  const running = runCli(['run', '--netns', '--scenario', file, '--out', path.join(dir, 'out')], 120_000, { FEDSIM_STATE_DIR: dir });
  // Watch the second worker node's namespace while the run goes.
  let ns = '';
  const t0 = Date.now();
  while (Date.now() - t0 < 60_000) {
    const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    ns = /^(fedsim-\w+-w2)\b/m.exec(list)?.[1] ?? ns;
    if (ns) {
      const r = rules(ns);
      // Both rules (to and from the server) are in: the fault is on.
      if ((r.match(/cut2#1.*-j DROP/g) ?? []).length >= 2) seen.push(r);
      else if (seen.length > 0 && /-N FEDSIM-/.test(r)) {
        healedSeen = true;
        break;
      }
    }
    await sleep(50);
  }
  const r = await running;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(seen.length > 0, 'the DROP rule never showed in the node namespace');
  assert.match(seen[0], /-A FEDSIM-\w+-o -d 10\.213\.\d+\.2\/32 -p tcp -m tcp --dport \d+ -m comment --comment "fedsim:\w+:cut2#1" -j DROP/);
  assert.match(seen[0], /-A FEDSIM-\w+-i -s 10\.213\.\d+\.2\/32 -p tcp -m tcp --sport \d+ -m comment --comment "fedsim:\w+:cut2#1" -j DROP/);
  assert.ok(healedSeen, 'the rule did not go at heal while the run went on');
  const s = JSON.parse(readFileSync(path.join(dir, 'out', 'summary.json'), 'utf8'));
  assert.equal(s.updates.accepted, 48);
  assert.equal(s.updates.duplicate, 0);
  assert.equal(s.faults.length, 1);
  assert.equal(s.faults[0].backend, 'iptables');
  assert.equal(s.faults[0].affected, 6);
  assert.match(s.faults[0].verdict, /^recovered/);
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('faults-')), [], 'a journal was left');
});

test('iptables backend: SIGTERM during a fault heals it; kill -9 leaves it to fedsim netem clean', async (t) => {
  if (!requireRoot(t) || !requireTool(t, 'iptables', ['-V'])) return;
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A long fault on every worker, so it is on when the signal comes.
  const file = scenario(dir, 'faults:\n  - id: long\n    kind: reset\n    onRound: 2\n    duration: 60s\n    target: all\n');
  const env = { FEDSIM_STATE_DIR: dir };

  // SIGTERM: the run stops its nodes, which heal and remove their chains.
  const ns1 = makeNs(t);
  const a = runIn(ns1, ['--scenario', file, '--out', path.join(dir, 'a')], env);
  await until('the reset rule in the namespace', () => /long#1.*REJECT --reject-with tcp-reset/.test(rules(ns1)), 60_000);
  process.kill(a.p.pid!, 'SIGTERM');
  const codeA = await a.exit;
  assert.notEqual(codeA, 0, 'a run stopped by SIGTERM is not a pass');
  assert.doesNotMatch(rules(ns1), /FEDSIM/, `chains left after SIGTERM:\n${a.out()}`);
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('faults-')), [], 'a journal was left after SIGTERM');

  // kill -9 of the whole run: the chains stay, with a journal that says how to undo them.
  const ns2 = makeNs(t);
  const b = runIn(ns2, ['--scenario', file, '--out', path.join(dir, 'b')], env);
  await until('the reset rule in the namespace', () => /long#1.*REJECT/.test(rules(ns2)), 60_000);
  process.kill(-b.p.pid!, 'SIGKILL');
  await b.exit;
  const journals = readdirSync(dir).filter((n) => n.startsWith('faults-'));
  assert.ok(journals.length > 0, 'no journal after kill -9');
  const pids = journals.map((j) => (JSON.parse(readFileSync(path.join(dir, j), 'utf8')) as { pid: number }).pid);
  await until('the killed nodes to be gone', () => pids.every((p) => !existsSync(`/proc/${p}`) || /\) [ZX] /.test(readFileSync(`/proc/${p}/stat`, 'utf8'))), 10_000);
  assert.match(rules(ns2), /-N FEDSIM-\w+-o/);
  const c = spawnSync('ip', ['netns', 'exec', ns2, process.execPath, BIN, 'netem', 'clean'], { encoding: 'utf8', env: { ...process.env, ...env } });
  assert.equal(c.status, 0, c.stderr);
  assert.match(c.stderr, /removed iptables chains FEDSIM-\w+-o and FEDSIM-\w+-i/);
  assert.doesNotMatch(rules(ns2), /FEDSIM/);
  for (const j of journals) assert.ok(!existsSync(path.join(dir, j)), `journal ${j} still there`);
});

test('iptables on one worker, without --netns: its virtual port is DNATed, a conntrack rule cuts it alone; recovered, nothing left', async (t) => {
  if (!requireRoot(t) || !requireTool(t, 'iptables', ['-V'])) return;
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Every node of the run shares the test's namespace (and its loopback): the virtual ports tell the workers apart.
  const file = scenario(dir, 'faults:\n  - id: one\n    kind: blackhole\n    onRound: 2\n    duration: 2s\n    target: chunk 2 one\n');
  const ns = makeNs(t);
  const run = runIn(ns, ['--scenario', file, '--out', path.join(dir, 'out')], { FEDSIM_STATE_DIR: dir });
  let filter = '';
  let nat = '';
  const t0 = Date.now();
  while (Date.now() - t0 < 60_000) {
    const r = rules(ns);
    // The fault's two rules (each direction) go in with two iptables calls: wait for both.
    if ((r.match(/one#1/g) ?? []).length >= 2) {
      filter = r;
      nat = natRules(ns);
      break;
    }
    await sleep(50);
  }
  const code = await run.exit;
  assert.equal(code, 0, run.out());
  assert.ok(filter, `the per-worker rule never showed in the namespace:\n${run.out()}`);
  // Chunk 2 of 2 with 12 workers: workers 6..11, virtual ports 20006..20011; "one" is worker 6.
  assert.match(filter, /-A FEDSIM-\w+-o -p tcp -m conntrack --ctorigdst 127\.0\.0\.1(\/32)? --ctorigdstport 20006 --ctdir ORIGINAL -m comment --comment "fedsim:\w+:one#1" -j DROP/);
  assert.match(filter, /-A FEDSIM-\w+-i -p tcp -m conntrack --ctorigdst 127\.0\.0\.1(\/32)? --ctorigdstport 20006 --ctdir REPLY -m comment --comment "fedsim:\w+:one#1" -j DROP/);
  assert.match(nat, /-A OUTPUT -m comment --comment "fedsim:\w+" -j FEDSIM-\w+-n/);
  assert.match(nat, /-A FEDSIM-\w+-n -d 127\.0\.0\.1\/32 -p tcp -m tcp --dport 20006:20011 -j DNAT --to-destination 127\.0\.0\.1:\d+/);
  const s = JSON.parse(readFileSync(path.join(dir, 'out', 'summary.json'), 'utf8'));
  assert.equal(s.updates.accepted, 48);
  assert.equal(s.updates.duplicate, 0);
  assert.equal(s.faults.length, 1);
  assert.equal(s.faults[0].backend, 'iptables');
  assert.equal(s.faults[0].affected, 1);
  assert.match(s.faults[0].verdict, /^recovered/);
  assert.doesNotMatch(rules(ns), /FEDSIM/, 'a filter chain was left');
  assert.doesNotMatch(natRules(ns), /FEDSIM/, 'a nat chain was left');
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('faults-')), [], 'a journal was left');
});

test('iptables per worker, live: refuse and blackhole on one virtual port leave the others alone; open connections live on through refuse', async (t) => {
  if (!requireRoot(t) || !requireTool(t, 'iptables', ['-V'])) return;
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ns = makeNs(t);
  const mod = (p: string) => pathToFileURL(path.join(ROOT, 'dist', 'src', 'netem', p)).href;
  const script = path.join(dir, 'live.mjs');
  writeFileSync(
    script,
    `import net from 'node:net';
import { IptablesBackend } from '${mod('iptables.js')}';
import { parseFault } from '${mod('spec.js')}';
const srv = net.createServer((s) => s.on('data', (d) => s.write(d)));
await new Promise((r) => srv.listen(0, '127.0.0.1', r));
const port = srv.address().port;
/** Connects to a port, says hi: 'echo', a socket error code, or 'timeout'. Keeps the socket when asked. */
function hello(p, keep) {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port: p });
    const t = setTimeout(() => { c.destroy(); resolve('timeout'); }, 1000);
    c.on('connect', () => c.write('hi'));
    c.once('data', () => { clearTimeout(t); if (!keep) c.destroy(); resolve(keep ? c : 'echo'); });
    c.on('error', (e) => { clearTimeout(t); resolve(e.code); });
  });
}
function again(c) {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), 1000);
    c.once('data', () => { clearTimeout(t); resolve('echo'); });
    c.write('again');
  });
}
const out = {};
const b = new IptablesBackend({ host: '127.0.0.1', port }, { base: 20000, first: 0, count: 3 });
await b.prepare();
const open = await hello(20001, true);
const refuse = parseFault({ id: 'r', kind: 'refuse', manual: true, target: 'ids 1' }, 0, () => '');
await b.apply(refuse, 'r#1', [1]);
out.refuse = [await hello(20000), await hello(20001), await hello(20002), await again(open)];
await b.heal(refuse, 'r#1', [1]);
out.refuseHealed = await hello(20001);
const hole = parseFault({ id: 'h', kind: 'blackhole', manual: true, target: 'ids 2' }, 0, () => '');
await b.apply(hole, 'h#1', [2]);
out.blackhole = [await hello(20000), await hello(20001), await hello(20002)];
await b.heal(hole, 'h#1', [2]);
out.blackholeHealed = await hello(20002);
open.destroy();
await b.close();
srv.close();
console.log(JSON.stringify(out));
`,
  );
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, script], { encoding: 'utf8', env: { ...process.env, FEDSIM_STATE_DIR: dir }, timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), {
    refuse: ['echo', 'ECONNREFUSED', 'echo', 'echo'],
    refuseHealed: 'echo',
    blackhole: ['echo', 'echo', 'timeout'],
    blackholeHealed: 'echo',
  });
  assert.doesNotMatch(rules(ns), /FEDSIM/);
  assert.doesNotMatch(natRules(ns), /FEDSIM/);
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('faults-')), [], 'a journal was left');
});
