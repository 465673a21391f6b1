import type { Aggregator, PayloadCodec } from '../sim/ports.js';
import { seededRandom } from './random.js';
import { type Float64Sum, SpareSum, tiler } from './kernels.js';
import { buildMobileNetV2 } from './mobilenet/model.js';

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
  private spare: SpareSum | null = null;

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
    // Seeded noise drawn once per update and repeated in blocks: the same bytes for the same
    // worker and round, at memory speed rather than one random draw per weight.
    const rnd = seededRandom((this.seed * 1_000_003 + workerIndex * 7919 + round) >>> 0);
    const block = new Float32Array(4099);
    for (let i = 0; i < block.length; i++) block[i] = (rnd() * 2 - 1) * 0.01;
    const t = tiler().setBlock(block);
    // The weights are written perturbed straight from the held model, and only the bytes
    // between them (the graph) copied: one pass over the 14 MB instead of a copy and a pass.
    let phase = 0;
    let at = 0;
    for (const r of this.built.floatRegions) {
      if (r.offset > at) base.copy(out, at, at, r.offset);
      const end = r.offset + r.length;
      phase = t.add(out.subarray(r.offset, end), base.subarray(r.offset, end), phase);
      at = end;
    }
    if (at < base.length) base.copy(out, at, at);
    return out;
  }

  createAggregator(): Aggregator {
    const { bytes: template, floatRegions: regions, params } = this.built;
    let sum: Float64Sum | null = null;
    let count = 0;
    const spare = (this.spare ??= new SpareSum(params));
    return {
      fold(update: Buffer) {
        if (update.length !== template.length) return false;
        const acc = (sum ??= spare.take());
        let k = 0;
        for (const r of regions) {
          acc.add(update.subarray(r.offset, r.offset + r.length), k);
          k += r.length / 4;
        }
        count++;
        return true;
      },
      get count() {
        return count;
      },
      result: () => {
        const out = Buffer.from(template);
        if (!sum || count === 0) return out;
        let k = 0;
        for (const r of regions) {
          sum.meanInto(out.subarray(r.offset, r.offset + r.length), count, k);
          k += r.length / 4;
        }
        spare.give(sum);
        sum = null;
        return out;
      },
    };
  }
}
