import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { UsageError } from '../errors.js';

/**
 * Bumped whenever a message changes meaning; a mismatch is refused on both sides. Also bumped
 * when the nodes' FL wire changes in a way older builds cannot follow, since this handshake is
 * what tells a mixed deployment (3: safe mode's session text and pulls without a body hash).
 */
export const PROTOCOL_VERSION = 3;

export const TOKEN_METADATA = 'authorization';

export function generateToken(): string {
  return randomBytes(18).toString('base64url');
}

export function tokenProof(token: string, nonce: Buffer): Buffer {
  return createHmac('sha256', token).update(nonce).digest();
}

export function proofMatches(token: string, nonce: Buffer, proof: Buffer): boolean {
  const want = tokenProof(token, nonce);
  return proof.length === want.length && timingSafeEqual(proof, want);
}

export function tokenMatches(token: string, given: string): boolean {
  const a = Buffer.from(token);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface TlsFiles {
  cert?: string;
  key?: string;
  ca?: string;
}

function readPem(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new UsageError(`${flag} ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

export function serverCredentials(tls: TlsFiles): grpc.ServerCredentials {
  if (!tls.cert && !tls.key) {
    if (tls.ca) throw new UsageError('--tls-ca on the coordinator needs --tls-cert and --tls-key');
    return grpc.ServerCredentials.createInsecure();
  }
  if (!tls.cert || !tls.key) throw new UsageError('--tls-cert and --tls-key go together');
  return grpc.ServerCredentials.createSsl(tls.ca ? readPem(tls.ca, '--tls-ca') : null, [
    { cert_chain: readPem(tls.cert, '--tls-cert'), private_key: readPem(tls.key, '--tls-key') },
  ], false);
}

export function channelCredentials(tls: TlsFiles): grpc.ChannelCredentials {
  if (!tls.ca) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(readPem(tls.ca, '--tls-ca'));
}

/**
 * Liveness is the heartbeats' job (missing, lost, silence limits), so gRPC keepalive is
 * lenient: a node whose event loop is busy under load for a few seconds must not have its
 * control stream cut by a missed ping ack and lose its final report.
 */
export const CONTROL_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_timeout_ms': 30_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
};
