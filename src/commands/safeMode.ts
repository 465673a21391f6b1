import { randomBytes } from 'node:crypto';
import { loadKeyList, loadWorkerKeys } from '../auth/keys.js';
import { Verifier, canonical } from '../auth/sign.js';
import type { RequestChecker, RequestSigner } from '../sim/ports.js';
import { AUTH } from '../transport/auth.js';

/** The server's safe mode: only keys in `listFile` are admitted (docs/safe-mode.md). */
export function serverChecker(listFile: string): { checker: RequestChecker; keys: number } {
  const keys = loadKeyList(listFile);
  const v = new Verifier({ keys });
  const checker: RequestChecker = {
    async check(facts, header) {
      const publicKey = header(AUTH.key) ?? '';
      const sig = header(AUTH.signature);
      const ts = Number(header(AUTH.timestamp));
      const nonce = header(AUTH.nonce);
      if (!publicKey || !sig || !nonce || !Number.isFinite(ts) || !facts.bodySha256) return { ok: false, reason: 'missing', publicKey };
      // A registration asks for an index ("#N"): only the key on line N may take it.
      const asked = /^#(\d+)$/.exec(facts.workerId);
      if (asked && v.indexOf(publicKey) >= 0 && v.indexOf(publicKey) !== Number(asked[1])) return { ok: false, reason: 'wrong-worker', publicKey };
      const r = v.verify({ ...facts, publicKey, timestamp: ts, nonce }, sig, Date.now());
      return r.ok ? { ok: true, publicKey } : { ok: false, reason: r.reason, publicKey };
    },
    bind: (workerId, publicKey) => void v.bindWorker(workerId, publicKey),
  };
  return { checker, keys: keys.length };
}

/**
 * A worker node's signers: one per worker index that has a key in `dir` (a chunk loads only
 * its own keys). A worker without one sends unsigned requests, which a safe-mode server refuses.
 */
export function workerSigners(dir: string, indices: Iterable<number>): Map<number, RequestSigner> {
  const out = new Map<number, RequestSigner>();
  // A nonce must be unique per key within the server's window: this node's random prefix and a
  // counter are, at the cost of one random draw per node instead of one per request.
  const prefix = randomBytes(8).toString('hex');
  let counter = 0;
  for (const [index, key] of loadWorkerKeys(dir, indices)) {
    out.set(index, (facts) => {
      const timestamp = Date.now();
      const nonce = `${prefix}${(counter++).toString(36)}`;
      const sig = key.sign(canonical({ ...facts, publicKey: key.publicKeyHex, timestamp, nonce }));
      return {
        [AUTH.key]: key.publicKeyHex,
        [AUTH.timestamp]: String(timestamp),
        [AUTH.nonce]: nonce,
        [AUTH.bodySha256]: facts.bodySha256,
        [AUTH.signature]: sig.toString('hex'),
      };
    });
  }
  return out;
}
