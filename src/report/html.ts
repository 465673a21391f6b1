import { type AssetName, readAsset } from '../assets.js';
import type { Percentiles } from '../sim/stats.js';
import { WORKER_STATES, type WorkerState } from '../sim/workerStats.js';
import { type FaultWindow, HISTORY_COLUMNS, type HistoryRow } from './history.js';
import type { Summary } from './summary.js';
import type { ThresholdResult } from './thresholds.js';
import type { RampResult } from './ramp.js';

/**
 * report.html: one self-contained page per run directory (docs/report.md). Tables are
 * rendered here, escaped; charts are drawn in the browser by uPlot, inlined with the data,
 * so the file opens offline and its Content-Security-Policy forbids any network access.
 */
export interface ReportInput {
  /** summary.json as written: the summary plus its threshold results (and the scenario). */
  summary: Summary & { thresholds?: readonly ThresholdResult[]; ramp?: RampResult | null; scenario?: unknown };
  /** The stats_history.csv rows (RunRecorder.rows()). */
  rows: readonly HistoryRow[];
  /** Fault windows on the rows' elapsed_s clock (RunRecorder.faultWindows()). */
  faults: readonly FaultWindow[];
}

/** The JSON blob embedded in the page (window.fedsimReport in the browser). */
export interface ReportData {
  summary: ReportInput['summary'];
  /** stats_history.csv by column: one array per column, one entry per row. */
  history: Record<string, Array<number | string | null>>;
  faults: readonly FaultWindow[];
  /** Worker states in legend order with their colours. */
  states: Array<{ state: WorkerState; color: string }>;
}

/**
 * The TUI legend's colours (STATE_STYLE in src/tui/components.tsx) as web colours. Not
 * imported from there: that module loads React and Ink.
 */
const STATE_COLORS: Record<WorkerState, string> = {
  idle: '#a1a1aa',
  registering: '#2563eb',
  fetching: '#60a5fa',
  training: '#eab308',
  sending: '#c026d3',
  waiting: '#d4d4d8',
  receiving: '#06b6d4',
  retrying: '#ff8800',
  cut: '#ef4444',
  failed: '#aa0000',
  done: '#16a34a',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');

/** Text for inside a <script> or <style>: nothing in it can close the element. */
const inlineSafe = (code: string, tag: 'script' | 'style') => code.replace(new RegExp(`</(${tag})`, 'gi'), '<\\/$1');

/**
 * JSON for a <script type="application/json">: every `<` as \u003c (JSON.parse reads it back),
 * so neither `</script` nor `<!--` in a string can end or bend the element.
 */
const jsonForScript = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');

const fmtMs = (ms: number | null | undefined) => (ms === null || ms === undefined ? 'n/a' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);
const fmtBytes = (b: number | null | undefined) =>
  b === null || b === undefined ? 'n/a' : b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : b >= 1e6 ? `${(b / 1e6).toFixed(2)} MB` : b >= 1e3 ? `${(b / 1e3).toFixed(1)} kB` : `${b} B`;
const fmtNum = (n: number) => n.toLocaleString('en-US');

/** A cell: text to escape, or HTML already built here from escaped parts. */
type Cell = string | number | null | { html: string };
type Col<T> = [title: string, cell: (row: T) => Cell, numeric?: boolean];

const cellHtml = (c: Cell) => (c === null ? '<span class="muted">n/a</span>' : typeof c === 'object' ? c.html : esc(typeof c === 'number' ? fmtNum(c) : c));

function table<T>(rows: readonly T[], cols: ReadonlyArray<Col<T>>, empty: string): string {
  if (rows.length === 0) return `<p class="muted">${esc(empty)}</p>`;
  const head = cols.map(([t, , n]) => `<th${n ? ' class="num"' : ''}>${esc(t)}</th>`).join('');
  const body = rows.map((r) => `<tr>${cols.map(([, f, n]) => `<td${n ? ' class="num"' : ''}>${cellHtml(f(r))}</td>`).join('')}</tr>`).join('\n');
  return `<div class="scroll"><table><thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody></table></div>`;
}

const badge = (text: string, kind: 'ok' | 'warn' | 'bad' | 'plain') => ({ html: `<span class="badge ${kind}">${esc(text)}</span>` });
const verdictKind = (v: string) => (v === 'recovered' ? 'ok' : v === 'recovered-slow' || v === 'degraded' ? 'warn' : 'bad');

function facts(s: ReportInput['summary']): string {
  const secs = s.durationMs / 1000;
  const rows: Array<[string, string]> = [
    ['transport', s.transport],
    ['payload', s.payload],
    ['workers', `${fmtNum(s.workers)} (done ${fmtNum(s.workersDone)}, failed ${fmtNum(s.workersFailed)})`],
    ['nodes', fmtNum(s.nodes)],
    ['rounds', `${s.rounds.completed} of ${s.rounds.requested}`],
    ['duration', `${secs.toFixed(2)} s`],
    ['started', s.startedAt],
    ['updates', `accepted ${fmtNum(s.updates.accepted)}, duplicate ${s.updates.duplicate}, late ${s.updates.late}, rejected ${s.updates.rejected}`],
    ['messages', `${fmtNum(s.messages.total)} (${(s.messages.total / Math.max(secs, 1e-3)).toFixed(0)}/s)`],
    ['bytes', `sent ${fmtBytes(s.bytes.sent)}, received ${fmtBytes(s.bytes.received)}`],
    ['errors', `${fmtNum(s.errors.total)}${s.errors.total ? ` (${Object.entries({ ...s.errors.byKind, ...s.errors.server }).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}, retries ${fmtNum(s.retries)}`],
    ['final model', s.finalModel ? `version ${s.finalModel.version}, held by ${s.finalModel.workersHolding} workers (${s.finalModel.workersHoldingOther} hold another)` : 'n/a (no server report)'],
    ['fedsim', s.fedsimVersion],
  ];
  return `<dl class="facts">${rows.map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${esc(v)}</dd></div>`).join('')}</dl>`;
}

const LATENCIES: Array<[string, keyof Summary]> = [
  ['round (server)', 'roundMs'],
  ['register', 'registerMs'],
  ['upload', 'uploadMs'],
  ['wait', 'waitMs'],
  ['download', 'downloadMs'],
  ['propagation', 'propagationMs'],
];

/** The charts the page draws, in order: id, title, what it shows. The browser script draws each into div#chart-ID. */
const CHARTS: Array<[id: string, title: string, caption: string]> = [
  ['rounds', 'Round times', 'Each closed round, opened → closed, as the server measured it (summary.roundLines). Amber bars: closed on the quorum after the deadline rather than on all updates.'],
  ['propagation', 'Propagation percentiles', 'Publish → a worker holds the whole, checked model. Points are the p50, p95, p99 and max of the merged HDR histograms in summary.json (propagationMs, and per chunk); the summary keeps no p90 and no buckets, so this is not a histogram.'],
  ['throughput', 'Throughput', 'Messages and body bytes the workers sent plus received, per second, from consecutive stats_history.csv rows. Red bands: fault windows (applied → healed).'],
  ['workers', 'Workers per state', 'Stacked: how many workers were in each state at each row. States no worker entered are left out. Red bands: fault windows.'],
  ['errors', 'Errors and retries', 'Cumulative errors the workers met and retried attempts. Red bands: fault windows.'],
  ['cpu', 'Busiest node: CPU and event-loop delay', 'Highest CPU % of any node and highest p99 event-loop delay, from the latest heartbeats. Near 100 % the figures may be limited by fedsim itself.'],
  ['memory', 'Busiest node: memory and open files', 'Highest resident set (MB) and open file descriptors of any node, from the latest heartbeats.'],
];

export const REPORT_CHARTS = CHARTS.map(([id]) => id);

/** The page's own script: parses the data blob, exposes it as window.fedsimReport, draws the charts. */
const CLIENT_JS = String.raw`
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('fedsim-data').textContent);
  window.fedsimReport = data;
  var S = data.summary, H = data.history, F = data.faults;
  var T = H.elapsed_s || [];
  var HEIGHT = 260;
  var dpr = window.devicePixelRatio || 1;
  var drawn = [];

  function num(v) { return typeof v === 'number' && isFinite(v) ? v : null; }
  function col(name) { return (H[name] || []).map(num); }
  function fixed(d) { return function (u, v) { return v == null ? '--' : v.toFixed(d); }; }
  function note(el, text) { var p = document.createElement('p'); p.className = 'muted nodata'; p.textContent = text; el.appendChild(p); }

  /** Per-second rate of a cumulative column between consecutive rows. */
  function rate(name, scale) {
    var c = col(name);
    return c.map(function (v, i) {
      if (i === 0 || v == null || c[i - 1] == null) return null;
      var dt = T[i] - T[i - 1];
      return dt > 0 ? Math.max(0, (v - c[i - 1]) / dt / scale) : null;
    });
  }

  /** Where fault window f lies on chart u, in canvas pixels (null: outside the plot). */
  function span(u, f) {
    var b = u.bbox, end = T[T.length - 1];
    var x0 = Math.max(b.left, u.valToPos(f.fromS, 'x', true));
    var x1 = Math.min(b.left + b.width, u.valToPos(f.toS == null ? end : f.toS, 'x', true));
    return x1 < b.left || x0 > b.left + b.width ? null : [x0, Math.max(x1 - x0, 2 * dpr)];
  }

  /** Shades each fault window (applied → healed, or to the end) behind the series, and names it on top. */
  function faultBands() {
    function each(u, fn) {
      if (!F.length || !T.length) return;
      u.ctx.save();
      F.forEach(function (f) { var s = span(u, f); if (s) fn(u.ctx, u.bbox, f, s[0], s[1]); });
      u.ctx.restore();
    }
    return {
      hooks: {
        drawClear: [function (u) {
          each(u, function (ctx, b, f, x, w) { ctx.fillStyle = 'rgba(239, 68, 68, 0.13)'; ctx.fillRect(x, b.top, w, b.height); });
        }],
        draw: [function (u) {
          each(u, function (ctx, b, f, x, w) {
            ctx.fillStyle = 'rgba(185, 28, 28, 0.55)';
            ctx.fillRect(x, b.top, w, 3 * dpr);
            ctx.font = (11 * dpr) + 'px system-ui, sans-serif';
            ctx.textAlign = 'left'; // uPlot leaves its own alignment on the shared context
            ctx.textBaseline = 'alphabetic';
            var label = f.id + ' ' + f.kind;
            ctx.fillStyle = 'rgba(255, 255, 255, 0.85)';
            ctx.fillRect(x + 2 * dpr, b.top + 4 * dpr, ctx.measureText(label).width + 4 * dpr, 14 * dpr);
            ctx.fillStyle = '#b91c1c';
            ctx.fillText(label, x + 4 * dpr, b.top + 15 * dpr);
          });
        }],
      },
    };
  }

  function timeAxis() { return { label: 'elapsed s (since the coordinator started)', stroke: '#475569', grid: { stroke: '#e2e8f0' } }; }
  function yAxis(label, scale, side) {
    return { scale: scale, label: label, side: side || 3, stroke: '#475569', grid: { show: side !== 1, stroke: '#e2e8f0' }, size: 60 };
  }

  function draw(id, opts, d) {
    var el = document.getElementById('chart-' + id);
    if (!d[0].length) { note(el, 'no samples in this run'); return; }
    opts.width = Math.max(300, el.clientWidth);
    opts.height = HEIGHT;
    opts.legend = opts.legend || { live: true };
    drawn.push({ el: el, u: new uPlot(opts, d, el) });
  }

  // Round times: one bar per closed round.
  (function () {
    var rl = S.roundLines || [];
    var x = rl.map(function (r) { return r.round; });
    var y = rl.map(function (r) { return r.durationMs; });
    var quorum = rl.map(function (r) { return r.byQuorum ? r.durationMs : null; });
    var bars = uPlot.paths.bars({ size: [0.7, 60] });
    draw('rounds', {
      scales: { x: { time: false, range: function (u, mn, mx) { return [mn - 0.5, mx + 0.5]; } } },
      axes: [{ label: 'round', stroke: '#475569', grid: { show: false }, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, yAxis('ms', 'ms')],
      series: [
        { label: 'round' },
        { label: 'duration ms', scale: 'ms', stroke: '#2563eb', fill: 'rgba(37, 99, 235, 0.35)', paths: bars, points: { show: false }, value: fixed(1) },
        { label: 'by quorum', scale: 'ms', stroke: '#b45309', fill: 'rgba(245, 158, 11, 0.55)', paths: bars, points: { show: false }, value: fixed(1) },
      ],
    }, [x, y, quorum]);
  })();

  // Propagation: the percentile points of the whole run and of each chunk.
  (function () {
    var KEYS = ['p50', 'p95', 'p99', 'max'];
    var PALETTE = ['#0f172a', '#2563eb', '#16a34a', '#c026d3', '#ea580c', '#0891b2', '#be123c', '#65a30d'];
    var curves = [{ label: 'all workers', p: S.propagationMs }].concat((S.perChunk || []).map(function (c) {
      return { label: 'chunk ' + c.chunk, p: c.propagationMs };
    })).filter(function (c) { return c.p && c.p.count > 0; });
    if (curves.length > 9) curves = curves.slice(0, 9);
    var x = curves.length ? KEYS.map(function (k, i) { return i; }) : [];
    draw('propagation', {
      scales: { x: { time: false, range: [-0.25, KEYS.length - 0.75] } },
      axes: [
        { label: 'percentile', stroke: '#475569', grid: { show: false }, splits: function () { return KEYS.map(function (k, i) { return i; }); }, values: function (u, sp) { return sp.map(function (v) { return KEYS[v] || ''; }); } },
        yAxis('ms', 'ms'),
      ],
      series: [{ label: 'percentile', value: function (u, v) { return v == null ? '--' : KEYS[v]; } }].concat(curves.map(function (c, i) {
        return { label: c.label + ' (' + c.p.count + ')', scale: 'ms', stroke: PALETTE[i % PALETTE.length], width: i === 0 ? 2.5 : 1.5, dash: i === 0 ? undefined : [6, 4], points: { show: true, size: 7 }, value: fixed(1) };
      })),
    }, [x].concat(curves.map(function (c) { return KEYS.map(function (k) { return c.p[k]; }); })));
  })();

  // Throughput over time.
  draw('throughput', {
    scales: { x: { time: false } },
    axes: [timeAxis(), yAxis('messages/s', 'msg'), yAxis('MB/s', 'mb', 1)],
    series: [
      { label: 'elapsed s', value: fixed(1) },
      { label: 'messages/s', scale: 'msg', stroke: '#2563eb', width: 2, value: fixed(0) },
      { label: 'MB/s', scale: 'mb', stroke: '#16a34a', width: 2, value: fixed(3) },
    ],
    plugins: [faultBands()],
  }, [T, rate('messages', 1), rate('bytes', 1e6)]);

  // Workers per state, stacked bottom-up in legend order; the legend shows each state's own count.
  (function () {
    var states = data.states.filter(function (s) { return col('workers_' + s.state).some(function (v) { return v > 0; }); });
    var raw = states.map(function (s) { return col('workers_' + s.state); });
    var acc = T.map(function () { return 0; });
    var stacked = raw.map(function (c) {
      acc = acc.map(function (a, i) { return a + (c[i] || 0); });
      return acc.slice();
    });
    var bands = states.slice(1).map(function (s, i) { return { series: [i + 2, i + 1] }; });
    draw('workers', {
      scales: { x: { time: false }, w: { range: function (u, mn, mx) { return [0, Math.max(1, mx)]; } } },
      axes: [timeAxis(), yAxis('workers', 'w')],
      bands: bands,
      series: [{ label: 'elapsed s', value: fixed(1) }].concat(states.map(function (s, i) {
        return { label: s.state, scale: 'w', stroke: s.color, fill: s.color + 'cc', width: 1, points: { show: false }, value: function (u, v, si, idx) { return idx == null ? '--' : String(raw[i][idx]); } };
      })),
      plugins: [faultBands()],
    }, [T].concat(stacked));
  })();

  // Errors and retries, cumulative.
  draw('errors', {
    scales: { x: { time: false } },
    axes: [timeAxis(), yAxis('count', 'n')],
    series: [
      { label: 'elapsed s', value: fixed(1) },
      { label: 'errors', scale: 'n', stroke: '#dc2626', width: 4, value: fixed(0) },
      { label: 'retries', scale: 'n', stroke: '#ff8800', width: 2, dash: [6, 4], value: fixed(0) },
    ],
    plugins: [faultBands()],
  }, [T, col('errors'), col('retries')]);

  // Node resources.
  draw('cpu', {
    scales: { x: { time: false }, pct: { range: function (u, mn, mx) { return [0, Math.max(100, mx)]; } } },
    axes: [timeAxis(), yAxis('CPU %', 'pct'), yAxis('loop delay ms', 'lag', 1)],
    series: [
      { label: 'elapsed s', value: fixed(1) },
      { label: 'max CPU %', scale: 'pct', stroke: '#7c3aed', width: 2, value: fixed(0) },
      { label: 'max loop delay ms (p99)', scale: 'lag', stroke: '#ea580c', width: 2, value: fixed(1) },
    ],
    plugins: [faultBands()],
  }, [T, col('max_node_cpu_percent'), col('max_loop_delay_ms')]);
  draw('memory', {
    scales: { x: { time: false } },
    axes: [timeAxis(), yAxis('RSS MB', 'mb'), yAxis('open files', 'fd', 1)],
    series: [
      { label: 'elapsed s', value: fixed(1) },
      { label: 'max RSS MB', scale: 'mb', stroke: '#0891b2', width: 2, value: fixed(0) },
      { label: 'max open files', scale: 'fd', stroke: '#64748b', width: 2, dash: [6, 4], value: fixed(0) },
    ],
    plugins: [faultBands()],
  }, [T, col('max_node_rss_mb'), col('max_open_fds')]);

  window.addEventListener('resize', function () {
    drawn.forEach(function (c) { c.u.setSize({ width: Math.max(300, c.el.clientWidth), height: HEIGHT }); });
  });
})();
`;

const PAGE_CSS = `
:root { --fg: #0f172a; --muted: #64748b; --line: #e2e8f0; --bg: #f8fafc; --ok: #15803d; --warn: #b45309; --bad: #b91c1c; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 18px 28px 14px; background: #fff; border-bottom: 4px solid var(--ok); }
header.failed { border-bottom-color: var(--bad); }
h1 { margin: 0 0 6px; font-size: 22px; font-weight: 600; overflow-wrap: anywhere; }
h2 { font-size: 16px; margin: 0 0 10px; }
h3 { font-size: 14px; margin: 0 0 6px; }
main { padding: 16px 28px 28px; max-width: 1500px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 14px 16px; margin: 0 0 16px; }
.failure { margin: 8px 0 0; padding: 8px 12px; background: #fef2f2; border: 1px solid #fecaca; border-radius: 4px; color: var(--bad); overflow-wrap: anywhere; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 4px 24px; margin: 10px 0 0; }
.facts div { display: flex; gap: 10px; }
.facts dt { color: var(--muted); min-width: 90px; }
.facts dd { margin: 0; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; letter-spacing: .02em; }
.badge.ok { background: #dcfce7; color: var(--ok); }
.badge.warn { background: #fef3c7; color: var(--warn); }
.badge.bad { background: #fee2e2; color: var(--bad); }
.badge.plain { background: #e2e8f0; color: var(--fg); }
h1 .badge { font-size: 14px; vertical-align: middle; margin-left: 8px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { color: var(--muted); font-weight: 600; background: #f8fafc; white-space: normal; vertical-align: bottom; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:hover { background: #f1f5f9; }
.muted { color: var(--muted); }
strong.bad { color: var(--bad); }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; }
figure { margin: 0; min-width: 0; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 4px; }
.chart { min-height: 40px; }
.nodata { padding: 20px 0; }
details > summary { cursor: pointer; font-weight: 600; }
pre { font-size: 12px; background: #f8fafc; padding: 10px; overflow-x: auto; border-radius: 4px; }
footer { color: var(--muted); font-size: 12px; padding: 0 28px 24px; }
.u-legend { font-size: 12px; }
@media print { body { background: #fff; } section { break-inside: avoid; } }
`;

/** stats_history rows by column (what uPlot draws from). */
function columns(rows: readonly HistoryRow[]): ReportData['history'] {
  return Object.fromEntries(HISTORY_COLUMNS.map((c) => [c, rows.map((r) => r[c] ?? null)]));
}

/** The whole page. `assets` defaults to the installed uPlot (readAsset); tests may pass their own. */
export function renderReportHtml(input: ReportInput, assets: (name: AssetName) => string = readAsset): string {
  const s = input.summary;
  const data: ReportData = {
    summary: s,
    history: columns(input.rows),
    faults: input.faults,
    states: WORKER_STATES.map((state) => ({ state, color: STATE_COLORS[state] })),
  };
  const thresholds = s.thresholds ?? [];
  // An empty histogram reads all zeros in summary.json: here it is n/a, not 0 ms.
  const lat = (p: Percentiles): Cell[] => [p.count, ...[p.p50, p.p95, p.p99, p.max, p.mean].map((v) => (p.count ? fmtMs(v) : null))];
  const thresholdsFailed = thresholds.filter((t) => !t.ok).length;
  // What the exit code said: a run that completed but failed a threshold exits 99, not 0.
  const verdict = s.status !== 'passed' ? 'FAILED' : thresholdsFailed > 0 ? 'THRESHOLDS FAILED' : 'PASSED';
  const failed = verdict !== 'PASSED';
  const why = [
    ...(s.failure ? [`<strong>failure:</strong> ${esc(s.failure)}`] : []),
    ...thresholds.filter((t) => !t.ok).map((t) => `<strong>threshold failed:</strong> ${esc(`${t.metric}: ${t.expr} (measured ${t.value === null ? 'nothing' : Math.round(t.value * 1000) / 1000})`)}`),
  ];
  const faultsBad = s.faults.filter((f) => verdictKind(f.verdict) === 'bad').length;

  const sections = [
    `<section id="thresholds"><h2>Thresholds${thresholds.length ? ` <span class="muted">(${thresholds.length - thresholdsFailed} of ${thresholds.length} pass)</span>` : ''}</h2>
${table(thresholds, [
  ['result', (t) => badge(t.ok ? 'PASS' : 'FAIL', t.ok ? 'ok' : 'bad')],
  ['metric', (t) => t.metric],
  ['expression', (t) => t.expr],
  ['measured', (t) => (t.value === null ? 'nothing' : String(Math.round(t.value * 1000) / 1000)), true],
], 'No thresholds were set for this run (--threshold, or thresholds: in the scenario).')}</section>`,

    `<section id="faults"><h2>Fault verdicts${s.faults.length ? ` <span class="muted">(${s.faults.length} instances${faultsBad ? `, ${faultsBad} not recovered` : ''})</span>` : ''}</h2>
${table(s.faults, [
  ['fault', (f) => `${f.id}#${f.instance}`],
  ['verdict', (f) => badge(f.verdict, verdictKind(f.verdict))],
  ['kind', (f) => f.kind],
  ['target', (f) => f.target],
  ['trigger', (f) => f.trigger],
  ['backend', (f) => f.backend],
  ['chunks', (f) => f.chunks.join(', ')],
  ['affected', (f) => f.affected, true],
  ['on for', (f) => (f.healedAtMs === null ? 'never healed' : fmtMs(f.healedAtMs - f.appliedAtMs)), true],
  ['noticed after', (f) => (f.noticedAfterMs === null ? null : `${fmtMs(f.noticedAfterMs)}${f.noticedBy ? ` (${f.noticedBy})` : ''}`), true],
  ['first exchange after heal', (f) => (f.firstExchangeAfterHealMs === null ? null : fmtMs(f.firstExchangeAfterHealMs)), true],
  ['next round after heal', (f) => (f.nextRoundAfterHealMs === null ? null : fmtMs(f.nextRoundAfterHealMs)), true],
  ['degraded', (f) => f.degradedWorkers, true],
  ['stuck', (f) => f.stuckWorkers, true],
  ...(s.faults.some((f) => f.error) ? [['error', (f) => f.error ?? ''] as Col<Summary['faults'][number]>] : []),
], 'No faults fired in this run.')}</section>`,

    ...(s.ramp
      ? [
          `<section id="ramp"><h2>Ramp</h2>
<p>${esc(
            s.ramp.limits.length === 0
              ? `${s.ramp.steps.length} steps of ${s.ramp.hold} rounds; no threshold on round_ms, propagation_ms or errors to judge them by.`
              : s.ramp.capacity
                ? `Capacity: ${s.ramp.capacity.workers} workers at ${s.ramp.limits.join(' and ')}${s.ramp.brokeAt ? ` (the step of ${s.ramp.brokeAt.workers} broke: ${s.ramp.brokeAt.why})` : ' (every step held: the ramp did not reach the limit)'}.`
                : `Capacity: below the first step (${s.ramp.brokeAt?.workers} workers broke: ${s.ramp.brokeAt?.why}).`,
          )}</p>
${table(s.ramp.steps, [
  ['workers', (st) => st.workers, true],
  ['rounds', (st) => `${st.firstRound}..${st.lastRound}`],
  ['closed', (st) => st.roundsClosed, true],
  ['round p95', (st) => (st.roundMs ? fmtMs(st.roundMs.p95) : null), true],
  ['propagation p99', (st) => (st.propagationMs ? fmtMs(st.propagationMs.p99) : null), true],
  ['errors', (st) => st.errors, true],
  ['verdict', (st) => badge(st.held ? 'held' : 'broke', st.held ? 'ok' : 'bad')],
], 'No step ran.')}</section>`,
        ]
      : []),

    `<section id="charts"><h2>Charts</h2><div class="charts">
${CHARTS.map(([id, title, caption]) => `<figure><h3>${esc(title)}</h3><div class="chart" id="chart-${id}" data-chart="${id}"></div><figcaption>${esc(caption)}</figcaption></figure>`).join('\n')}
</div><noscript><p class="muted">The charts need JavaScript (inlined in this file; nothing is fetched).</p></noscript></section>`,

    `<section id="latencies"><h2>Latencies</h2>
${table(LATENCIES, [
  ['latency', ([name]) => name],
  ...(['count', 'p50', 'p95', 'p99', 'max', 'mean'] as const).map((h, i): Col<[string, keyof Summary]> => [h, ([, k]) => lat(s[k] as Percentiles)[i], true]),
], '')}
<p class="muted">From HDR histograms merged over all nodes (summary.json; docs/summary.md). A value is the top of its bucket, exact to within 0.1 %.</p></section>`,

    `<section id="chunks"><h2>Per chunk</h2>
${table(s.perChunk, [
  ['chunk', (c) => c.chunk],
  ['host', (c) => c.host],
  ['workers', (c) => c.workers, true],
  ['rounds done', (c) => c.roundsDone, true],
  ['done', (c) => c.workersDone, true],
  ['failed', (c) => (c.workersFailed ? { html: `<strong class="bad">${c.workersFailed}</strong>` } : 0), true],
  ['errors', (c) => c.errors, true],
  ['retries', (c) => c.retries, true],
  ['messages', (c) => c.messages, true],
  ['sent', (c) => fmtBytes(c.bytesSent), true],
  ['received', (c) => fmtBytes(c.bytesReceived), true],
  ['upload / download p95', (c) => `${fmtMs(c.uploadMs.p95)} / ${fmtMs(c.downloadMs.p95)}`, true],
  ['propagation p50 / p95 / p99 / max', (c) => (c.propagationMs.count ? [c.propagationMs.p50, c.propagationMs.p95, c.propagationMs.p99, c.propagationMs.max].map(fmtMs).join(' / ') : null), true],
], 'No worker node attached.')}</section>`,

    `<section id="nodes"><h2>Per node</h2>
${table(s.perNode, [
  ['node', (n) => n.id],
  ['role', (n) => n.role],
  ['host', (n) => n.host],
  ['pid', (n) => String(n.pid), true],
  ['status', (n) => badge(n.status, n.status === 'finished' ? 'ok' : n.status === 'lost' || n.status === 'failed' || n.status === 'missing' ? 'bad' : 'plain')],
  ['exit', (n) => (n.exitCode === null ? null : String(n.exitCode)), true],
  ['clock offset', (n) => (n.clockOffsetMs === null ? null : `${n.clockOffsetMs.toFixed(2)} ms`), true],
  ['rtt', (n) => (n.rttMs === null ? null : `${n.rttMs.toFixed(2)} ms`), true],
  ['max RSS', (n) => (n.maxRssBytes === null ? null : fmtBytes(n.maxRssBytes)), true],
  ['error', (n) => n.error],
], 'No node attached.')}</section>`,

    `<section id="more"><details><summary>Rounds (${s.roundLines.length})</summary>
${table(s.roundLines, [
  ['round', (r) => r.round, true],
  ['duration', (r) => fmtMs(r.durationMs), true],
  ['updates', (r) => r.updates, true],
  ['closed by', (r) => (r.byQuorum ? 'quorum' : 'all updates')],
  ['messages (server)', (r) => r.messages, true],
  ['bytes (server)', (r) => fmtBytes(r.bytes), true],
  ['published', (r) => new Date(r.publishedAtMs).toISOString()],
], 'No round closed.')}</details>
<details><summary>Scenario</summary><pre>${esc(JSON.stringify(s.scenario ?? null, null, 2))}</pre></details></section>`,
  ];

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="generator" content="fedsim ${esc(s.fedsimVersion)}">
<title>fedsim ${esc(verdict)}: ${esc(s.name)}</title>
<style>${inlineSafe(assets('uplot.css'), 'style')}</style>
<style>${PAGE_CSS}</style>
</head>
<body>
<header class="${failed ? 'failed' : 'passed'}">
<h1>fedsim run “${esc(s.name)}”${badge(verdict, failed ? 'bad' : 'ok').html}</h1>
${why.map((w) => `<div class="failure">${w}</div>`).join('\n')}
${facts(s)}
</header>
<main>
${sections.join('\n\n')}
</main>
<footer>Written by fedsim ${esc(s.fedsimVersion)} beside summary.json, stats_history.csv and the other files of the run directory (docs/report.md). Self-contained: charts by uPlot (MIT, inlined); nothing is fetched.</footer>
<script type="application/json" id="fedsim-data">${jsonForScript(data)}</script>
<script>${inlineSafe(assets('uplot.js'), 'script')}</script>
<script>${CLIENT_JS}</script>
</body>
</html>
`;
}
