/** Header names of the long-poll HTTP protocol (v1). */
export const H = {
  version: 'x-fedsim-version',
  sha256: 'x-fedsim-sha256',
  publishedAt: 'x-fedsim-published-at',
} as const;

/** Large payloads move in chunks of this size on both transports. */
export const CHUNK_BYTES = 1024 * 1024;
