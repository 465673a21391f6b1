/**
 * Accepted connections that read into the process's shared read buffer (readBuffer.ts).
 *
 * net.Server gives `onread` to no socket it accepts, so node allocates a fresh 64 KiB buffer
 * for each read of each of them. The FL server reads every update that way: 900 MB a round at
 * 64 workers and a 14 MB model, 14,000 buffers a round whose external memory drives V8 into
 * a full garbage collection every few dozen megabytes (about 0.3 CPU-s a round of the
 * server's, measured; docs/benchmarks.md). Here the listening handle's `onconnection` (the
 * one hook node has had for this since its first versions) makes each accepted socket the way
 * node does, plus `onread`.
 *
 * Where that hook is missing (a future node), the server falls back to the 'connection' event
 * and the reader `accept` returns gets the sockets' 'data' chunks: the same bytes, just allocated.
 */
import net from 'node:net';
import { SERVER_READ_BUFFER_BYTES, sharedRead } from './readBuffer.js';

/**
 * What a socket's reads go to (views valid only during the call). `into`, when present, may
 * name where the next read lands instead of the shared buffer (sharedRead's `into`).
 */
export type SocketReader = ((chunk: Buffer) => void) & { into?: () => Buffer | null };

/** What the caller does with each accepted socket: returns its reader. */
export type Accept = (socket: net.Socket) => SocketReader;

type ListenHandle = { onconnection?: (err: number, client: unknown) => void };
type ServerInternals = { _handle?: ListenHandle | null; _connections?: number; maxConnections?: number };
type SocketInternals = { server?: net.Server; _server?: net.Server };

/**
 * A net.Server whose accepted sockets read into the shared buffer. `accept` runs before the
 * socket's first read. The server counts its connections as node's own does (close() waits
 * for them).
 */
export function sharedReadServer(accept: Accept): net.Server {
  const server = net.createServer((socket) => {
    // The fallback: node made the socket (the hook was missing or replaced).
    const reader = accept(socket);
    socket.on('data', reader);
  });
  server.on('listening', () => {
    const handle = (server as unknown as ServerInternals)._handle;
    if (!handle || typeof handle.onconnection !== 'function') return;
    const nodeOwn = handle.onconnection;
    handle.onconnection = function onconnection(this: unknown, err: number, client: unknown) {
      const s = server as unknown as ServerInternals;
      if (err || !client || (s.maxConnections !== undefined && (s._connections ?? 0) >= s.maxConnections)) {
        // Errors and refusals as node handles them.
        nodeOwn.call(this, err, client);
        return;
      }
      let reader: SocketReader = () => {};
      const socket = new net.Socket({
        handle: client,
        readable: true,
        writable: true,
        onread: sharedRead(
          (c) => reader(c),
          SERVER_READ_BUFFER_BYTES,
          () => reader.into?.() ?? null,
        ),
      } as net.SocketConstructorOpts);
      // Node's own bookkeeping for an accepted socket: close() waits for these.
      s._connections = (s._connections ?? 0) + 1;
      (socket as unknown as SocketInternals).server = server;
      (socket as unknown as SocketInternals)._server = server;
      reader = accept(socket);
    };
  });
  return server;
}
