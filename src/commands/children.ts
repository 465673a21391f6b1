import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { selfCommand } from '../runtime/self.js';

/** A child node of `fedsim run`: NDJSON events from its stdout, its stderr kept in a log file. */
export class ChildNode {
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  private readonly logFile: WriteStream;
  private readonly tail: string[] = [];

  constructor(
    readonly name: string,
    args: string[],
    logPath: string,
    onEvent: (ev: Record<string, unknown>) => void,
    env: NodeJS.ProcessEnv = process.env,
    /** Wraps the argv, e.g. to run the node inside a network namespace. */
    wrap: (argv: string[]) => string[] = (a) => a,
    /** Node flags for the child (see childNodeFlags). */
    nodeFlags: readonly string[] = [],
  ) {
    const self = selfCommand(nodeFlags);
    this.logFile = createWriteStream(logPath);
    const argv = wrap([self.command, ...self.args, ...args]);
    this.proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env });
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      try {
        onEvent(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // A half-written line from a killed child is not an event.
      }
    });
    createInterface({ input: this.proc.stderr! }).on('line', (line) => {
      this.logFile.write(`${line}\n`);
      this.tail.push(line);
      if (this.tail.length > 20) this.tail.shift();
    });
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        // Let the pipes drain so the last events and log lines are read.
        setImmediate(() => {
          this.logFile.end();
          resolve(code ?? (signal ? 128 : null));
        });
      });
      this.proc.once('error', () => resolve(null));
    });
  }

  lastLines(n = 5): string {
    return this.tail.slice(-n).join('\n');
  }

  async stop(graceMs = 3000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
