import type { Aggregator, PayloadCodec } from '../sim/ports.js';
import { buildMobileNetV2, perturb } from './mobilenet/model.js';

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

  constructor(private readonly seed = 1) {}

  private get built(): Built {
    return mobilenetOf(this.seed);
  }

  initialModel(): Buffer {
    return this.built.bytes;
  }

  /** The held model with its weights perturbed, seeded by worker and round. */
  makeUpdate(global: Buffer, workerIndex: number, round: number): Buffer {
    const base = global.length === this.built.bytes.length ? global : this.built.bytes;
    return perturb(base, this.built.floatRegions, (this.seed * 1_000_003 + workerIndex * 7919 + round) >>> 0, 0.01);
  }

  createAggregator(): Aggregator {
    const { bytes: template, floatRegions: regions, params } = this.built;
    let sum: Float64Array | null = null;
    let count = 0;
    return {
      fold(update: Buffer) {
        if (update.length !== template.length) return false;
        sum ??= new Float64Array(params);
        let k = 0;
        for (const r of regions) {
          for (let off = r.offset, end = r.offset + r.length; off < end; off += 4) sum[k++] += update.readFloatLE(off);
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
          for (let off = r.offset, end = r.offset + r.length; off < end; off += 4) out.writeFloatLE(sum[k++] / count, off);
        }
        return out;
      },
    };
  }
}
