import type { Aggregator, PayloadCodec } from '../sim/ports.js';
import { seededRandom } from './random.js';

/** Little-endian float32 view of a buffer (copying only when it is unaligned). */
function floats(buf: Buffer): Float32Array {
  if (buf.byteOffset % 4 === 0) return new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const copy = Buffer.allocUnsafe(buf.length);
  buf.copy(copy);
  return new Float32Array(copy.buffer, copy.byteOffset, copy.length / 4);
}

/**
 * SIZE bytes of float32 weights. An update is the held global model plus a small seeded
 * perturbation; aggregation is the element-wise mean (FedAvg with equal weights).
 */
export class BytesPayload implements PayloadCodec {
  readonly name: string;
  private readonly n: number;

  constructor(readonly size: number, private readonly seed = 1) {
    this.name = `bytes:${size}`;
    this.n = size / 4;
  }

  initialModel(): Buffer {
    const out = Buffer.alloc(this.size);
    const f = floats(out);
    const rnd = seededRandom(this.seed);
    for (let i = 0; i < f.length; i++) f[i] = (rnd() - 0.5) * 0.2;
    return out;
  }

  makeUpdate(global: Buffer, workerIndex: number, round: number, reuse?: Buffer): Buffer {
    // Every float of `out` is written below, so a reused buffer needs no clearing.
    const out = reuse && reuse.length === this.size && reuse !== global && reuse.byteOffset % 4 === 0 ? reuse : Buffer.alloc(this.size);
    const src = global.length === this.size ? floats(global) : new Float32Array(this.n);
    const dst = floats(out);
    const rnd = seededRandom((this.seed * 1_000_003 + workerIndex * 7919 + round) >>> 0);
    // A perturbation drawn once per update and repeated in blocks keeps this cheap for large models.
    const block = new Float32Array(Math.min(4096, this.n));
    for (let i = 0; i < block.length; i++) block[i] = (rnd() - 0.5) * 0.01;
    for (let i = 0; i < dst.length; i++) dst[i] = src[i] + block[i % block.length];
    return out;
  }

  createAggregator(): Aggregator {
    const size = this.size;
    let sum: Float64Array | null = null;
    let count = 0;
    return {
      fold(update: Buffer) {
        if (update.length !== size) return false;
        const f = floats(update);
        // Locals, not the closure's `sum`, in the loop: a third less time per element.
        const acc = (sum ??= new Float64Array(f.length));
        const n = f.length;
        for (let i = 0; i < n; i++) acc[i] += f[i];
        count++;
        return true;
      },
      get count() {
        return count;
      },
      result() {
        const out = Buffer.alloc(size);
        const f = floats(out);
        if (sum && count > 0) for (let i = 0; i < f.length; i++) f[i] = sum[i] / count;
        return out;
      },
    };
  }
}
