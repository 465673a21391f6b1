/**
 * Where the server receives update bodies: a fixed number of reusable buffers. An update
 * streams into a slot and is folded into the running FedAvg when it is complete; a stream
 * cut half-way just frees its slot, so the sum never holds a partial update and nothing is
 * counted twice. Memory is `slots` × the update size, whatever the number of workers; an
 * update that finds every slot busy waits (its connection is not read meanwhile).
 */
export class UpdateSlots {
  private readonly spare: Buffer[] = [];
  private busy = 0;
  private readonly queue: Array<(s: UpdateSlot) => void> = [];
  /** The most slots ever busy at once (for reports). */
  peak = 0;

  constructor(readonly slots: number) {
    if (!(slots >= 1)) throw new Error(`update slots must be >= 1, not ${slots}`);
  }

  /** A free slot, now or once one is released. */
  acquire(): Promise<UpdateSlot> {
    if (this.busy < this.slots) return Promise.resolve(this.take());
    return new Promise((resolve) => this.queue.push(resolve));
  }

  get waiting(): number {
    return this.queue.length;
  }

  private take(): UpdateSlot {
    this.busy++;
    this.peak = Math.max(this.peak, this.busy);
    return new UpdateSlot(this.spare.pop() ?? Buffer.alloc(0), (buf) => this.release(buf));
  }

  private release(buf: Buffer): void {
    this.busy--;
    this.spare.push(buf);
    const next = this.queue.shift();
    if (next) next(this.take());
  }
}

export class UpdateSlot {
  private n = 0;
  private released = false;

  constructor(
    private buf: Buffer,
    private readonly onRelease: (buf: Buffer) => void,
  ) {}

  /** Room for `total` bytes (a declared Content-Length), so no copy happens on growth. */
  reserve(total: number): void {
    if (this.buf.length < total) this.buf = Buffer.allocUnsafe(total);
  }

  write(chunk: Buffer): void {
    if (this.n + chunk.length > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.n + chunk.length, this.buf.length * 2, 64 * 1024));
      this.buf.copy(next, 0, 0, this.n);
      this.buf = next;
    }
    chunk.copy(this.buf, this.n);
    this.n += chunk.length;
  }

  get length(): number {
    return this.n;
  }

  /** The received bytes; valid until release(). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.n);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease(this.buf);
  }
}
