import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { runCli, startCli, tempDir, waitForEvent } from '../helpers/cli.js';

const W = 100;
const K = 2;
const R = 3;

for (const transport of ['http', 'grpc'] as const) {
  describe(`fedsim run over ${transport}`, () => {
    test(`${K} nodes × ${W / K} workers × ${R} rounds: exact counts, no errors`, async () => {
      const out = tempDir();
      try {
        const r = await runCli(['run', '--workers', String(W), '--nodes', String(K), '--rounds', String(R), '--transport', transport, '--train-ms', '0..5', '--out', out, '--headless'], 120_000);
        assert.equal(r.code, 0, r.stderr);
        const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
        assert.equal(s.schemaVersion, 1);
        assert.equal(s.status, 'passed');
        assert.equal(s.transport, transport);
        assert.equal(s.workers, W);
        assert.equal(s.nodes, K);
        assert.equal(s.rounds.requested, R);
        assert.equal(s.rounds.completed, R);
        assert.equal(s.updates.accepted, W * R);
        assert.equal(s.updates.duplicate, 0);
        assert.equal(s.updates.rejected, 0);
        assert.equal(s.errors.total, 0);
        assert.equal(s.retries, 0);
        assert.equal(s.workersDone, W);
        // Every worker ends holding exactly the server's last model.
        assert.deepEqual({ v: s.finalModel.version, holding: s.finalModel.workersHolding, other: s.finalModel.workersHoldingOther }, { v: R, holding: W, other: 0 });
        assert.match(s.finalModel.sha256, /^[0-9a-f]{64}$/);
        // Every worker: register + initial pull + R × (update + pull) requests, each answered.
        assert.ok(s.messages.total >= 2 * W * (2 + 2 * R), `messages.total ${s.messages.total}`);
        assert.equal(s.propagationMs.count, W * R, 'one propagation sample per worker per published version');
        for (const k of ['roundMs', 'uploadMs', 'downloadMs', 'propagationMs']) {
          for (const f of ['p50', 'p95', 'p99', 'max']) assert.equal(typeof s[k][f], 'number', `${k}.${f}`);
        }
        assert.equal(s.roundLines.length, R);
        // Round lines (at most one every 2 s, and always the last round), then the final table.
        assert.match(r.stderr, new RegExp(`round ${R}/${R} .*propagation p99 .* msg/s .*errors 0`));
        assert.match(r.stderr, /fedsim PASSED/);
        assert.ok(readFileSync(path.join(out, 'logs', 'server.log'), 'utf8').includes('round 3 closed'));
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    });

    test('a standalone server with two worker processes, chunks "1 of 2" and "2 of 2"', async () => {
      const server = startCli(['node', '--role', 'server', '--workers', String(W), '--http-port', '0', '--grpc-port', '0', '--poll-timeout', '5']);
      try {
        const ev = await waitForEvent(server, 'listening');
        const port = transport === 'http' ? ev.httpPort : ev.grpcPort;
        assert.ok(Number(port) > 0);
        const workers = await Promise.all(
          ['1 of 2', '2/2'].map((chunk) =>
            runCli(['node', '--role', 'worker', '--chunk', chunk, '--workers', String(W), '--server', `127.0.0.1:${port}`, '--transport', transport, '--rounds', String(R)], 90_000),
          ),
        );
        for (const w of workers) {
          assert.equal(w.code, 0, w.stderr);
          assert.match(w.stderr, new RegExp(`${W / 2} workers finished ${R} rounds \\(0 retries, 0 errors\\)`));
        }
        const status = (await (await fetch(`http://127.0.0.1:${ev.httpPort}/v1/status`)).json()) as {
          server: { roundsCompleted: number; updates: { accepted: number; duplicate: number } };
        };
        assert.equal(status.server.roundsCompleted, R);
        assert.equal(status.server.updates.accepted, W * R);
        assert.equal(status.server.updates.duplicate, 0);
      } finally {
        server.kill('SIGTERM');
        await new Promise((r) => server.once('exit', r));
      }
    });
  });
}

test('bytes:1MiB payloads move in chunks and aggregate (2 nodes × 4 workers × 2 rounds)', async () => {
  const out = tempDir();
  try {
    const r = await runCli(['run', '--workers', '8', '--nodes', '2', '--rounds', '2', '--payload', 'bytes:1MiB', '--transport', 'grpc', '--out', out], 120_000);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    assert.equal(s.updates.accepted, 16);
    assert.equal(s.errors.integrity, 0);
    assert.equal(s.bytes.sentByType.update, 16 * 1024 * 1024);
    // Initial model plus one model per round, for every worker.
    assert.equal(s.bytes.receivedByType.model, 8 * 3 * 1024 * 1024);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
