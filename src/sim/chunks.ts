/**
 * How the run's workers split into chunks (one per worker node): pure arithmetic that the
 * server, the worker nodes and ramps share. Parsing "3 of 4" is config/chunk.ts.
 */

/** Worker indices of chunk n of k among W workers: floor((n-1)·W/k) .. floor(n·W/k)-1. */
export function chunkRange(chunk: { readonly n: number; readonly k: number }, workers: number): { first: number; count: number } {
  const first = Math.floor(((chunk.n - 1) * workers) / chunk.k);
  const end = Math.floor((chunk.n * workers) / chunk.k);
  return { first, count: end - first };
}
