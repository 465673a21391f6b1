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
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(t);
        reject(new Error('stopped'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  },
};
