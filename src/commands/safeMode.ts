import { randomBytes } from 'node:crypto';
import { loadKeyList, loadWorkerKeys } from '../auth/keys.js';
import { BodyDigest, EMPTY_SHA256, sha256Hex } from '../auth/digest.js';
import { sha256OfBody } from '../sim/updateBody.js';
import { type ExchangeKeyPair, exchangeKeyPair, macHex, sessionKey } from '../auth/session.js';
import { type SessionHead, Verifier, canonical, sessionHead, sessionMessage } from '../auth/sign.js';
import type { AuthScheme, RequestChecker, RequestSigner } from '../sim/ports.js';
import { AUTH } from '../transport/auth.js';
import { UsageError } from '../errors.js';

/**
 * The server's safe mode: only keys in `listFile` are admitted (docs/safe-mode.md). Both
 * schemes are accepted: a request with `x-fedsim-mac` is checked against its key's session,
 * any other against its ed25519 signature.
 */
export function serverChecker(listFile: string): { checker: RequestChecker; keys: number } {
  const keys = loadKeyList(listFile);
  const v = new Verifier({ keys });
  const checker: RequestChecker = {
    bodyDigest: (received) => new BodyDigest(received),
    bodySha256: sha256Hex,
    check(facts, header) {
      const token = header(AUTH.mac);
      if (token !== undefined) {
        if (!facts.bodySha256) return { ok: false, reason: 'missing', publicKey: '' };
        const r = v.verifySession(facts, token, Date.now());
        return r.ok ? { ok: true, publicKey: r.publicKey, scheme: 'session' } : r;
      }
      const publicKey = header(AUTH.key) ?? '';
      const sig = header(AUTH.signature);
      const timestamp = Number(header(AUTH.timestamp));
      const nonce = header(AUTH.nonce);
      if (!publicKey || !sig || !nonce || !Number.isFinite(timestamp) || !facts.bodySha256) return { ok: false, reason: 'missing', publicKey };
      let exchangeKey: string | undefined;
      if (facts.workerId.charCodeAt(0) === 35 /* #: a registration, asking for index N */) {
        // Only the key on line N may take it.
        const index = v.indexOf(publicKey);
        if (index >= 0 && `#${index}` !== facts.workerId) return { ok: false, reason: 'wrong-worker', publicKey };
        exchangeKey = header(AUTH.exchange);
      }
      const r = v.verify({ ...facts, publicKey, timestamp, nonce, exchangeKey }, sig, Date.now());
      if (!r.ok) return { ok: false, reason: r.reason, publicKey };
      return { ok: true, publicKey, scheme: 'ed25519', exchangeKey };
    },
    bind(workerId, publicKey, exchangeKey) {
      if (!v.bindWorker(workerId, publicKey) || !exchangeKey) return '';
      try {
        return v.openSession(publicKey, exchangeKey);
      } catch {
        return ''; // a key X25519 refuses (low order): no session, the worker keeps signing
      }
    },
  };
  return { checker, keys: keys.length };
}

/** `--auth-scheme`: session or ed25519 (exit 2 otherwise). */
export function parseAuthScheme(text: string): AuthScheme {
  if (text === 'session' || text === 'ed25519') return text;
  throw new UsageError(`--auth-scheme "${text}" is not a scheme: use session (a MAC under a session key opened by a signed registration) or ed25519 (every request signed)`);
}

/**
 * A worker node's signers: one per worker index that has a key in `dir` (a chunk loads only
 * its own keys). A worker without one sends unsigned requests, which a safe-mode server refuses.
 *
 * With the `session` scheme, each registration carries a fresh X25519 key (under the
 * signature) and, once the server answers with its own, later requests carry a MAC under
 * the session key instead of a signature. With `ed25519`, or when the server opened no
 * session, every request is signed.
 */
export function workerSigners(dir: string, indices: Iterable<number>, scheme: AuthScheme = 'session'): Map<number, RequestSigner> {
  const out = new Map<number, RequestSigner>();
  // A nonce must be unique per key within the server's window: this node's random prefix and a
  // counter are, at the cost of one random draw per node instead of one per request.
  const prefix = randomBytes(8).toString('hex');
  let counter = 0;
  for (const [index, key] of loadWorkerKeys(dir, indices)) {
    let exchange: ExchangeKeyPair | null = null; // the registration's X25519 key, until the reply
    let session: Buffer | null = null;
    let seq = 0; // the session's last sequence number
    let head: SessionHead | null = null; // the session's first lines, for the worker id it acts as
    out.set(index, {
      // A Buffer through digest.ts (libsodium for the small ones), an update made as it is sent in pieces.
      bodySha256: (body) => (Buffer.isBuffer(body) ? sha256Hex(body) : sha256OfBody(body)),
      headers(facts, into = {}): Record<string, string> {
        const timestamp = Date.now();
        const publicKey = key.publicKeyHex;
        const { method, path, workerId, round, bodySha256 } = facts;
        // The session scheme's token: the key's line in keys.list (the worker index: a
        // registration is admitted only from the key on its index's line), time, the
        // session's next sequence number (its nonce), MAC.
        if (session && workerId.charCodeAt(0) !== 35 /* #: a registration */) {
          const n = ++seq;
          if (head === null || head.workerId !== workerId) head = sessionHead(publicKey, workerId);
          const proof = macHex(session, sessionMessage(head, method, path, round, timestamp, n, bodySha256));
          if (bodySha256 !== EMPTY_SHA256) into[AUTH.bodySha256] = bodySha256; // left out, it claims an empty body
          into[AUTH.mac] = `${index}.${timestamp}.${n}.${proof}`;
          return into;
        }
        const nonce = `${prefix}${(counter++).toString(36)}`;
        const ts = String(timestamp);
        // Signed: every registration (the session scheme's with its exchange key), and every
        // request of the ed25519 scheme or when the server opened no session.
        // A fresh exchange key for every registration attempt: a held-back copy of an earlier
        // attempt, replayed later, then opens a session under another key.
        const exchangeKey = scheme === 'session' && workerId.charCodeAt(0) === 35 ? (exchange = exchangeKeyPair()).publicHex : undefined;
        const sig = key.sign(canonical({ method, path, publicKey, workerId, round, timestamp, nonce, bodySha256, exchangeKey })).toString('hex');
        Object.assign(into, { [AUTH.key]: publicKey, [AUTH.timestamp]: ts, [AUTH.nonce]: nonce, [AUTH.signature]: sig });
        if (bodySha256 !== EMPTY_SHA256) into[AUTH.bodySha256] = bodySha256;
        if (exchangeKey) into[AUTH.exchange] = exchangeKey;
        return into;
      },
      registered(serverExchangeKey) {
        session = exchange && serverExchangeKey ? sessionKey(exchange, serverExchangeKey, key.publicKeyHex, true) : null;
        seq = 0;
        head = null;
        exchange = null;
      },
    });
  }
  return out;
}
