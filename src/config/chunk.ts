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

/** Worker indices of chunk n of k among W workers: floor((n-1)·W/k) .. floor(n·W/k)-1. */
export function chunkRange(chunk: Chunk, workers: number): { first: number; count: number } {
  const first = Math.floor(((chunk.n - 1) * workers) / chunk.k);
  const end = Math.floor((chunk.n * workers) / chunk.k);
  return { first, count: end - first };
}

export function formatChunk(chunk: Chunk): string {
  return `${chunk.n} of ${chunk.k}`;
}
