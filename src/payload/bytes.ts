import type { Aggregator, PayloadCodec } from '../sim/ports.js';
import type { SlotPool } from '../sim/updateSlots.js';
import { seededRandom } from './random.js';
import { type Float64Sum, SpareSum, type TiledRegion, TiledSource, foldThreadWanted } from './kernels.js';

/**
 * SIZE bytes of float32 weights. An update is the held global model plus a small seeded
 * perturbation; aggregation is the element-wise mean (FedAvg with equal weights).
 */
export class BytesPayload implements PayloadCodec {
  readonly name: string;
  private readonly n: number;
  /** The running sum of the last round, free again once its result is out: the next round's. */
  private spare: SpareSum | null = null;
  /** The model is one float region. */
  private readonly regions: readonly TiledRegion[];
  /** The base of updates from a held model of the wrong size (all zeros). */
  private zeros: Buffer | null = null;

  constructor(readonly size: number, private readonly seed = 1) {
    this.name = `bytes:${size}`;
    this.n = size / 4;
    this.regions = [{ offset: 0, length: size, k0: 0 }];
  }

  initialModel(): Buffer {
    const f = new Float32Array(this.n);
    const rnd = seededRandom(this.seed);
    for (let i = 0; i < f.length; i++) f[i] = (rnd() - 0.5) * 0.2;
    return Buffer.from(f.buffer, f.byteOffset, f.byteLength);
  }

  makeUpdate(global: Buffer, workerIndex: number, round: number, reuse?: Buffer): Buffer {
    // Every byte of `out` is written below, so a reused buffer needs no clearing.
    const out = reuse && reuse.length === this.size && reuse !== global ? reuse : Buffer.allocUnsafe(this.size);
    if (this.n > 0) this.updateSource(global, workerIndex, round).fill(out, 0);
    return out;
  }

  /** The held model plus a seeded perturbation drawn once per update and repeated in blocks (cheap for large models), made as it is sent. */
  updateSource(global: Buffer, workerIndex: number, round: number): TiledSource {
    const src = global.length === this.size ? global : (this.zeros ??= Buffer.alloc(this.size));
    const rnd = seededRandom((this.seed * 1_000_003 + workerIndex * 7919 + round) >>> 0);
    const block = new Float32Array(Math.max(1, Math.min(4096, this.n)));
    for (let i = 0; i < block.length; i++) block[i] = (rnd() - 0.5) * 0.01;
    return new TiledSource(src, this.regions, block);
  }

  updateBytes(): number {
    return this.size;
  }

  /** The server's update slots in the running sum's memory: an update is folded where it was received. */
  slotPool(slots: number): SlotPool {
    return (this.spare ??= new SpareSum(this.n, this.size, slots, { thread: foldThreadWanted() })).slotPool(this.size);
  }

  createAggregator(): Aggregator {
    const size = this.size;
    let sum: Float64Sum | null = null;
    let count = 0;
    const spare = (this.spare ??= new SpareSum(this.n));
    return {
      fold: (update: Buffer, hold?: () => () => void) => {
        if (update.length !== size) return false;
        (sum ??= spare.take()).foldRegions(update, this.regions, hold);
        count++;
        return true;
      },
      get count() {
        return count;
      },
      result: () => {
        const out = Buffer.alloc(size);
        try {
          if (sum && count > 0) sum.meanInto(out, count);
        } finally {
          // Given back even when the folds failed (the next take resets it).
          if (sum) spare.give(sum);
          sum = null;
        }
        return out;
      },
    };
  }
}
