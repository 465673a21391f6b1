import type { Aggregator, PayloadCodec } from '../sim/ports.js';

/** Short texts: the protocol is exercised, the bytes are not. */
export class StringPayload implements PayloadCodec {
  readonly name = 'string';

  initialModel(): Buffer {
    return Buffer.from('global model v0');
  }

  makeUpdate(_global: Buffer, workerIndex: number, round: number): Buffer {
    return Buffer.from(`update from worker ${workerIndex} for round ${round}`);
  }

  updateBytes(): number {
    return this.makeUpdate(Buffer.alloc(0), 0, 1).length;
  }

  createAggregator(): Aggregator {
    let count = 0;
    return {
      fold(update: Buffer) {
        if (update.length === 0) return false;
        count++;
        return true;
      },
      get count() {
        return count;
      },
      result(version: number) {
        return Buffer.from(`global model v${version} (from ${count} updates)`);
      },
    };
  }
}
