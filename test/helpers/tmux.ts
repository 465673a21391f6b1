import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/** Runs one tmux command (a real terminal for the UI tests). */
export const tmux = (...args: string[]) => spawnSync('tmux', args, { encoding: 'utf8' });

/** The screen as text (tmux capture-pane). */
export const screen = (session: string) => tmux('capture-pane', '-p', '-t', session).stdout;

/** Polls the screen until `ok`; fails with the screen after `timeoutMs`. */
export async function until(session: string, what: string, ok: (s: string) => boolean, timeoutMs = 60_000): Promise<string> {
  const t0 = Date.now();
  for (;;) {
    const s = screen(session);
    if (ok(s)) return s;
    if (Date.now() - t0 > timeoutMs) assert.fail(`timed out waiting for ${what}; the screen:\n${s}`);
    await sleep(100);
  }
}
