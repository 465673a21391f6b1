import { performance } from 'node:perf_hooks';
import type { Clock } from '../sim/ports.js';

/** The real clock. wallNow has sub-millisecond precision and is comparable across processes on one host. */
export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => performance.timeOrigin + performance.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
  sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new Error('stopped'));
      const t = setTimeout(() => {
        forget?.();
        resolve();
      }, ms);
      const forget = signal
        ? whenAborted(signal, () => {
            clearTimeout(t);
            reject(new Error('stopped'));
          })
        : undefined;
    });
  },
};

/**
 * One abort listener per signal, however many sleepers wait on it: a chunk's workers share
 * one signal, and adding to an EventTarget with hundreds of listeners walks them all.
 */
const sleepers = new WeakMap<AbortSignal, Set<() => void>>();

function whenAborted(signal: AbortSignal, fn: () => void): () => void {
  let set = sleepers.get(signal);
  if (!set) {
    const fns = new Set<() => void>();
    set = fns;
    sleepers.set(signal, fns);
    signal.addEventListener(
      'abort',
      () => {
        for (const f of [...fns]) f();
        fns.clear();
      },
      { once: true },
    );
  }
  const fns = set;
  fns.add(fn);
  return () => fns.delete(fn);
}
