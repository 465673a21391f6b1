import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { runCli, tempDir } from '../helpers/cli.js';

async function run(args: string[]): Promise<{ code: number | null; stderr: string; s: Record<string, any> | null }> {
  const out = tempDir();
  try {
    const r = await runCli(['run', '--out', out, '--headless', '--train-ms', '0', ...args], 180_000);
    let s = null;
    try {
      s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    } catch {
      // no summary (a usage error)
    }
    return { code: r.code, stderr: r.stderr, s };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

for (const transport of ['http', 'grpc']) {
  test(`mobilenetv2 both ways over ${transport}: exact counts, every worker holds the server's final model`, async () => {
    const W = 6;
    const R = 2;
    const { code, stderr, s } = await run(['--payload', 'mobilenetv2', '--transport', transport, '--workers', String(W), '--nodes', '2', '--rounds', String(R)]);
    assert.equal(code, 0, stderr);
    assert.equal(s!.payload, 'mobilenetv2');
    assert.equal(s!.updates.accepted, W * R);
    assert.equal(s!.updates.duplicate, 0);
    assert.equal(s!.errors.integrity, 0);
    assert.deepEqual([s!.finalModel.version, s!.finalModel.workersHolding, s!.finalModel.workersHoldingOther], [R, W, 0]);
    // Each round moves every worker's ~14 MB update up and the ~14 MB model down.
    assert.ok(s!.bytes.sent >= W * R * 13e6, `sent ${s!.bytes.sent}`);
    assert.ok(s!.bytes.received >= W * (R + 1) * 13e6, `received ${s!.bytes.received}`);
  });
}

test('onnx training phase and model validation in onnxruntime, global mobilenetv2 with string updates', async () => {
  const a = await run(['--payload', 'mobilenetv2', '--train', 'onnx:2', '--validate-model', 'on', '--workers', '4', '--nodes', '2', '--rounds', '2']);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.s!.finalModel.workersHolding, 4);
  const b = await run(['--global-payload', 'mobilenetv2', '--update-payload', 'string', '--transport', 'grpc', '--workers', '4', '--nodes', '2', '--rounds', '2']);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(b.s!.payload, 'global mobilenetv2, update string');
  assert.equal(b.s!.updates.accepted, 8);
  assert.ok(b.s!.bytes.sent < 1e5, 'string updates up');
  assert.ok(b.s!.bytes.received > 4 * 3 * 13e6, 'models down');
  assert.equal(b.s!.finalModel.workersHolding, 4);
});

test('onnx training without the mobilenetv2 model is refused up front (exit 2)', async () => {
  const r = await runCli(['run', '--train', 'onnx:2']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--train onnx needs the mobilenetv2 model from the server: set --payload \(or globalPayload\) to mobilenetv2/);
  const bad = await runCli(['run', '--train', 'gpu']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--train "gpu" must be sleep or onnx:STEPS/);
});
