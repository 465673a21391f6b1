/**
 * Where the server receives update bodies: a fixed number of reusable buffers. An update
 * streams into a slot and is folded into the running FedAvg when it is complete; a stream
 * cut half-way just frees its slot, so the sum never holds a partial update and nothing is
 * counted twice. Memory is `slots` × the update size, whatever the number of workers; an
 * update that finds every slot busy waits (its connection is not read meanwhile).
 *
 * A slot whose upload has made no progress for `stallMs` (a worker's link cut in the middle
 * of its update) lends its place: one more update may start beside it, up to `spare` more
 * slots. A stalled upload so never holds up the others, and memory stays at `slots` × the
 * update size while uploads flow (two slots for a 14 MB model: docs/benchmarks.md
 * "Session 24").
 *
 * A socket may read straight into a slot (UpdateSlot.aim). A slot released while such a read
 * is still to land frees its place at once, but its buffer waits for that read before it
 * serves another update (a slot taken meanwhile gets another buffer).
 *
 * An update folded in a thread holds its slot (UpdateSlot.hold): released meanwhile, the
 * slot stays busy, place and buffer, until the fold has read it (a few milliseconds).
 */
/**
 * Where slot buffers may come from besides the heap: the payload codec's fold memory
 * (PayloadCodec.slotPool), where an update is folded without a copy. `take` gives a buffer
 * of at least `bytes`, or null; `give` takes back one it gave (and ignores others); `owns`
 * says whether a buffer is one of its own.
 */
export interface SlotPool {
  take(bytes: number): Buffer | null;
  give(b: Buffer): void;
  owns(b: Buffer): boolean;
}

export class UpdateSlots {
  private readonly spareBuffers: Buffer[] = [];
  private readonly busySlots = new Set<UpdateSlot>();
  private readonly queue: Array<{ take: (s: UpdateSlot) => void; next?: () => void; gone?: () => boolean }> = [];
  private timer: NodeJS.Timeout | null = null;
  /** The most slots ever busy at once (for reports). */
  peak = 0;
  /** Update bytes read straight into a slot's room (UpdateSlot.room), not copied from a read buffer. */
  bytesInPlace = 0;
  /**
   * Time the watch timer fired late, in all (ms): the event loop busy elsewhere, reading no
   * socket. A slot's stall clock leaves out what of it passed since its last progress.
   */
  private blindMs = 0;
  /** When the armed watch timer is due. */
  private dueAt = 0;
  private readonly blind = () => this.blindAt(performance.now());

  constructor(
    readonly slots: number,
    readonly spare = slots,
    readonly stallMs = 250,
    private readonly pool: SlotPool | null = null,
  ) {
    if (!(slots >= 1)) throw new Error(`update slots must be >= 1, not ${slots}`);
  }

  /**
   * A free slot, now or once one is released (or a busy one stalls). `next` runs when the
   * update becomes the first in line (at once if it is): the gRPC server lets that one's
   * first bytes come ahead, so its slot does not wait a round trip for them. Once `gone`
   * says true (the request ended while it waited), the update leaves the line at the next
   * `dropGone` or turn, and its promise never settles.
   */
  acquire(next?: () => void, gone?: () => boolean): Promise<UpdateSlot> {
    if (this.queue.length === 0 && this.busySlots.size < this.capacity()) {
      const slot = this.take();
      this.watch();
      return Promise.resolve(slot);
    }
    const p = new Promise<UpdateSlot>((resolve) => this.queue.push({ take: resolve, next, gone }));
    if (this.queue.length === 1) next?.();
    this.watch();
    return p;
  }

  /** Takes the updates whose requests have ended out of the line; a new first in line hears `next`. */
  dropGone(): void {
    const head = this.queue[0];
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i].gone?.()) this.queue.splice(i, 1);
    if (this.queue[0] !== head) this.queue[0]?.next?.();
    this.watch();
  }

  get waiting(): number {
    return this.queue.length;
  }

  get busy(): number {
    return this.busySlots.size;
  }

  /**
   * `slots`, plus one for every busy slot stalled for `stallMs`, up to `spare` more. Time in
   * which the event loop was busy elsewhere (answering a round's long-polls with a 14 MB model
   * took 150 to 420 ms at 128 workers) does not count: no socket was read then either, so a
   * slot without progress in it has not stalled. That time is what the watch timer, armed
   * while a slot is busy, fired late by (blindMs); a loop that is late again and again slows
   * the stall clock down by as much, and never stops it. A block shorter than the timer's
   * period (stallMs / 2) is not seen: a slot is judged stalled after at least stallMs / 2
   * of time the server could read.
   */
  private capacity(): number {
    if (this.busySlots.size < this.slots || this.spare === 0) return this.slots;
    const now = performance.now();
    const blind = this.blindAt(now);
    let stalled = 0;
    // A slot released and held (its update folding in a thread) waits for the fold, not for a worker: never stalled.
    for (const s of this.busySlots) if (!s.held && now - s.lastProgress - (blind - s.blindAtProgress) >= this.stallMs) stalled++;
    return this.slots + Math.min(this.spare, stalled);
  }

  /** blindMs at `now`, with what the armed timer is overdue by so far. */
  private blindAt(now: number): number {
    return this.blindMs + (this.timer && now > this.dueAt ? now - this.dueAt : 0);
  }

  private take(): UpdateSlot {
    const slot = new UpdateSlot(
      this.spareBuffers.pop() ?? Buffer.alloc(0),
      (s, buf) => this.release(s, buf),
      this.pool,
      (n) => (this.bytesInPlace += n),
      (buf) => this.keep(buf),
      this.blind,
    );
    this.busySlots.add(slot);
    this.peak = Math.max(this.peak, this.busySlots.size);
    return slot;
  }

  /** A slot let go: its place at once; its buffer too, or (`null`) later through keep() once no read will land in it. */
  private release(slot: UpdateSlot, buf: Buffer | null): void {
    this.busySlots.delete(slot);
    if (buf) this.keep(buf);
    this.serve();
  }

  /**
   * A released slot's buffer nothing will land in any more: kept for the next slot, up to
   * `slots` (buffers beyond were lent for a stall: not kept; one of the pool's goes back to it).
   * With a pool, only the pool's own buffers are kept: a heap buffer (one a slot lent for a
   * stall took, every pool buffer being busy then; or one for what the pool cannot hold, a
   * body over its slot size, which is then allocated per update) is left to the GC. Kept, a
   * lent one would serve later updates outside the fold memory for the rest of the run, each
   * folded with a copy on the main thread instead of in place in the fold thread, while a pool
   * buffer sat unused: at 128 workers over HTTP/1.1, half the runs took 1.7–1.9 s a round
   * instead of 1.3 (docs/benchmarks.md, session 28).
   */
  private keep(buf: Buffer): void {
    if (this.pool && !this.pool.owns(buf)) return;
    if (this.spareBuffers.length + this.busySlots.size < this.slots) this.spareBuffers.push(buf);
    else this.pool?.give(buf);
  }

  private serve(): void {
    const head = this.queue[0];
    while (this.queue.length > 0 && this.busySlots.size < this.capacity()) {
      const waiter = this.queue.shift()!;
      if (!waiter.gone?.()) waiter.take(this.take());
    }
    if (this.queue[0] !== head) this.queue[0]?.next?.();
    this.watch();
  }

  /**
   * While a slot is busy, looks again every `stallMs / 2`: for a stalled slot when updates
   * wait, and in any case at how late it fired (blind time), so that a loop blocked while
   * nothing waited does not make the uploads in the slots look stalled to the next acquire.
   */
  private watch(): void {
    if ((this.queue.length === 0 && this.busySlots.size === 0) || this.spare === 0) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.blindMs = this.blindAt(performance.now());
      }
      this.timer = null;
      return;
    }
    if (this.timer) return;
    const delay = Math.max(1, this.stallMs / 2);
    this.dueAt = performance.now() + delay;
    this.timer = setTimeout(() => {
      this.blindMs = this.blindAt(performance.now());
      this.timer = null;
      this.serve();
    }, delay);
    // The waiting uploads' connections keep the process alive, not this.
    this.timer.unref();
  }
}

export class UpdateSlot {
  private n = 0;
  private released = false;
  /** Reads aimed at the slot's room that have not landed (aim()); the buffer waits for them. */
  private aimed = 0;
  /** Released with reads still to land: the buffer goes back (onBuffer) when the last one has. */
  private bufferOwed = false;
  /** Holds not let go yet (hold()): the slot's release waits for them. */
  private holds = 0;
  /** Released while held: the release happens when the last hold is let go. */
  private releaseOwed = false;
  /** When bytes last came (performance.now()): a slot without any for a while has stalled. */
  lastProgress = performance.now();
  /** UpdateSlots' blind time then (its stall clock leaves out what came after). */
  blindAtProgress: number;

  constructor(
    private buf: Buffer,
    private readonly onRelease: (slot: UpdateSlot, buf: Buffer | null) => void,
    private readonly pool: SlotPool | null = null,
    private readonly inPlace: (bytes: number) => void = () => undefined,
    private readonly onBuffer: (buf: Buffer) => void = () => undefined,
    private readonly blind: () => number = () => 0,
  ) {
    this.blindAtProgress = blind();
  }

  /** Room for `total` bytes (a declared Content-Length), so no copy happens on growth. */
  reserve(total: number): void {
    if (this.buf.length < total) this.replace(total);
  }

  /** A larger buffer, from the pool when it has one, with the bytes so far; the old one goes back to the pool (if it was the pool's). */
  private replace(bytes: number): void {
    const next = this.pool?.take(bytes) ?? Buffer.allocUnsafe(bytes);
    this.buf.copy(next, 0, 0, this.n);
    // An old buffer a read is still aimed at (aims stay inside the buffer, so a write that
    // does not fit comes from a read that was not aimed: not expected) is left to the GC.
    if (this.aimed === 0) this.pool?.give(this.buf);
    this.buf = next;
  }

  /**
   * The slot's free room for up to `max` more bytes, for a socket's next read to land in (then
   * write() the view of them: nothing is copied), or null when it has none. The buffer is
   * not given to another update (release() frees the slot's place, not its buffer) until
   * `landed` says the read came or can no longer come, so a read aimed here never lands in
   * the next update's bytes.
   */
  aim(max: number): { readonly room: Buffer; landed(): void } | null {
    const end = Math.min(this.buf.length, this.n + max);
    if (end <= this.n || this.released) return null;
    this.aimed++;
    let done = false;
    return {
      room: this.buf.subarray(this.n, end),
      landed: () => {
        if (done) return;
        done = true;
        this.aimed--;
        if (this.aimed === 0 && this.bufferOwed) {
          this.bufferOwed = false;
          this.onBuffer(this.buf);
        }
      },
    };
  }

  write(chunk: Buffer): void {
    if (chunk.buffer === this.buf.buffer && chunk.byteOffset === this.buf.byteOffset + this.n && this.n + chunk.length <= this.buf.length) {
      // Read straight into the room (aim()): in place already.
      this.n += chunk.length;
      this.inPlace(chunk.length);
      this.lastProgress = performance.now();
      this.blindAtProgress = this.blind();
      return;
    }
    if (this.n + chunk.length > this.buf.length) this.replace(Math.max(this.n + chunk.length, this.buf.length * 2, 64 * 1024));
    chunk.copy(this.buf, this.n);
    this.n += chunk.length;
    this.lastProgress = performance.now();
    this.blindAtProgress = this.blind();
  }

  get length(): number {
    return this.n;
  }

  /** The received bytes; valid until release(). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.n);
  }

  /**
   * Keeps the slot, place and buffer, until the function returned is called (once; later
   * calls do nothing): release() meanwhile waits for it. For a fold that reads the bytes
   * after the request that brought them is over (a fold thread: Aggregator.fold).
   */
  hold(): () => void {
    this.holds++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.holds--;
      if (this.holds === 0 && this.releaseOwed) {
        this.releaseOwed = false;
        this.letGo();
      }
    };
  }

  /** Released, but still held (hold()): the slot waits for a fold, not for bytes. */
  get held(): boolean {
    return this.releaseOwed;
  }

  /** Lets the slot go (once): its place now (or once it is no longer held); its buffer then too, or once the reads aimed at it have landed. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.holds > 0) this.releaseOwed = true;
    else this.letGo();
  }

  private letGo(): void {
    if (this.aimed === 0) this.onRelease(this, this.buf);
    else {
      this.bufferOwed = true;
      this.onRelease(this, null);
    }
  }
}
