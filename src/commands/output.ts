/** stdout carries machine-readable NDJSON events; stderr carries human log lines. */
export function emitEvent(ev: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(ev)}\n`);
}

export function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** The terminal UI when stdout is a terminal, unless --headless, --stdin-commands (stdin is for commands) or TERM=dumb. */
export function useTui(flags: { headless?: boolean; stdinCommands?: boolean }): boolean {
  return !flags.headless && !flags.stdinCommands && process.stdout.isTTY === true && process.env.TERM !== 'dumb';
}
