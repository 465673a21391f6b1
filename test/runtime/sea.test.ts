import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { ROOT, tempDir } from '../helpers/cli.js';
import { cacheDir, isBinary, unpackFile } from '../../src/runtime/sea.js';
import { childNodeFlags, selfCommand, serverNodeFlags, versionLine } from '../../src/runtime/self.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('cache directory: $XDG_CACHE_HOME/fedsim/<version> when absolute, else ~/.cache/fedsim/<version>', () => {
  assert.equal(cacheDir('1.2.3', { XDG_CACHE_HOME: '/x/cache' }), '/x/cache/fedsim/1.2.3');
  assert.equal(cacheDir('1.2.3', { XDG_CACHE_HOME: 'relative/cache' }), path.join(os.homedir(), '.cache', 'fedsim', '1.2.3'));
  assert.equal(cacheDir('1.2.3', {}), path.join(os.homedir(), '.cache', 'fedsim', '1.2.3'));
});

test('from source: not the binary, children are node + script, --version names node and the commit', () => {
  assert.equal(isBinary(), false);
  const self = selfCommand();
  assert.equal(self.command, process.execPath);
  assert.ok(self.args.length >= 1);
  assert.match(versionLine(), new RegExp(`^\\d+\\.\\d+\\.\\d+ \\(node ${process.version.replace(/\./g, '\\.')}, commit (\\w{7}|unknown)\\)$`));
});

test('child nodes get --single-threaded-gc when the host has fewer cores than fedsim processes', () => {
  assert.deepEqual(childNodeFlags(6, 2, {}), ['--single-threaded-gc']);
  assert.deepEqual(childNodeFlags(6, 8, {}), []);
  assert.deepEqual(childNodeFlags(6, 8, { FEDSIM_NODE_GC: 'single' }), ['--single-threaded-gc']);
  assert.deepEqual(childNodeFlags(6, 2, { FEDSIM_NODE_GC: 'default' }), []);
  assert.throws(() => childNodeFlags(6, 2, { FEDSIM_NODE_GC: 'fast' }), /FEDSIM_NODE_GC=fast: expected auto, single or default/);
  const self = selfCommand(['--single-threaded-gc']);
  assert.equal(self.args.filter((a) => a === '--single-threaded-gc').length, 1);
  assert.equal(self.args.indexOf('--single-threaded-gc'), self.args.length - 2, 'node flags come before the script');
});

test('the server node of fedsim run starts with a 128 MB old generation, under mobilenetv2 with 2 MB semi-spaces instead, and with neither under FEDSIM_NODE_GC=default', () => {
  assert.deepEqual(serverNodeFlags(false, {}), ['--initial-old-space-size=128']);
  assert.deepEqual(serverNodeFlags(true, {}), ['--max-semi-space-size=2']);
  assert.deepEqual(serverNodeFlags(false, { FEDSIM_NODE_GC: 'default' }), []);
  assert.deepEqual(serverNodeFlags(true, { FEDSIM_NODE_GC: 'default' }), []);
});

test('unpackFile: writes once, keeps a good copy, replaces a wrong one, and says where it cannot write', () => {
  const dir = tempDir();
  try {
    const data = Buffer.from('hello fedsim\n');
    const want = { sha256: sha256(data), mode: 0o755 };
    let made = 0;
    const make = () => {
      made++;
      return data;
    };
    const f = unpackFile(path.join(dir, 'v'), 'lib.so', want, make);
    assert.equal(readFileSync(f, 'utf8'), 'hello fedsim\n');
    assert.equal(statSync(f).mode & 0o777, 0o755);
    assert.equal(unpackFile(path.join(dir, 'v'), 'lib.so', want, make), f);
    assert.equal(made, 1, 'a good copy is not written again');
    writeFileSync(f, 'truncated');
    unpackFile(path.join(dir, 'v'), 'lib.so', want, make);
    assert.equal(made, 2);
    assert.equal(readFileSync(f, 'utf8'), 'hello fedsim\n');
    assert.deepEqual(readdirSync(path.join(dir, 'v')), ['lib.so']);

    // Bytes that do not match the expected hash are refused after writing.
    assert.throws(() => unpackFile(path.join(dir, 'w'), 'x', { sha256: '0'.repeat(64), mode: 0o644 }, () => data), /does not have the expected SHA-256/);
    // A file where the directory should be (not writable, even for root).
    writeFileSync(path.join(dir, 'file'), '');
    assert.throws(
      () => unpackFile(path.join(dir, 'file', 'fedsim', '0.1.0'), 'tui.mjs', want, make),
      (e: Error) => e.name === 'UsageError' && /cannot unpack tui\.mjs of the fedsim binary to .*file\/fedsim\/0\.1\.0 \(ENOTDIR.*set XDG_CACHE_HOME to a writable directory/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('unpackFile: eight processes unpacking one 24 MB file at once all get a whole, right file; no temp file is left', async () => {
  const dir = tempDir();
  try {
    const seaJs = pathToFileURL(path.join(ROOT, 'dist', 'src', 'runtime', 'sea.js')).href;
    // Each child builds the same bytes, waits for a common start time, then unpacks and checks.
    const script = `
      import { createHash } from 'node:crypto';
      import { readFileSync } from 'node:fs';
      import { unpackFile } from ${JSON.stringify(seaJs)};
      const [dir, startAt] = process.argv.slice(1);
      const data = Buffer.alloc(24 * 1024 * 1024);
      for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
      const sha256 = createHash('sha256').update(data).digest('hex');
      while (Date.now() < Number(startAt)) {}
      const f = unpackFile(dir, 'libbig.so.1', { sha256, mode: 0o755 }, () => data);
      const got = createHash('sha256').update(readFileSync(f)).digest('hex');
      process.stdout.write(got === sha256 ? 'ok' : 'bad');
    `;
    const startAt = String(Date.now() + 1500);
    const target = path.join(dir, 'fedsim', '0.0.0');
    const results = await Promise.all(
      Array.from({ length: 8 }, () => new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const p = spawn(process.execPath, ['--input-type=module', '-e', script, target, startAt], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        p.stdout.on('data', (d) => (out += d));
        p.stderr.on('data', (d) => (err += d));
        p.on('close', (code) => resolve({ code, out, err }));
      })),
    );
    for (const r of results) assert.deepEqual([r.code, r.out], [0, 'ok'], r.err);
    assert.deepEqual(readdirSync(target), ['libbig.so.1']);
    assert.equal(statSync(path.join(target, 'libbig.so.1')).size, 24 * 1024 * 1024);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
