/** stdout carries machine-readable NDJSON events; stderr carries human log lines. */
export function emitEvent(ev: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(ev)}\n`);
}

export function log(line: string): void {
  process.stderr.write(`${line}\n`);
}
