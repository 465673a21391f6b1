#!/usr/bin/env node
import { main } from '../dist/src/cli.js';

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
