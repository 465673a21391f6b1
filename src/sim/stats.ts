import * as hdr from 'hdr-histogram-js';

/**
 * Figures. Latencies are recorded in microseconds in HDR histograms; they cross
 * process boundaries encoded (compressed base64) and are merged in one function.
 * Counters are plain numbers in plain objects: the hot path only adds.
 */

export const LATENCY_NAMES = ['registerMs', 'uploadMs', 'waitMs', 'downloadMs', 'propagationMs', 'roundMs'] as const;
export type LatencyName = (typeof LATENCY_NAMES)[number];

export type Histogram = hdr.Histogram;

export function newHistogram(): Histogram {
  return hdr.build({ bitBucketSize: 32, autoResize: true, lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 });
}

/** Records a duration given in milliseconds (stored as whole microseconds, at least 1). */
export function recordMs(h: Histogram, ms: number): void {
  h.recordValue(Math.max(1, Math.round(ms * 1000)));
}

export function encodeHistogram(h: Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

export function decodeHistogram(s: string): Histogram {
  const h = hdr.decodeFromCompressedBase64(s, 32, false);
  return h;
}

/** Percentiles of plain millisecond figures (a few hundred round durations), as percentiles() reports them. */
export function percentilesOf(ms: readonly number[]): Percentiles | null {
  if (ms.length === 0) return null;
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(s.length * q) - 1))];
  return { count: s.length, p50: round3(at(0.5)), p95: round3(at(0.95)), p99: round3(at(0.99)), max: round3(s[s.length - 1]), mean: round3(s.reduce((a, b) => a + b, 0) / s.length) };
}

export function mergeHistograms(parts: readonly Histogram[]): Histogram {
  const out = newHistogram();
  for (const p of parts) if (p.totalCount > 0) out.add(p);
  return out;
}

export interface Percentiles {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** One percentile in milliseconds (percentiles() also walks every bucket for the mean). */
export function percentileMs(h: Histogram, p: number): number {
  return h.totalCount === 0 ? 0 : round3(h.getValueAtPercentile(p) / 1000);
}

/** Percentiles in milliseconds. */
export function percentiles(h: Histogram): Percentiles {
  if (h.totalCount === 0) return { count: 0, p50: 0, p95: 0, p99: 0, max: 0, mean: 0 };
  const ms = (us: number) => round3(us / 1000);
  return {
    count: h.totalCount,
    p50: ms(h.getValueAtPercentile(50)),
    p95: ms(h.getValueAtPercentile(95)),
    p99: ms(h.getValueAtPercentile(99)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
  };
}

/** Counters keyed by a name (message type, error kind, …). */
export type CounterMap = Record<string, number>;

export function bump(map: CounterMap, key: string, by = 1): void {
  map[key] = (map[key] ?? 0) + by;
}

export function addCounters(into: CounterMap, from: CounterMap): CounterMap {
  for (const [k, v] of Object.entries(from)) bump(into, k, v);
  return into;
}

export function sumCounters(map: CounterMap): number {
  let s = 0;
  for (const v of Object.values(map)) s += v;
  return s;
}
