import { UsageError } from '../errors.js';

export interface Chunk {
  /** 1-based chunk number. */
  readonly n: number;
  /** Number of chunks. */
  readonly k: number;
}

const CHUNK_RE = /^\s*(\d+)\s*(?:of|\/)\s*(\d+)\s*$/i;

/** Parses "3 of 4", "3of4" or "3/4". */
export function parseChunk(input: string): Chunk {
  const m = CHUNK_RE.exec(input);
  if (!m) {
    throw new UsageError(`--chunk "${input}" is not a chunk: write it as "n of k" (or "n/k"), e.g. --chunk "3 of 4"`);
  }
  const n = Number(m[1]);
  const k = Number(m[2]);
  if (k < 1) throw new UsageError(`--chunk "${input}": the number of chunks must be at least 1`);
  if (n < 1 || n > k) throw new UsageError(`--chunk "${input}": the chunk number must be between 1 and ${k}`);
  return { n, k };
}

export { chunkRange } from '../sim/chunks.js';

export function formatChunk(chunk: Chunk): string {
  return `${chunk.n} of ${chunk.k}`;
}

const FROM_ENV_RE = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s+of\s+(\d+)\s*$/;

/**
 * `--chunk-from-env "VAR of K"`: chunk (i + 1) of K, where the environment variable VAR
 * holds a zero-based index i, 0..K-1 (a Kubernetes Indexed Job's JOB_COMPLETION_INDEX).
 * So the manifests need no shell to turn the index into a chunk (docs/multi-host.md).
 */
export function chunkFromEnv(spec: string, env: NodeJS.ProcessEnv): Chunk {
  const m = FROM_ENV_RE.exec(spec);
  if (!m) throw new UsageError(`--chunk-from-env "${spec}" is not "VAR of K": e.g. --chunk-from-env "JOB_COMPLETION_INDEX of 4"`);
  const [, name, kText] = m;
  const k = Number(kText);
  if (k < 1) throw new UsageError(`--chunk-from-env "${spec}": the number of chunks must be at least 1`);
  const value = env[name];
  if (value === undefined || value === '') throw new UsageError(`--chunk-from-env "${spec}": the environment variable ${name} is not set (it holds the zero-based chunk index)`);
  if (!/^\d+$/.test(value.trim())) throw new UsageError(`--chunk-from-env "${spec}": ${name}="${value}" is not a whole number`);
  const i = Number(value.trim());
  if (i >= k) throw new UsageError(`--chunk-from-env "${spec}": ${name}=${i} is outside 0..${k - 1}`);
  return { n: i + 1, k };
}
