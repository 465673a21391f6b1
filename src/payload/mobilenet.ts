import type { Aggregator, PayloadCodec } from '../sim/ports.js';
import type { SlotPool } from '../sim/updateSlots.js';
import { seededRandom } from './random.js';
import { type Float64Sum, SpareSum, type TiledRegion, TiledSource, foldThreadWanted } from './kernels.js';
import { buildMobileNetV2 } from './mobilenet/model.js';

type Built = ReturnType<typeof buildMobileNetV2>;

/** Where a seed's model keeps its weights, and the bytes between them (the graph: a few KB). */
interface Layout {
  readonly length: number;
  readonly params: number;
  readonly floatRegions: Built['floatRegions'];
  /** The float regions with the noise block's phase at each (the floats before it). */
  readonly tiled: readonly TiledRegion[];
  readonly graph: ReadonlyArray<{ offset: number; bytes: Buffer }>;
}

const layouts = new Map<number, Layout>();
/**
 * The built models, held weakly: whoever uses one (the server's published version 0, a
 * worker's held model) keeps it alive, and a server no longer holds a 14 MB template once
 * version 0 is gone. A model collected and asked for again is built again (same bytes).
 */
const models = new Map<number, WeakRef<Buffer>>();

/** The model of a seed (about 14 MB), built once per process while anyone holds it. */
export function mobilenetOf(seed: number): Built {
  const held = models.get(seed)?.deref();
  const layout = layouts.get(seed);
  if (held && layout) return { bytes: held, params: layout.params, floatRegions: layout.floatRegions };
  const m = buildMobileNetV2(seed);
  models.set(seed, new WeakRef(m.bytes));
  if (!layout) {
    const graph: Array<{ offset: number; bytes: Buffer }> = [];
    let at = 0;
    for (const r of m.floatRegions) {
      if (r.offset > at) graph.push({ offset: at, bytes: Buffer.from(m.bytes.subarray(at, r.offset)) });
      at = r.offset + r.length;
    }
    if (at < m.bytes.length) graph.push({ offset: at, bytes: Buffer.from(m.bytes.subarray(at)) });
    let k0 = 0;
    const tiled = m.floatRegions.map((r) => {
      const t = { offset: r.offset, length: r.length, k0 };
      k0 += r.length / 4;
      return t;
    });
    layouts.set(seed, { length: m.bytes.length, params: m.params, floatRegions: m.floatRegions, tiled, graph });
  }
  return m;
}

function layoutOf(seed: number): Layout {
  return layouts.get(seed) ?? (mobilenetOf(seed), layouts.get(seed)!);
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
  /** Results this codec made (only those may come back through recycle). */
  private readonly made = new WeakSet<Buffer>();
  /** A replaced result nobody refers to any more: the next result is written into it. */
  private spareResult: Buffer | null = null;

  recycle(model: Buffer): void {
    if (this.made.has(model) && model.length === this.layout.length) this.spareResult = model;
  }

  /** A buffer for the next result: the recycled one, or a new one. */
  private resultBuffer(): Buffer {
    const out = this.spareResult ?? Buffer.allocUnsafe(this.layout.length);
    this.spareResult = null;
    this.made.add(out);
    return out;
  }

  constructor(private readonly seed = 1) {}

  private get layout(): Layout {
    return layoutOf(this.seed);
  }

  initialModel(): Buffer {
    return mobilenetOf(this.seed).bytes;
  }

  /** The initial model held for good, for the odd paths that need it again and again (not rebuilt each time). */
  private pinned: Buffer | null = null;
  private pinnedModel(): Buffer {
    return (this.pinned ??= this.initialModel());
  }

  /** The held model with its weights perturbed, seeded by worker and round. */
  makeUpdate(global: Buffer, workerIndex: number, round: number, reuse?: Buffer): Buffer {
    const src = this.updateSource(global, workerIndex, round);
    const out = reuse && reuse.length === src.length && reuse !== global ? reuse : Buffer.allocUnsafe(src.length);
    src.fill(out, 0);
    return out;
  }

  /**
   * makeUpdate's bytes, made as they are sent: every weight of the held model plus seeded
   * noise drawn once per update and repeated in blocks (the same bytes for the same worker
   * and round, at memory speed rather than one random draw per weight), read from the held
   * model where the process's Tiler keeps it; the bytes between the weights (the graph) as
   * in the held model.
   */
  updateSource(global: Buffer, workerIndex: number, round: number): TiledSource {
    const base = global.length === this.layout.length ? global : this.pinnedModel();
    const rnd = seededRandom((this.seed * 1_000_003 + workerIndex * 7919 + round) >>> 0);
    const block = new Float32Array(4099);
    for (let i = 0; i < block.length; i++) block[i] = (rnd() * 2 - 1) * 0.01;
    return new TiledSource(base, this.layout.tiled, block);
  }

  updateBytes(): number {
    return this.layout.length;
  }

  /** The server's update slots in the running sum's memory: an update is folded where it was received. */
  slotPool(slots: number): SlotPool {
    return (this.spare ??= new SpareSum(this.layout.params, this.layout.length, slots, { thread: foldThreadWanted() })).slotPool(this.layout.length);
  }

  createAggregator(): Aggregator {
    const layout = this.layout;
    const { floatRegions: regions, params } = layout;
    let sum: Float64Sum | null = null;
    let count = 0;
    const spare = (this.spare ??= new SpareSum(params));
    return {
      fold(update: Buffer, hold?: () => () => void) {
        if (update.length !== layout.length) return false;
        (sum ??= spare.take()).foldRegions(update, layout.tiled, hold);
        count++;
        return true;
      },
      get count() {
        return count;
      },
      result: () => {
        if (!sum || count === 0) {
          const copy = this.resultBuffer();
          this.pinnedModel().copy(copy);
          return copy;
        }
        // The graph's bytes from the layout, every weight from the mean: nothing of a
        // 14 MB template is held for this.
        const out = this.resultBuffer();
        for (const g of layout.graph) g.bytes.copy(out, g.offset);
        let k = 0;
        try {
          for (const r of regions) {
            sum.meanInto(out.subarray(r.offset, r.offset + r.length), count, k);
            k += r.length / 4;
          }
        } catch (e) {
          this.recycle(out);
          throw e;
        } finally {
          // Given back even when the folds failed (the next take resets it).
          spare.give(sum);
          sum = null;
        }
        return out;
      },
    };
  }
}
