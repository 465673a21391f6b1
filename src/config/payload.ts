import { UsageError } from '../errors.js';
import { parseSize } from './values.js';

/** The largest `bytes:SIZE`: the server's float64 running sum (2 × SIZE) lives in a 4 GiB WebAssembly memory. */
export const MAX_BYTES_PAYLOAD = 1024 ** 3;

export type SinglePayload = { kind: 'string' } | { kind: 'bytes'; size: number } | { kind: 'mobilenetv2' };
/** What the server publishes and what workers send back, when they differ (`globalPayload`, `updatePayload`). */
export type PayloadSpec = SinglePayload | { kind: 'pair'; global: SinglePayload; update: SinglePayload };

export function parsePayload(input: string, what = '--payload'): SinglePayload {
  const s = input.trim();
  if (s === 'string') return { kind: 'string' };
  if (/^mobilenet(v2)?$/i.test(s)) return { kind: 'mobilenetv2' };
  const m = /^bytes:(.+)$/i.exec(s);
  if (m) {
    const size = parseSize(m[1], `${what} bytes size`);
    if (size % 4 !== 0) throw new UsageError(`${what} "${input}": the size must be a multiple of 4 bytes (the model is float32 data)`);
    if (size > MAX_BYTES_PAYLOAD) throw new UsageError(`${what} "${input}": at most 1GiB (the server sums updates in float64, twice the model's size, in a WebAssembly memory of at most 4 GiB)`);
    return { kind: 'bytes', size };
  }
  throw new UsageError(`${what} "${input}" is not a payload: use "string", "bytes:SIZE" (e.g. bytes:1MiB) or "mobilenetv2"`);
}

/** The run's payloads: `payload` both ways, unless `globalPayload` / `updatePayload` say otherwise. */
export function payloadOf(s: { payload: string; globalPayload?: string | null; updatePayload?: string | null }): PayloadSpec {
  const g = parsePayload(s.globalPayload ?? s.payload, s.globalPayload ? 'globalPayload' : 'payload');
  const u = parsePayload(s.updatePayload ?? s.payload, s.updatePayload ? 'updatePayload' : 'payload');
  return formatPayload(g) === formatPayload(u) ? g : { kind: 'pair', global: g, update: u };
}

/** What moves each way: one payload both ways, or the global model's and the update's. */
export function payloadDirections(p: PayloadSpec): SinglePayload[] {
  return p.kind === 'pair' ? [p.global, p.update] : [p];
}

export function formatPayload(p: PayloadSpec): string {
  switch (p.kind) {
    case 'string':
    case 'mobilenetv2':
      return p.kind;
    case 'bytes':
      return `bytes:${p.size}`;
    case 'pair':
      return `global ${formatPayload(p.global)}, update ${formatPayload(p.update)}`;
  }
}

/** `train`: "sleep" (0 onnx steps) or "onnx:STEPS" with STEPS >= 1; `what` names the input in the error. */
export function parseTrain(text: string, what: string): number {
  if (text === 'sleep') return 0;
  const m = /^onnx:(\d+)$/.exec(text);
  if (!m || Number(m[1]) < 1) throw new UsageError(`${what} "${text}" must be sleep or onnx:STEPS with STEPS >= 1 (e.g. onnx:5)`);
  return Number(m[1]);
}
