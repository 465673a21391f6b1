import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = path.join(ROOT, 'bin', 'fedsim.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the real CLI as a child process; kills it after `timeoutMs` so no test hangs. */
export function runCli(args: string[], timeoutMs = 60_000, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runProcess(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } }, timeoutMs);
}

/** Runs any command to its end, collecting its output; SIGKILL after `timeoutMs`. */
export function runProcess(command: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(command, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/** Resolves when `p` exits, with its stderr; SIGKILL after `timeoutMs`. */
export function exited(p: ChildProcess, timeoutMs = 60_000): Promise<{ code: number | null; stderr: string; ms: number }> {
  const t0 = Date.now();
  let stderr = '';
  p.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve) => {
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code) => {
      clearTimeout(timer);
      // Let the pipe drain.
      setTimeout(() => resolve({ code, stderr, ms: Date.now() - t0 }), 50);
    });
  });
}

/** Starts the real CLI and returns the process (for long-running nodes). */
export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
}

/** Resolves with the first stdout line that parses as a JSON event of the given name. */
export function waitForEvent(p: ChildProcess, name: string, timeoutMs = 15_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no "${name}" event within ${timeoutMs} ms`)), timeoutMs);
    p.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          const ev = JSON.parse(line) as Record<string, unknown>;
          if (ev.event === name) {
            clearTimeout(timer);
            resolve(ev);
          }
        } catch {
          /* not an event */
        }
      }
    });
    p.once('exit', (code) => reject(new Error(`exited with ${code} before "${name}"`)));
  });
}

export function tempDir(prefix = 'fedsim-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}
