/**
 * fedsim as one file (docs/binary.md): the single executable is built once for this file
 * into a temp directory (scripts/build-sea.js, as `npm run build` does), copied into an
 * empty folder and run there with a PATH that has no `node` and a fresh cache directory.
 */
import assert from 'node:assert/strict';
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, runProcess, tempDir } from '../helpers/cli.js';
import { requireTool } from '../helpers/privileged.js';
import { tmux, until } from '../helpers/tmux.js';
import { buildBinary } from '../helpers/sea.js';
import { gitCommitOf } from '../../src/runtime/self.js';

const supported = process.platform === 'linux' && process.arch === 'x64';
const skip = supported ? false : 'the binary is built for Linux x64 only';

const version = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** The current PATH without any directory that holds a `node` (the fault backends' ip, tc, iptables stay). */
function pathWithoutNode(): string {
  return (process.env.PATH ?? '')
    .split(':')
    .filter((d) => d && !existsSync(path.join(d, 'node')))
    .join(':');
}

let root = '';
let exe = '';
let manifest: Record<string, { sha256: string; size: number }> = {};

before(() => {
  if (!supported) return;
  root = tempDir('fedsim-binary-');
  const work = path.join(root, 'build');
  buildBinary(work);
  manifest = JSON.parse(readFileSync(path.join(work, 'unpacked-assets.json'), 'utf8'));
  // "Copy it to the remote host": an empty folder holding nothing but the executable.
  const host = path.join(root, 'host');
  mkdirSync(host);
  exe = path.join(host, 'fedsim');
  copyFileSync(path.join(work, 'fedsim'), exe);
  chmodSync(exe, 0o755);
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

/** A fresh empty working folder and cache for one test. */
function place(name: string): { cwd: string; cache: string; env: NodeJS.ProcessEnv } {
  const cwd = path.join(root, name);
  const cache = path.join(root, `${name}-cache`);
  mkdirSync(cwd);
  const env: NodeJS.ProcessEnv = { PATH: pathWithoutNode(), HOME: path.join(root, `${name}-home`), XDG_CACHE_HOME: cache, TERM: 'xterm-256color' };
  return { cwd, cache, env };
}

function fedsim(args: string[], where: { cwd: string; env: NodeJS.ProcessEnv }, timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runProcess(exe, args, where, timeoutMs);
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** The cache directory of this version holds exactly one copy of `names`, each with the SHA-256 the binary carries. */
function assertCacheHolds(dir: string, names: string[]): void {
  const versionDir = path.join(dir, 'fedsim', version);
  assert.deepEqual(readdirSync(versionDir).sort(), [...names].sort(), `files in ${versionDir} (no temp files left)`);
  for (const n of names) assert.equal(sha256(path.join(versionDir, n)), manifest[n].sha256, `${n} in ${versionDir}`);
}

test('the PATH of these tests has no node', { skip }, () => {
  const w = place('path');
  const r: SpawnSyncReturns<string> = spawnSync('/bin/sh', ['-c', 'command -v node'], { env: w.env, encoding: 'utf8' });
  assert.notEqual(r.status, 0, `node found on the test PATH: ${r.stdout}`);
  assert.ok(statSync(exe).size > 50e6, 'the executable carries node');
});

test('binary: --version names the version, the node inside and the commit; keys gen', { skip }, async () => {
  const w = place('version');
  const v = await fedsim(['--version'], w);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, new RegExp(`^${version.replace(/\./g, '\\.')} \\(node ${process.version.replace(/\./g, '\\.')}, commit \\S+, single executable\\)\\n$`));
  // The commit is the checkout's the binary was built from (git rev-parse --short at build time).
  const commit = /commit (\S+),/.exec(v.stdout)![1];
  const head = gitCommitOf(ROOT);
  if (head) assert.ok(head.startsWith(commit), `--version says commit ${commit}, the checkout is at ${head}`);
  const k = await fedsim(['keys', 'gen', '--workers', '3', '--out', 'keys'], w);
  assert.equal(k.code, 0, k.stderr);
  assert.deepEqual(readdirSync(path.join(w.cwd, 'keys')).sort(), ['keys.list', 'worker-0.key', 'worker-0.pub', 'worker-1.key', 'worker-1.pub', 'worker-2.key', 'worker-2.pub']);
  assert.equal(readFileSync(path.join(w.cwd, 'keys', 'keys.list'), 'utf8').trim().split('\n').filter((l) => l && !l.startsWith('#')).length, 3);
  // Nothing was unpacked: a command that needs no embedded file never writes the cache.
  assert.equal(existsSync(w.cache), false, 'the cache directory was created by --version or keys gen');
});

for (const transport of ['http', 'grpc']) {
  test(`binary: fedsim run over ${transport}, child nodes are the binary itself`, { skip }, async () => {
    const w = place(`run-${transport}`);
    const r = await fedsim(['run', '--workers', '10', '--nodes', '2', '--rounds', '3', '--transport', transport, '--out', 'out', '--headless'], w);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(readFileSync(path.join(w.cwd, 'out', 'summary.json'), 'utf8'));
    assert.equal(s.status, 'passed');
    assert.equal(s.rounds.completed, 3);
    assert.equal(s.updates.accepted, 30);
    assert.equal(s.fedsimVersion, version);
    // report.html inlines uPlot, which the binary carries as an asset.
    const html = path.join(w.cwd, 'out', 'report.html');
    if (existsSync(html)) assert.match(readFileSync(html, 'utf8'), /uPlot/);
    assert.equal(existsSync(w.cache), false, 'a headless string run unpacked something');
  });
}

test('binary: safe mode signs and verifies with the embedded libsodium', { skip }, async () => {
  const w = place('safe');
  const k = await fedsim(['keys', 'gen', '--workers', '6', '--out', 'keys'], w);
  assert.equal(k.code, 0, k.stderr);
  const r = await fedsim(['run', '--keys', 'keys', '--workers', '6', '--nodes', '2', '--rounds', '2', '--out', 'out', '--headless'], w);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(readFileSync(path.join(w.cwd, 'out', 'summary.json'), 'utf8'));
  assert.equal(s.updates.accepted, 12);
  assert.match(readFileSync(path.join(w.cwd, 'out', 'logs', 'server.log'), 'utf8'), /SAFE MODE: 6 worker keys .*ed25519 by libsodium\n/);
  assertCacheHolds(w.cache, ['sodium-native.node']);
});

test('binary: a MobileNetV2 round with onnxruntime (training and model checks) unpacks it to ~/.cache by default', { skip }, async () => {
  const w = place('mobilenet');
  delete w.env.XDG_CACHE_HOME;
  const r = await fedsim(['run', '--workers', '2', '--nodes', '1', '--rounds', '1', '--payload', 'mobilenetv2', '--train', 'onnx:1', '--validate-model', 'on', '--out', 'out', '--headless'], w, 180_000);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(readFileSync(path.join(w.cwd, 'out', 'summary.json'), 'utf8'));
  assert.equal(s.status, 'passed');
  assert.equal(s.finalModel.workersHolding, 2);
  assertCacheHolds(path.join(w.env.HOME!, '.cache'), ['libonnxruntime.so.1', 'onnxruntime_binding.node']);
});

test('binary: an unwritable cache directory is a clear error', { skip }, async () => {
  const w = place('nocache');
  // A regular file where the cache directory should be: not writable, even for root.
  w.env.XDG_CACHE_HOME = path.join(w.cwd, 'not-a-dir');
  spawnSync('/bin/sh', ['-c', `: > '${w.env.XDG_CACHE_HOME}'`]);
  const r = await fedsim(['run', '--workers', '1', '--nodes', '1', '--rounds', '1', '--payload', 'mobilenetv2', '--validate-model', 'on', '--retries', '0', '--out', 'out', '--headless'], w, 120_000);
  assert.notEqual(r.code, 0);
  const logs = readdirSync(path.join(w.cwd, 'out', 'logs')).map((f) => readFileSync(path.join(w.cwd, 'out', 'logs', f), 'utf8')).join('\n');
  assert.match(`${r.stderr}\n${logs}`, /cannot unpack libonnxruntime\.so\.1 of the fedsim binary to .*not-a-dir\/fedsim\/.*: set XDG_CACHE_HOME to a writable directory/);
});


/** The shell command for tmux: the binary with exactly `env` (no node on its PATH), then its exit code. */
function tmuxCommand(w: { cwd: string; env: NodeJS.ProcessEnv }, args: string[]): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const vars = Object.entries(w.env).map(([k, v]) => q(`${k}=${v}`));
  return `cd ${q(w.cwd)} && env -i ${vars.join(' ')} ${q(exe)} ${args.map(q).join(' ')}; echo FEDSIM_EXIT=$?; sleep 60`;
}

test('binary: the terminal UI in tmux shows its chunk rows', { skip }, async (t) => {
  if (!requireTool(t, 'tmux', ['-V'])) return;
  const w = place('tui');
  const session = `fedsim-bin-tui-${process.pid}`;
  t.after(() => tmux('kill-session', '-t', session));
  const r = tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '30', tmuxCommand(w, ['run', '--workers', '30', '--nodes', '3', '--rounds', '500', '--train-ms', '50..100', '--out', 'out']));
  assert.equal(r.status, 0, r.stderr);
  const roundOf = (s: string) => Number(/round (\d+)\/500/.exec(s)?.[1] ?? 0);
  const first = await until(session, 'three chunk rows and a round', (s) => /> 1 of 3 /.test(s) && / {2}3 of 3 /.test(s) && roundOf(s) >= 2);
  assert.match(first, /fedsim default · http · string · round \d+\/500/);
  assert.match(first, /worker 2 of 3 +\S+ +running/);
  tmux('send-keys', '-t', session, 'q');
  const end = await until(session, 'the exit', (s) => /FEDSIM_EXIT=\d+/.test(s), 30_000);
  assert.match(end, /FEDSIM_EXIT=1/, 'q before the last round: exit 1');
  assert.ok(existsSync(path.join(w.cwd, 'out', 'summary.json')));
  assertCacheHolds(w.cache, ['esm-import.cjs', 'tui.mjs']);
});

test('binary: two binaries started at once on a fresh cache both work, and the cache holds one good copy of each file', { skip }, async (t) => {
  if (!requireTool(t, 'tmux', ['-V'])) return;
  const a = place('twice-a');
  const b = place('twice-b');
  b.env.XDG_CACHE_HOME = a.cache; // one cache for both
  const sessions = [`fedsim-bin-a-${process.pid}`, `fedsim-bin-b-${process.pid}`];
  t.after(() => sessions.forEach((s) => tmux('kill-session', '-t', s)));
  // Each: the UI (tui.mjs and its helper), two worker nodes loading onnxruntime (the native files)
  // and safe mode (libsodium).
  for (const w of [a, b]) assert.equal((await fedsim(['keys', 'gen', '--workers', '4', '--out', 'keys'], w)).code, 0);
  const args = ['run', '--keys', 'keys', '--workers', '4', '--nodes', '2', '--rounds', '2', '--payload', 'mobilenetv2', '--validate-model', 'on', '--hand-faults', 'off', '--out', 'out'];
  const started = [a, b].map((w, i) => tmux('new-session', '-d', '-s', sessions[i], '-x', '100', '-y', '30', tmuxCommand(w, args)));
  for (const r of started) assert.equal(r.status, 0, r.stderr);
  for (const [i, w] of [a, b].entries()) {
    const end = await until(sessions[i], `run ${i + 1} to end`, (s) => /FEDSIM_EXIT=\d+/.test(s), 180_000);
    assert.match(end, /FEDSIM_EXIT=0/, `run ${i + 1}`);
    const s = JSON.parse(readFileSync(path.join(w.cwd, 'out', 'summary.json'), 'utf8'));
    assert.equal(s.status, 'passed');
  }
  assertCacheHolds(a.cache, Object.keys(manifest));
});
