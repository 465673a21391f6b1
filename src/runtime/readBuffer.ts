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

const READ_BUFFER_BYTES = 256 * 1024;

let buffer: Buffer | null = null;

/** The `onread` option for net.connect: reads land in the shared buffer and go to `onData` as views. */
export function sharedRead(onData: (chunk: Buffer) => void): { buffer: Buffer; callback: (bytes: number, buf: Buffer) => boolean } {
  buffer ??= Buffer.allocUnsafe(READ_BUFFER_BYTES);
  return {
    buffer,
    callback: (bytes, buf) => {
      onData(buf.subarray(0, bytes));
      return true;
    },
  };
}
