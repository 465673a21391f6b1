import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { BIN, runCli, tempDir } from '../helpers/cli.js';

interface Fault {
  id: string;
  kind: string;
  verdict: string;
  affected: number;
  backend: string;
  nextRoundAfterHealMs: number | null;
}

async function run(args: string[]): Promise<{ code: number | null; stderr: string; s: Record<string, any> }> {
  const out = tempDir();
  try {
    const r = await runCli(['run', '--out', out, '--retries', '20', '--retry-max-ms', '500', ...args], 120_000);
    const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    return { code: r.code, stderr: r.stderr, s };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const W = 12;
const R = 3;
const base = ['--workers', String(W), '--nodes', '2', '--rounds', String(R), '--train-ms', '30..60'];

for (const transport of ['http', 'grpc']) {
  describe(`the four classic experiments over ${transport} (proxy backend)`, () => {
    for (const phase of ['training', 'sending', 'waiting', 'receiving']) {
      test(`a worker cut while ${phase} comes back: recovered, every update counted once`, async () => {
        const { code, stderr, s } = await run([...base, '--transport', transport, '--cut-on-phase', phase, '--cut-for', '1s', '--cut-target', 'chunk 2 one']);
        assert.equal(code, 0, stderr);
        assert.equal(s.updates.accepted, W * R);
        assert.equal(s.updates.duplicate, 0);
        assert.equal(s.faults.length, 1, stderr);
        const f: Fault = s.faults[0];
        assert.equal(f.kind, 'blackhole');
        assert.equal(f.backend, 'proxy');
        assert.equal(f.affected, 1);
        assert.equal(f.verdict, 'recovered', JSON.stringify(f));
        assert.equal(typeof f.nextRoundAfterHealMs, 'number');
      });
    }
  });

  describe(`every fault kind over ${transport}`, () => {
    const kinds: Array<[string, string[]]> = [
      ['reset', []],
      ['refuse', []],
      ['delay', ['--cut-delay', '100ms']],
      ['loss', ['--cut-loss', '30']],
      ['bandwidth', ['--cut-rate', '1mbit']],
    ];
    for (const [kind, extra] of kinds) {
      test(`${kind} on round 2 for chunk 1: the run completes and no update is aggregated twice`, async () => {
        const { code, stderr, s } = await run([
          '--workers', String(W), '--nodes', '2', '--rounds', String(R), '--train-ms', '150..250', '--transport', transport,
          '--cut-kind', kind, '--cut-on-round', '2', '--cut-for', '0.5s', '--cut-target', 'chunk 1', ...extra,
        ]);
        assert.equal(code, 0, stderr);
        assert.equal(s.updates.accepted, W * R, 'each update aggregated exactly once');
        assert.equal(s.rounds.completed, R);
        assert.equal(s.faults.length, 1, stderr);
        assert.equal(s.faults[0].kind, kind);
        assert.equal(s.faults[0].affected, W / 2);
        assert.match(s.faults[0].verdict, /^recovered/);
      });
    }
  });
}

test('a worker that gives up during the cut: stuck', async () => {
  const { code, s } = await run([
    ...base, '--retries', '0', '--request-timeout', '1', '--poll-timeout', '0.5', '--fault-watchdog', '1',
    '--cut-on-phase', 'waiting', '--cut-for', '3s', '--cut-target', 'chunk 1 one',
  ]);
  assert.equal(code, 1, 'the worker failed, so the run failed');
  assert.equal(s.faults.length, 1);
  assert.equal(s.faults[0].verdict, 'stuck');
  assert.equal(s.faults[0].stuckWorkers, 1);
});

test('a round that closes on the quorum without the cut worker: degraded, and the worker catches up', async () => {
  const { code, stderr, s } = await run([
    '--workers', '6', '--nodes', '2', '--rounds', '3', '--train-ms', '0..20', '--min-workers', '5', '--round-timeout', '0.3',
    '--cut-on-phase', 'sending', '--cut-for', '1.5s', '--cut-target', 'chunk 1 one',
  ]);
  assert.equal(code, 0, stderr);
  assert.equal(s.faults[0].verdict, 'degraded', JSON.stringify(s.faults[0]));
  assert.ok(s.updates.late >= 1);
  assert.equal(s.rounds.completed, 3);
  assert.equal(s.workersDone, 6);
});

test('--dry-run prints the iptables commands of a kernel fault and changes nothing; the run goes on', async () => {
  const { code, stderr, s } = await run([...base, '--dry-run', '--fault-backend', 'iptables', '--cut-on-round', '2', '--cut-for', '300ms', '--cut-target', 'all']);
  assert.equal(code, 0, stderr);
  assert.match(stderr, /dry-run: iptables -w -N FEDSIM-\w+-o/);
  assert.match(stderr, /dry-run: iptables -w -A FEDSIM-\w+-o -p tcp -d 127\.0\.0\.1 --dport \d+ -m comment --comment fedsim:\w+:cut#1 -j DROP/);
  assert.match(stderr, /dry-run: iptables -w -X FEDSIM-\w+-i/);
  assert.equal(s.updates.accepted, W * R);
  assert.equal(s.faults[0].backend, 'iptables');
});

test('--dry-run with iptables on one worker prints the DNAT of its virtual port and a conntrack rule; without --netns the run goes on', async () => {
  const { code, stderr, s } = await run([...base, '--dry-run', '--fault-backend', 'iptables', '--cut-on-round', '2', '--cut-for', '300ms', '--cut-target', 'chunk 2 one']);
  assert.equal(code, 0, stderr);
  assert.match(stderr, /dry-run: iptables -w -t nat -A FEDSIM-\w+-n -p tcp -d 127\.0\.0\.1 --dport 20006:20011 -j DNAT --to-destination 127\.0\.0\.1:\d+/);
  assert.match(stderr, /dry-run: iptables -w -A FEDSIM-\w+-o -p tcp -m conntrack --ctorigdst 127\.0\.0\.1 --ctorigdstport 20006 --ctdir ORIGINAL -m comment --comment fedsim:\w+:cut#1 -j DROP/);
  assert.match(stderr, /dry-run: iptables -w -t nat -X FEDSIM-\w+-n/);
  assert.equal(s.updates.accepted, W * R);
  assert.equal(s.faults[0].backend, 'iptables');
  assert.equal(s.faults[0].affected, 1);
});

test('--dry-run with the netem backend prints the tc commands on loopback', async () => {
  const { code, stderr } = await run([...base, '--dry-run', '--fault-backend', 'netem', '--cut-kind', 'delay', '--cut-delay', '50ms', '--cut-on-round', '2', '--cut-for', '300ms']);
  assert.equal(code, 0, stderr);
  assert.match(stderr, /dry-run: tc qdisc add dev lo root handle fe5: prio bands 4/);
  assert.match(stderr, /dry-run: tc qdisc add dev lo parent fe5:4 handle fe6: netem delay 50ms/);
  assert.match(stderr, /dry-run: tc qdisc del dev lo root handle fe5:/);
});

test('a kernel backend that cannot carry the fault, or one chunk without --netns, is refused up front (exit 2)', async () => {
  const a = await runCli(['run', '--fault-backend', 'iptables', '--cut-kind', 'delay', '--cut-delay', '10ms', '--cut-on-round', '1']);
  assert.equal(a.code, 2, a.stderr);
  assert.match(a.stderr, /the iptables backend cannot carry a delay fault \(it carries blackhole, reset, refuse, loss\)/);
  const b = await runCli(['run', '--fault-backend', 'netem', '--cut-kind', 'delay', '--cut-delay', '10ms', '--cut-on-round', '1', '--cut-target', 'chunk 2 one']);
  assert.equal(b.code, 2, b.stderr);
  assert.match(b.stderr, /the netem backend shapes a node's whole link, so its target must be "server", "all" or "chunk N"/);
  const c = await runCli(['run', '--fault-backend', 'iptables', '--cut-on-round', '1', '--cut-target', 'chunk 2']);
  assert.equal(c.code, 2, c.stderr);
  assert.match(c.stderr, /on one chunk needs --netns/);
});

test('gRPC keepalive notices a black-holed stream, and the report names it', async () => {
  const { code, stderr, s } = await run([
    ...base, '--transport', 'grpc', '--keepalive', '0.5', '--keepalive-timeout', '0.5',
    '--cut-on-phase', 'waiting', '--cut-for', '3s', '--cut-target', 'chunk 2 one',
  ]);
  assert.equal(code, 0, stderr);
  assert.equal(s.updates.accepted, W * R);
  const f = s.faults[0];
  assert.equal(f.noticedBy, 'keepalive', JSON.stringify(f));
  assert.ok(f.noticedAfterMs < 3000, JSON.stringify(f));
  assert.match(stderr, /noticed after [\d.]+ m?s \(keepalive\)/);
});

test('a manual fault fired by hand through the coordinator (--stdin-commands): applied, healed, recovered', async () => {
  const out = tempDir();
  try {
    const file = path.join(out, 'manual.yaml');
    writeFileSync(file, 'faults:\n  - id: hand\n    kind: reset\n    manual: true\n    duration: 500ms\n    target: chunk 1\n');
    const p = spawn(process.execPath, [BIN, 'run', '--scenario', file, '--stdin-commands', '--workers', '8', '--nodes', '2', '--rounds', '6', '--train-ms', '150..250', '--retries', '20', '--retry-max-ms', '300', '--out', out], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    let sent = false;
    p.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!sent && /round 1\/6/.test(stderr)) {
        sent = true;
        p.stdin!.write('fire nope\nfire hand\nfire hand\n');
      }
    });
    const code = await new Promise<number | null>((r) => p.on('close', r));
    assert.equal(code, 0, stderr);
    assert.match(stderr, /no manual fault "nope": manual faults are hand/);
    assert.match(stderr, /fault hand#1 fired by hand/);
    assert.match(stderr, /fault hand already fired 1 time\(s\) \(its maxCount\)/);
    const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    assert.equal(s.faults.length, 1);
    assert.equal(s.faults[0].trigger, 'by hand');
    assert.equal(s.faults[0].affected, 4);
    assert.match(s.faults[0].verdict, /^recovered/);
    assert.equal(s.updates.accepted, 48);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
