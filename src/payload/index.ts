import type { PayloadSpec, SinglePayload } from '../config/payload.js';
import type { Aggregator, PayloadCodec } from '../sim/ports.js';
import type { UpdateSource } from '../sim/updateBody.js';
import type { SlotPool } from '../sim/updateSlots.js';
import { BytesPayload } from './bytes.js';
import { MobileNetPayload } from './mobilenet.js';
import { StringPayload } from './string.js';

function single(spec: SinglePayload): PayloadCodec {
  switch (spec.kind) {
    case 'string':
      return new StringPayload();
    case 'bytes':
      return new BytesPayload(spec.size);
    case 'mobilenetv2':
      return new MobileNetPayload();
  }
}

/**
 * The server publishes one kind and workers send another (the reference tool's separate
 * global and worker model switches, to load each direction on its own). Updates are checked
 * and counted by the update kind's aggregator; each version is a deterministic variant of
 * the global kind's model, so every round moves new bytes to every worker.
 */
class PairPayload implements PayloadCodec {
  readonly name: string;
  private updateBase: Buffer | null = null;
  private globalBase: Buffer | null = null;

  constructor(
    private readonly global: PayloadCodec,
    private readonly update: PayloadCodec,
  ) {
    this.name = `${global.name}/${update.name}`;
  }

  initialModel(): Buffer {
    return this.global.initialModel();
  }

  makeUpdate(_global: Buffer, workerIndex: number, round: number, reuse?: Buffer): Buffer {
    this.updateBase ??= this.update.initialModel();
    return this.update.makeUpdate(this.updateBase, workerIndex, round, reuse);
  }

  updateSource(_global: Buffer, workerIndex: number, round: number): UpdateSource | null {
    this.updateBase ??= this.update.initialModel();
    return this.update.updateSource?.(this.updateBase, workerIndex, round) ?? null;
  }

  updateBytes(): number {
    return this.update.updateBytes();
  }

  slotPool(slots: number): SlotPool | null {
    return this.update.slotPool?.(slots) ?? null;
  }

  createAggregator(): Aggregator {
    const counted = this.update.createAggregator();
    const g = this.global;
    return {
      fold: (u, hold) => counted.fold(u, hold),
      get count() {
        return counted.count;
      },
      // The global codec's initial model, held here: a mobilenetv2 model is otherwise held only by its users.
      result: (version) => g.makeUpdate((this.globalBase ??= g.initialModel()), 0, version),
    };
  }
}

export function createPayload(spec: PayloadSpec): PayloadCodec {
  if (spec.kind === 'pair') return new PairPayload(single(spec.global), single(spec.update));
  return single(spec);
}
