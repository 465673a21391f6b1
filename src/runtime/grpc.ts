import type * as grpc from '@grpc/grpc-js';

/** Graceful shutdown of a grpc-js server, forced after `graceMs`. */
export function shutdownGrpcServer(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
