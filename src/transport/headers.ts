/** Header names of the long-poll HTTP protocol (v1). */
export const H = {
  version: 'x-fedsim-version',
  sha256: 'x-fedsim-sha256',
  publishedAt: 'x-fedsim-published-at',
} as const;

/** Large payloads move in chunks of this size on both transports. */
export const CHUNK_BYTES = 1024 * 1024;

/**
 * A received body: with its size known up front (Content-Length, the model header) it is
 * one buffer filled as chunks arrive; otherwise chunks are kept and joined at the end.
 * Either way a large model is never held twice.
 */
export class BodyBuffer {
  private readonly whole: Buffer | null;
  private readonly parts: Buffer[] = [];
  private n = 0;
  /** Bytes in `whole`; a body longer than announced spills into `parts` (and fails the length check). */
  private filled = 0;

  constructor(expected: number) {
    this.whole = Number.isSafeInteger(expected) && expected > 0 && expected <= 2 ** 31 ? Buffer.allocUnsafe(expected) : null;
  }

  push(c: Buffer): void {
    if (this.whole && this.parts.length === 0 && this.filled + c.length <= this.whole.length) {
      c.copy(this.whole, this.filled);
      this.filled += c.length;
    } else this.parts.push(c);
    this.n += c.length;
  }

  get length(): number {
    return this.n;
  }

  bytes(): Buffer {
    if (this.whole && this.parts.length === 0) return this.whole.subarray(0, this.filled);
    if (this.whole) return Buffer.concat([this.whole.subarray(0, this.filled), ...this.parts]);
    return this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.n);
  }
}
