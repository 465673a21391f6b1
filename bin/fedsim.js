#!/usr/bin/env node
import { main } from '../dist/src/cli.js';

// A closed pipe on stdout or stderr (`fedsim run | head`) must not kill the run before it
// cleans up (child nodes, namespaces): drop the output instead.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
    // Open handles (a stuck socket, a child) must never keep a finished command alive.
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (err) => {
    process.stderr.write(`fedsim: internal error: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
