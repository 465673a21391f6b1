import { spawn } from 'node:child_process';

/**
 * The one place that runs privileged system commands (ip, later iptables and tc):
 * always an argv array, never a shell string. A recorder replaces execution in dry runs
 * and tests that check the exact commands.
 */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export type Recorder = (argv: readonly string[]) => CommandResult | undefined;

let recorder: Recorder | null = null;

/** Records commands instead of running them (tests, --dry-run). Returns a function that restores. */
export function recordCommands(fn: Recorder): () => void {
  const prev = recorder;
  recorder = fn;
  return () => (recorder = prev);
}

/** True while commands are recorded, not run (dry runs): nothing on the system changes. */
export function isRecording(): boolean {
  return recorder !== null;
}

export function run(argv: readonly string[], timeoutMs = 10_000): Promise<CommandResult> {
  if (recorder) return Promise.resolve(recorder(argv) ?? { code: 0, stdout: '', stderr: '' });
  return new Promise((resolve) => {
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: `${argv[0]}: ${e.message}` });
    });
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

/** Runs a command that must succeed; the error names the command and what it said. */
export async function mustRun(argv: readonly string[]): Promise<string> {
  const r = await run(argv);
  if (r.code !== 0) throw new Error(`\`${argv.join(' ')}\` failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}
