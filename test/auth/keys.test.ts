import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import nacl from 'tweetnacl';
import { KEY_LIST_FILE, checkKeysDir, generateKeys, loadKeyList, loadWorkerKeys } from '../../src/auth/keys.js';
import { verifySignature } from '../../src/auth/sign.js';
import { UsageError } from '../../src/errors.js';
import { runCli, tempDir } from '../helpers/cli.js';

const root = tempDir('fedsim-auth-keys-');
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
/** A path under the temp root that does not exist yet. */
const fresh = (name = 'keys') => path.join(root, `${name}-${n++}`);
const mode = (p: string) => statSync(p).mode & 0o777;
const HEX64 = /^[0-9a-f]{64}$/;

test('generateKeys writes one key pair per worker and keys.list, with owner-only secrets', () => {
  const out = fresh();
  const { dir, list } = generateKeys({ workers: 3, outDir: out });
  assert.equal(dir, path.resolve(out));
  assert.equal(list, path.join(dir, KEY_LIST_FILE));
  assert.deepEqual(readdirSync(dir).sort(), ['keys.list', 'worker-0.key', 'worker-0.pub', 'worker-1.key', 'worker-1.pub', 'worker-2.key', 'worker-2.pub']);
  assert.equal(mode(dir), 0o700);
  assert.equal(mode(list), 0o644);

  const listLines = readFileSync(list, 'utf8').split('\n');
  assert.equal(listLines.pop(), '', 'keys.list ends with a newline');
  assert.equal(listLines.length, 3);
  for (let i = 0; i < 3; i++) {
    const keyFile = path.join(dir, `worker-${i}.key`);
    const pubFile = path.join(dir, `worker-${i}.pub`);
    assert.equal(mode(keyFile), 0o600, `${keyFile} is owner-only`);
    assert.equal(mode(pubFile), 0o644);
    const seed = readFileSync(keyFile, 'utf8');
    assert.match(seed, /^[0-9a-f]{64}\n$/);
    const pub = readFileSync(pubFile, 'utf8');
    assert.match(pub, /^[0-9a-f]{64}\n$/);
    // The public key is the seed's, and line i of keys.list is worker i's.
    const derived = Buffer.from(nacl.sign.keyPair.fromSeed(Buffer.from(seed.trim(), 'hex')).publicKey).toString('hex');
    assert.equal(pub.trim(), derived);
    assert.equal(listLines[i], derived);
  }
  assert.equal(new Set(listLines).size, 3, 'every worker has its own key');
  assert.deepEqual(loadKeyList(list), listLines);
});

test('generateKeys refuses to overwrite without force, naming the file, and writes nothing', () => {
  const out = fresh();
  generateKeys({ workers: 2, outDir: out });
  const before = readdirSync(out).map((f) => [f, readFileSync(path.join(out, f), 'utf8')]);
  assert.throws(() => generateKeys({ workers: 2, outDir: out }), (e: unknown) => {
    assert.ok(e instanceof UsageError);
    assert.equal(e.exitCode, 2);
    assert.match(e.message, /keys\.list|worker-\d\.(key|pub)/);
    assert.ok(e.message.includes(path.resolve(out)), e.message);
    assert.match(e.message, /--force/);
    return true;
  });
  assert.deepEqual(readdirSync(out).map((f) => [f, readFileSync(path.join(out, f), 'utf8')]), before, 'nothing changed');

  // Only one target exists (the last one checked, a key file): still nothing is written.
  const partial = fresh();
  mkdirSync(partial);
  writeFileSync(path.join(partial, 'worker-4.pub'), 'mine\n');
  assert.throws(() => generateKeys({ workers: 5, outDir: partial }), (e: unknown) => e instanceof UsageError && e.message.includes(path.join(partial, 'worker-4.pub')) && /--force/.test(e.message));
  assert.deepEqual(readdirSync(partial), ['worker-4.pub']);
  assert.equal(readFileSync(path.join(partial, 'worker-4.pub'), 'utf8'), 'mine\n');

  // Files that are not targets do not block.
  const other = fresh();
  mkdirSync(other);
  writeFileSync(path.join(other, 'README'), 'x');
  generateKeys({ workers: 1, outDir: other });
  assert.ok(existsSync(path.join(other, 'worker-0.key')));
});

test('generateKeys with force overwrites every file, with the right modes', () => {
  const out = fresh();
  generateKeys({ workers: 2, outDir: out });
  const oldList = readFileSync(path.join(out, 'keys.list'), 'utf8');
  const oldSeed = readFileSync(path.join(out, 'worker-0.key'), 'utf8');
  chmodSync(path.join(out, 'worker-0.key'), 0o644); // a loose mode must not survive
  generateKeys({ workers: 2, outDir: out, force: true });
  assert.notEqual(readFileSync(path.join(out, 'keys.list'), 'utf8'), oldList);
  assert.notEqual(readFileSync(path.join(out, 'worker-0.key'), 'utf8'), oldSeed);
  assert.equal(mode(path.join(out, 'worker-0.key')), 0o600);
  assert.equal(mode(path.join(out, 'worker-1.key')), 0o600);
  assert.deepEqual(readdirSync(out).filter((f) => f.endsWith('.tmp')), [], 'no temporary files left');
  const keys = loadWorkerKeys(out, [0, 1]);
  assert.deepEqual([...keys.values()].map((k) => k.publicKeyHex), loadKeyList(path.join(out, 'keys.list')));
});

test('generateKeys validates --workers and --out', () => {
  for (const workers of [0, -1, 1.5, Number.NaN]) {
    assert.throws(() => generateKeys({ workers, outDir: fresh() }), (e: unknown) => e instanceof UsageError && /--workers/.test(e.message));
  }
  const file = fresh('file');
  writeFileSync(file, '');
  assert.throws(() => generateKeys({ workers: 1, outDir: file }), (e: unknown) => e instanceof UsageError && /not a directory/.test(e.message));
});

test('loadKeyList: comments, blank lines, case; errors name file:line', () => {
  const k1 = 'A'.repeat(64);
  const k2 = 'b1'.repeat(32);
  const file = path.join(root, 'list-ok');
  writeFileSync(file, `# the server's keys\n\n${k1}\n   ${k2}   # worker 1\r\n\n`);
  assert.deepEqual(loadKeyList(file), [k1.toLowerCase(), k2]);

  const cases: Array<[string, string, RegExp]> = [
    ['short', `${k2}\n# c\nabc\n`, /list-short:3: expected an ed25519 public key \(64 hex characters\), got "abc"/],
    ['nonhex', `${'g'.repeat(64)}\n`, /list-nonhex:1: /],
    ['long', `${k2}0\n`, /list-long:1: /],
    ['twice', `${k1}\n${k2}\n${k1.toLowerCase()}\n`, /list-twice:3: this key is already on line 1/],
    ['empty', '# nothing\n\n', /list-empty: no public keys/],
  ];
  for (const [name, text, re] of cases) {
    const f = path.join(root, `list-${name}`);
    writeFileSync(f, text);
    assert.throws(() => loadKeyList(f), (e: unknown) => e instanceof UsageError && re.test(e.message), name);
  }
  assert.throws(() => loadKeyList(path.join(root, 'no-such-list')), (e: unknown) => e instanceof UsageError && /cannot read the key list .*no-such-list/.test(e.message));
});

test('loadWorkerKeys: the asked workers that have a key file; signatures verify with keys.list', () => {
  const out = fresh();
  const { list } = generateKeys({ workers: 3, outDir: out });
  const pubs = loadKeyList(list);
  const keys = loadWorkerKeys(out, [2, 0, 7, 0]);
  assert.deepEqual([...keys.keys()].sort(), [0, 2], 'worker 7 has no key file: left out');
  for (const [i, k] of keys) {
    assert.equal(k.index, i);
    assert.equal(k.publicKeyHex, pubs[i]);
    assert.match(k.publicKeyHex, HEX64);
    const msg = Buffer.from(`message of worker ${i}`);
    const sig = k.sign(msg);
    assert.equal(sig.length, 64);
    assert.ok(verifySignature(pubs[i], msg, sig));
    assert.ok(nacl.sign.detached.verify(msg, sig, Buffer.from(pubs[i], 'hex')));
    assert.ok(!verifySignature(pubs[1], msg, sig), 'not with another worker\'s key');
  }
  assert.equal(loadWorkerKeys(path.join(root, 'no-such-dir'), [0]).size, 0);
});

test('loadWorkerKeys refuses a key file others can read, and a malformed one', () => {
  const out = fresh();
  generateKeys({ workers: 2, outDir: out });
  const keyFile = path.join(out, 'worker-1.key');
  chmodSync(keyFile, 0o644);
  assert.throws(() => loadWorkerKeys(out, [0, 1]), (e: unknown) => e instanceof UsageError && e.message.includes(keyFile) && /chmod 600/.test(e.message) && /0644/.test(e.message));
  chmodSync(keyFile, 0o640);
  assert.throws(() => loadWorkerKeys(out, [1]), (e: unknown) => e instanceof UsageError && /chmod 600/.test(e.message));
  chmodSync(keyFile, 0o600);
  assert.equal(loadWorkerKeys(out, [1]).size, 1);

  writeFileSync(keyFile, 'not a seed\n', { mode: 0o600 });
  assert.throws(() => loadWorkerKeys(out, [1]), (e: unknown) => e instanceof UsageError && e.message.includes(keyFile) && /64 hex/.test(e.message));
  assert.throws(() => loadWorkerKeys(out, [-1]), (e: unknown) => e instanceof UsageError);
});

test('fedsim keys gen: writes the keys (exit 0), refuses to overwrite (exit 2), --force overwrites', async () => {
  const out = fresh('cli');
  const first = await runCli(['keys', 'gen', '--workers', '4', '--out', out]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /wrote 4 key pairs/);
  assert.ok(first.stderr.includes(path.join(out, 'keys.list')), first.stderr);
  assert.equal(loadKeyList(path.join(out, 'keys.list')).length, 4);
  for (let i = 0; i < 4; i++) assert.equal(mode(path.join(out, `worker-${i}.key`)), 0o600);
  assert.equal(mode(out), 0o700);
  const list = readFileSync(path.join(out, 'keys.list'), 'utf8');

  const second = await runCli(['keys', 'gen', '--workers', '4', '--out', out]);
  assert.equal(second.code, 2, second.stderr);
  assert.ok(second.stderr.includes(path.join(out, 'keys.list')), second.stderr);
  assert.match(second.stderr, /--force/);
  assert.equal(readFileSync(path.join(out, 'keys.list'), 'utf8'), list, 'nothing was overwritten');

  const forced = await runCli(['keys', 'gen', '--workers', '4', '--out', out, '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.notEqual(readFileSync(path.join(out, 'keys.list'), 'utf8'), list);

  const bad = await runCli(['keys', 'gen', '--workers', '0', '--out', fresh('cli')]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--workers/);
  const noOut = await runCli(['keys', 'gen', '--workers', '2']);
  assert.equal(noOut.code, 2);
  assert.match(noOut.stderr, /--out/);
});

test('fedsim run --keys: a file, a missing directory or one without keys.list is exit 2 with what to pass, before any node starts', async () => {
  const dir = fresh('run');
  generateKeys({ workers: 2, outDir: dir });
  const empty = fresh('empty');
  mkdirSync(empty);
  const cases: Array<[string, RegExp]> = [
    [path.join(dir, KEY_LIST_FILE), new RegExp(`is a file: give the directory .*here ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`)],
    [fresh('missing'), /no such directory; make one with `fedsim keys gen/],
    [empty, /has no keys\.list/],
  ];
  for (const [keys, want] of cases) {
    const out = fresh('out');
    const r = await runCli(['run', '--workers', '2', '--nodes', '1', '--rounds', '1', '--keys', keys, '--out', out, '--headless']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, want);
    assert.equal(existsSync(out), false, 'no run directory was made');
  }
  assert.doesNotThrow(() => checkKeysDir(dir));
});
