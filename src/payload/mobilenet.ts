import type { Aggregator, PayloadCodec } from '../sim/ports.js';
import { seededRandom } from './random.js';
import { buildMobileNetV2 } from './mobilenet/model.js';

type Region = { offset: number; length: number };

/**
 * The floats of `r` in `buf` as a Float32Array: a view when the region is 4-byte aligned in
 * memory, else an aligned copy (one memcpy). `write` puts a copy back.
 */
function floatsOf(buf: Buffer, r: Region): { f: Float32Array; write(): void } {
  const at = buf.byteOffset + r.offset;
  if (at % 4 === 0) return { f: new Float32Array(buf.buffer, at, r.length / 4), write: () => undefined };
  const copy = new Float32Array(r.length / 4);
  new Uint8Array(copy.buffer).set(buf.subarray(r.offset, r.offset + r.length));
  return { f: copy, write: () => buf.set(new Uint8Array(copy.buffer), r.offset) };
}

type Built = ReturnType<typeof buildMobileNetV2>;
const cache = new Map<number, Built>();

/** The model of a seed, built once per process (about 14 MB; every worker of a node shares it). */
export function mobilenetOf(seed: number): Built {
  let m = cache.get(seed);
  if (!m) cache.set(seed, (m = buildMobileNetV2(seed)));
  return m;
}

/**
 * A randomly initialised MobileNetV2 as an ONNX file. Every version has the same layout
 * (the same graph, tensors of the same sizes, a deterministic encoding), so the weights sit
 * at the same byte offsets in every model and update: FedAvg is a mean position by position
 * over those float regions, and every other byte is the graph, the same in all of them.
 */
export class MobileNetPayload implements PayloadCodec {
  readonly name = 'mobilenetv2';

  /** The running sum of the last round, free again once its result is out: the next round's (28 MB, not one per round). */
  private spareSum: Float64Array | null = null;

  constructor(private readonly seed = 1) {}

  private get built(): Built {
    return mobilenetOf(this.seed);
  }

  initialModel(): Buffer {
    return this.built.bytes;
  }

  /** The held model with its weights perturbed, seeded by worker and round. */
  makeUpdate(global: Buffer, workerIndex: number, round: number, reuse?: Buffer): Buffer {
    const base = global.length === this.built.bytes.length ? global : this.built.bytes;
    const out = reuse && reuse.length === base.length && reuse !== base ? reuse : Buffer.allocUnsafe(base.length);
    base.copy(out);
    // Seeded noise drawn once per update and repeated in blocks: the same bytes for the same
    // worker and round, at memory speed rather than one random draw per weight.
    const rnd = seededRandom((this.seed * 1_000_003 + workerIndex * 7919 + round) >>> 0);
    const block = new Float32Array(4099);
    for (let i = 0; i < block.length; i++) block[i] = (rnd() * 2 - 1) * 0.01;
    let k = 0;
    for (const r of this.built.floatRegions) {
      const v = floatsOf(out, r);
      const f = v.f;
      for (let i = 0; i < f.length; i++) {
        f[i] += block[k];
        if (++k === 4099) k = 0;
      }
      v.write();
    }
    return out;
  }

  createAggregator(): Aggregator {
    const { bytes: template, floatRegions: regions, params } = this.built;
    let sum: Float64Array | null = null;
    let count = 0;
    const take = () => {
      const spare = this.spareSum;
      this.spareSum = null;
      return spare ? spare.fill(0) : new Float64Array(params);
    };
    const give = (s: Float64Array) => {
      this.spareSum = s;
    };
    return {
      fold(update: Buffer) {
        if (update.length !== template.length) return false;
        const acc = (sum ??= take());
        let k = 0;
        for (const r of regions) {
          const f = floatsOf(update, r).f;
          for (let i = 0; i < f.length; i++) acc[k++] += f[i];
        }
        count++;
        return true;
      },
      get count() {
        return count;
      },
      result() {
        const out = Buffer.from(template);
        if (!sum || count === 0) return out;
        let k = 0;
        for (const r of regions) {
          const v = floatsOf(out, r);
          for (let i = 0; i < v.f.length; i++) v.f[i] = sum[k++] / count;
          v.write();
        }
        give(sum);
        sum = null;
        return out;
      },
    };
  }
}
