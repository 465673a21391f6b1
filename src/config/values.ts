import { UsageError } from '../errors.js';

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9,
  ki: 1024, kib: 1024, mi: 1024 ** 2, mib: 1024 ** 2, gi: 1024 ** 3, gib: 1024 ** 3,
};

/** "1MiB", "512k", "4096" → bytes. */
export function parseSize(input: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(input);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new UsageError(`${what} "${input}" is not a size: use a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 1MiB`);
  }
  const bytes = Math.round(Number(m[1]) * unit);
  if (bytes < 1) throw new UsageError(`${what} "${input}" must be at least 1 byte`);
  return bytes;
}

export function parseIntFlag(input: string, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\s*-?\d+\s*$/.test(input)) throw new UsageError(`${what} "${input}" is not a whole number`);
  const v = Number(input);
  if (v < min || v > max) throw new UsageError(`${what} ${v} is out of range: allowed ${min}..${max === Number.MAX_SAFE_INTEGER ? '' : max}`);
  return v;
}

export function parseNumberFlag(input: string, what: string, min = 0): number {
  const v = Number(input);
  if (input.trim() === '' || !Number.isFinite(v)) throw new UsageError(`${what} "${input}" is not a number`);
  if (v < min) throw new UsageError(`${what} ${v} must be at least ${min}`);
  return v;
}

/** "A..B" (milliseconds) or a single "A". */
export function parseRange(input: string, what: string): { min: number; max: number } {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:\.\.\s*(\d+(?:\.\d+)?))?\s*$/.exec(input);
  if (!m) throw new UsageError(`${what} "${input}" is not a range: write A..B in milliseconds, e.g. 50..200, or one number`);
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  if (max < min) throw new UsageError(`${what} "${input}": the upper bound is below the lower bound`);
  return { min, max };
}

/** host and port → "host:port", an IPv6 host in brackets ("[::1]:7070"): parseHostPort's inverse. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** "host:port" → parts; a bare port means 127.0.0.1. Port 0 only where `allowZero` (listen addresses). */
export function parseHostPort(input: string, what: string, allowZero = false): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(input.trim()) ?? (/^\d+$/.test(input.trim()) ? [input, undefined, '127.0.0.1', input.trim()] : null);
  if (!m) throw new UsageError(`${what} "${input}" is not an address: write HOST:PORT, e.g. 127.0.0.1:7070`);
  const host = (m[1] ?? m[2]) || '127.0.0.1';
  const port = Number(m[3]);
  if (port < (allowZero ? 0 : 1) || port > 65535) throw new UsageError(`${what} "${input}": the port must be ${allowZero ? 0 : 1}..65535`);
  return { host, port };
}
