/**
 * One read buffer for every client socket of the process (net's `onread`). Node otherwise
 * allocates a fresh 64 KiB buffer for every read of every socket; a worker node moving a
 * megabyte per worker each way each round allocated hundreds of megabytes a round that way,
 * and its garbage collector ran accordingly. Reads happen one at a time on the event loop
 * and each is consumed before the next, so one buffer serves them all.
 *
 * The contract for whoever reads: the chunk passed on is valid only during the call. Parse
 * it, compare it or copy it; never keep a view of it.
 */
import type { Duplex } from 'node:stream';

/**
 * Opens a connection in process (the fault proxy's worker end) instead of a TCP socket.
 * Everything it reads goes to `reader`, possibly as views valid only during the call (the
 * same contract as `sharedRead`); its 'data' event is not for the caller.
 */
export type OpenConnection = (reader: (chunk: Buffer) => void) => Duplex;

/**
 * Where a socket's next read is to land instead of the shared buffer (an update's slot), and
 * how to say it has: `landed` runs once that read came (its bytes are in `room`), or once
 * the socket is closed and no read can come. Until then `room` must stay the reader's: an
 * update slot defers its release (UpdateSlot.aim).
 */
export interface ReadAim {
  readonly room: Buffer;
  landed(): void;
}

const READ_BUFFER_BYTES = 256 * 1024;
/**
 * Accepted (server) sockets read into a smaller one: a request that waits (an update waiting
 * for a server slot) keeps a copy of what one read brought past its head, so the read size
 * bounds that copy: 64 KiB, node's own read size, times the waiting requests.
 */
export const SERVER_READ_BUFFER_BYTES = 64 * 1024;

const buffers = new Map<number, Buffer>();

/**
 * The `onread` option for net.connect (or an accepted socket): reads land in the shared buffer
 * of `bytes` and go to `onData` as views. With `into`, each read lands where `into` says, when
 * it names a buffer (node asks it after each read, for the next one): a server reads an update
 * body straight into its slot that way. Such a buffer must stay the reader's until that read
 * came or the socket is gone.
 */
export function sharedRead(onData: (chunk: Buffer) => void, bytes?: number): { buffer: Buffer; callback: (bytes: number, buf: Buffer) => boolean };
export function sharedRead(onData: (chunk: Buffer) => void, bytes: number, into: () => Buffer | null): { buffer: () => Buffer; callback: (bytes: number, buf: Buffer) => boolean };
export function sharedRead(
  onData: (chunk: Buffer) => void,
  bytes = READ_BUFFER_BYTES,
  into?: () => Buffer | null,
): { buffer: Buffer | (() => Buffer); callback: (bytes: number, buf: Buffer) => boolean } {
  let shared = buffers.get(bytes);
  if (!shared) buffers.set(bytes, (shared = Buffer.allocUnsafe(bytes)));
  const buffer = shared;
  return {
    buffer: into ? () => into() ?? buffer : buffer,
    callback: (n, buf) => {
      onData(buf.subarray(0, n));
      return true;
    },
  };
}
