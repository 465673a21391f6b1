/**
 * The ed25519 implementation safe mode signs and verifies with.
 *
 * libsodium (the `sodium-native` addon, prebuilt for Linux, macOS and Windows on x64 and
 * arm64, libsodium linked in statically) when it loads; Node's OpenSSL (`crypto.sign` /
 * `crypto.verify`) otherwise, for example on a musl libc where the prebuilt addon does not
 * load. `npm run bench -- auth-crypto` measured both on 200-byte messages on this 2-core
 * machine: libsodium verifies about 17,900 a second against OpenSSL's 7,900, and signs about
 * 48,000 against 23,000 (docs/safe-mode.md has the table). Both are the same RFC 8032 ed25519:
 * the same key gives the same signature, and each verifies the other's (tested). libsodium is
 * stricter about what it accepts (it refuses non-canonical signatures and small-order public
 * keys), which only refuses more forgeries.
 *
 * `FEDSIM_ED25519=openssl` forces the OpenSSL path (to compare, or to rule the addon out).
 */
import { type KeyObject, createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { createRequire } from 'node:module';

/** A signer for one key: message → 64-byte signature. */
export type Sign = (msg: Buffer) => Buffer;
/** A verifier for one public key: false for a bad or malformed signature, never a throw. */
export type Verify = (msg: Buffer, signature: Buffer) => boolean;

export interface Ed25519 {
  /** 'libsodium' or 'openssl', for logs and reports. */
  readonly name: string;
  /** The raw 32-byte public key of a 32-byte seed. */
  publicKeyOf(seed: Buffer): Buffer;
  signerOf(seed: Buffer): Sign;
  /** Throws when `publicKey` is not 32 bytes or (OpenSSL) not a key at all. */
  verifierOf(publicKey: Buffer): Verify;
}

export interface Sodium {
  crypto_sign_seed_keypair(pk: Buffer, sk: Buffer, seed: Buffer): void;
  /** BLAKE2b with an out.length-byte digest, keyed when `key` is given (the session scheme's MAC). */
  crypto_generichash(out: Buffer, msg: Buffer, key?: Buffer): void;
  crypto_hash_sha256(out: Buffer, msg: Buffer): void;
  crypto_sign_detached(sig: Buffer, msg: Buffer, sk: Buffer): void;
  crypto_sign_verify_detached(sig: Buffer, msg: Buffer, pk: Buffer): boolean;
}

function checkLength(what: string, b: Buffer, n: number): void {
  if (!Buffer.isBuffer(b) || b.length !== n) throw new TypeError(`an ed25519 ${what} is ${n} bytes`);
}

function libsodium(sodium: Sodium): Ed25519 {
  const keypair = (seed: Buffer) => {
    checkLength('seed', seed, 32);
    const pk = Buffer.alloc(32);
    const sk = Buffer.alloc(64);
    sodium.crypto_sign_seed_keypair(pk, sk, seed);
    return { pk, sk };
  };
  return {
    name: 'libsodium',
    publicKeyOf: (seed) => keypair(seed).pk,
    signerOf(seed) {
      const { sk } = keypair(seed);
      return (msg) => {
        const sig = Buffer.allocUnsafe(64);
        sodium.crypto_sign_detached(sig, msg, sk);
        return sig;
      };
    },
    verifierOf(publicKey) {
      checkLength('public key', publicKey, 32);
      const pk = Buffer.from(publicKey);
      return (msg, signature) => signature.length === 64 && sodium.crypto_sign_verify_detached(signature, msg, pk);
    },
  };
}

/**
 * KeyObjects are built from the raw bytes as JWK: the same keys as the PKCS8 / SPKI DER forms,
 * but about 10x faster to import (bench auth-crypto), which matters to a node loading
 * thousands of keys. They are built once per key.
 */
const privateKeyObject = (seed: Buffer): KeyObject => createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: seed.toString('base64url'), x: '' }, format: 'jwk' });
const publicKeyObject = (pk: Buffer): KeyObject => createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: pk.toString('base64url') }, format: 'jwk' });

export const openssl: Ed25519 = {
  name: 'openssl',
  publicKeyOf(seed) {
    checkLength('seed', seed, 32);
    const x = privateKeyObject(seed).export({ format: 'jwk' }).x;
    if (typeof x !== 'string') throw new TypeError('not an ed25519 key');
    return Buffer.from(x, 'base64url');
  },
  signerOf(seed) {
    checkLength('seed', seed, 32);
    const key = privateKeyObject(seed);
    return (msg) => nodeSign(null, msg, key);
  },
  verifierOf(publicKey) {
    checkLength('public key', publicKey, 32);
    const key = publicKeyObject(publicKey);
    return (msg, signature) => {
      if (signature.length !== 64) return false;
      try {
        return nodeVerify(null, msg, key, signature);
      } catch {
        return false;
      }
    };
  },
};

/**
 * The addon, through the one `require` of it (the binary's build rewrites this call to load the
 * embedded copy, scripts/build-sea.js).
 */
function loadSodium(): Sodium {
  return createRequire(import.meta.url)('sodium-native') as Sodium;
}

let chosen: Ed25519 | null = null;
let whyNot = '';
let loaded: Sodium | null = null;

/** libsodium when it loads, else OpenSSL (see the top of this file). Chosen once per process. */
export function ed25519(): Ed25519 {
  if (chosen) return chosen;
  if (process.env.FEDSIM_ED25519 === 'openssl') {
    whyNot = 'FEDSIM_ED25519=openssl';
    return (chosen = openssl);
  }
  try {
    loaded = loadSodium();
    chosen = libsodium(loaded);
  } catch (e) {
    whyNot = `sodium-native did not load: ${(e as Error).message.split('\n')[0]}`;
    chosen = openssl;
  }
  return chosen;
}

/** libsodium when ed25519() uses it, else null (the session scheme's MAC follows the same choice). */
export function sodiumInUse(): Sodium | null {
  ed25519();
  return loaded;
}

/** Why OpenSSL is in use ('' with libsodium), for the safe-mode banner. */
export function ed25519Fallback(): string {
  ed25519();
  return whyNot;
}

/** libsodium's implementation, or null when the addon does not load (tests compare both). */
export function libsodiumOrNull(): Ed25519 | null {
  try {
    return libsodium(loadSodium());
  } catch {
    return null;
  }
}
