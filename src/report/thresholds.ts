import { UsageError } from '../errors.js';
import { parseDuration } from '../netem/spec.js';
import type { Summary } from './summary.js';

/**
 * k6-style thresholds over the merged figures of a run: `round_ms: ['p(95)<2000']`,
 * `errors: ['count==0']`, `faults_recovered: ['rate==1']`, or any number in summary.json
 * by its dotted path (`updates.duplicate: ['value==0']`). docs/thresholds.md.
 */
export interface Threshold {
  metric: string;
  expr: string;
  agg: string;
  op: '<' | '<=' | '>' | '>=' | '==' | '!=';
  target: number;
  /** k6's abortOnFail: checked while the run goes; the run stops (exit 99) once it fails. */
  abortOnFail: boolean;
  /** With abortOnFail: not checked before this long after the start (k6's delayAbortEval). */
  delayAbortEvalMs: number;
}

export interface ThresholdResult {
  metric: string;
  expr: string;
  abortOnFail: boolean;
  /** The measured value (null: the metric has no such figure in this run). */
  value: number | null;
  ok: boolean;
}

/** Latency metrics (summary histograms, ms) and what each aggregation reads. */
const LATENCIES: Record<string, keyof Summary> = {
  round_ms: 'roundMs',
  register_ms: 'registerMs',
  upload_ms: 'uploadMs',
  wait_ms: 'waitMs',
  download_ms: 'downloadMs',
  propagation_ms: 'propagationMs',
};
/** What each latency aggregation reads from a set of percentiles. */
export const LAT_AGGS: Record<string, 'p50' | 'p95' | 'p99' | 'max' | 'mean' | 'count'> = { 'p(50)': 'p50', med: 'p50', 'p(95)': 'p95', 'p(99)': 'p99', max: 'max', avg: 'mean', count: 'count' };

const EXPR = /^\s*(p\(\d+(?:\.\d+)?\)|avg|med|max|min|count|rate|value)\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$/;

/** Metrics that have a figure while the run goes (src/report/liveThresholds.ts), so abortOnFail can watch them. */
export const LIVE_METRICS = ['round_ms', 'propagation_ms', 'errors', 'retries', 'faults_recovered', 'rounds.completed', 'updates.accepted'] as const;

export function parseThreshold(metric: string, expr: string, where: string, abort: { abortOnFail?: boolean; delayAbortEvalMs?: number } = {}): Threshold {
  const m = EXPR.exec(expr);
  if (!m) throw new UsageError(`${where}: threshold "${metric}: ${expr}" is not AGG OP NUMBER (e.g. p(95)<2000, count==0, rate==1, value<=3)`);
  const agg = m[1];
  if (metric in LATENCIES && !(agg in LAT_AGGS)) {
    throw new UsageError(`${where}: ${metric} has ${Object.keys(LAT_AGGS).join(', ')}, not ${agg}`);
  }
  const abortOnFail = abort.abortOnFail === true;
  if (abortOnFail && !(LIVE_METRICS as readonly string[]).includes(metric)) {
    throw new UsageError(`${where}: abortOnFail on "${metric}": only ${LIVE_METRICS.join(', ')} have figures while the run goes; the others are checked at the end`);
  }
  return { metric, expr: expr.trim(), agg, op: m[2] as Threshold['op'], target: Number(m[3]), abortOnFail, delayAbortEvalMs: abort.delayAbortEvalMs ?? 0 };
}

/** `--threshold 'round_ms:p(95)<2000'` (the metric, a colon, the expression), optionally `:abortOnFail`. */
export function parseThresholdFlag(text: string): Threshold {
  const i = text.indexOf(':');
  if (i <= 0) throw new UsageError(`--threshold "${text}" must be METRIC:EXPR[:abortOnFail], e.g. 'round_ms:p(95)<2000'`);
  let expr = text.slice(i + 1);
  const abortOnFail = /:\s*abortOnFail\s*$/.test(expr);
  if (abortOnFail) expr = expr.replace(/:\s*abortOnFail\s*$/, '');
  return parseThreshold(text.slice(0, i).trim(), expr, '--threshold', { abortOnFail });
}

/** The scenario file's `thresholds:` mapping: metric → list of expressions. */
export function parseThresholdMap(raw: unknown, where: string): Threshold[] {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new UsageError(`${where}: thresholds must map metrics to lists, e.g. round_ms: ['p(95)<2000']`);
  const out: Threshold[] = [];
  for (const [metric, exprs] of Object.entries(raw)) {
    const list = Array.isArray(exprs) ? exprs : [exprs];
    for (const e of list) {
      if (typeof e === 'object' && e !== null) {
        // k6's long form: { threshold: 'p(95)<2000', abortOnFail: true, delayAbortEval: '10s' }
        const o = e as Record<string, unknown>;
        const unknown = Object.keys(o).filter((k) => !['threshold', 'abortOnFail', 'delayAbortEval'].includes(k));
        if (unknown.length || typeof o.threshold !== 'string') {
          throw new UsageError(`${where}: ${metric}: a threshold object has "threshold" (a string) and optionally abortOnFail and delayAbortEval${unknown.length ? `, not ${unknown.join(', ')}` : ''}`);
        }
        if (o.abortOnFail !== undefined && typeof o.abortOnFail !== 'boolean') throw new UsageError(`${where}: ${metric}: abortOnFail must be true or false`);
        const delay = o.delayAbortEval === undefined ? 0 : parseDuration(o.delayAbortEval, `${where}: ${metric}: delayAbortEval`);
        out.push(parseThreshold(metric, o.threshold, where, { abortOnFail: o.abortOnFail === true, delayAbortEvalMs: delay }));
      } else out.push(parseThreshold(metric, String(e), where));
    }
  }
  return out;
}

function valueOf(t: Threshold, s: Summary): number | null {
  const lat = LATENCIES[t.metric];
  if (lat) {
    const h = s[lat] as unknown as Record<string, number> | undefined;
    if (!h) return null;
    if (h.count === 0 && t.agg !== 'count') return null;
    return h[LAT_AGGS[t.agg]] ?? null;
  }
  if (t.metric === 'errors') return t.agg === 'count' || t.agg === 'value' ? s.errors.total : null;
  if (t.metric === 'retries') return t.agg === 'count' || t.agg === 'value' ? s.retries : null;
  if (t.metric === 'faults_recovered') {
    const n = s.faults.length;
    const ok = s.faults.filter((f) => f.verdict === 'recovered').length;
    return t.agg === 'count' ? ok : t.agg === 'rate' || t.agg === 'value' ? (n === 0 ? 1 : ok / n) : null;
  }
  // Any number in summary.json, by its dotted path.
  let v: unknown = s;
  for (const k of t.metric.split('.')) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return typeof v === 'number' && (t.agg === 'value' || t.agg === 'count') ? v : null;
}

export const cmp = (a: number, op: Threshold['op'], b: number) =>
  op === '<' ? a < b : op === '<=' ? a <= b : op === '>' ? a > b : op === '>=' ? a >= b : op === '==' ? a === b : a !== b;

/** Every threshold against the run's merged figures; a metric the run lacks fails its threshold. */
export function evaluateThresholds(ts: readonly Threshold[], s: Summary): ThresholdResult[] {
  return ts.map((t) => {
    const value = valueOf(t, s);
    return { metric: t.metric, expr: t.expr, abortOnFail: t.abortOnFail, value, ok: value !== null && cmp(value, t.op, t.target) };
  });
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** junit.xml: one test case per threshold and one per fault verdict. */
export function junitXml(s: Summary, results: readonly ThresholdResult[]): string {
  const cases: string[] = [];
  for (const r of results) {
    const name = xml(`${r.metric}: ${r.expr}`);
    cases.push(
      r.ok
        ? `    <testcase classname="fedsim.thresholds" name="${name}" time="0"/>`
        : `    <testcase classname="fedsim.thresholds" name="${name}" time="0"><failure message="${xml(`measured ${r.value ?? 'nothing'}`)}" type="threshold"/></testcase>`,
    );
  }
  for (const f of s.faults) {
    const name = xml(`${f.id}#${f.instance} ${f.kind} on ${f.target}`);
    const ok = f.verdict === 'recovered' || f.verdict === 'recovered-slow';
    cases.push(
      ok
        ? `    <testcase classname="fedsim.faults" name="${name}" time="0"/>`
        : `    <testcase classname="fedsim.faults" name="${name}" time="0"><failure message="${xml(`verdict ${f.verdict}`)}" type="fault"/></testcase>`,
    );
  }
  const failures = results.filter((r) => !r.ok).length + s.faults.filter((f) => !(f.verdict === 'recovered' || f.verdict === 'recovered-slow')).length;
  const secs = (s.durationMs / 1000).toFixed(3);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="fedsim" tests="${cases.length}" failures="${failures}" errors="0" time="${secs}">`,
    `  <testsuite name="${xml(s.name)}" tests="${cases.length}" failures="${failures}" errors="0" skipped="0" time="${secs}" timestamp="${xml(s.startedAt)}">`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
