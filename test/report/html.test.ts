import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { readAsset } from '../../src/assets.js';
import { type FaultWindow, HISTORY_COLUMNS, type HistoryRow, RunRecorder } from '../../src/report/history.js';
import { type ReportData, type ReportInput, REPORT_CHARTS, renderReportHtml } from '../../src/report/html.js';
import { type PerChunk, type Summary, buildSummary } from '../../src/report/summary.js';
import { evaluateThresholds, parseThreshold } from '../../src/report/thresholds.js';
import { RunStore } from '../../src/sim/runStore.js';
import { WORKER_STATES } from '../../src/sim/workerStats.js';
import { tempDir } from '../helpers/cli.js';

const HOSTILE = '</script><img src=x onerror=alert(1)><!--';

const lat = (count: number, p50 = 10) => ({ count, p50, p95: p50 * 2, p99: p50 * 3, max: p50 * 4, mean: p50 * 1.2 });

function chunk(n: number): PerChunk {
  return {
    chunk: `${n} of 2`, host: 'vm', workers: 10, roundsDone: 30, workersDone: 10, workersFailed: 0, errors: 0, retries: 0,
    messages: 140, bytesSent: 1000, bytesReceived: 2000, uploadMs: lat(30), downloadMs: lat(30, 1), propagationMs: lat(30, 20 + n),
  };
}

/**
 * A summary as summary.json holds it: 20 workers, 2 chunks, 3 rounds, one fault, two
 * thresholds (one failing). Built by buildSummary (so fields added later are there) with the
 * parts the report shows set by hand.
 */
function summary(): ReportInput['summary'] {
  const base = buildSummary({
    fedsimVersion: '0.1.0', startedAt: '2026-01-01T00:00:00.000Z', durationMs: 3000, name: HOSTILE, transport: 'http', payload: 'string',
    workers: 20, roundsRequested: 3, nodes: [], server: null, faults: [], failure: 'worker 1 of 2 was lost <b>bold</b>',
  });
  const s: Summary = {
    ...base,
    nodes: 2,
    rounds: { requested: 3, completed: 3 },
    updates: { accepted: 60, duplicate: 0, late: 0, rejected: 0 },
    workersDone: 20,
    registerMs: lat(20), uploadMs: lat(60), waitMs: lat(60), downloadMs: lat(60, 1), propagationMs: lat(60, 21), roundMs: lat(3, 300),
    roundLines: [1, 2, 3].map((round) => ({ round, durationMs: 300 + round, updates: 20, byQuorum: round === 2, messages: 90, bytes: 600, publishedAtMs: 1.7e12 + round * 1000 })),
    perNode: [
      { id: 'server', role: 'server', chunk: '', host: 'vm', pid: 1, status: 'finished', exitCode: 0, error: '', clockOffsetMs: 0.1, rttMs: 1, maxRssBytes: 9e7 },
      { id: 'worker 1 of 2', role: 'worker', chunk: '1 of 2', host: 'vm', pid: 2, status: 'lost', exitCode: null, error: `gone ${HOSTILE}`, clockOffsetMs: null, rttMs: null, maxRssBytes: null },
    ],
    perChunk: [chunk(1), chunk(2)],
    faults: [{
      id: 'cut', instance: 1, kind: 'blackhole', backend: 'proxy', target: 'all workers of chunk 2', trigger: 'round 2', chunks: ['2 of 2'], affected: 10,
      appliedAtMs: 1.7e12, healedAtMs: 1.7e12 + 1000, noticedAfterMs: null, noticedBy: null, firstExchangeAfterHealMs: 50, nextRoundAfterHealMs: 120,
      degradedWorkers: 0, stuckWorkers: 0, verdict: 'recovered',
    }],
  };
  const thresholds = evaluateThresholds([parseThreshold('round_ms', 'p(95)<200', 'test'), parseThreshold('errors', 'count==0', 'test')], s);
  return { ...s, thresholds, scenario: { name: HOSTILE, workers: 20 } };
}

function row(t: number): HistoryRow {
  const r = Object.fromEntries(HISTORY_COLUMNS.map((c) => [c, 0])) as HistoryRow;
  r.elapsed_s = t;
  r.phase = t < 1 ? 'waiting' : 'running';
  r.messages = 50 * t;
  r.bytes = 500 * t;
  r.workers_training = 12;
  r.workers_waiting = 8;
  r.last_round_ms = t < 2 ? null : 301;
  r.max_node_cpu_percent = 40;
  return r;
}

const FAULTS: FaultWindow[] = [{ id: 'cut#1', kind: 'blackhole', target: 'all workers of chunk 2', chunks: ['2 of 2'], fromS: 1.5, toS: 2.5, verdict: 'recovered' }];

/** The embedded data blob, as the page's script reads it. */
function blob(html: string): { text: string; data: ReportData } {
  const m = /<script type="application\/json" id="fedsim-data">([\s\S]*?)<\/script>/.exec(html);
  assert.ok(m, 'the data blob is there');
  return { text: m[1], data: JSON.parse(m[1]) as ReportData };
}

test('report.html is self-contained: uPlot inlined, no external URL, a CSP that forbids fetching', () => {
  const html = renderReportHtml({ summary: summary(), rows: [0, 1, 2, 3].map(row), faults: FAULTS });
  assert.ok(html.startsWith('<!doctype html>'));
  for (const bad of [/src\s*=\s*["']?\s*(https?:)?\/\//i, /href\s*=\s*["']?\s*(https?:)?\/\//i, /@import\s+url\(\s*["']?(https?:)?\/\//i, /<link\b/i, /<script[^>]*\bsrc=/i]) {
    assert.doesNotMatch(html, bad);
  }
  assert.ok(html.includes(readAsset('uplot.js')), 'the uPlot code is inlined verbatim');
  assert.ok(html.includes(readAsset('uplot.css')), 'the uPlot styles are inlined');
  assert.match(readAsset('uplot.js'), /uPlot/);
  assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none';/);
  // One container per chart the page script draws.
  for (const id of REPORT_CHARTS) assert.ok(html.includes(`id="chart-${id}"`), id);
  assert.equal(REPORT_CHARTS.length, 7);
});

test('report.html carries the run as one JSON blob that round-trips', () => {
  const input = { summary: summary(), rows: [0, 1, 2, 3].map(row), faults: FAULTS };
  const { data } = blob(renderReportHtml(input));
  assert.deepEqual(data.summary, JSON.parse(JSON.stringify(input.summary)));
  assert.deepEqual(data.faults, FAULTS);
  assert.deepEqual(Object.keys(data.history), [...HISTORY_COLUMNS]);
  assert.deepEqual(data.history.elapsed_s, [0, 1, 2, 3]);
  assert.deepEqual(data.history.phase, ['waiting', 'running', 'running', 'running']);
  assert.deepEqual(data.history.last_round_ms, [null, null, 301, 301]);
  assert.deepEqual(data.history.workers_training, [12, 12, 12, 12]);
  assert.deepEqual(data.states.map((s) => s.state), [...WORKER_STATES]);
});

test('hostile strings are escaped in the page and cannot end the data blob', () => {
  const html = renderReportHtml({ summary: summary(), rows: [row(1)], faults: FAULTS });
  // Exactly the three script elements the page has (data, uPlot, the page's own): none injected, none cut short.
  assert.equal(html.match(/<script\b/gi)?.length, 3);
  assert.equal(html.match(/<\/script>/gi)?.length, 3);
  assert.doesNotMatch(html, /<img/i);
  assert.doesNotMatch(html, /<b>bold/);
  assert.ok(html.includes('&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&lt;!--'), 'the name is shown, escaped');
  assert.ok(html.includes('<title>fedsim FAILED: &lt;/script&gt;'));
  const { text, data } = blob(html);
  assert.ok(!text.includes('<'), 'no < at all inside the blob (neither </script nor <!--)');
  assert.equal(data.summary.name, HOSTILE, 'and the data still reads back exactly');
  assert.equal(data.summary.perNode[1].error, `gone ${HOSTILE}`);
});

test('inlined assets cannot close their element either', () => {
  const evil = (name: string) => (name === 'uplot.js' ? 'var s = "</SCRIPT><img src=x>";' : 'a{} </style><img src=y>');
  const html = renderReportHtml({ summary: summary(), rows: [], faults: [] }, evil);
  // The text stays inside its element (harmless there), its closing tag defused.
  assert.ok(html.includes('<script>var s = "<\\/SCRIPT><img src=x>";</script>'));
  assert.ok(html.includes('<style>a{} <\\/style><img src=y></style>'));
  assert.equal(html.match(/<\/script>/gi)?.length, 3);
  assert.equal(html.match(/<\/style>/gi)?.length, 2);
});

test('the header says what the exit code said, and the tables hold the run', () => {
  const failedThreshold = { ...summary(), status: 'passed' as const, failure: null };
  const html = renderReportHtml({ summary: failedThreshold, rows: [], faults: [] });
  assert.match(html, /<title>fedsim THRESHOLDS FAILED:/);
  assert.match(html, /threshold failed:<\/strong> round_ms: p\(95\)&lt;200 \(measured 600\)/);
  const section = (id: string) => new RegExp(`<section id="${id}">([\\s\\S]*?)</section>`).exec(html)?.[1] ?? '';
  assert.equal(section('chunks').match(/<tbody>[\s\S]*<\/tbody>/)?.[0].match(/<tr>/g)?.length, 2, 'a row per chunk');
  assert.equal(section('nodes').match(/<tbody>[\s\S]*<\/tbody>/)?.[0].match(/<tr>/g)?.length, 2, 'a row per node');
  assert.match(section('faults'), /cut#1[\s\S]*badge ok">recovered/);
  assert.match(section('thresholds'), /badge bad">FAIL<\/span><\/td><td>round_ms/);
  const passed = renderReportHtml({ summary: { ...failedThreshold, thresholds: [] }, rows: [], faults: [] });
  assert.match(passed, /<title>fedsim PASSED:/);
  assert.match(passed, /No thresholds were set/);
});

test('RunRecorder keeps the rows it writes, and gives fault windows on the rows\' clock', async (t) => {
  const out = tempDir();
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const store = new RunStore(4, 1);
  const t0 = performance.now();
  const recorder = new RunRecorder(store, out);
  const applied = { type: 'faultApplied', kind: 'reset', target: 'chunk 1', backend: 'proxy', affected: 2, durationMs: 1000 } as const;
  store.apply({ ...applied, instanceId: 'cut#1', chunk: '1 of 1', at: t0 + 1500 });
  store.apply({ type: 'faultHealed', instanceId: 'cut#1', at: t0 + 2500 });
  store.apply({ ...applied, instanceId: 'cut#2', chunk: '1 of 1', at: t0 + 3000 });
  await recorder.close();
  const csv = readFileSync(path.join(out, 'stats_history.csv'), 'utf8').trim().split('\n').slice(1);
  assert.equal(recorder.rows().length, csv.length, 'a row in memory per row in the file');
  const last = recorder.rows()[csv.length - 1];
  const cells = csv[csv.length - 1].split(',');
  HISTORY_COLUMNS.forEach((c, i) => assert.equal(last[c], c === 'phase' ? cells[i] : cells[i] === '' ? null : Number(cells[i]), c));
  assert.equal(last.faults_on, 1, 'cut#2 never healed');
  const [w1, w2] = recorder.faultWindows();
  // The recorder started a hair after t0: its seconds are a little under the offsets above.
  assert.equal(w1.id, 'cut#1');
  assert.ok(w1.fromS > 1.4 && w1.fromS <= 1.5, String(w1.fromS));
  assert.ok(w1.toS !== null && w1.toS > 2.4 && w1.toS <= 2.5, String(w1.toS));
  assert.equal(w2.toS, null);
  assert.deepEqual(w2.chunks, ['1 of 1']);
});
