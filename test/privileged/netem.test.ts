import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { netemUnavailable } from '../../src/netem/tc.js';
import { runCli, tempDir } from '../helpers/cli.js';
import { requireRoot } from '../helpers/privileged.js';

test('netem backend live: a delay fault on one node namespace shows as a netem qdisc and heals', async (t) => {
  if (!requireRoot(t)) return;
  const why = await netemUnavailable();
  if (why !== null) {
    // Not a privilege problem: the kernel lacks the qdisc. The probe said so plainly.
    assert.match(why, /netem/);
    t.skip(why);
    return;
  }
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'scenario.yaml');
  writeFileSync(
    file,
    'workers: 10\nnodes: 2\nrounds: 4\ntrainMs: 200..300\nretries: 30\nfaultBackend: netem\nfaults:\n  - id: slow\n    kind: delay\n    delay: 300ms\n    onRound: 2\n    duration: 2s\n    target: chunk 2\n',
  );
  const running = runCli(['run', '--netns', '--scenario', file, '--out', path.join(dir, 'out')], 120_000, { FEDSIM_STATE_DIR: dir });
  let seen = '';
  const t0 = Date.now();
  while (!seen && Date.now() - t0 < 60_000) {
    const ns = /^(fedsim-\w+-w2)\b/m.exec(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout)?.[1];
    if (ns) {
      const q = spawnSync('tc', ['-n', ns, 'qdisc', 'show', 'dev', 'eth0'], { encoding: 'utf8' }).stdout;
      if (/netem/.test(q)) seen = q;
    }
    await sleep(50);
  }
  const r = await running;
  assert.equal(r.code, 0, r.stderr);
  assert.match(seen, /qdisc netem fe6: parent fe5:4 .*delay 300ms/);
  const s = JSON.parse(readFileSync(path.join(dir, 'out', 'summary.json'), 'utf8'));
  assert.equal(s.faults[0].backend, 'netem');
  assert.equal(s.updates.accepted, 40);
});
