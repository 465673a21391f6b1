import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { runCli, tempDir } from '../helpers/cli.js';
import { requireRoot } from '../helpers/privileged.js';
import { journalDir } from '../../src/netem/journal.js';

const netnsList = () => spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
const bridges = () => spawnSync('ip', ['-o', 'link', 'show', 'type', 'bridge'], { encoding: 'utf8' }).stdout;

test('fedsim run --netns: every node in its own namespace; the run completes and no namespace remains', async (t) => {
  if (!requireRoot(t)) return;
  const out = tempDir();
  try {
    for (const transport of ['http', 'grpc']) {
      const r = await runCli(['run', '--netns', '--workers', '30', '--nodes', '2', '--rounds', '2', '--train-ms', '0', '--transport', transport, '--out', out], 120_000);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /netns: bridge fsbr-\w+ 10\.213\.\d+\.1\/24; server fedsim-\w+-server 10\.213\.\d+\.2/);
      const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
      assert.equal(s.updates.accepted, 60);
      assert.equal(s.rounds.completed, 2);
      // This run's namespaces and bridge are gone (other test files may have runs of their own going).
      const id = /netns: bridge fsbr-(\w+)/.exec(r.stderr)![1];
      assert.doesNotMatch(netnsList(), new RegExp(`fedsim-${id}-`));
      assert.doesNotMatch(bridges(), new RegExp(`fsbr-${id}`));
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('fedsim netns clean removes what a killed run left behind', async (t) => {
  if (!requireRoot(t)) return;
  const ns = 'fedsim-zzzzz-server';
  const br = 'fsbr-zzzzz';
  assert.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0);
  assert.equal(spawnSync('ip', ['link', 'add', br, 'type', 'bridge']).status, 0);
  const r = await runCli(['netns', 'clean']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`removed namespace ${ns}`));
  assert.match(r.stderr, new RegExp(`removed bridge ${br}`));
  assert.doesNotMatch(netnsList(), /fedsim-zzzzz/);
  assert.doesNotMatch(bridges(), /fsbr-zzzzz/);
});

test('fedsim netns clean leaves a live run alone (its owner file names a live pid) and clears a dead run\'s', async (t) => {
  if (!requireRoot(t)) return;
  const owners = path.join(journalDir(), 'netns');
  mkdirSync(owners, { recursive: true });
  const live = 'fedsim-yyyyy-server';
  const dead = 'fedsim-xxxxx-server';
  t.after(() => {
    spawnSync('ip', ['netns', 'del', live]);
    spawnSync('ip', ['netns', 'del', dead]);
    rmSync(path.join(owners, 'yyyyy'), { force: true });
    rmSync(path.join(owners, 'xxxxx'), { force: true });
  });
  // This test process stands for a run that is setting up (no process in its namespace yet).
  writeFileSync(path.join(owners, 'yyyyy'), `${process.pid}\n`);
  // A pid that is not running: a killed run's file.
  const gone = spawnSync('true').pid!;
  writeFileSync(path.join(owners, 'xxxxx'), `${gone}\n`);
  assert.equal(spawnSync('ip', ['netns', 'add', live]).status, 0);
  assert.equal(spawnSync('ip', ['netns', 'add', dead]).status, 0);
  const r = await runCli(['netns', 'clean']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`left alone: namespace ${live}: its run \\(pid ${process.pid}\\) is still going`));
  assert.match(r.stderr, new RegExp(`removed namespace ${dead}`));
  assert.match(netnsList(), /fedsim-yyyyy-server/);
  assert.ok(!existsSync(path.join(owners, 'xxxxx')), "the dead run's owner file is cleared");
});
