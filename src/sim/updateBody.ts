import { createHash } from 'node:crypto';

/**
 * An update made piece by piece as it is sent, never held whole: `fill` writes any range of
 * its bytes, the same bytes every time it is asked (a codec's seeded update). A worker node
 * with 16 workers sending 14 MB updates otherwise holds 16 × 14 MB of them and writes each
 * out to memory once before the kernel reads it back; made as it goes, a piece is written
 * and sent while it is still in the cache, and the node's memory no longer grows with its
 * workers (docs/architecture.md, "Updates made as they are sent").
 */
export interface UpdateSource {
  readonly length: number;
  /** Writes the body's bytes [at, at + dst.length) into `dst` (within the body). */
  fill(dst: Buffer, at: number): void;
  /**
   * Bytes [at, end) made in memory of the source's own (end - at <= SOURCE_PIECE_BYTES), for a
   * writer that gives the piece back (`done`) once the bytes have left the process; null when
   * it has none free. Optional: a transport falls back to `fill`.
   */
  piece?(at: number, end: number): Piece | null;
}

/** Bytes to write, and how to give their buffer back once the writer is done with them (in the kernel). */
export interface Piece {
  readonly bytes: Buffer;
  done(): void;
}

/** A piece whose `done` gives its buffer back (`giveBack`) the first time only. */
export function pieceGivenBackOnce(bytes: Buffer, giveBack: () => void): Piece {
  let given = false;
  return {
    bytes,
    done: () => {
      if (given) return;
      given = true;
      giveBack();
    },
  };
}

/** An update as a worker's transport sends it: bytes held whole, or made as they go. */
export type UpdateBody = Buffer | UpdateSource;

/** The piece a source is hashed or copied through (the size the transports send it in). */
export const SOURCE_PIECE_BYTES = 1024 * 1024;

/** The body's bytes in one buffer: the Buffer itself, or the source made whole (tests, small bodies). */
export function wholeBody(body: UpdateBody): Buffer {
  if (Buffer.isBuffer(body)) return body;
  const out = Buffer.allocUnsafe(body.length);
  if (out.length > 0) body.fill(out, 0);
  return out;
}

let scratch: Buffer | null = null;

/** SHA-256 (hex) of a body; a source is made a piece at a time through one scratch buffer. */
export function sha256OfBody(body: UpdateBody): string {
  const h = createHash('sha256');
  if (Buffer.isBuffer(body)) return h.update(body).digest('hex');
  const piece = (scratch ??= Buffer.allocUnsafe(SOURCE_PIECE_BYTES));
  for (let at = 0; at < body.length; at += piece.length) {
    const n = Math.min(piece.length, body.length - at);
    body.fill(piece.subarray(0, n), at);
    h.update(piece.subarray(0, n));
  }
  return h.digest('hex');
}
