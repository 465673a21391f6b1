import { UsageError } from '../errors.js';
import { parseSize } from './values.js';

export type PayloadSpec = { kind: 'string' } | { kind: 'bytes'; size: number };

export function parsePayload(input: string, what = '--payload'): PayloadSpec {
  const s = input.trim();
  if (s === 'string') return { kind: 'string' };
  const m = /^bytes:(.+)$/i.exec(s);
  if (m) {
    const size = parseSize(m[1], `${what} bytes size`);
    if (size % 4 !== 0) throw new UsageError(`${what} "${input}": the size must be a multiple of 4 bytes (the model is float32 data)`);
    return { kind: 'bytes', size };
  }
  throw new UsageError(`${what} "${input}" is not a payload: use "string" or "bytes:SIZE" (e.g. bytes:1MiB)`);
}

export function formatPayload(p: PayloadSpec): string {
  return p.kind === 'string' ? 'string' : `bytes:${p.size}`;
}
