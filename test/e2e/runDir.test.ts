import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Ajv } from 'ajv';
import { SETTINGS } from '../../src/config/settings.js';
import { HISTORY_COLUMNS } from '../../src/report/history.js';
import { runCli, tempDir } from '../helpers/cli.js';
import { requireTool } from '../helpers/privileged.js';

const HERE = path.dirname(new URL(import.meta.url).pathname);
const SCHEMA = JSON.parse(readFileSync(path.join(HERE, '../../../docs/summary.schema.json'), 'utf8'));
const JUNIT_XSD = path.join(HERE, '../../../test/fixtures/junit.xsd');

test('the run directory: events.ndjson.gz has every store event in time order, stats_history.csv a row a second', async (t) => {
  const out = tempDir();
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const r = await runCli(['run', '--workers', '20', '--nodes', '2', '--rounds', '6', '--train-ms', '150..250', '--heartbeat-ms', '200', '--headless', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const events = gunzipSync(readFileSync(path.join(out, 'events.ndjson.gz'))).toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as { tMs: number; type: string; phase?: string; rounds?: unknown[] });
  assert.ok(events.length > 10);
  for (let i = 1; i < events.length; i++) assert.ok(events[i].tMs >= events[i - 1].tMs, 'in time order');
  assert.deepEqual(
    events.filter((e) => e.type === 'phase').map((e) => e.phase),
    ['running', 'finishing', 'done'],
  );
  assert.equal(events.filter((e) => e.type === 'rounds').reduce((a, e) => a + (e.rounds?.length ?? 0), 0), 6);
  const rows = readFileSync(path.join(out, 'stats_history.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
  assert.deepEqual(rows[0], [...HISTORY_COLUMNS]);
  assert.ok(rows.length >= 2, 'at least the final row');
  for (const row of rows.slice(1)) {
    assert.equal(row.length, HISTORY_COLUMNS.length);
    assert.ok(Number.isFinite(Number(row[0])));
    const workers = row.slice(7, 7 + 11).reduce((a, c) => a + Number(c), 0);
    assert.ok(workers === 0 || workers === 20, `workers by state add up: ${row.join(',')}`);
  }
  const last = rows[rows.length - 1];
  assert.equal(last[2], '6', 'rounds_closed at the end');
  assert.equal(last[HISTORY_COLUMNS.indexOf('workers_done')], '20');
  // Resources from the nodes' heartbeats: the busiest node's memory and open files.
  assert.ok(Number(last[HISTORY_COLUMNS.indexOf('max_node_rss_mb')]) > 20, last.join(','));
  assert.ok(Number(last[HISTORY_COLUMNS.indexOf('max_open_fds')]) > 5, last.join(','));
  assert.ok(Number.isFinite(Number(last[HISTORY_COLUMNS.indexOf('max_loop_delay_ms')])));
});

test('summary.json matches its published schema (docs/summary.schema.json) and junit.xml the JUnit schema (xmllint)', async (t) => {
  const out = tempDir();
  t.after(() => rmSync(out, { recursive: true, force: true }));
  // A fault and thresholds, so that their lists are checked too.
  const r = await runCli([
    'run', '--workers', '12', '--nodes', '2', '--rounds', '5', '--train-ms', '50..100', '--headless', '--out', out,
    '--cut-on-round', '2', '--cut-for', '500ms', '--cut-kind', 'reset', '--cut-target', 'chunk 1 all',
    '--threshold', 'errors:count>=0', '--threshold', 'round_ms:p(95)<0.001',
  ]);
  assert.equal(r.code, 99, r.stderr);
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  const validate = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(SCHEMA);
  assert.ok(validate({ ...summary }), JSON.stringify(validate.errors, null, 2));
  assert.equal(summary.faults.length, 1);
  assert.equal(summary.thresholds.length, 2);
  assert.equal(summary.machine.node, process.version);
  // The schema names every scenario setting, so a new setting cannot slip past it.
  assert.deepEqual(Object.keys(SCHEMA.properties.scenario.properties).sort(), [...SETTINGS.map((d) => d.key), 'faults'].sort());
  // And it can fail: a missing field, a wrong type, an unknown field.
  const { roundMs: _dropped, ...missing } = summary;
  assert.equal(validate(missing), false);
  assert.equal(validate({ ...summary, workers: 'twelve' }), false);
  assert.equal(validate({ ...summary, surprise: 1 }), false);

  if (!requireTool(t, 'xmllint', ['--version'], 'libxml2-utils')) return;
  const lint = (file: string) => spawnSync('xmllint', ['--noout', '--schema', JUNIT_XSD, file], { encoding: 'utf8' });
  const ok = lint(path.join(out, 'junit.xml'));
  assert.equal(ok.status, 0, ok.stderr);
  const junit = readFileSync(path.join(out, 'junit.xml'), 'utf8');
  assert.match(junit, /tests="3" failures="1"/);
  assert.match(junit, /classname="fedsim.faults" name="cut#1 reset on /);
  // The schema is strict enough to refuse a broken file.
  const broken = path.join(out, 'broken.xml');
  writeFileSync(broken, junit.replace(/<testcase classname/, '<testcase nom="x" classname'));
  assert.notEqual(lint(broken).status, 0);
});
