#!/usr/bin/env node
// `npm run bench -- NAME`: runs the benchmark dist/bench/NAME.js (compiled from bench/NAME.ts)
// with this same node. With no NAME or an unknown one it lists the benchmarks and exits 2.
// Arguments after NAME are passed to the benchmark; its exit code is ours.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = path.join(root, 'bench');
const distDir = path.join(root, 'dist', 'bench');

function available() {
  let files = [];
  try {
    files = readdirSync(srcDir);
  } catch {
    // no bench/ directory: no benchmarks
  }
  return files
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => f.slice(0, -3))
    .filter((n) => existsSync(path.join(distDir, `${n}.js`)))
    .sort();
}

function usage(problem) {
  const names = available();
  process.stderr.write(
    `${problem}\n` +
      `usage: npm run bench -- NAME   (runs dist/bench/NAME.js, compiled from bench/NAME.ts)\n` +
      `available benchmarks: ${names.length ? names.join(', ') : '(none)'}\n`,
  );
  process.exit(2);
}

const name = process.argv[2];
if (!name) usage('bench: no benchmark named');
if (!/^[A-Za-z0-9_-]+$/.test(name) || !available().includes(name)) usage(`bench: unknown benchmark "${name}"`);

const child = spawn(process.execPath, [path.join(distDir, `${name}.js`), ...process.argv.slice(3)], {
  cwd: root,
  stdio: 'inherit',
});
// Ctrl-C reaches the whole foreground process group; a SIGTERM sent to us alone is passed on.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
  });
}
child.on('error', (err) => {
  process.stderr.write(`bench: cannot start ${name}: ${err.message}\n`);
  process.exit(1);
});
child.on('exit', (code, signal) => {
  process.exit(code ?? (signal ? 128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1) : 1));
});
