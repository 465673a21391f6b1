import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { HISTORY_COLUMNS } from '../../src/report/history.js';
import { runCli, tempDir } from '../helpers/cli.js';

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
