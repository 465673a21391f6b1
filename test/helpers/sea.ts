import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './cli.js';

/**
 * Builds the single executable (scripts/build-sea.js, as `npm run build` does) into `work`,
 * from the compiled dist/, and returns its path. About 10 s; each test file that needs the
 * binary builds it once, in its own temp directory. The build's intermediate files stay in
 * `work` (unpacked-assets.json is the manifest of the files it unpacks).
 */
export function buildBinary(work: string): string {
  const exe = path.join(work, 'fedsim');
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build-sea.js'), '--out', exe, '--work', work, '--quiet'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 240_000,
  });
  assert.equal(r.status, 0, `build-sea failed:\n${r.stderr}${r.stdout}`);
  return exe;
}
