import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { evaluateThresholds, parseThreshold, parseThresholdFlag, parseThresholdMap } from '../../src/report/thresholds.js';
import type { Summary } from '../../src/report/summary.js';
import { runCli, tempDir } from '../helpers/cli.js';

test('thresholds: parse, evaluate over summary figures, refuse bad syntax', () => {
  const s = {
    roundMs: { count: 3, p50: 10, p95: 20, p99: 30, max: 31, mean: 12 },
    propagationMs: { count: 0, p50: 0, p95: 0, p99: 0, max: 0, mean: 0 },
    errors: { total: 2 },
    retries: 1,
    faults: [{ verdict: 'recovered' }, { verdict: 'stuck' }],
    updates: { accepted: 60 },
  } as unknown as Summary;
  const r = evaluateThresholds(
    [
      parseThreshold('round_ms', 'p(95)<25', 'x'),
      parseThreshold('round_ms', 'avg>=13', 'x'),
      parseThreshold('errors', 'count==0', 'x'),
      parseThreshold('faults_recovered', 'rate==1', 'x'),
      parseThreshold('updates.accepted', 'value>=60', 'x'),
      parseThreshold('propagation_ms', 'p(99)<500', 'x'),
      parseThreshold('no.such.figure', 'value==0', 'x'),
    ],
    s,
  );
  assert.deepEqual(r.map((x) => [x.ok, x.value]), [[true, 20], [false, 12], [false, 2], [false, 0.5], [true, 60], [false, null], [false, null]]);
  assert.throws(() => parseThreshold('round_ms', 'p95<1', 'f.yaml:3'), /f\.yaml:3: threshold "round_ms: p95<1" is not AGG OP NUMBER/);
  assert.throws(() => parseThreshold('round_ms', 'rate==1', 'x'), /round_ms has p\(50\), med, p\(95\), p\(99\), max, avg, count, not rate/);
  assert.equal(parseThresholdMap({ round_ms: ['p(95)<2000', 'max<5000'], errors: 'count==0' }, 'x').length, 3);
});

test('a failed threshold exits 99 with junit.xml and summary.thresholds; a passing one 0; bad syntax 2', async (t) => {
  const out = tempDir();
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const base = ['run', '--workers', '10', '--nodes', '2', '--rounds', '2', '--headless', '--out', out];
  const fail = await runCli([...base, '--threshold', 'round_ms:p(95)<0.001', '--threshold', 'errors:count==0']);
  assert.equal(fail.code, 99, fail.stderr);
  assert.match(fail.stderr, /threshold +FAIL round_ms: p\(95\)<0\.001/);
  assert.match(fail.stderr, /1 of 2 thresholds failed \(exit 99\)/);
  const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.deepEqual(s.thresholds.map((x: { ok: boolean }) => x.ok), [false, true]);
  const junit = readFileSync(path.join(out, 'junit.xml'), 'utf8');
  assert.match(junit, /<testsuites name="fedsim" tests="2" failures="1"/);
  assert.match(junit, /<testcase classname="fedsim.thresholds" name="round_ms: p\(95\)&lt;0.001" time="0"><failure message="measured [\d.]+" type="threshold"\/><\/testcase>/);

  assert.equal((await runCli([...base, '--threshold', 'round_ms:p(95)<0.001', '--no-thresholds'])).code, 0);
  const file = path.join(out, 's.yaml');
  writeFileSync(file, "thresholds:\n  errors: ['count==0']\n  updates.duplicate: ['value==0']\n");
  assert.equal((await runCli([...base, '--scenario', file])).code, 0);
  writeFileSync(file, "thresholds:\n  round_ms: ['p95 < 3']\n");
  const bad = await runCli([...base, '--scenario', file]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /s\.yaml:1: key "thresholds": threshold "round_ms: p95 < 3" is not AGG OP NUMBER/);
});

test('abortOnFail: the long form and the flag suffix parse; only live metrics may carry it', () => {
  const [a, b] = parseThresholdMap({ round_ms: [{ threshold: 'p(95)<2000', abortOnFail: true, delayAbortEval: '10s' }, 'max<5000'] }, 'f.yaml:2');
  assert.deepEqual([a.abortOnFail, a.delayAbortEvalMs, a.expr, b.abortOnFail], [true, 10_000, 'p(95)<2000', false]);
  const f = parseThresholdFlag('errors:count==0:abortOnFail');
  assert.deepEqual([f.metric, f.expr, f.abortOnFail], ['errors', 'count==0', true]);
  assert.throws(() => parseThresholdFlag('bytes.sent:value<10:abortOnFail'), /abortOnFail on "bytes.sent": only round_ms, propagation_ms, errors/);
  assert.throws(() => parseThresholdMap({ round_ms: [{ threshold: 'p(95)<2000', abortOnFial: true }] }, 'f.yaml:2'), /f\.yaml:2: round_ms: a threshold object has "threshold" .*not abortOnFial/);
});

test('abortOnFail stops the run when its threshold fails (exit 99, the reason in summary.json); without it the run goes on', async (t) => {
  const out = tempDir();
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const base = ['run', '--workers', '6', '--nodes', '2', '--rounds', '200', '--train-ms', '20..40', '--headless', '--out', out];
  const r = await runCli([...base, '--threshold', 'rounds.completed:value<3:abortOnFail', '--threshold', 'errors:count==0']);
  assert.equal(r.code, 99, r.stderr);
  assert.match(r.stderr, /stopped by a threshold with abortOnFail \(exit 99\)/);
  const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.match(s.failure, /threshold rounds\.completed: value<3 failed during the run \(measured 3\) and has abortOnFail/);
  assert.ok(s.rounds.completed >= 3 && s.rounds.completed < 200, `rounds ${s.rounds.completed}`);
  assert.deepEqual(s.thresholds.map((x: { abortOnFail: boolean }) => x.abortOnFail), [true, false]);
  assert.equal(s.thresholds[0].ok, false);
  // No abort: the same threshold only fails at the end, after every round.
  const full = await runCli([...base.map((a) => (a === '200' ? '5' : a)), '--threshold', 'rounds.completed:value<3']);
  assert.equal(full.code, 99, full.stderr);
  assert.equal(JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')).rounds.completed, 5);
});
