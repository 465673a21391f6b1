/**
 * `npm run bench -- auth-crypto`: what an ed25519 signature costs in safe mode, to pick the
 * implementation src/auth/sign.ts uses.
 *
 * For ~200-byte messages (the size of a canonical request, src/auth/sign.ts) it measures,
 * in this one process and one thread:
 *
 * 1. sign: tweetnacl `nacl.sign.detached(msg, secretKey)` vs Node's native
 *    `crypto.sign(null, msg, privateKeyObject)`;
 * 2. verify: `nacl.sign.detached.verify(msg, sig, publicKey)` vs native
 *    `crypto.verify(null, msg, publicKeyObject, sig)`;
 * 3. what building a KeyObject from the raw 32 bytes costs, as DER (PKCS8 / SPKI) and as JWK
 *    (why sign.ts caches them, and builds them from JWK);
 * 4. key generation: tweetnacl `nacl.sign.keyPair()` (what `fedsim keys gen` uses);
 * 5. fedsim's own `signer()` and `Verifier.verify()` (the chosen path, with its checks).
 *
 * The KeyObjects are built from the same raw seed / public key that tweetnacl uses (PKCS8
 * and SPKI DER prefixes), and every signature is cross-checked by the other implementation
 * first, so both sides measure the same keys. Each figure is the median of PASSES timed
 * passes after a warm-up. It prints figures only: the exit code is 1 only when the
 * cross-check fails.
 */
import { createPrivateKey, createPublicKey, randomBytes, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import nacl from 'tweetnacl';
import { ed25519, libsodiumOrNull } from '../src/auth/ed25519.js';
import { type SignedFields, Verifier, canonical, signer } from '../src/auth/sign.js';
import { table } from './lib.js';

const MSG_BYTES = 200;
const MESSAGES = 64; // a pool, so no implementation can benefit from one repeated input
const WARMUP_MS = 300;
const PASS_MS = 700;
const PASSES = 5;

const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Runs `op(i)` in batches until `ms` have passed; returns ops/s. */
function timed(op: (i: number) => void, ms: number): number {
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (let k = 0; k < 64; k++) op(n++);
    t = performance.now();
  }
  return n / ((t - t0) / 1000);
}

function measure(op: (i: number) => void): number {
  timed(op, WARMUP_MS);
  const passes: number[] = [];
  for (let p = 0; p < PASSES; p++) passes.push(timed(op, PASS_MS));
  passes.sort((a, b) => a - b);
  return passes[Math.floor(passes.length / 2)];
}

const fmt = (opsPerSec: number) => Math.round(opsPerSec).toLocaleString('en-US');
const us = (opsPerSec: number) => (1e6 / opsPerSec).toFixed(1);

function main(): number {
  const kp = nacl.sign.keyPair();
  const seed = Buffer.from(kp.secretKey.subarray(0, 32));
  const pub = Buffer.from(kp.publicKey);
  const privateKey: KeyObject = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const publicKey: KeyObject = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });

  const msgs = Array.from({ length: MESSAGES }, () => randomBytes(MSG_BYTES));
  const naclSigs = msgs.map((m) => Buffer.from(nacl.sign.detached(m, kp.secretKey)));
  const nodeSigs = msgs.map((m) => nodeSign(null, m, privateKey));

  // Same keys, same signatures (ed25519 is deterministic), each verifies with the other.
  for (let i = 0; i < MESSAGES; i++) {
    if (!naclSigs[i].equals(nodeSigs[i])) return fail('tweetnacl and native signatures differ for the same key and message');
    if (!nodeVerify(null, msgs[i], publicKey, naclSigs[i])) return fail('a tweetnacl signature does not verify natively');
    if (!nacl.sign.detached.verify(msgs[i], nodeSigs[i], kp.publicKey)) return fail('a native signature does not verify with tweetnacl');
  }

  console.log(`ed25519, ${MSG_BYTES}-byte messages, one thread; median of ${PASSES} passes of ${PASS_MS} ms after ${WARMUP_MS} ms warm-up`);
  console.log(`node ${process.version}, OpenSSL ${process.versions.openssl}\n`);

  const rows: Array<[string, string, number]> = [];
  const add = (op: string, impl: string, f: (i: number) => void) => {
    const r = measure(f);
    rows.push([op, impl, r]);
    process.stderr.write(`  ${op} ${impl}: ${fmt(r)} ops/s\n`);
  };
  const mask = MESSAGES - 1;

  add('sign', 'tweetnacl nacl.sign.detached', (i) => nacl.sign.detached(msgs[i & mask], kp.secretKey));
  add('sign', 'native crypto.sign', (i) => nodeSign(null, msgs[i & mask], privateKey));
  add('verify', 'tweetnacl nacl.sign.detached.verify', (i) => nacl.sign.detached.verify(msgs[i & mask], naclSigs[i & mask], kp.publicKey));
  add('verify', 'native crypto.verify', (i) => nodeVerify(null, msgs[i & mask], publicKey, nodeSigs[i & mask]));
  const sodium = libsodiumOrNull();
  if (sodium) {
    const sodiumSign = sodium.signerOf(seed);
    const sodiumVerify = sodium.verifierOf(pub);
    for (let i = 0; i < MESSAGES; i++) {
      if (!sodiumSign(msgs[i]).equals(nodeSigs[i])) return fail('libsodium and native signatures differ for the same key and message');
      if (!sodiumVerify(msgs[i], naclSigs[i])) return fail('a tweetnacl signature does not verify with libsodium');
    }
    add('sign', 'libsodium crypto_sign_detached', (i) => sodiumSign(msgs[i & mask]));
    add('verify', 'libsodium crypto_sign_verify_detached', (i) => sodiumVerify(msgs[i & mask], nodeSigs[i & mask]));
  } else process.stderr.write('  sodium-native does not load here: no libsodium rows\n');
  add('key', 'createPrivateKey (PKCS8 from seed)', () => createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' }));
  add('key', 'createPublicKey (SPKI from raw)', () => createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' }));
  const seedB64 = seed.toString('base64url');
  const pubB64 = pub.toString('base64url');
  add('key', 'createPrivateKey (JWK from seed)', () => createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: seedB64, x: '' }, format: 'jwk' }));
  add('key', 'createPublicKey (JWK from raw)', () => createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: pubB64 }, format: 'jwk' }));
  add('key', 'tweetnacl nacl.sign.keyPair()', () => nacl.sign.keyPair());
  add('verify', 'native, SPKI KeyObject built per call', (i) =>
    nodeVerify(null, msgs[i & mask], createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' }), nodeSigs[i & mask]));

  // fedsim's chosen path: signer() and Verifier.verify() with canonical() and every check.
  console.log(`fedsim's ed25519: ${ed25519().name}\n`);
  const sign = signer(seed.toString('hex'));
  const pubHex = pub.toString('hex');
  const now = Date.now();
  const fields: SignedFields[] = Array.from({ length: 4096 }, (_, i) => ({
    method: 'POST',
    path: '/v1/update',
    publicKey: pubHex,
    workerId: 'w17',
    round: 3,
    timestamp: now,
    nonce: `${randomBytes(12).toString('hex')}${i}`,
    bodySha256: randomBytes(32).toString('hex'),
  }));
  const sigs = fields.map((f) => sign(canonical(f)).toString('hex'));
  add('sign', 'fedsim signer(canonical(f))', (i) => sign(canonical(fields[i & 4095])));
  // A fresh Verifier per 4096 requests: every nonce is new to it, as in a real run.
  let verifier = new Verifier({ keys: [pubHex] });
  let bad = 0;
  add('verify', 'fedsim Verifier.verify (all checks)', (i) => {
    const k = i & 4095;
    if (k === 0) verifier = new Verifier({ keys: [pubHex] });
    if (!verifier.verify(fields[k], sigs[k], now).ok) bad++;
  });
  if (bad > 0) return fail(`Verifier.verify refused ${bad} valid requests`);

  console.log(table(['op', 'implementation', 'ops/s', 'µs/op'], rows.map(([op, impl, r]) => [op, impl, fmt(r), us(r)]), [false, false, true, true]));
  const pick = (op: string, a: string, b: string) => {
    const ra = rows.find((r) => r[0] === op && r[1].startsWith(a))![2];
    const rb = rows.find((r) => r[0] === op && r[1].startsWith(b))![2];
    return `${op}: native ${fmt(rb)} ops/s vs tweetnacl ${fmt(ra)} ops/s (${(rb / ra).toFixed(1)}x)`;
  };
  console.log(`\n${pick('sign', 'tweetnacl', 'native')}`);
  console.log(pick('verify', 'tweetnacl', 'native'));
  if (sodium) {
    console.log(pick('sign', 'native', 'libsodium').replace(/native/, 'libsodium').replace(/tweetnacl/, 'native'));
    console.log(pick('verify', 'native', 'libsodium').replace(/native/, 'libsodium').replace(/tweetnacl/, 'native'));
  }
  return 0;
}

function fail(msg: string): number {
  process.stderr.write(`bench auth-crypto: ${msg}\n`);
  return 1;
}

process.exit(main());
