import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { BIN, tempDir } from '../helpers/cli.js';
import { requireTool } from '../helpers/privileged.js';
import { tmux, until } from '../helpers/tmux.js';
import { chunkBarWidth } from '../../src/tui/components.js';

test('the terminal UI in a real terminal (tmux 100x30): chunks and rounds move, d cuts a chunk and its verdict comes, q ends cleanly', async (t) => {
  if (!requireTool(t, 'tmux', ['-V'])) return;
  const out = tempDir();
  const session = `fedsim-tui-${process.pid}`;
  t.after(() => {
    tmux('kill-session', '-t', session);
    rmSync(out, { recursive: true, force: true });
  });
  const cmd = [process.execPath, BIN, 'run', '--workers', '60', '--nodes', '3', '--rounds', '500', '--train-ms', '100..200', '--retries', '50', '--retry-max-ms', '300', '--hand-fault-duration', '1', '--out', out]
    .map((a) => `'${a}'`)
    .join(' ');
  const r = tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '30', `${cmd}; echo FEDSIM_EXIT=$?; sleep 60`);
  assert.equal(r.status, 0, r.stderr);

  const roundOf = (s: string) => Number(/round (\d+)\/500/.exec(s)?.[1] ?? 0);
  const first = await until(session, 'the screen with three chunk rows and a round', (s) => /> 1 of 3 /.test(s) && /  3 of 3 /.test(s) && roundOf(s) >= 2);
  assert.match(first, /fedsim default · http · string · round \d+\/500/);
  assert.match(first, /registering .*training .*sending .*waiting/);
  assert.match(first, /worker 2 of 3 +\S+ +running/);
  await until(session, 'the round count to move', (s) => roundOf(s) > roundOf(first) + 1);

  // A resize redraws at the new size: the state bars shrink to what 80 columns leave.
  const bar = (s: string) => /1 of 3 +\S+ +\d+ (█+)/.exec(s)?.[1].length ?? 0;
  assert.equal(bar(first), chunkBarWidth(100));
  tmux('resize-window', '-t', session, '-x', '80', '-y', '24');
  await until(session, 'the redraw at 80x24', (s) => bar(s) === chunkBarWidth(80) && /↑↓ chunk/.test(s));

  tmux('send-keys', '-t', session, 'Down');
  await until(session, 'chunk 2 selected', (s) => /> 2 of 3 /.test(s));
  tmux('send-keys', '-t', session, 'd');
  await until(session, 'the fault on chunk 2', (s) => /hand-reset-c2#1 +reset +chunk 2/.test(s));
  const judged = await until(session, 'its verdict', (s) => /hand-reset-c2#1 .*recovered/.test(s), 60_000);
  assert.match(judged, /hand-reset-c2#1 +reset +chunk 2 +proxy +recovered/);

  tmux('send-keys', '-t', session, 'q');
  const end = await until(session, 'the exit', (s) => /FEDSIM_EXIT=\d+/.test(s), 30_000);
  // Quitting before the last round is not a pass; everything is still written and healed.
  assert.match(end, /FEDSIM_EXIT=1/);
  assert.match(end, /fedsim FAILED: .*quit by hand|failure +quit by hand \(q\)/);
  assert.ok(existsSync(path.join(out, 'summary.json')), 'summary.json was not written');
  const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.equal(s.failure, 'quit by hand (q)');
  assert.equal(s.faults[0].id, 'hand-reset-c2');
  assert.match(s.faults[0].verdict, /^recovered/);
  // Through the cut every closed round aggregated each of the 60 workers once: a re-sent update
  // after a reset is recognised as a duplicate, not counted again.
  assert.ok(s.roundLines.length > 0);
  for (const l of s.roundLines) assert.equal(l.updates, 60, `round ${l.round}`);
  assert.ok(existsSync(path.join(out, 'logs', 'coordinator.log')));
});
