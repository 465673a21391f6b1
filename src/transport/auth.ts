/**
 * Safe mode on the wire: the headers (HTTP) or metadata keys (gRPC) that carry a
 * request's signature, and the two small interfaces the transports use. The crypto lives
 * in src/auth/; the transports only move these values.
 */
export const AUTH = {
  key: 'x-fedsim-key',
  timestamp: 'x-fedsim-ts',
  nonce: 'x-fedsim-nonce',
  bodySha256: 'x-fedsim-body-sha256',
  signature: 'x-fedsim-sig',
  /** The session scheme: INDEX.TIMESTAMP.SEQ.MAC, the session's keyed BLAKE2b-256 (hex) standing for the signature (src/auth/session.ts). */
  mac: 'x-fedsim-mac',
  /** On a registration of the session scheme: the worker's X25519 public key (hex), signed. */
  exchange: 'x-fedsim-kx',
} as const;

export type { AuthScheme, RequestChecker, RequestFacts, RequestSigner } from '../sim/ports.js';

export { EMPTY_SHA256 } from '../auth/digest.js';

/** The method and path gRPC requests sign (the RPC, as the server dispatches it). */
export const GRPC_AUTH_PATH = { register: '/fedsim/Register', pushUpdate: '/fedsim/PushUpdate', pullModel: '/fedsim/PullModel' } as const;

/** What a registration signs over as its body: the same bytes on both transports. */
export const registerBody = (workerIndex: number): Buffer => Buffer.from(JSON.stringify({ workerIndex }));

/**
 * The worker id a registration signs: "#INDEX", the index it asks for (it has no id yet).
 * The server admits it only from the key on line INDEX of its list, so a listed key cannot
 * register as another worker.
 */
export const registrationId = (workerIndex: number): string => `#${workerIndex}`;
