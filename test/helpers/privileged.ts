import type { TestContext } from 'node:test';
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';

/**
 * Privileged tests need root. Without it they skip with the reason, except where
 * FEDSIM_REQUIRE_PRIVILEGED=1 (CI): there a skip would hide a failure, so it fails.
 */
export function requireRoot(t: TestContext): boolean {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (root) return true;
  const reason = 'needs root (network namespaces, veth, bridges); run the suite as root';
  if (process.env.FEDSIM_REQUIRE_PRIVILEGED === '1') assert.fail(`FEDSIM_REQUIRE_PRIVILEGED=1 but this test ${reason}`);
  t.skip(reason);
  return false;
}

/**
 * A test that needs a tool from a Debian package (tmux, chromium): it skips with the reason
 * where the tool is missing, except under FEDSIM_REQUIRE_PRIVILEGED=1 (CI installs them).
 */
export function requireTool(t: TestContext, cmd: string, args: string[] = ['--version'], debianPackage = cmd): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  if (r.status === 0) return true;
  const reason = `needs ${cmd} (Debian package ${debianPackage}); .ci/run installs it`;
  if (process.env.FEDSIM_REQUIRE_PRIVILEGED === '1') assert.fail(`FEDSIM_REQUIRE_PRIVILEGED=1 but this test ${reason}`);
  t.skip(reason);
  return false;
}
