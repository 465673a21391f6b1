/** Header names of the long-poll HTTP protocol (v1). */
export const H = {
  version: 'x-fedsim-version',
  sha256: 'x-fedsim-sha256',
  publishedAt: 'x-fedsim-published-at',
} as const;

/** Large payloads move in chunks of this size on both transports. */
export const CHUNK_BYTES = 1024 * 1024;

/**
 * One model version's bytes as the pulls of one node receive them together: each byte is
 * written by the first pull to reach it and compared by the others. Pulls run in step (the
 * server publishes to every waiting worker at once), so without this every pull of a node
 * allocated and filled a copy of its own before any copy was whole to compare with.
 */
export class SharedBody {
  /** Bytes from the start that some pull has written. */
  filled: number;
  /**
   * Pulls comparing with this buffer or filling it now (BodyBuffer), or whose body it is and
   * not held yet (ModelVersions.hold): it is not rewritten while any are. A reader is done
   * when its bytes differ from the buffer's, or when its body is held.
   */
  readers = 0;
  /** Called when the last reader is done (ModelVersions: the buffer may then serve a later version). */
  onIdle: (() => void) | null = null;

  constructor(
    readonly buffer: Buffer,
    complete = false,
  ) {
    this.filled = complete ? buffer.length : 0;
  }

  /** A reader done with the buffer (its body whole, or differing from it). */
  readerDone(): void {
    if (--this.readers === 0) this.onIdle?.();
  }
}

/**
 * A received body: with its size known up front (Content-Length, the model header) it is
 * one buffer filled as chunks arrive; otherwise chunks are kept and joined at the end.
 * Either way a large model is never held twice.
 *
 * With a `reference` (a copy of the same model this node already holds and has checked
 * against its SHA-256, or one its pulls are receiving now: SharedBody), the chunks are
 * compared with it as they come, in place, and the bytes no pull has received yet are
 * written into it: a body byte-equal to it is that buffer, and nothing is allocated or
 * copied for it. At the first differing byte the body becomes a buffer of its own (the
 * reference's matching prefix, then the chunks), which the worker's SHA-256 check then
 * refuses. A reference the node's pulls are still filling has been checked by no one: the
 * worker's own SHA-256 check of the finished body is what vouches for it.
 */
export class BodyBuffer {
  private whole: Buffer | null;
  private readonly parts: Buffer[] = [];
  private n = 0;
  /** Bytes in `whole`; a body longer than announced spills into `parts` (and fails the length check). */
  private filled = 0;
  private reference: SharedBody | null;

  constructor(
    private readonly expected: number,
    reference?: Buffer | SharedBody,
  ) {
    const ref = reference instanceof SharedBody ? reference : reference ? new SharedBody(reference, true) : null;
    this.reference = ref && ref.buffer.length === expected ? ref : null;
    // A pull that never ends (its connection cut) stays a reader: that buffer is left to the GC.
    if (this.reference) this.reference.readers++;
    this.whole = !this.reference && Number.isSafeInteger(expected) && expected > 0 && expected <= 2 ** 31 ? Buffer.allocUnsafe(expected) : null;
  }

  push(c: Buffer): void {
    const ref = this.reference;
    if (ref) {
      const end = this.n + c.length;
      if (end <= ref.buffer.length && this.n <= ref.filled) {
        // Compare what another pull wrote; write what none has yet.
        const compared = Math.min(end, ref.filled) - this.n;
        if (compared === 0 || ref.buffer.compare(c, 0, compared, this.n, this.n + compared) === 0) {
          if (compared < c.length) {
            c.copy(ref.buffer, this.n + compared, compared);
            ref.filled = end;
          }
          this.n = end;
          return;
        }
      }
      // Diverged: from here on the body is its own bytes.
      this.reference = null;
      this.whole = Buffer.allocUnsafe(Math.max(this.expected, this.n));
      ref.buffer.copy(this.whole, 0, 0, this.n);
      this.filled = this.n;
      if (this.n < ref.buffer.length) ref.readerDone();
    }
    if (this.whole && this.parts.length === 0 && this.filled + c.length <= this.whole.length) {
      c.copy(this.whole, this.filled);
      this.filled += c.length;
    } else this.parts.push(Buffer.from(c)); // `c` may be a view of a read buffer that is reused
    this.n += c.length;
  }

  get length(): number {
    return this.n;
  }

  /** True while every byte so far equals the reference's. */
  get matchesReference(): boolean {
    return this.reference !== null;
  }

  bytes(): Buffer {
    const ref = this.reference;
    if (ref) return this.n === ref.buffer.length ? ref.buffer : ref.buffer.subarray(0, this.n);
    if (this.whole && this.parts.length === 0) return this.whole.subarray(0, this.filled);
    if (this.whole) return Buffer.concat([this.whole.subarray(0, this.filled), ...this.parts]);
    return this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.n);
  }
}
