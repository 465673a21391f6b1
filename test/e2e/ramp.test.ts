import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import { ROOT, runCli, tempDir } from '../helpers/cli.js';

test('a ramp adds workers in steps and finds the step where a threshold breaks (a delay fault makes that step slow)', async (t) => {
  const out = tempDir();
  t.after(() => rmSync(out, { recursive: true, force: true }));
  // Steps of 10, 20, 30, 40 workers, 2 rounds each. From round 5 (the 30-worker step) every
  // request is delayed 1.5 s for 3 s, so that step's rounds take over 1 s: the limit breaks there.
  const r = await runCli([
    'run', '--ramp', '10:40:2', '--nodes', '2', '--train-ms', '10..20', '--headless', '--out', out,
    '--threshold', 'round_ms:p(95)<1000',
    '--cut-on-round', '5', '--cut-kind', 'delay', '--cut-delay', '1500ms', '--cut-for', '3s', '--cut-target', 'all', '--fault-backend', 'proxy',
  ], 120_000);
  const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.equal(s.rounds.completed, 8, r.stderr);
  // Every worker sent one update per round it was active: 2 × (10 + 20 + 30 + 40).
  assert.equal(s.updates.accepted, 200);
  assert.equal(s.workers, 40);
  assert.deepEqual(s.ramp.steps.map((x: { workers: number }) => x.workers), [10, 20, 30, 40]);
  assert.deepEqual(s.ramp.steps.map((x: { held: boolean }) => x.held).slice(0, 3), [true, true, false]);
  assert.deepEqual(s.ramp.capacity, { workers: 20, limits: ['round_ms p(95)<1000'] });
  assert.equal(s.ramp.brokeAt.workers, 30);
  assert.match(r.stderr, /capacity +20 workers at round_ms p\(95\)<1000 \(the step of 30 broke: round_ms p\(95\)<1000 measured \d+/);
  // The per-round lines show the steps: round r closes with the workers of its step.
  assert.deepEqual(s.roundLines.map((l: { updates: number }) => l.updates), [10, 10, 20, 20, 30, 30, 40, 40]);
  // The HTML report has the ramp's table and its capacity.
  const html = readFileSync(path.join(out, 'report.html'), 'utf8');
  assert.match(html, /<section id="ramp"><h2>Ramp<\/h2>\s*<p>Capacity: 20 workers at round_ms p\(95\)&lt;1000 \(the step of 30 broke/);
  const validate = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(JSON.parse(readFileSync(path.join(ROOT, 'docs', 'summary.schema.json'), 'utf8')));
  assert.ok(validate({ ...s }), JSON.stringify(validate.errors, null, 2));
});
