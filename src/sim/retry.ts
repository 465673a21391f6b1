import type { Clock } from './ports.js';
import { TransportError } from './ports.js';

export interface RetryPolicy {
  /** Retries after the first attempt. */
  readonly retries: number;
  readonly baseMs: number;
  readonly maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 5, baseMs: 100, maxMs: 2000 };

/** Exponential backoff with full jitter: a uniform draw in [0, min(max, base·2^attempt)]. */
export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number): number {
  const cap = Math.min(policy.maxMs, policy.baseMs * 2 ** attempt);
  return random() * cap;
}

export interface RetryHooks {
  onRetry(err: TransportError, attempt: number): void;
}

/**
 * Runs `op`, retrying transport errors marked retryable. Other errors, and the last
 * retryable one once the budget is spent, are thrown.
 */
export async function withRetry<T>(
  op: () => Promise<T>,
  policy: RetryPolicy,
  clock: Clock,
  random: () => number,
  hooks: RetryHooks,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (!(err instanceof TransportError) || !err.retryable || attempt >= policy.retries || signal?.aborted) throw err;
      hooks.onRetry(err, attempt);
      await clock.sleep(backoffMs(policy, attempt, random), signal);
    }
  }
}

/** At most `n` operations at once; the rest wait in order. */
export function limiter(n: number): <T>(op: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: Array<() => void> = [];
  const next = () => {
    if (active >= n || queue.length === 0) return;
    active++;
    queue.shift()!();
  };
  return <T>(op: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      queue.push(() => {
        op()
          .then(resolve, reject)
          .finally(() => {
            active--;
            next();
          });
      });
      next();
    });
}
