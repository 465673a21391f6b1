import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { type Sodium, ed25519, libsodiumOrNull, openssl } from '../../src/auth/ed25519.js';
import nacl from 'tweetnacl';
import { blake2b } from '../../src/auth/blake2b.js';
import { exchangeKeyPair, macHex, macMatches, sessionKey } from '../../src/auth/session.js';
import { type SignedFields, SEQ_WINDOW, Verifier, canonical, checkBody, sessionHead, sessionMessage, sessionText, publicKeyOfSeed, signer, verifySignature } from '../../src/auth/sign.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

interface TestKey {
  seed: string;
  pub: string;
  sign: (m: Buffer) => Buffer;
}
function newKey(): TestKey {
  const kp = nacl.sign.keyPair();
  const seed = hex(kp.secretKey.subarray(0, 32));
  return { seed, pub: hex(kp.publicKey), sign: signer(seed) };
}

const NOW = 1_700_000_000_000;
let nonceSeq = 0;
function fields(key: TestKey, over: Partial<SignedFields> = {}): SignedFields {
  return {
    method: 'POST',
    path: '/v1/update',
    publicKey: key.pub,
    workerId: 'w0',
    round: 3,
    timestamp: NOW,
    nonce: `n${nonceSeq++}`,
    bodySha256: sha('update body'),
    ...over,
  };
}
const signed = (key: TestKey, over: Partial<SignedFields> = {}) => {
  const f = fields(key, over);
  return { f, sig: key.sign(canonical(f)).toString('hex') };
};

test('canonical: a version line, then each field on its own line, in order', () => {
  const f: SignedFields = {
    method: 'POST', path: '/v1/update', publicKey: 'ab'.repeat(32), workerId: 'w7', round: 12, timestamp: 1700000000123, nonce: 'q1w2', bodySha256: sha(''),
  };
  assert.equal(
    canonical(f).toString('utf8'),
    `fedsim-auth-v1\nPOST\n/v1/update\n${'ab'.repeat(32)}\nw7\n12\n1700000000123\nq1w2\n${sha('')}\n`,
  );
  assert.equal(canonical({ ...f, workerId: '', path: '/é' }).toString('utf8').split('\n')[4], '', 'registration: empty worker id line');
  assert.deepEqual(canonical({ ...f, path: '/é' }).subarray(20, 24), Buffer.from('/é\n', 'utf8'), 'UTF-8 bytes');
  // Ambiguous encodings are refused: a field cannot smuggle in another line.
  assert.throws(() => canonical({ ...f, path: '/v1/update\nw8' }), TypeError);
  assert.throws(() => canonical({ ...f, nonce: 'a\r' }), TypeError);
  assert.throws(() => canonical({ ...f, round: 1.5 }), TypeError);
  assert.throws(() => canonical({ ...f, timestamp: Number.NaN }), TypeError);
});

test('sessionMessage: the bytes of sessionText, or its refusal, whatever the fields; the session head is made once', () => {
  const f = { method: 'GET', path: '/v1/model', publicKey: 'cd'.repeat(32), workerId: 'w3', round: -1, timestamp: 1700000000999, seq: 7, bodySha256: sha('') };
  const msg = (g: typeof f) => sessionMessage(sessionHead(g.publicKey, g.workerId), g.method, g.path, g.round, g.timestamp, g.seq, g.bodySha256);
  const same = (g: typeof f) => assert.deepEqual(Buffer.from(msg(g)), Buffer.from(sessionText(g), 'utf8'), JSON.stringify(g).slice(0, 80));
  same(f);
  assert.equal(
    sessionText(f),
    `fedsim-session-v1\n${'cd'.repeat(32)}\nw3\nGET\n/v1/model\n-1\n1700000000999\n7\n${sha('')}\n`,
    'the documented layout (docs/safe-mode.md)',
  );
  for (const n of [0, 1, 9, 10, 99, 100, 12345, -12345, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]) {
    same({ ...f, round: n });
    same({ ...f, seq: Math.abs(n) });
    same({ ...f, timestamp: Math.abs(n) });
  }
  same({ ...f, bodySha256: sha('x') });
  same({ ...f, workerId: '', round: 0 });
  same({ ...f, workerId: 'wé' }); // a head that is not ASCII: its UTF-8 bytes
  same({ ...f, path: '/é' }); // not ASCII: the string path
  same({ ...f, path: 'x'.repeat(5000) }); // over the scratch buffer
  for (let i = 0; i < 10; i++) same({ ...f, method: 'POST', path: `/route-${i}` }); // more routes than are cached
  // A message written after another is whole (the scratch buffer is reused).
  const first = Buffer.from(msg({ ...f, path: '/a-much-longer-path-than-the-next' }));
  same({ ...f, path: '/b' });
  assert.match(first.toString(), /much-longer/);
  assert.throws(() => msg({ ...f, path: '/v1\nx' }), TypeError);
  assert.throws(() => msg({ ...f, bodySha256: 'a\r' }), TypeError);
  assert.throws(() => msg({ ...f, round: 0.5 }), TypeError);
  assert.throws(() => msg({ ...f, method: undefined as unknown as string }), TypeError);
  assert.throws(() => sessionHead(f.publicKey, 'w\n1'), TypeError);
});

test('tweetnacl and native signatures are the same keys both ways', () => {
  const kp = nacl.sign.keyPair();
  const seed = hex(kp.secretKey.subarray(0, 32));
  const pub = hex(kp.publicKey);
  assert.equal(publicKeyOfSeed(seed), pub);
  for (const msg of [Buffer.alloc(0), Buffer.from('hello'), Buffer.alloc(200, 7)]) {
    const naclSig = Buffer.from(nacl.sign.detached(msg, kp.secretKey));
    const nodeSig = signer(seed)(msg);
    assert.equal(nodeSig.length, 64);
    assert.ok(verifySignature(pub, msg, naclSig), 'tweetnacl signature verifies natively');
    assert.ok(verifySignature(pub, msg, naclSig.toString('hex')), '(as hex too)');
    assert.ok(nacl.sign.detached.verify(msg, nodeSig, kp.publicKey), 'native signature verifies with tweetnacl');
    assert.deepEqual(nodeSig, naclSig, 'ed25519 is deterministic');
  }
  const msg = Buffer.from('hello');
  const sig = signer(seed)(msg);
  const tampered = Buffer.from(sig);
  tampered[10] ^= 1;
  assert.ok(!verifySignature(pub, msg, tampered));
  assert.ok(!nacl.sign.detached.verify(msg, tampered, kp.publicKey));
  assert.ok(!verifySignature(pub, Buffer.from('hellO'), sig));
  // Malformed input is false, never a throw.
  assert.ok(!verifySignature(pub, msg, sig.subarray(1)));
  assert.ok(!verifySignature(pub, msg, 'zz'.repeat(64)));
  assert.ok(!verifySignature('abc', msg, sig));
  assert.ok(!verifySignature('00'.repeat(32), msg, sig));
});

test('Verifier accepts a good request and refuses missing fields and unknown keys', () => {
  const a = newKey();
  const stranger = newKey();
  const v = new Verifier({ keys: [a.pub.toUpperCase()] });
  const ok = signed(a);
  assert.deepEqual(v.verify(ok.f, ok.sig, NOW), { ok: true });
  assert.equal(v.indexOf(a.pub), 0);
  assert.equal(v.indexOf(stranger.pub), -1);

  const m = signed(a);
  assert.deepEqual(v.verify(m.f, '', NOW), { ok: false, reason: 'missing' });
  assert.deepEqual(v.verify({ ...m.f, publicKey: '' }, m.sig, NOW), { ok: false, reason: 'missing' });
  assert.deepEqual(v.verify({ ...m.f, nonce: '' }, m.sig, NOW), { ok: false, reason: 'missing' });

  // Well signed, but by a key that is not in the list.
  const s = signed(stranger);
  assert.deepEqual(v.verify(s.f, s.sig, NOW), { ok: false, reason: 'unknown-key' });
});

test('Verifier refuses bad signatures: another key, malformed, any tampered field', () => {
  const a = newKey();
  const b = newKey();
  const v = new Verifier({ keys: [a.pub, b.pub] });

  // b signs a request that claims to be a's.
  const f = fields(a);
  assert.deepEqual(v.verify(f, b.sign(canonical(f)).toString('hex'), NOW), { ok: false, reason: 'bad-signature' });
  const g = signed(a);
  assert.deepEqual(v.verify(g.f, g.sig.slice(2), NOW), { ok: false, reason: 'bad-signature' });
  assert.deepEqual(v.verify(g.f, `${g.sig.slice(0, -2)}zz`, NOW), { ok: false, reason: 'bad-signature' });
  assert.deepEqual(v.verify({ ...g.f, path: 'x\ny' }, g.sig, NOW), { ok: false, reason: 'bad-signature' });
  assert.deepEqual(v.verify({ ...g.f, nonce: 'n'.repeat(129) }, g.sig, NOW), { ok: false, reason: 'bad-signature' });

  const tamper: Array<Partial<SignedFields>> = [
    { method: 'GET' },
    { path: '/v1/model' },
    { workerId: 'w1' },
    { round: 4 },
    { timestamp: NOW + 1 },
    { nonce: 'other' },
    { bodySha256: sha('another body') },
    { publicKey: b.pub }, // a's signature presented as b's
  ];
  for (const t of tamper) {
    const r = signed(a);
    assert.deepEqual(v.verify({ ...r.f, ...t }, r.sig, NOW), { ok: false, reason: 'bad-signature' }, JSON.stringify(t));
    assert.deepEqual(v.verify(r.f, r.sig, NOW), { ok: true }, 'the untampered request still passes');
  }
});

test('Verifier refuses stale timestamps, in the past and in the future', () => {
  const a = newKey();
  const v = new Verifier({ keys: [a.pub], maxSkewMs: 5_000 });
  const at = (ts: number) => signed(a, { timestamp: ts });
  const past = at(NOW - 5_001);
  assert.deepEqual(v.verify(past.f, past.sig, NOW), { ok: false, reason: 'stale' });
  const future = at(NOW + 5_001);
  assert.deepEqual(v.verify(future.f, future.sig, NOW), { ok: false, reason: 'stale' });
  for (const ts of [NOW - 5_000, NOW + 5_000, NOW]) {
    const r = at(ts);
    assert.deepEqual(v.verify(r.f, r.sig, NOW), { ok: true }, `edge ${ts - NOW}`);
  }
  // The default window is 60 s.
  const d = new Verifier({ keys: [a.pub] });
  assert.equal(d.maxSkewMs, 60_000);
  const old = at(NOW - 60_001);
  assert.deepEqual(d.verify(old.f, old.sig, NOW), { ok: false, reason: 'stale' });
});

test('Verifier refuses a replayed nonce, recording it only once the request passed', () => {
  const a = newKey();
  const b = newKey();
  const v = new Verifier({ keys: [a.pub, b.pub] });
  const r = signed(a);
  assert.deepEqual(v.verify(r.f, r.sig, NOW), { ok: true });
  assert.deepEqual(v.verify(r.f, r.sig, NOW + 10), { ok: false, reason: 'replay' });
  // Same nonce in a new, well-signed request of the same key: still a replay.
  const again = signed(a, { nonce: r.f.nonce, round: 4 });
  assert.deepEqual(v.verify(again.f, again.sig, NOW), { ok: false, reason: 'replay' });
  // Nonces are per key.
  const other = signed(b, { nonce: r.f.nonce, workerId: 'w1' });
  assert.deepEqual(v.verify(other.f, other.sig, NOW), { ok: true });

  // A forged request does not burn the nonce of a genuine one.
  const genuine = signed(a);
  assert.deepEqual(v.verify(genuine.f, b.sign(canonical(genuine.f)).toString('hex'), NOW), { ok: false, reason: 'bad-signature' });
  const staleCopy = signed(a, { nonce: genuine.f.nonce, timestamp: NOW - 120_000 });
  assert.deepEqual(v.verify(staleCopy.f, staleCopy.sig, NOW), { ok: false, reason: 'stale' });
  assert.deepEqual(v.verify(genuine.f, genuine.sig, NOW), { ok: true });
});

test('Verifier: the nonce cache is bounded; beyond it the timestamp window stops replays', () => {
  // The cache keeps the last noncesPerWorker nonces of each key, so after that many newer
  // requests an old nonce is forgotten and a copy of its request would pass again while its
  // timestamp is in the window. The window is what stops such replays for good, so the cache
  // must cover the requests one key makes within the window at the expected request rate.
  const a = newKey();
  const v = new Verifier({ keys: [a.pub], noncesPerWorker: 4, maxSkewMs: 1_000 });
  assert.equal(new Verifier({ keys: [] }).noncesPerWorker, 1024);
  const first = signed(a);
  assert.deepEqual(v.verify(first.f, first.sig, NOW), { ok: true });
  const newer = [signed(a), signed(a), signed(a)];
  for (const r of newer) assert.deepEqual(v.verify(r.f, r.sig, NOW), { ok: true });
  assert.deepEqual(v.verify(first.f, first.sig, NOW), { ok: false, reason: 'replay' }, '3 newer nonces: still remembered');

  const fourth = signed(a);
  assert.deepEqual(v.verify(fourth.f, fourth.sig, NOW), { ok: true });
  // 4 newer nonces: the first is forgotten, so inside the window its copy passes...
  assert.deepEqual(v.verify(first.f, first.sig, NOW + 500), { ok: true });
  // ...which the window ends: once maxSkewMs has passed, any copy is stale.
  assert.deepEqual(v.verify(first.f, first.sig, NOW + 1_001), { ok: false, reason: 'stale' });
  // The newest ones are still remembered.
  assert.deepEqual(v.verify(fourth.f, fourth.sig, NOW), { ok: false, reason: 'replay' });
  assert.deepEqual(v.verify(newer[2].f, newer[2].sig, NOW), { ok: false, reason: 'replay' });

  assert.throws(() => new Verifier({ keys: [], noncesPerWorker: 0 }), RangeError);
});

test('Verifier: a worker id registered by one key is refused to every other key', () => {
  const a = newKey();
  const b = newKey();
  const v = new Verifier({ keys: [a.pub, b.pub] });
  // Before registration nobody owns w0.
  const early = signed(b, { workerId: 'w0' });
  assert.deepEqual(v.verify(early.f, early.sig, NOW), { ok: true });

  assert.equal(v.bindWorker('w0', a.pub), true);
  assert.equal(v.workerOf(a.pub), 'w0');
  const mine = signed(a, { workerId: 'w0' });
  assert.deepEqual(v.verify(mine.f, mine.sig, NOW), { ok: true });
  const theirs = signed(b, { workerId: 'w0' });
  assert.deepEqual(v.verify(theirs.f, theirs.sig, NOW), { ok: false, reason: 'wrong-worker' });
  // Registration requests (no worker id yet) are exempt.
  const register = signed(b, { workerId: '', path: '/v1/register', round: 0 });
  assert.deepEqual(v.verify(register.f, register.sig, NOW), { ok: true });

  // The first key keeps its id; an unknown key binds nothing.
  assert.equal(v.bindWorker('w0', b.pub), false);
  assert.equal(v.bindWorker('w0', a.pub), true, 'binding again to the same key is fine');
  assert.equal(v.bindWorker('w9', newKey().pub), false);
  assert.equal(v.bindWorker('w1', b.pub), true);
  const ownId = signed(b, { workerId: 'w1' });
  assert.deepEqual(v.verify(ownId.f, ownId.sig, NOW), { ok: true });
  const crossed = signed(a, { workerId: 'w1' });
  assert.deepEqual(v.verify(crossed.f, crossed.sig, NOW), { ok: false, reason: 'wrong-worker' });
  // A wrong-worker refusal did not record the nonce.
  v.bindWorker('w2', b.pub); // b moves to w2: w1 is released
  assert.deepEqual(v.verify(crossed.f, crossed.sig, NOW), { ok: true });
});

test('checkBody compares the signed body hash with the received one', () => {
  assert.deepEqual(checkBody(sha('a'), sha('a')), { ok: true });
  assert.deepEqual(checkBody(sha('a').toUpperCase(), sha('a')), { ok: true });
  assert.deepEqual(checkBody(sha('a'), sha('b')), { ok: false, reason: 'body-hash' });
});

test('libsodium and OpenSSL: the same public key, the same signatures, each verifies the other\'s; libsodium is in use', () => {
  const sodium = libsodiumOrNull();
  assert.ok(sodium, 'sodium-native loads (prebuilt for this platform)');
  assert.equal(ed25519().name, 'libsodium');
  const kp = nacl.sign.keyPair();
  const seed = Buffer.from(kp.secretKey.subarray(0, 32));
  const pub = Buffer.from(kp.publicKey);
  assert.deepEqual(sodium.publicKeyOf(seed), pub);
  assert.deepEqual(openssl.publicKeyOf(seed), pub);
  const bySodium = sodium.verifierOf(pub);
  const byOpenssl = openssl.verifierOf(pub);
  for (const msg of [Buffer.alloc(0), Buffer.from('fedsim'), Buffer.alloc(300, 9)]) {
    const a = sodium.signerOf(seed)(msg);
    const b = openssl.signerOf(seed)(msg);
    assert.deepEqual(a, b, 'ed25519 is deterministic');
    assert.ok(bySodium(msg, b) && byOpenssl(msg, a));
    const bad = Buffer.from(a);
    bad[5] ^= 1;
    assert.equal(bySodium(msg, bad), false);
    assert.equal(byOpenssl(msg, bad), false);
    assert.equal(bySodium(msg, a.subarray(0, 63)), false, 'a short signature is false, not a throw');
    assert.equal(byOpenssl(msg, a.subarray(0, 63)), false);
  }
  assert.throws(() => sodium.verifierOf(Buffer.alloc(31)), /32 bytes/);
  assert.throws(() => sodium.signerOf(Buffer.alloc(33)), /32 bytes/);
});

test('Verifier: a second copy of an accepted request is a replay, a failed check does not burn the nonce', () => {
  const k = newKey();
  const other = newKey();
  const v = new Verifier({ keys: [k.pub] });
  const { f, sig } = signed(k);
  assert.deepEqual(v.verify(f, sig, NOW), { ok: true });
  assert.deepEqual(v.verify(f, sig, NOW), { ok: false, reason: 'replay' });
  const t = signed(k);
  assert.deepEqual(v.verify({ ...t.f, round: 4 }, t.sig, NOW), { ok: false, reason: 'bad-signature' });
  assert.deepEqual(v.verify(t.f, t.sig, NOW + 61_000), { ok: false, reason: 'stale' });
  const o = signed(other);
  assert.deepEqual(v.verify(o.f, o.sig, NOW), { ok: false, reason: 'unknown-key' });
  assert.deepEqual(v.verify(t.f, t.sig, NOW), { ok: true }, 'a failed check does not burn the nonce');
});

test('canonical: a registration that opens a session has its own version line and the exchange key last', () => {
  const k = newKey();
  const kx = exchangeKeyPair().publicHex;
  const f = fields(k, { workerId: '#0', round: 0 });
  const plain = canonical(f).toString('utf8');
  const withKx = canonical({ ...f, exchangeKey: kx }).toString('utf8');
  assert.ok(plain.startsWith('fedsim-auth-v1\n'));
  assert.equal(withKx, `fedsim-auth-v1+kx\n${plain.slice('fedsim-auth-v1\n'.length)}${kx}\n`);
  assert.throws(() => canonical({ ...f, exchangeKey: `${kx}\n` }), /line break/);
});

test('session keys: worker and server derive the same key; it depends on the identity and both exchange keys', () => {
  const k = newKey();
  const worker = exchangeKeyPair();
  const server = exchangeKeyPair();
  const w = sessionKey(worker, server.publicHex, k.pub, true);
  const s = sessionKey(server, worker.publicHex, k.pub, false);
  assert.equal(w.length, 32);
  assert.deepEqual(w, s);
  assert.notDeepEqual(sessionKey(server, worker.publicHex, newKey().pub, false), w);
  assert.notDeepEqual(sessionKey(exchangeKeyPair(), worker.publicHex, k.pub, false), w);
  assert.throws(() => sessionKey(server, 'zz', k.pub, false), /64 lower-case hex/);
  // A low-order point (here 0) gives an all-zero shared secret: refused.
  assert.throws(() => sessionKey(server, '00'.repeat(32), k.pub, false));
});

test('Verifier.verifySession: a session opened by a registration admits MACed requests with the same rules; no session, a bad MAC, a tampered field are refused', () => {
  const k = newKey();
  const other = newKey();
  const v = new Verifier({ keys: [k.pub, other.pub] });
  // A session's requests carry its sequence number as their nonce.
  let seq = 0;
  const sfields = (key: TestKey, over: Partial<SignedFields> = {}) => fields(key, { nonce: String(++seq), ...over });
  /** The x-fedsim-mac token of a request: INDEX.TIMESTAMP.SEQ.MAC (k is line 0, other line 1). */
  const token = (key: Buffer, f: SignedFields, index = f.publicKey === k.pub ? 0 : 1) => `${index}.${f.timestamp}.${f.nonce}.${macHex(key, sessionText({ ...f, seq: Number(f.nonce) }))}`;
  const ok = { ok: true, publicKey: k.pub };
  const no = (reason: string, publicKey = k.pub) => ({ ok: false, reason, publicKey });
  // Before any registration: no session.
  const early = sfields(k);
  assert.deepEqual(v.verifySession(early, token(randomKey(), early), NOW), no('no-session'));

  // The signed registration carries the worker's exchange key; the server answers with its own.
  const worker = exchangeKeyPair();
  const reg = signed(k, { workerId: '#0', round: 0, exchangeKey: worker.publicHex });
  assert.deepEqual(v.verify(reg.f, reg.sig, NOW), { ok: true });
  // The exchange key is under the signature: another one in its place does not verify.
  assert.deepEqual(v.verify({ ...reg.f, nonce: 'x1', exchangeKey: exchangeKeyPair().publicHex }, reg.sig, NOW), { ok: false, reason: 'bad-signature' });
  assert.equal(v.bindWorker('w0', k.pub), true);
  const serverKx = v.openSession(k.pub, worker.publicHex);
  const key = sessionKey(worker, serverKx, k.pub, true);

  const f = sfields(k);
  assert.deepEqual(v.verifySession(f, token(key, f), NOW), ok);
  assert.deepEqual(v.verifySession(f, token(key, f), NOW), no('replay'));
  const g = sfields(k);
  const t = token(key, g);
  assert.deepEqual(v.verifySession(g, t.slice(0, -64) + t.slice(-64).toUpperCase(), NOW), ok, 'the MAC in upper case');
  // Every field is under the MAC: the method, path, worker, round and body hash the server sees,
  // and the timestamp and nonce of the token.
  for (const over of [{ method: 'GET' }, { path: '/v1/model' }, { round: 4 }, { bodySha256: sha('other') }]) {
    const h = sfields(k);
    assert.deepEqual(v.verifySession({ ...h, ...over }, token(key, h), NOW), no('bad-signature'), JSON.stringify(over));
  }
  const h = sfields(k);
  const mac = macHex(key, canonical(h));
  assert.deepEqual(v.verifySession(h, `0.${NOW + 1}.${h.nonce}.${mac}`, NOW), no('bad-signature'), 'another timestamp');
  assert.deepEqual(v.verifySession(h, `0.${NOW}.${h.nonce}x.${mac}`, NOW), no('bad-signature'), 'another nonce');
  assert.deepEqual(v.verifySession(h, `0.${NOW}.${Number(h.nonce) + 1}.${mac}`, NOW), no('bad-signature'), 'another sequence number');
  assert.deepEqual(v.verifySession(h, `0.${NOW}.0${h.nonce}.${mac}`, NOW), no('bad-signature'), 'a leading zero');
  assert.deepEqual(v.verifySession(h, `00.${NOW}.${h.nonce}.${mac}`, NOW), no('unknown-key', ''), 'a leading zero in the index');
  const zero = sfields(k, { nonce: '0' });
  assert.deepEqual(v.verifySession(zero, token(key, zero), NOW), no('bad-signature'), 'sequence numbers start at 1');
  assert.deepEqual(v.verifySession(h, token(randomKey(), h), NOW), no('bad-signature'), "another key's MAC");
  for (const bad of [`0.${NOW}.${h.nonce}.nothex`, `0.${NOW}.${h.nonce}`, `0.${NOW}..${mac}`, `0.${NOW}.${h.nonce}.${mac}0`, `0.${NOW}.${h.nonce}.${mac.slice(2)}`, `0.${NOW}.-1.${mac}`]) {
    assert.deepEqual(v.verifySession(h, bad, NOW), no('bad-signature'), bad);
  }
  assert.deepEqual(v.verifySession(h, `0..${h.nonce}.${mac}`, NOW), no('stale'), 'no timestamp');
  for (const bad of [mac, `7.${NOW}.${h.nonce}.${mac}`, `-1.${NOW}.${h.nonce}.${mac}`]) {
    assert.deepEqual(v.verifySession(h, bad, NOW), no('unknown-key', ''), bad);
  }
  assert.deepEqual(v.verifySession(h, '', NOW), no('missing', ''));
  const stale = sfields(k, { timestamp: NOW - 61_000 });
  assert.deepEqual(v.verifySession(stale, token(key, stale), NOW), no('stale'));
  // A registration cannot be MACed (it is what opens a session); the other key has no session.
  const r2 = sfields(k, { workerId: '#0', round: 0 });
  assert.deepEqual(v.verifySession(r2, token(key, r2), NOW), no('no-session'));
  assert.equal(v.bindWorker('w1', other.pub), true);
  const o = sfields(other, { workerId: 'w1' });
  assert.deepEqual(v.verifySession(o, token(key, o), NOW), no('no-session', other.pub));
  // The other key, with a session of its own, cannot act as w0; nor can it pass as k.
  const ox = exchangeKeyPair();
  const okey = sessionKey(ox, v.openSession(other.pub, ox.publicHex), other.pub, true);
  const w = sfields(other, { workerId: 'w0' });
  assert.deepEqual(v.verifySession(w, token(okey, w), NOW), no('wrong-worker', other.pub));
  const w2 = sfields(other, { workerId: 'w0' });
  assert.deepEqual(v.verifySession(w2, token(okey, w2, 0), NOW), no('bad-signature'));
  // Nor as a worker id nobody registered: a session acts as its registration's worker only.
  const free = sfields(other, { workerId: 'w9' });
  assert.deepEqual(v.verifySession(free, token(okey, free), NOW), no('wrong-worker', other.pub));
  const own = sfields(other, { workerId: 'w1' });
  assert.deepEqual(v.verifySession(own, token(okey, own), NOW), { ok: true, publicKey: other.pub });

  // A new registration replaces the session: the old key no longer verifies.
  const again = exchangeKeyPair();
  const newKeyBytes = sessionKey(again, v.openSession(k.pub, again.publicHex), k.pub, true);
  const n = sfields(k);
  assert.deepEqual(v.verifySession(n, token(key, n), NOW), no('bad-signature'));
  assert.deepEqual(v.verifySession(n, token(newKeyBytes, n), NOW), ok);
  assert.throws(() => v.openSession(newKey().pub, again.publicHex), /not in the list/);
});

test("Verifier.verifySession: a session's sequence numbers pass once each, in any order within the window; older ones are replays; a new session starts again", () => {
  const k = newKey();
  const v = new Verifier({ keys: [k.pub] });
  const open = () => {
    const x = exchangeKeyPair();
    return sessionKey(x, v.openSession(k.pub, x.publicHex), k.pub, true);
  };
  v.bindWorker('w0', k.pub);
  let key = open();
  const send = (seq: number) => {
    const f = fields(k, { nonce: String(seq) });
    return v.verifySession(f, `0.${f.timestamp}.${seq}.${macHex(key, sessionText({ ...f, seq: Number(f.nonce) }))}`, NOW);
  };
  const ok = { ok: true, publicKey: k.pub };
  const replay = { ok: false, reason: 'replay', publicKey: k.pub };
  assert.deepEqual(send(5), ok, 'gaps are allowed');
  assert.deepEqual(send(3), ok, 'an earlier number that never came');
  assert.deepEqual(send(3), replay);
  assert.deepEqual(send(5), replay);
  assert.deepEqual(send(4), ok);
  // Far ahead: numbers within the window below the new top that never came still pass once.
  const top = 5 + SEQ_WINDOW + 10;
  assert.deepEqual(send(top), ok);
  assert.deepEqual(send(top - SEQ_WINDOW + 1), ok, 'the oldest number the window holds');
  assert.deepEqual(send(top - SEQ_WINDOW + 1), replay);
  assert.deepEqual(send(top - SEQ_WINDOW), replay, 'older than the window');
  assert.deepEqual(send(4), replay, 'long ago');
  // Bits of numbers the window passed over are cleared: top+1 .. top+40 each pass once.
  for (let n = top + 40; n > top; n--) assert.deepEqual(send(n), ok, String(n));
  for (let n = top + 1; n <= top + 40; n++) assert.deepEqual(send(n), replay, String(n));
  // A refused request (a bad MAC) does not burn its number.
  const f = fields(k, { nonce: String(top + 41) });
  assert.deepEqual(v.verifySession(f, `0.${f.timestamp}.${top + 41}.${'00'.repeat(32)}`, NOW), { ok: false, reason: 'bad-signature', publicKey: k.pub });
  assert.deepEqual(send(top + 41), ok);
  // A new registration: a new key and a new window, counting from 1 again.
  const x = exchangeKeyPair();
  key = sessionKey(x, v.openSession(k.pub, x.publicHex), k.pub, true);
  assert.deepEqual(send(1), ok);
  assert.deepEqual(send(2), ok);
  assert.deepEqual(send(1), replay);
  // A registration that carries the same exchange key again (a held-back copy of an earlier
  // attempt, replayed) derives the same session key: the window is kept, so what that session
  // already sent stays refused.
  assert.deepEqual(sessionKey(x, v.openSession(k.pub, x.publicHex), k.pub, true), key);
  assert.deepEqual(send(1), replay);
  assert.deepEqual(send(2), replay);
  assert.deepEqual(send(3), ok);
});

test('Verifier: a session acts as the worker id its key registered; registering under another id ends it; openSession needs that id', () => {
  const k = newKey();
  const v = new Verifier({ keys: [k.pub] });
  const x = exchangeKeyPair();
  assert.throws(() => v.openSession(k.pub, x.publicHex), /no worker id/);
  assert.equal(v.bindWorker('w0', k.pub), true);
  const key = sessionKey(x, v.openSession(k.pub, x.publicHex), k.pub, true);
  const send = (workerId: string, seq: number) => {
    const f = fields(k, { workerId, nonce: String(seq) });
    return v.verifySession(f, `0.${f.timestamp}.${seq}.${macHex(key, sessionText({ ...f, seq }))}`, NOW);
  };
  assert.deepEqual(send('w0', 1), { ok: true, publicKey: k.pub });
  assert.deepEqual(send('', 2), { ok: false, reason: 'wrong-worker', publicKey: k.pub });
  // Registered again under the same id without a new session (the ed25519 scheme): the session is over.
  assert.equal(v.bindWorker('w0', k.pub), true);
  assert.deepEqual(send('w0', 3), { ok: false, reason: 'no-session', publicKey: k.pub });
  // The same exchange key again (a held-back registration): the same session key, and its window is kept.
  assert.deepEqual(sessionKey(x, v.openSession(k.pub, x.publicHex), k.pub, true), key);
  assert.deepEqual(send('w0', 1), { ok: false, reason: 'replay', publicKey: k.pub });
  assert.deepEqual(send('w0', 3), { ok: true, publicKey: k.pub });
  // Registered again under another id (without a new session): the old session is over.
  assert.equal(v.bindWorker('w5', k.pub), true);
  assert.deepEqual(send('w0', 4), { ok: false, reason: 'no-session', publicKey: k.pub });
  assert.deepEqual(send('w5', 5), { ok: false, reason: 'no-session', publicKey: k.pub });
});

test('the session MAC is keyed BLAKE2b-256: libsodium and src/auth/blake2b.ts give the same bytes; the JS one matches RFC 7693 and OpenSSL', () => {
  // RFC 7693, appendix A: BLAKE2b-512("abc").
  const abc = Buffer.alloc(64);
  blake2b(abc, Buffer.from('abc'));
  assert.equal(abc.toString('hex'), 'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923');
  // The reference implementation's keyed test vectors (key 00..3f; messages empty and 00 01 02):
  // they hold whether or not the addon loads here.
  const kat = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
  const keyed = Buffer.alloc(64);
  blake2b(keyed, Buffer.alloc(0), kat);
  assert.equal(keyed.toString('hex'), '10ebb67700b1868efb4417987acf4690ae9d972fb7a590c2f02871799aaa4786b5e996e8f0f4eb981fc214b005f42d2ff4233499391653df7aefcbc13fc51568');
  blake2b(keyed, Buffer.from([0, 1, 2]), kat);
  assert.equal(keyed.toString('hex'), '33d0825dddf7ada99b0e7e307104ad07ca9cfd9692214f1561356315e784f3e5a17e364ae9dbb14cb2036df932b77f4b292761365fb328de7afdc6d8998f5fc1');
  const sodium = libsodiumOrNull() ? (createRequire(import.meta.url)('sodium-native') as Sodium) : null;
  for (const n of [0, 1, 127, 128, 129, 255, 256, 257, 1000]) {
    const msg = randomBytes(n);
    const plain = Buffer.alloc(64);
    blake2b(plain, msg);
    assert.deepEqual(plain, createHash('blake2b512').update(msg).digest(), `unkeyed, ${n} bytes`);
    for (const keyLength of [16, 32, 64]) {
      const key = randomBytes(keyLength);
      const js = Buffer.alloc(32);
      blake2b(js, msg, key);
      if (sodium) {
        const c = Buffer.alloc(32);
        sodium.crypto_generichash(c, msg, key);
        assert.deepEqual(js, c, `keyed (${keyLength}), ${n} bytes`);
      }
    }
  }
  const key = randomKey();
  const msg = Buffer.from('fedsim-auth-v1\nGET\n/v1/model\n');
  const expected = Buffer.alloc(32);
  blake2b(expected, msg, key);
  assert.equal(macHex(key, msg), expected.toString('hex'));
  assert.equal(macHex(key, msg.toString()), expected.toString('hex'), 'the same message as text');
  assert.equal(macMatches(key, msg, expected.toString('hex')), true);
  assert.equal(macMatches(key, msg, `x.${expected.toString('hex').toUpperCase()}`, 2), true, 'at an offset, either case');
  assert.equal(macMatches(key, Buffer.from('other'), expected.toString('hex')), false);
  assert.equal(macMatches(key, msg, expected.toString('hex').slice(2)), false, 'too short');
  assert.equal(macMatches(randomKey(), msg, expected.toString('hex')), false, 'another key');
});

const randomKey = () => createHash('sha256').update(String(Math.random())).digest();
