import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { readFileSync } from 'node:fs';

/** The argv that starts this same program again (child nodes of `fedsim run`). */
export function selfCommand(): { command: string; args: string[] } {
  const script = process.argv[1];
  return { command: process.execPath, args: script ? [...process.execArgv, script] : [...process.execArgv] };
}

let cachedVersion: string | undefined;
export function fedsimVersion(): string {
  if (cachedVersion) return cachedVersion;
  try {
    const here = path.dirname(fileURLToPath(import.meta.url));
    // dist/src/runtime → package root
    const pkg = JSON.parse(readFileSync(path.resolve(here, '../../../package.json'), 'utf8')) as { version: string };
    cachedVersion = pkg.version;
  } catch {
    cachedVersion = 'unknown';
  }
  return cachedVersion;
}
