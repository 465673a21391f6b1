import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { runCli, tempDir } from '../helpers/cli.js';

test('fedsim run --keys: every worker authenticated, both transports, both schemes, with and without libsodium; a worker without a key is refused and the run says so', async (t) => {
  const keys = tempDir();
  const out = tempDir();
  t.after(() => {
    rmSync(keys, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  });
  const g = await runCli(['keys', 'gen', '--workers', '10', '--out', keys]);
  assert.equal(g.code, 0, g.stderr);
  for (const transport of ['http', 'grpc']) {
    const r = await runCli(['run', '--keys', keys, '--workers', '10', '--nodes', '2', '--rounds', '2', '--transport', transport, '--headless', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    // 10 signed registrations; then an update and a pull a round for each worker, and a last pull, under the session key.
    assert.equal(s.auth.safeMode, true);
    assert.deepEqual(s.auth.refused, {});
    assert.equal(s.auth.accepted.ed25519, 10);
    assert.ok(s.auth.accepted.session >= 40, JSON.stringify(s.auth));
    assert.equal(s.updates.accepted, 20);
    assert.match(r.stderr, /safe mode +on, 0 requests refused/);
    assert.match(readFileSync(path.join(out, 'logs', 'server.log'), 'utf8'), /SAFE MODE: 10 worker keys/);
  }
  // Without the libsodium addon (forced here) both sides fall back to OpenSSL for the MACs and
  // digests too; and --auth-scheme ed25519 signs every request.
  for (const [env, scheme, accepted] of [[{ FEDSIM_ED25519: 'openssl' }, 'session', 'session'], [{}, 'ed25519', 'ed25519']] as const) {
    const r = await runCli(['run', '--keys', keys, '--workers', '10', '--nodes', '2', '--rounds', '2', '--auth-scheme', scheme, '--headless', '--out', out], 60_000, env);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    assert.deepEqual(s.auth.refused, {});
    assert.ok(s.auth.accepted[accepted] >= 40, JSON.stringify(s.auth));
    assert.equal(s.auth.accepted.ed25519 ?? 0, accepted === 'session' ? 10 : s.auth.accepted.ed25519);
    if (env.FEDSIM_ED25519) assert.match(readFileSync(path.join(out, 'logs', 'server.log'), 'utf8'), /ed25519 by openssl/);
  }
  // Worker 7 has no key: it is refused; the others complete on the quorum; the run fails, saying why.
  rmSync(path.join(keys, 'worker-7.key'));
  const r = await runCli(['run', '--keys', keys, '--workers', '10', '--nodes', '2', '--rounds', '2', '--min-workers', '9', '--round-timeout', '0.5', '--headless', '--out', out]);
  assert.equal(r.code, 1, r.stderr);
  const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.equal(s.rounds.completed, 2);
  assert.equal(s.auth.refused.missing, 1);
  assert.equal(s.workersDone, 9);
  assert.match(s.failure, /1 of 5 workers failed; first error: .*401.*missing/);
  assert.match(r.stderr, /safe mode +on, 1 requests refused \(missing 1\)/);
});

test('fedsim keys gen refuses to overwrite without --force', async (t) => {
  const keys = tempDir();
  t.after(() => rmSync(keys, { recursive: true, force: true }));
  assert.equal((await runCli(['keys', 'gen', '--workers', '2', '--out', keys])).code, 0);
  const again = await runCli(['keys', 'gen', '--workers', '2', '--out', keys]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /--force/);
  assert.equal((await runCli(['keys', 'gen', '--workers', '2', '--out', keys, '--force'])).code, 0);
});

test('--auth-scheme takes session or ed25519; anything else is a usage error (exit 2) that names the flag and the choices', async () => {
  const w = await runCli(['node', '--role', 'worker', '--chunk', '1 of 1', '--workers', '1', '--server', '127.0.0.1:1', '--auth-scheme', 'nope']);
  assert.equal(w.code, 2);
  assert.match(w.stderr, /--auth-scheme "nope" is not a scheme: use session .* or ed25519/);
  const r = await runCli(['run', '--auth-scheme', 'hmac', '--headless']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--auth-scheme "hmac" is not allowed: use session or ed25519/);
});
