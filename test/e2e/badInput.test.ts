import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { runCli } from '../helpers/cli.js';

test('bad chunks exit 2 and name the input', async () => {
  for (const chunk of ['0 of 4', '5 of 4', 'x']) {
    const r = await runCli(['node', '--role', 'worker', '--chunk', chunk, '--workers', '10', '--server', '127.0.0.1:1']);
    assert.equal(r.code, 2, `${chunk}: ${r.stderr}`);
    assert.ok(r.stderr.includes(`"${chunk}"`), r.stderr);
  }
});

test('an unreachable server is one clear error within a bounded time (exit 1)', async () => {
  // A port that was just free: bind, read the number, close.
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const r = await runCli(['node', '--role', 'worker', '--chunk', '1 of 1', '--workers', '5', '--server', `127.0.0.1:${port}`, '--retries', '3', '--retry-base-ms', '50'], 30_000);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`cannot reach the server at 127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\) after 4 attempts`));
});

test('a port in use exits 2 and names the flag and port', async () => {
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const port = (blocker.address() as net.AddressInfo).port;
  try {
    const r = await runCli(['node', '--role', 'server', '--workers', '2', '--http-port', String(port)]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`--http-port 127\\.0\\.0\\.1:${port} is already in use`));
    const g = await runCli(['node', '--role', 'server', '--workers', '2', '--grpc-port', String(port)]);
    assert.equal(g.code, 2, g.stderr);
    assert.match(g.stderr, new RegExp(`--grpc-port 127\\.0\\.0\\.1:${port} is already in use`));
  } finally {
    blocker.close();
  }
});

test('unknown flags, bad values and missing flags exit 2', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['run', '--wrokers', '5'], /unknown option '--wrokers'/],
    [['run', '--transport', 'udp'], /--transport "udp"/],
    [['run', '--payload', 'bytes:lots'], /bytes size "lots"/],
    [['run', '--workers', '0'], /--workers 0 is out of range/],
    [['run', '--workers', '2', '--nodes', '3'], /--nodes 3 is more than --workers 2/],
    [['node', '--role', 'server'], /--workers W is required/],
    [['node', '--role', 'referee'], /--role/],
    [['node', '--role', 'server', '--workers', '3', '--min-workers', '2'], /--min-workers and --round-timeout go together/],
    [['frobnicate'], /unknown command/],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
});

test('--help and --version exit 0', async () => {
  const h = await runCli(['run', '--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /--workers/);
  const v = await runCli(['--version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^\d+\.\d+\.\d+/);
});
