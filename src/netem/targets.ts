import type { Target } from './spec.js';

/** Does worker `index` (of `total`, in chunk `chunkN` of this run) fall in the target? Pure and deterministic. */
export function isTargeted(t: Target, index: number, chunkN: number, chunkFirst: number, chunkCount: number, total: number, seed: number): boolean {
  if (t.scope === 'server') return true;
  if (t.chunk !== undefined && t.chunk !== chunkN) return false;
  if (t.ids) return t.ids.includes(index);
  // Within a chunk the positions count from its first worker; otherwise from worker 0.
  const pos = t.chunk !== undefined ? index - chunkFirst : index;
  const size = t.chunk !== undefined ? chunkCount : total;
  const m = t.mode;
  if (m === 'all') return true;
  if (m === 'one') return pos === 0;
  if ('fixed' in m) return pos < m.fixed;
  // percent: a seeded hash per worker, so the same seed picks the same workers.
  let h = (index + 1) * 2654435761 + seed * 40503;
  h = Math.imul(h ^ (h >>> 16), 0x45d9f3b);
  h ^= h >>> 16;
  return ((h >>> 0) % 10_000) < m.percent * 100 && size > 0;
}

/** A fault that takes a node's whole link: the server's, or every worker of a chunk (or of the run). */
export function wholeNodeTarget(t: Target): boolean {
  return t.scope === 'server' || (t.ids === undefined && t.mode === 'all');
}

export function describeTarget(t: Target): string {
  if (t.scope === 'server') return "the server's link";
  const where = t.chunk !== undefined ? `chunk ${t.chunk}` : 'all chunks';
  if (t.ids) return `workers ${t.ids.join(',')}`;
  const m = t.mode;
  const which = m === 'all' ? 'all workers' : m === 'one' ? 'one worker' : 'fixed' in m ? `${m.fixed} workers` : `${m.percent}% of workers`;
  return `${which} of ${where}`;
}
