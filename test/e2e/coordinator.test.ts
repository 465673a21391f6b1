import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { exited, runCli, startCli, tempDir, waitForEvent } from '../helpers/cli.js';

const procs: ChildProcess[] = [];
after(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

function start(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const p = startCli(args, env);
  procs.push(p);
  return p;
}


const TOKEN = 'test-token-123';

async function coordinator(extra: string[], out: string) {
  const c = start(['coordinator', '--listen', '127.0.0.1:0', '--token', TOKEN, '--out', out, '--headless', ...extra]);
  const done = exited(c, 120_000);
  const ev = await waitForEvent(c, 'listening');
  return { c, done, addr: `127.0.0.1:${ev.controlPort}` };
}

test('coordinator, a server node and three worker nodes as separate processes: exact counts', async () => {
  const out = tempDir();
  try {
    const { done, addr } = await coordinator(['--workers', '90', '--expect-nodes', '3', '--rounds', '3', '--train-ms', '0..5', '--transport', 'grpc'], out);
    const nodes = [
      start(['node', '--role', 'server', '--coordinator', addr, '--token', TOKEN]),
      ...[1, 2, 3].map(() => start(['node', '--role', 'worker', '--coordinator', addr], { FEDSIM_TOKEN: TOKEN })),
    ].map((p) => exited(p));
    const res = await done;
    assert.equal(res.code, 0, res.stderr);
    for (const n of await Promise.all(nodes)) assert.equal(n.code, 0, n.stderr);
    const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    assert.equal(s.status, 'passed');
    assert.equal(s.rounds.completed, 3);
    assert.equal(s.updates.accepted, 270);
    assert.equal(s.updates.duplicate, 0);
    assert.equal(s.errors.total, 0);
    assert.deepEqual(s.perChunk.map((c: { chunk: string }) => c.chunk), ['1 of 3', '2 of 3', '3 of 3']);
    assert.deepEqual(s.perChunk.map((c: { workers: number }) => c.workers), [30, 30, 30]);
    assert.equal(s.perNode.length, 4);
    for (const n of s.perNode) assert.equal(typeof n.clockOffsetMs, 'number', `clock offset of ${n.id}`);
    assert.match(res.stderr, /all 4 nodes ready/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('kill -9 of a worker node mid-run: it is marked lost and the run fails with exit 1', async () => {
  const out = tempDir();
  try {
    const { c, done, addr } = await coordinator(['--workers', '20', '--expect-nodes', '2', '--rounds', '200', '--train-ms', '20..40', '--heartbeat-ms', '200', '--lost-after', '1'], out);
    // Rounds running: the coordinator says so once every node is ready and a round has closed.
    let said = '';
    const running = new Promise<void>((resolve) => c.stderr!.on('data', (d: Buffer) => (said += d.toString()) && /round +1\/200/.test(said) && resolve()));
    const server = start(['node', '--role', 'server', '--coordinator', addr, '--token', TOKEN]);
    const victim = start(['node', '--role', 'worker', '--coordinator', addr, '--token', TOKEN, '--chunk', '1 of 2']);
    const other = start(['node', '--role', 'worker', '--coordinator', addr, '--token', TOKEN, '--chunk', '2/2']);
    const others = [exited(server), exited(other)];
    await running;
    victim.kill('SIGKILL');
    const res = await done;
    assert.equal(res.code, 1, res.stderr);
    assert.match(res.stderr, /worker 1 of 2 \(.*\) lost/);
    assert.ok(res.ms < 60_000);
    for (const o of await Promise.all(others)) assert.notEqual(o.code, null, 'the other nodes exit by themselves');
    const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    assert.equal(s.status, 'failed');
    assert.match(s.failure, /worker 1 of 2 was lost/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('the coordinator killed: nodes exit by themselves', async () => {
  const out = tempDir();
  try {
    const { c, addr } = await coordinator(['--workers', '10', '--expect-nodes', '1', '--rounds', '500', '--train-ms', '50', '--silence-timeout', '2', '--heartbeat-ms', '200'], out);
    const server = exited(start(['node', '--role', 'server', '--coordinator', addr, '--token', TOKEN]));
    const worker = exited(start(['node', '--role', 'worker', '--coordinator', addr, '--token', TOKEN]));
    await new Promise((r) => setTimeout(r, 2000));
    c.kill('SIGKILL');
    const [s, w] = await Promise.all([server, worker]);
    assert.equal(s.code, 1, s.stderr);
    assert.equal(w.code, 1, w.stderr);
    // Killed mid-run: "node stopped: … control stream …" (or silent); killed while the node was still
    // being started (a slow machine): "the coordinator at …: control stream failed: …".
    assert.match(w.stderr, /node stopped: .*(control stream|silent)|the coordinator at .*: control stream failed/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('a wrong token and a protocol-version mismatch are refused on both sides (exit 2)', async () => {
  const out = tempDir();
  try {
    const { c, addr } = await coordinator(['--workers', '4', '--expect-nodes', '1', '--expect-timeout', '30'], out);
    let coordErr = '';
    c.stderr!.on('data', (d) => (coordErr += d));
    const bad = await runCli(['node', '--role', 'worker', '--coordinator', addr, '--token', 'nope']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /refused this node: wrong run token/);
    const old = await runCli(['node', '--role', 'worker', '--coordinator', addr, '--token', TOKEN], 30_000, { FEDSIM_TEST_PROTOCOL_VERSION: '99' });
    assert.equal(old.code, 2, old.stderr);
    assert.match(old.stderr, /control protocol v3, the node v99/);
    const noToken = await runCli(['node', '--role', 'worker', '--coordinator', addr], 30_000, { FEDSIM_TOKEN: '' });
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /--token \(or FEDSIM_TOKEN\) is required/);
    c.kill('SIGTERM');
    await new Promise((r) => c.once('exit', r));
    assert.match(coordErr, /refused a node from .*: wrong run token/);
    assert.match(coordErr, /refused a worker node .*protocol v3, the node v99/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('--expect-nodes not reached: the run fails naming the missing nodes', async () => {
  const out = tempDir();
  try {
    const { done, addr } = await coordinator(['--workers', '4', '--expect-nodes', '2', '--expect-timeout', '2'], out);
    const server = exited(start(['node', '--role', 'server', '--coordinator', addr, '--token', TOKEN]));
    const res = await done;
    assert.equal(res.code, 1, res.stderr);
    assert.match(res.stderr, /did not start within 2 s: never attached: worker 1 of 2, worker 2 of 2/);
    assert.notEqual((await server).code, null, 'the attached node is stopped too');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('malformed scenario files: file, line and key in the error, exit 2', async () => {
  const dir = tempDir();
  try {
    const cases: Array<[string, RegExp]> = [
      ['workers: 10\nrounds: three\n', /bad\.yaml:2: key "rounds" must be integer/],
      ['workers: 10\nwrokers: 5\n', /bad\.yaml:2: unknown key "wrokers": allowed keys are/],
      ['workers: 10\n  rounds: [\n', /bad\.yaml:\d+: not valid YAML/],
      ['transport: udp\n', /bad\.yaml:1: key "transport" must be equal to one of the allowed values: http, grpc/],
      ['payload: bytes:lots\n', /bad\.yaml:1: key "payload" bytes size "lots" is not a size/],
      ['- 1\n- 2\n', /bad\.yaml:1: the file must be a YAML mapping/],
      ['workers: 2\nnodes: 3\n', /bad\.yaml:2: key "nodes" 3 is more than .*bad\.yaml:1: key "workers" 2/],
    ];
    for (const [text, re] of cases) {
      const file = path.join(dir, 'bad.yaml');
      writeFileSync(file, text);
      const r = await runCli(['run', '--scenario', file]);
      assert.equal(r.code, 2, `${text}: ${r.stderr}`);
      assert.match(r.stderr, re, text);
    }
    const missing = await runCli(['run', '--scenario', path.join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /scenario file .*nope\.yaml cannot be read \(ENOENT\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TLS control plane: nodes that trust the CA attach and the run completes', async () => {
  const { spawnSync } = await import('node:child_process');
  const dir = tempDir();
  const out = tempDir();
  try {
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']);
    assert.equal(gen.status, 0, `openssl: ${gen.stderr}`);
    const { done, addr } = await coordinator(['--workers', '6', '--expect-nodes', '2', '--rounds', '2', '--train-ms', '0', '--tls-cert', cert, '--tls-key', key], out);
    const nodes = [
      start(['node', '--role', 'server', '--coordinator', addr, '--token', TOKEN, '--tls-ca', cert]),
      start(['node', '--role', 'worker', '--coordinator', addr, '--token', TOKEN, '--tls-ca', cert]),
      start(['node', '--role', 'worker', '--coordinator', addr, '--token', TOKEN, '--tls-ca', cert]),
    ].map((p) => exited(p));
    const res = await done;
    assert.equal(res.code, 0, res.stderr);
    for (const n of await Promise.all(nodes)) assert.equal(n.code, 0, n.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  }
});
