import assert from 'node:assert/strict';
import { rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { BackendSet, chooseBackend, checkBackendRequest } from '../../src/netem/choose.js';
import { recordCommands } from '../../src/netem/exec.js';
import {
  IptablesBackend,
  VIRTUAL_PORT_START,
  natSetupCommands,
  natTeardownCommands,
  portRanges,
  ruleSpecs,
  setupCommands,
  teardownCommands,
  virtualPortOf,
  virtualPorts,
} from '../../src/netem/iptables.js';
import { cleanJournals } from '../../src/netem/journal.js';
import { type FaultSpec, parseFault } from '../../src/netem/spec.js';
import { NetemBackend, checkIfName, netemArgs, tcPlan } from '../../src/netem/tc.js';
import { tempDir } from '../helpers/cli.js';
import { FakeClock } from '../helpers/fakeClock.js';
import { FaultRunner } from '../../src/netem/runner.js';
import type { FaultInstanceReport } from '../../src/sim/faults.js';
import { WorkerNodeStats } from '../../src/sim/workerStats.js';

const fault = (raw: Record<string, unknown>): FaultSpec => parseFault({ manual: true, id: 'f', ...raw }, 0, () => '');
const server = { host: '10.0.0.2', port: 8080 };

test('iptables rules: each kind and direction matches the node-server traffic in the node chains', () => {
  const bh = ruleSpecs(fault({ kind: 'blackhole' }), 'f#1', server, 'ab12cd34');
  assert.deepEqual(bh, [
    ['FEDSIM-ab12cd34-o', '-p', 'tcp', '-d', '10.0.0.2', '--dport', '8080', '-m', 'comment', '--comment', 'fedsim:ab12cd34:f#1', '-j', 'DROP'],
    ['FEDSIM-ab12cd34-i', '-p', 'tcp', '-s', '10.0.0.2', '--sport', '8080', '-m', 'comment', '--comment', 'fedsim:ab12cd34:f#1', '-j', 'DROP'],
  ]);
  const up = ruleSpecs(fault({ kind: 'reset', direction: 'up' }), 'f#1', server, 't');
  assert.equal(up.length, 1);
  assert.deepEqual(up[0].slice(-4), ['-j', 'REJECT', '--reject-with', 'tcp-reset']);
  const down = ruleSpecs(fault({ kind: 'blackhole', direction: 'down' }), 'f#1', server, 't');
  assert.deepEqual(down.map((r) => r[0]), ['FEDSIM-t-i']);
  const refuse = ruleSpecs(fault({ kind: 'refuse' }), 'f#1', server, 't');
  assert.equal(refuse.length, 1);
  assert.ok(refuse[0].includes('--syn'));
  const loss = ruleSpecs(fault({ kind: 'loss', loss: 12.5 }), 'f#1', server, 't');
  assert.equal(loss.length, 2);
  assert.deepEqual(loss[0].slice(7, 13), ['-m', 'statistic', '--mode', 'random', '--probability', '0.1250']);
  assert.throws(() => ruleSpecs(fault({ kind: 'delay', delay: '100ms' }), 'f#1', server, 't'), /cannot carry a delay fault/);
});

test('iptables chains: set up and torn down as exact inverse pairs', () => {
  const up = setupCommands('t');
  const down = teardownCommands('t');
  assert.deepEqual(up.slice(2).map((a) => a.slice(2)), [
    ['-I', 'OUTPUT', '1', '-m', 'comment', '--comment', 'fedsim:t', '-j', 'FEDSIM-t-o'],
    ['-I', 'INPUT', '1', '-m', 'comment', '--comment', 'fedsim:t', '-j', 'FEDSIM-t-i'],
  ]);
  assert.deepEqual(down.slice(0, 2).map((a) => a.slice(2)), [
    ['-D', 'OUTPUT', '-m', 'comment', '--comment', 'fedsim:t', '-j', 'FEDSIM-t-o'],
    ['-D', 'INPUT', '-m', 'comment', '--comment', 'fedsim:t', '-j', 'FEDSIM-t-i'],
  ]);
  assert.deepEqual(down.slice(2).map((a) => a.slice(2, 3)), [['-F'], ['-F'], ['-X'], ['-X']]);
});

test('iptables backend: apply, heal and close run the commands in order (recorded)', async () => {
  const seen: string[] = [];
  const restore = recordCommands((argv) => {
    seen.push(argv.join(' '));
    return undefined;
  });
  try {
    const b = new IptablesBackend(server);
    const f = fault({ kind: 'blackhole', direction: 'up' });
    await b.apply(f, 'f#1');
    await b.heal(f, 'f#1');
    await b.close();
  } finally {
    restore();
  }
  const tag = /FEDSIM-(\w+)-o/.exec(seen[0])![1];
  assert.deepEqual(seen, [
    `iptables -w -N FEDSIM-${tag}-o`,
    `iptables -w -N FEDSIM-${tag}-i`,
    `iptables -w -I OUTPUT 1 -m comment --comment fedsim:${tag} -j FEDSIM-${tag}-o`,
    `iptables -w -I INPUT 1 -m comment --comment fedsim:${tag} -j FEDSIM-${tag}-i`,
    `iptables -w -A FEDSIM-${tag}-o -p tcp -d 10.0.0.2 --dport 8080 -m comment --comment fedsim:${tag}:f#1 -j DROP`,
    `iptables -w -D FEDSIM-${tag}-o -p tcp -d 10.0.0.2 --dport 8080 -m comment --comment fedsim:${tag}:f#1 -j DROP`,
    ...teardownCommands(tag).map((a) => a.join(' ')),
  ]);
});

test('virtual ports: one per worker from 20000 + first, the chunks of a run never overlap, the server port is stepped over', () => {
  assert.equal(VIRTUAL_PORT_START, 20000);
  const a = virtualPorts({ first: 0, count: 6, total: 12, serverPort: 41234 });
  const b = virtualPorts({ first: 6, count: 6, total: 12, serverPort: 41234 });
  assert.deepEqual(a, { base: 20000, first: 0, count: 6 });
  assert.deepEqual(b, { base: 20006, first: 6, count: 6 });
  assert.equal(virtualPortOf(b, 7), 20007);
  assert.throws(() => virtualPortOf(b, 5), /worker 5 is not one of this node's workers 6\.\.11/);
  // A server on a port the range would hold: every node moves the whole range past it.
  assert.deepEqual(virtualPorts({ first: 6, count: 6, total: 12, serverPort: 20003 }), { base: 20010, first: 6, count: 6 });
  assert.throws(
    () => virtualPorts({ first: 45_000, count: 1000, total: 46_000, serverPort: 8080 }),
    /worker 45999 would need port 65999, above 65535: run fewer workers, or carry the single-worker faults with backend proxy/,
  );
  assert.deepEqual(portRanges([20007, 20003, 20004, 20005, 20009, 20004]), ['20003:20005', '20007', '20009']);
});

test('iptables rules per worker: conntrack original destination port and direction, consecutive workers in one rule', () => {
  const ports = [20001, 20002, 20005];
  const bh = ruleSpecs(fault({ kind: 'blackhole' }), 'f#1', server, 't', ports);
  const ct = (range: string, dir: string) => ['-m', 'conntrack', '--ctorigdst', '10.0.0.2', '--ctorigdstport', range, '--ctdir', dir];
  const tag = ['-m', 'comment', '--comment', 'fedsim:t:f#1'];
  assert.deepEqual(bh, [
    ['FEDSIM-t-o', '-p', 'tcp', ...ct('20001:20002', 'ORIGINAL'), ...tag, '-j', 'DROP'],
    ['FEDSIM-t-i', '-p', 'tcp', ...ct('20001:20002', 'REPLY'), ...tag, '-j', 'DROP'],
    ['FEDSIM-t-o', '-p', 'tcp', ...ct('20005', 'ORIGINAL'), ...tag, '-j', 'DROP'],
    ['FEDSIM-t-i', '-p', 'tcp', ...ct('20005', 'REPLY'), ...tag, '-j', 'DROP'],
  ]);
  const refuse = ruleSpecs(fault({ kind: 'refuse' }), 'f#1', server, 't', [20003]);
  assert.deepEqual(refuse, [['FEDSIM-t-o', '-p', 'tcp', '--syn', ...ct('20003', 'ORIGINAL'), ...tag, '-j', 'REJECT', '--reject-with', 'tcp-reset']]);
  const reset = ruleSpecs(fault({ kind: 'reset', direction: 'down' }), 'f#1', server, 't', [20003]);
  assert.deepEqual(reset, [['FEDSIM-t-i', '-p', 'tcp', ...ct('20003', 'REPLY'), ...tag, '-j', 'REJECT', '--reject-with', 'tcp-reset']]);
  const loss = ruleSpecs(fault({ kind: 'loss', loss: 20, direction: 'up' }), 'f#1', server, 't', [20003]);
  assert.deepEqual(loss, [['FEDSIM-t-o', '-p', 'tcp', ...ct('20003', 'ORIGINAL'), '-m', 'statistic', '--mode', 'random', '--probability', '0.2000', ...tag, '-j', 'DROP']]);
  assert.throws(() => ruleSpecs(fault({ kind: 'blackhole' }), 'f#1', server, 't', []), /no worker to match/);
});

test('iptables nat chain: DNAT of the virtual ports to the server port, hooked from nat OUTPUT; torn down in reverse', () => {
  const vp = { base: 20006, first: 6, count: 6 };
  assert.deepEqual(natSetupCommands('t', server, vp), [
    ['iptables', '-w', '-t', 'nat', '-N', 'FEDSIM-t-n'],
    ['iptables', '-w', '-t', 'nat', '-A', 'FEDSIM-t-n', '-p', 'tcp', '-d', '10.0.0.2', '--dport', '20006:20011', '-j', 'DNAT', '--to-destination', '10.0.0.2:8080'],
    ['iptables', '-w', '-t', 'nat', '-I', 'OUTPUT', '1', '-m', 'comment', '--comment', 'fedsim:t', '-j', 'FEDSIM-t-n'],
  ]);
  assert.deepEqual(natSetupCommands('t', server, { base: 20000, first: 0, count: 1 })[1].slice(10, 12), ['--dport', '20000']);
  assert.deepEqual(natTeardownCommands('t'), [
    ['iptables', '-w', '-t', 'nat', '-D', 'OUTPUT', '-m', 'comment', '--comment', 'fedsim:t', '-j', 'FEDSIM-t-n'],
    ['iptables', '-w', '-t', 'nat', '-F', 'FEDSIM-t-n'],
    ['iptables', '-w', '-t', 'nat', '-X', 'FEDSIM-t-n'],
  ]);
});

test('iptables backend with virtual ports: prepare sets up the nat chain, single workers get conntrack rules, the whole node its own, close removes both (recorded)', async () => {
  const dir = tempDir();
  const prev = process.env.FEDSIM_STATE_DIR;
  process.env.FEDSIM_STATE_DIR = dir;
  const seen: string[] = [];
  const restore = recordCommands((argv) => {
    seen.push(argv.join(' '));
    return undefined;
  });
  try {
    const b = new IptablesBackend(server, { base: 20006, first: 6, count: 6 });
    await b.prepare();
    const one = fault({ id: 'one', kind: 'blackhole', direction: 'up', target: 'chunk 2 ids 7,8' });
    const all = fault({ id: 'all', kind: 'refuse', target: 'chunk 2' });
    await b.apply(one, 'one#1', [7, 8]);
    await b.apply(all, 'all#1', [6, 7, 8, 9, 10, 11]);
    await b.heal(one, 'one#1', [7, 8]);
    await assert.rejects(b.apply(one, 'one#2', [3]), /worker 3 is not one of this node's workers 6\.\.11/);
    await b.close();
    const t = b.tag;
    assert.deepEqual(seen, [
      ...natSetupCommands(t, server, { base: 20006, first: 6, count: 6 }).map((a) => a.join(' ')),
      ...setupCommands(t).map((a) => a.join(' ')),
      `iptables -w -A FEDSIM-${t}-o -p tcp -m conntrack --ctorigdst 10.0.0.2 --ctorigdstport 20007:20008 --ctdir ORIGINAL -m comment --comment fedsim:${t}:one#1 -j DROP`,
      `iptables -w -A FEDSIM-${t}-o -p tcp -d 10.0.0.2 --dport 8080 --syn -m comment --comment fedsim:${t}:all#1 -j REJECT --reject-with tcp-reset`,
      `iptables -w -D FEDSIM-${t}-o -p tcp -m conntrack --ctorigdst 10.0.0.2 --ctorigdstport 20007:20008 --ctdir ORIGINAL -m comment --comment fedsim:${t}:one#1 -j DROP`,
      ...teardownCommands(t).map((a) => a.join(' ')),
      ...natTeardownCommands(t).map((a) => a.join(' ')),
    ]);

    // Without virtual ports a single-worker fault cannot be told apart: an error that says so.
    const plain = new IptablesBackend(server);
    await plain.prepare();
    await assert.rejects(plain.apply(one, 'one#1', [7]), /fault one targets single workers, but this node set up no virtual ports/);
    seen.length = 0;
    await plain.close();
    assert.deepEqual(seen, [], 'nothing set up, nothing to tear down');
  } finally {
    restore();
    if (prev === undefined) delete process.env.FEDSIM_STATE_DIR;
    else process.env.FEDSIM_STATE_DIR = prev;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('netem: parameters per kind, egress prio band and ifb ingress, loopback without ifb', () => {
  assert.deepEqual(netemArgs(fault({ kind: 'delay', delay: '200ms', jitter: '20ms' })), ['delay', '200ms', '20ms', 'distribution', 'normal']);
  assert.deepEqual(netemArgs(fault({ kind: 'delay', delay: '50ms' })), ['delay', '50ms']);
  assert.deepEqual(netemArgs(fault({ kind: 'loss', loss: 5 })), ['loss', '5%']);
  assert.deepEqual(netemArgs(fault({ kind: 'bandwidth', rate: '10mbit' })), ['rate', '10000000bit']);
  assert.deepEqual(netemArgs(fault({ kind: 'blackhole' })), ['loss', '100%']);
  assert.throws(() => netemArgs(fault({ kind: 'reset' })), /cannot carry a reset fault/);

  const both = tcPlan(fault({ kind: 'delay', delay: '100ms' }), 'eth0', server, 'ab12cd34');
  const cmds = both.apply.map((a) => a.join(' '));
  assert.equal(cmds[0], 'tc qdisc add dev eth0 root handle fe5: prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1');
  assert.equal(cmds[1], 'tc qdisc add dev eth0 parent fe5:4 handle fe6: netem delay 100ms');
  assert.equal(cmds[2], 'tc filter add dev eth0 parent fe5: protocol ip prio 1 u32 match ip dst 10.0.0.2/32 match ip dport 8080 0xffff flowid fe5:4');
  assert.ok(cmds.includes('ip link add fsifbab12cd type ifb'));
  assert.ok(cmds.includes('tc filter add dev eth0 parent ffff: protocol ip u32 match ip src 10.0.0.2/32 match ip sport 8080 0xffff action mirred egress redirect dev fsifbab12cd'));
  assert.deepEqual(both.undo.map((a) => a.join(' ')), ['tc qdisc del dev eth0 root handle fe5:', 'tc qdisc del dev eth0 handle ffff: ingress', 'ip link del fsifbab12cd']);

  const lo = tcPlan(fault({ kind: 'loss', loss: 10 }), 'lo', { host: '127.0.0.1', port: 9 }, 't');
  assert.ok(!lo.apply.some((a) => a.includes('ifb')), 'loopback needs no ifb');
  assert.equal(lo.apply.filter((a) => a[1] === 'filter').length, 2);
  const down = tcPlan(fault({ kind: 'loss', loss: 10, direction: 'down' }), 'eth0', server, 't');
  assert.ok(!down.apply.some((a) => a.includes('eth0') && a.includes('root')), 'down only: no egress qdisc on eth0');
  assert.throws(() => checkIfName('eth0; reboot'), /not a plain interface name/);
  assert.throws(() => tcPlan(fault({ kind: 'loss', loss: 1 }), 'a'.repeat(16), server, 't'), /not a plain interface name/);
});

test('netem backend: a second netem fault while one is on fails with the reason', async () => {
  const restore = recordCommands(() => undefined);
  try {
    const b = new NetemBackend(server, 'eth0');
    await b.apply(fault({ kind: 'delay', delay: '10ms' }), 'f#1');
    await assert.rejects(b.apply(fault({ kind: 'loss', loss: 3 }), 'g#1'), /netem fault f#1 is still on eth0/);
    await b.close();
  } finally {
    restore();
  }
});

test('backend choice: auto takes the kernel where the node is isolated and the fault takes its whole link', () => {
  const all = { iptables: null, netem: null, isolated: true };
  const noNetem = { ...all, netem: 'this kernel has no netem qdisc' };
  assert.equal(chooseBackend(fault({ kind: 'delay', delay: '1ms', target: 'chunk 2' }), 'auto', all), 'netem');
  assert.equal(chooseBackend(fault({ kind: 'delay', delay: '1ms', target: 'chunk 2' }), 'auto', noNetem), 'proxy');
  assert.equal(chooseBackend(fault({ kind: 'loss', loss: 5 }), 'auto', noNetem), 'iptables');
  assert.equal(chooseBackend(fault({ kind: 'blackhole', target: 'server' }), 'auto', all), 'iptables');
  assert.equal(chooseBackend(fault({ kind: 'blackhole', target: 'chunk 1 one' }), 'auto', all), 'proxy');
  assert.equal(chooseBackend(fault({ kind: 'blackhole' }), 'auto', { ...all, isolated: false }), 'proxy');
  assert.equal(chooseBackend(fault({ kind: 'blackhole' }), 'auto', { ...all, iptables: 'needs root' }), 'proxy');
  assert.equal(chooseBackend(fault({ kind: 'blackhole', backend: 'proxy' }), 'iptables', all), 'proxy');
  assert.throws(() => chooseBackend(fault({ kind: 'delay', delay: '1ms' }), 'netem', noNetem), /asks for the netem backend, but this kernel has no netem qdisc/);
  assert.throws(() => checkBackendRequest(fault({ kind: 'delay', delay: '1ms' }), 'iptables', 'faults[0]'), /iptables backend cannot carry a delay fault/);
  assert.throws(() => checkBackendRequest(fault({ kind: 'delay', delay: '1ms', target: 'ids 1,2' }), 'netem', 'faults[0]'), /netem backend shapes a node's whole link, so its target must be "server", "all" or "chunk N"/);
  // iptables takes single workers through their virtual ports.
  for (const target of ['ids 1,2', 'chunk 2 one', 'fixed:3', 'percent:20']) {
    assert.doesNotThrow(() => checkBackendRequest(fault({ kind: 'blackhole', target }), 'iptables', 'faults[0]'), target);
  }
  assert.doesNotThrow(() => checkBackendRequest(fault({ kind: 'blackhole', target: 'chunk 3' }), 'iptables', 'faults[0]'));
  // Asked for by name, iptables carries a single worker; under auto the proxy does.
  assert.equal(chooseBackend(fault({ kind: 'blackhole', target: 'chunk 1 one' }), 'iptables', all), 'iptables');
  assert.equal(chooseBackend(fault({ kind: 'blackhole', target: 'ids 3', backend: 'iptables' }), 'auto', { ...all, isolated: false }), 'iptables');
});

test('backend set: each fault goes to its carrier, and the report names it', async () => {
  const calls: string[] = [];
  const mk = (name: string) => ({
    name,
    apply: (f: FaultSpec) => void calls.push(`${name} apply ${f.id}`),
    heal: async (f: FaultSpec) => void calls.push(`${name} heal ${f.id}`),
    close: async () => void calls.push(`${name} close`),
  });
  const a = fault({ id: 'a' });
  const b = fault({ id: 'b' });
  const set = new BackendSet(new Map([['a', 'iptables'], ['b', 'proxy']] as const), { iptables: mk('iptables'), proxy: mk('proxy') });
  await set.apply(a, 'a#1', []);
  await set.apply(b, 'b#1', []);
  await set.heal(a, 'a#1', []);
  await set.close();
  assert.equal(set.nameOf(a), 'iptables');
  assert.deepEqual(calls, ['iptables apply a', 'proxy apply b', 'iptables heal a', 'iptables close', 'proxy close']);
});

test('journal clean: a dead run is undone in order, a live one is left alone, a gone namespace needs nothing', async () => {
  const dir = tempDir();
  const prev = process.env.FEDSIM_STATE_DIR;
  process.env.FEDSIM_STATE_DIR = dir;
  const seen: string[] = [];
  const restore = recordCommands((argv) => {
    seen.push(argv.join(' '));
    return argv[2] === 'list' ? { code: 0, stdout: 'other-ns\n', stderr: '' } : undefined;
  });
  try {
    mkdirSync(dir, { recursive: true });
    const dead = 2 ** 22 + 12345; // above pid_max defaults: no such process
    const entry = { what: 'iptables chains X', undo: [['iptables', '-w', '-F', 'X'], ['iptables', '-w', '-X', 'X']] };
    writeFileSync(path.join(dir, 'faults-dead.json'), JSON.stringify({ tag: 'dead', pid: dead, netns: null, startedAt: '', entries: { chains: entry } }));
    writeFileSync(path.join(dir, 'faults-live.json'), JSON.stringify({ tag: 'live', pid: process.pid, netns: null, startedAt: '', entries: { chains: entry } }));
    writeFileSync(path.join(dir, 'faults-nsgone.json'), JSON.stringify({ tag: 'nsgone', pid: dead, netns: 'fedsim-gone', startedAt: '', entries: { chains: entry } }));
    const r = await cleanJournals();
    assert.deepEqual(seen.filter((c) => c.startsWith('iptables')), ['iptables -w -F X', 'iptables -w -X X']);
    assert.ok(r.removed.some((x) => /iptables chains X \(left by process \d+\)/.test(x)));
    assert.ok(r.removed.some((x) => /namespace fedsim-gone is already gone/.test(x)));
    assert.ok(r.skipped.some((x) => x.includes(`process ${process.pid} is still running`)));
    assert.ok(!existsSync(path.join(dir, 'faults-dead.json')));
    assert.ok(!existsSync(path.join(dir, 'faults-nsgone.json')));
    assert.ok(existsSync(path.join(dir, 'faults-live.json')));
  } finally {
    restore();
    if (prev === undefined) delete process.env.FEDSIM_STATE_DIR;
    else process.env.FEDSIM_STATE_DIR = prev;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fault runner: a backend that cannot apply gives verdict error; cut workers show as cut until the heal', async () => {
  const clock = new FakeClock();
  const reports: FaultInstanceReport[] = [];
  const stats = new WorkerNodeStats(2, 10);
  const f = fault({ id: 'x', kind: 'blackhole', duration: '1s', target: 'all' });
  const failing = {
    name: 'iptables',
    apply: () => Promise.reject(new Error('iptables: Permission denied')),
    heal: async () => undefined,
    close: async () => undefined,
  };
  const r = new FaultRunner({
    faults: [f],
    chunk: { n: 1, k: 1, first: 10, count: 2, total: 2 },
    backend: failing,
    clock,
    recoveryTargetMs: 10_000,
    watchdogMs: 5_000,
    onInstance: (x) => reports.push(x),
    onFired: () => undefined,
    log: () => undefined,
    onCut: (w, on, current) => stats.setCut(w, on, current),
  });
  stats.move('idle', 'training', 10);
  r.state(10, 'training');
  stats.move('idle', 'waiting', 11);
  r.state(11, 'waiting');
  r.fire('x', 1);
  assert.equal(stats.states.cut, 2);
  assert.equal(stats.states.training, 0);
  // A cut worker goes on underneath: the counts follow it once the fault heals.
  stats.move('training', 'sending', 10);
  assert.equal(stats.states.cut, 2);
  await new Promise((res) => setImmediate(res));
  clock.advance(1000);
  await new Promise((res) => setImmediate(res));
  assert.equal(stats.states.cut, 0);
  assert.equal(stats.states.sending, 1);
  assert.equal(stats.states.waiting, 1);
  await r.finish();
  assert.equal(reports.length, 1);
  assert.equal(reports[0].verdict, 'error');
  assert.match(reports[0].error ?? '', /apply: iptables: Permission denied/);
  assert.equal(reports[0].backend, 'iptables');
});
