import { type Piece, type UpdateBody, SOURCE_PIECE_BYTES, pieceGivenBackOnce } from '../sim/updateBody.js';

/** The pieces an update goes out in (both transports): 1 MiB. */
export const PIECE_BYTES = SOURCE_PIECE_BYTES;

/** Pieces given back, for the next update made as it is sent (the process's, for all its workers). */
const free: Buffer[] = [];
/** Pieces kept for reuse at most (more in use at once are made and left to the GC). */
const MAX_FREE = 64;

const NOTHING = (): void => undefined;

/**
 * Bytes [at, end) of an update for the transport to write (end - at <= PIECE_BYTES): a view
 * of a body held whole, or a source's bytes made into a piece. With `pooled` the piece comes
 * from (and `done` gives it back to) the process's pool, so sending an update allocates
 * nothing; only for a writer whose write callback means the bytes have left the process (a
 * TCP socket), not one that may still queue them (the in-process fault proxy's pipe).
 */
export function pieceOf(body: UpdateBody, at: number, end: number, pooled: boolean): Piece {
  if (Buffer.isBuffer(body)) return { bytes: body.subarray(at, end), done: NOTHING };
  const n = end - at;
  // Made where the source makes it (the kernels' own memory: no copy out of a stage).
  const own = pooled && n <= PIECE_BYTES ? (body.piece?.(at, end) ?? null) : null;
  if (own) return own;
  if (!pooled || n > PIECE_BYTES) {
    const bytes = Buffer.allocUnsafe(n);
    body.fill(bytes, at);
    return { bytes, done: NOTHING };
  }
  const whole = free.pop() ?? Buffer.allocUnsafe(PIECE_BYTES);
  const bytes = whole.subarray(0, n);
  body.fill(bytes, at);
  return pieceGivenBackOnce(bytes, () => {
    if (free.length < MAX_FREE) free.push(whole);
  });
}

/** Pieces in the pool now (tests). */
export function freePieces(): number {
  return free.length;
}
