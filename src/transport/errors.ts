import { TransportError } from '../sim/ports.js';

const RETRYABLE_CODES: Record<string, string> = {
  ECONNREFUSED: 'connect-refused',
  ECONNRESET: 'reset',
  EPIPE: 'reset',
  ETIMEDOUT: 'timeout',
  ECONNABORTED: 'reset',
  EHOSTUNREACH: 'unreachable',
  ENETUNREACH: 'unreachable',
  EAI_AGAIN: 'dns',
};

/** Maps a socket-level error to a TransportError with a kind for errors-by-kind. */
export function fromSocketError(err: unknown, target: string): TransportError {
  if (err instanceof TransportError) return err;
  const code = (err as NodeJS.ErrnoException)?.code ?? '';
  const msg = err instanceof Error ? err.message : String(err);
  const kind = RETRYABLE_CODES[code];
  if (kind) return new TransportError(kind, `${target}: ${msg}`, true);
  if (code === 'ENOTFOUND') return new TransportError('dns', `${target}: host not found (${msg})`, false);
  return new TransportError('network', `${target}: ${msg}`, true);
}
