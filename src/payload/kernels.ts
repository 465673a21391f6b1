import { FoldThread } from './foldThread.js';
import { KERNELS_SHARED_WASM_BASE64, KERNELS_WASM_BASE64 } from './kernelsWasm.js';
import { type Piece, SOURCE_PIECE_BYTES, type UpdateSource, pieceGivenBackOnce } from '../sim/updateBody.js';
import type { SlotPool } from '../sim/updateSlots.js';

/**
 * FedAvg's float loops in WebAssembly SIMD (src/payload/kernels.wat): the server's running
 * float64 sum and mean, and the workers' perturbation of a model. Data moves between the
 * caller's buffers and the module's memory through a 64 KiB staging area (a memcpy each way,
 * cache-resident), so callers keep their Buffers, at any alignment.
 */

type Exports = {
  memory: WebAssembly.Memory;
  accumulate(acc: number, src: number, n: number): void;
  mean(dst: number, acc: number, n: number, count: number): void;
  addTiled(dst: number, src: number, blk: number, len: number, phase: number, n: number): number;
};

/** Floats per staging pass: 64 KiB, in the cache while a pass reads and writes it. */
const STAGE_FLOATS = 16_384;
const STAGE_BYTES = STAGE_FLOATS * 4;
const PAGE = 65_536;
/**
 * Every staging area starts 2 KiB into a 4 KiB page. A WebAssembly memory is page-aligned,
 * and so are (give or take 16 bytes) the large Buffers the data comes from and goes to; a
 * memcpy between addresses a few bytes apart modulo 4 KiB runs at a tenth of its speed or
 * less on some CPUs (measured on this machine's AMD EPYC: copying 1 MiB out of a stage at a
 * page boundary took 557 µs, at 2 KiB into a page 30 µs; "4K aliasing" of loads and stores).
 */
const STAGE_SKEW = 2048;
/** wasm32 memory holds at most 65,536 pages (4 GiB), which bounds the running sum (8 bytes a float). */
export const MAX_SUM_FLOATS = Math.floor((65_536 * PAGE - STAGE_BYTES - 4096 - STAGE_SKEW) / 8);

let compiled: WebAssembly.Module | null = null;
let compiledShared: WebAssembly.Module | null = null;

function instantiate(bytes: number): { x: Exports; mem: Uint8Array } {
  compiled ??= new WebAssembly.Module(Buffer.from(KERNELS_WASM_BASE64, 'base64'));
  const x = new WebAssembly.Instance(compiled, {}).exports as unknown as Exports;
  const pages = Math.ceil(bytes / PAGE);
  const have = x.memory.buffer.byteLength / PAGE;
  if (pages > have) x.memory.grow(pages - have);
  // The memory never grows again, so this view stays valid.
  return { x, mem: new Uint8Array(x.memory.buffer) };
}

/** The kernels over a shared memory of `bytes` (never grown), which a FoldThread can work in too. */
function instantiateShared(bytes: number): { x: Exports; mem: Uint8Array; module: WebAssembly.Module } {
  const module = (compiledShared ??= new WebAssembly.Module(Buffer.from(KERNELS_SHARED_WASM_BASE64, 'base64')));
  const pages = Math.max(1, Math.ceil(bytes / PAGE));
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const x = { ...(new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as Omit<Exports, 'memory'>), memory };
  return { x, mem: new Uint8Array(memory.buffer), module };
}

/**
 * Whether the servers' running sums fold in a thread of their own (FoldThread): yes unless
 * FEDSIM_FOLD_THREAD=0 (on the server node's environment), which folds on the main thread,
 * to compare or to rule the thread out.
 */
export function foldThreadWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.FEDSIM_FOLD_THREAD !== '0';
}

/**
 * Updates at least this large are folded in the sum's thread (Float64Sum with `thread`);
 * smaller ones take less time to fold than a message to the thread and back.
 */
export const FOLD_THREAD_MIN_BYTES = 1024 * 1024;

function bytesOf(a: Uint8Array | Float32Array): Uint8Array {
  return a instanceof Uint8Array ? a : new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * A running float64 sum of float32 vectors of `length` floats, held in its own WebAssembly
 * memory (8 bytes a float). Reuse one with `reset()` rather than making one per round: each
 * is a separate WebAssembly memory.
 *
 * With `slots`, the memory also has room for that many buffers of `slotBytes` (takeSlot): an
 * update received into one is summed where it lies, without the copy through the staging
 * area every other source takes.
 */
export class Float64Sum {
  private readonly x: Exports;
  private readonly mem: Uint8Array;
  private readonly stage: number;
  private readonly sums: Float64Array;
  private readonly freeSlots: Buffer[] = [];
  /** The shared module, when made with `thread` (the FoldThread instantiates it over the same memory). */
  private readonly sharedModule: WebAssembly.Module | null = null;
  /** Started at the first fold it takes (foldRegions). */
  private thread: FoldThread | null = null;
  /** No thread (again): the last one failed, was given up on, or was closed. */
  private threadOff = false;
  /** A thread that failed, until it has exited (quiet). */
  private dying: FoldThread | null = null;
  /** callsFor's, by regions and slot address. */
  private readonly calls = new WeakMap<readonly TiledRegion[], Map<number, Int32Array>>();
  /** Why a fold failed (set until reset): the sum is not to be trusted. */
  private broken: string | null = null;

  /**
   * `thread`: the memory is shared, and `foldRegions` folds large updates lying in this
   * sum's own slots in a thread of their own (src/payload/foldThread.ts), letting the caller
   * go on meanwhile; every other call waits for those folds first, so the sum is always the
   * one of folding every update in turn on the calling thread.
   */
  constructor(
    readonly length: number,
    slotBytes = 0,
    slots = 0,
    opts: { thread?: boolean } = {},
  ) {
    if (!Number.isInteger(length) || length < 0 || length > MAX_SUM_FLOATS) {
      throw new RangeError(`a running sum of ${length} floats does not fit a WebAssembly memory (at most ${MAX_SUM_FLOATS})`);
    }
    this.stage = Math.ceil((length * 8) / 4096) * 4096 + STAGE_SKEW;
    const room = Math.ceil(slotBytes / 4096) * 4096;
    // Slot buffers start 1 KiB into a page: apart from the stage's and the sum's 4 KiB offsets (STAGE_SKEW).
    const firstSlot = Math.ceil((this.stage + STAGE_BYTES) / 4096) * 4096 + 1024;
    const bytes = slots > 0 && slotBytes > 0 ? firstSlot + slots * room : this.stage + STAGE_BYTES;
    if (bytes > 65_536 * PAGE) throw new RangeError(`a running sum of ${length} floats and ${slots} slots of ${slotBytes} bytes do not fit a WebAssembly memory`);
    if (opts.thread) ({ x: this.x, mem: this.mem, module: this.sharedModule } = instantiateShared(bytes));
    else ({ x: this.x, mem: this.mem } = instantiate(bytes));
    this.sums = new Float64Array(this.x.memory.buffer, 0, length);
    if (bytes > this.stage + STAGE_BYTES) {
      // The memory never grows again (instantiate), so these views stay valid.
      for (let i = slots - 1; i >= 0; i--) this.freeSlots.push(Buffer.from(this.x.memory.buffer, firstSlot + i * room, slotBytes));
    }
  }

  /** A buffer of `slotBytes` in this sum's memory, or null when all are taken. Give it back with giveSlot. */
  takeSlot(): Buffer | null {
    return this.freeSlots.pop() ?? null;
  }

  /** Gives back a buffer takeSlot gave (any other is ignored). */
  giveSlot(b: Buffer): void {
    if (this.ownsSlot(b) && !this.freeSlots.includes(b)) this.freeSlots.push(b);
  }

  /** True when `b` lies in this sum's memory (a buffer takeSlot gave, or a view of one). */
  ownsSlot(b: Buffer): boolean {
    return b.buffer === this.x.memory.buffer;
  }

  /** Sets every sum to 0 (and makes a sum whose folds failed usable again). */
  reset(): void {
    // A failure found here breaks what is being thrown away.
    this.waitFolds(false);
    this.broken = null;
    this.sums.fill(0);
  }

  /**
   * `add` of every region of `update`: sum[k0 + i] += float32 i of bytes [offset, offset +
   * length). With `hold`, and when this sum has a thread and `update` is a large one in one
   * of its slots, the fold runs in the thread: `hold()` is called now, and the function it
   * returns once the update has been read (until then `update` must not change).
   */
  foldRegions(update: Uint8Array, regions: readonly TiledRegion[], hold?: () => () => void): void {
    for (const r of regions) {
      if (r.offset < 0 || r.length % 4 !== 0 || r.offset + r.length > update.length || r.k0 < 0 || r.k0 + r.length / 4 > this.length) {
        throw new RangeError(`foldRegions: ${r.length} bytes at ${r.offset} (float ${r.k0}) do not fit an update of ${update.length} bytes and a sum of ${this.length} floats`);
      }
    }
    // A thread given up on, or failed (the sum is then broken until reset: meanInto throws).
    if (this.thread && !this.thread.usable) this.waitFolds(false);
    if (this.broken !== null) return;
    if (hold && this.sharedModule && !this.threadOff && update.buffer === this.x.memory.buffer && update.length >= FOLD_THREAD_MIN_BYTES) {
      this.thread ??= new FoldThread(this.sharedModule, this.x.memory, (calls) => {
        for (let i = 0; i < calls.length; i += 3) this.x.accumulate(calls[i], calls[i + 1], calls[i + 2]);
      });
      this.thread.post(this.callsFor(regions, update.byteOffset), hold());
      return;
    }
    // A thread's failure found while waiting for its folds breaks the sum: nothing to add to.
    this.waitFolds(false);
    if (this.broken !== null) return;
    for (const r of regions) this.add(update.subarray(r.offset, r.offset + r.length), r.k0);
  }

  /** The thread's accumulate calls for `regions` of an update at `at` in this memory (the same for every update a slot receives: made once). */
  private callsFor(regions: readonly TiledRegion[], at: number): Int32Array {
    let bySlot = this.calls.get(regions);
    if (!bySlot) this.calls.set(regions, (bySlot = new Map()));
    let calls = bySlot.get(at);
    if (!calls) {
      calls = new Int32Array(regions.length * 3);
      for (let i = 0; i < regions.length; i++) {
        const r = regions[i];
        calls[i * 3] = r.k0 * 8;
        calls[i * 3 + 1] = at + r.offset;
        calls[i * 3 + 2] = r.length >>> 2;
      }
      bySlot.set(at, calls);
    }
    return calls;
  }

  /** Folds posted to the thread that have not finished. */
  get folding(): number {
    return this.thread?.pending ?? 0;
  }

  /** Why this sum's folds failed (it is not to be trusted until reset), or null. */
  get failure(): string | null {
    return this.broken;
  }

  /**
   * Waits for the thread's folds. A thread that failed breaks the sum (`throws`: and throws);
   * one that failed or was given up on is dropped, and the sum folds on the calling thread
   * from then on.
   */
  private waitFolds(throws = true): void {
    const t = this.thread;
    if (t) {
      try {
        t.drain();
      } catch (e) {
        this.broken ??= (e as Error).message;
      }
      if (!t.usable) this.dropThread();
    }
    if (throws && this.broken !== null) throw new Error(`this running sum is not to be trusted: ${this.broken}`);
  }

  private dropThread(): void {
    const t = this.thread;
    // A failed thread may still be running (terminate is not instant): until it has exited,
    // this sum's memory is not to be summed in again (quiet).
    if (t?.failed) this.dying = t;
    void t?.close();
    this.thread = null;
    this.threadOff = true;
  }

  /** False while a thread of this sum that failed has not exited yet: SpareSum gives another sum out meanwhile. */
  get quiet(): boolean {
    return this.dying === null || this.dying.exited;
  }

  /** Stops the sum's thread, if it has one (after its folds: the sum stays usable, on the calling thread). */
  async close(): Promise<void> {
    this.waitFolds(false);
    const t = this.thread;
    if (!t) return;
    this.thread = null;
    this.threadOff = true;
    await t.close();
  }

  /** sum[at + i] += float32 i of `src` (little-endian, any alignment), for every float of `src`. */
  add(src: Uint8Array | Float32Array, at = 0): void {
    this.waitFolds();
    const b = bytesOf(src);
    const n = b.length >>> 2;
    if (b.length % 4 !== 0 || at < 0 || at + n > this.length) throw new RangeError(`add: ${b.length} bytes at float ${at} do not fit a sum of ${this.length} floats`);
    if (b.buffer === this.x.memory.buffer) {
      // In this memory (a slot's): summed where it lies.
      this.x.accumulate(at * 8, b.byteOffset, n);
      return;
    }
    for (let i = 0; i < n; i += STAGE_FLOATS) {
      const k = Math.min(STAGE_FLOATS, n - i);
      this.mem.set(b.subarray(i * 4, (i + k) * 4), this.stage);
      this.x.accumulate((at + i) * 8, this.stage, k);
    }
  }

  /** Writes float32(sum[at + i] / count) into `dst` (little-endian, any alignment), for every float of `dst`. */
  meanInto(dst: Uint8Array | Float32Array, count: number, at = 0): void {
    this.waitFolds();
    const b = bytesOf(dst);
    const n = b.length >>> 2;
    if (b.length % 4 !== 0 || at < 0 || at + n > this.length) throw new RangeError(`meanInto: ${b.length} bytes at float ${at} do not fit a sum of ${this.length} floats`);
    for (let i = 0; i < n; i += STAGE_FLOATS) {
      const k = Math.min(STAGE_FLOATS, n - i);
      this.x.mean(this.stage, (at + i) * 8, k, count);
      b.set(this.mem.subarray(this.stage, this.stage + k * 4), i * 4);
    }
  }
}

/**
 * The running sum a codec's aggregators share round after round: `take` gives the last
 * round's, zeroed, once it was given back, so a run uses one WebAssembly memory, not one a
 * round. An aggregator that never gives its sum back leaves it to the GC (and the next
 * round gets a sum of its own).
 *
 * With `slots`, that one sum's memory has room for update slots (UpdateSlots' buffers,
 * through takeSlot/giveSlot): updates received there are folded without a copy.
 */
export class SpareSum {
  private readonly home: Float64Sum;
  private homeFree = true;

  constructor(
    private readonly length: number,
    slotBytes = 0,
    slots = 0,
    opts: { thread?: boolean } = {},
  ) {
    this.home = new Float64Sum(length, slotBytes, slots, opts);
  }

  take(): Float64Sum {
    if (!this.homeFree || !this.home.quiet) return new Float64Sum(this.length);
    this.homeFree = false;
    this.home.reset();
    return this.home;
  }

  give(s: Float64Sum): void {
    if (s === this.home) this.homeFree = true;
  }

  takeSlot(): Buffer | null {
    return this.home.takeSlot();
  }

  giveSlot(b: Buffer): void {
    this.home.giveSlot(b);
  }

  ownsSlot(b: Buffer): boolean {
    return this.home.ownsSlot(b);
  }

  /** The home sum's slots as the server's slot pool (UpdateSlots), for updates of up to `maxBytes`. */
  slotPool(maxBytes: number): SlotPool {
    return { take: (bytes) => (bytes <= maxBytes ? this.takeSlot() : null), give: (b) => this.giveSlot(b), owns: (b) => this.ownsSlot(b) };
  }
}

/** Sources a Tiler holds at once (holdSource). */
const HELD_SOURCES = 2;

/** Floats of the noise block `Tiler` repeats (at most). */
export const MAX_BLOCK_FLOATS = 16_384;

/**
 * dst = src + a float32 noise block repeated end to end: the workers' perturbation of a
 * model. Set the block, then add it to one region after another, carrying the phase. Calls
 * are synchronous, so one per process and model size is enough: `tilerFor(bytes)` (a Tiler
 * made without a room grows its memory with its sources and has no pieces). It
 * holds two sources: three versions made in turn, piece by piece, copy one in at each turn
 * (correct, slower; a late worker's update beside a round's two, rare).
 */
export class Tiler {
  private readonly x: Exports;
  private mem: Uint8Array;
  private readonly stage = STAGE_SKEW;
  private readonly blk = STAGE_SKEW + STAGE_BYTES;
  /** Where the held sources' room starts (holdSource): after the block, 2 KiB into a page. */
  private readonly sources = Math.ceil((STAGE_SKEW + STAGE_BYTES + MAX_BLOCK_FLOATS * 4) / 4096) * 4096 + STAGE_SKEW;
  private blockLength = 0;
  /** The block set last (setBlock copies a new one only). */
  private block: Float32Array | null = null;
  /**
   * The sources held (weakly: a model the caller dropped is not kept alive here), up to
   * HELD_SOURCES, each in a room of `room` bytes; `active` is the one addFromHeld reads.
   */
  private held: Array<{ src: WeakRef<Uint8Array>; length: number; at: number; used: number }> = [];
  private room = 0;
  private active: { length: number; at: number } | null = null;
  private uses = 0;
  /** Made with its room (tilerFor): the memory never grows, so views of it stay valid. */
  private readonly fixed: boolean;
  /** Pieces of the module's memory an update made as it is sent is written into (takePiece). */
  private readonly freePieces: Buffer[] = [];

  /**
   * `room`: the memory is made once, with rooms for two sources of up to `room` bytes and
   * `pieces` buffers of `pieceBytes` (tilerFor); it never grows, and a larger source is
   * refused. Without it, the memory grows to the largest source held.
   */
  constructor(room = 0, pieces = 0, pieceBytes = 0) {
    const base = STAGE_SKEW + STAGE_BYTES + MAX_BLOCK_FLOATS * 4;
    this.fixed = room > 0;
    if (!this.fixed) {
      ({ x: this.x, mem: this.mem } = instantiate(base));
      return;
    }
    this.room = Math.ceil(room / 4096) * 4096;
    // Pieces start 1 KiB into a page: apart from the sources' 2 KiB (STAGE_SKEW), so a
    // piece written while a source is read does not alias it modulo 4 KiB.
    const firstPiece = Math.ceil((this.sources + HELD_SOURCES * this.room) / 4096) * 4096 + 1024;
    const pieceRoom = Math.ceil(pieceBytes / 4096) * 4096;
    ({ x: this.x, mem: this.mem } = instantiate(firstPiece + pieces * pieceRoom));
    for (let i = pieces - 1; i >= 0; i--) this.freePieces.push(Buffer.from(this.x.memory.buffer, firstPiece + i * pieceRoom, pieceBytes));
  }

  /** A piece of this module's memory (its size as made), or null when all are taken; give it back with givePiece. */
  takePiece(): Buffer | null {
    return this.freePieces.pop() ?? null;
  }

  /** Gives back a piece takePiece gave (others are ignored). */
  givePiece(b: Buffer): void {
    if (b.buffer === this.x.memory.buffer && !this.freePieces.includes(b)) this.freePieces.push(b);
  }

  /**
   * Copies `src` into the module's memory (once: nothing is copied while it is held), so
   * `addFromHeld` reads it there. A worker node perturbs one model for each of its workers
   * every round: reading it in place spares a copy of 14 MB per update (docs/benchmarks.md,
   * session 20). Two are held, so updates made as they are sent from two versions (a worker
   * still sending the last round's while another sends this one's) do not copy them in turn.
   * The memory grows to the largest sources held and stays so. `src` must not change while
   * it is held (a received model does not: a worker node that recycles a version's buffer gives it
   * out as another object, ModelVersions).
   */
  holdSource(src: Uint8Array): void {
    this.uses++;
    for (const h of this.held) {
      if (h.src.deref() === src) {
        h.used = this.uses;
        this.active = h;
        return;
      }
    }
    if (src.length > this.room) {
      if (this.fixed) throw new RangeError(`holdSource: a source of ${src.length} bytes in rooms of ${this.room}`);
      // Rooms for two of this size: what was held is copied in again when asked for.
      this.room = Math.ceil(src.length / 4096) * 4096;
      this.held = [];
      const need = this.sources + HELD_SOURCES * this.room;
      const have = this.x.memory.buffer.byteLength;
      if (need > have) {
        this.x.memory.grow(Math.ceil((need - have) / PAGE));
        this.mem = new Uint8Array(this.x.memory.buffer);
      }
    }
    let slot: { src: WeakRef<Uint8Array>; length: number; at: number; used: number };
    if (this.held.length < HELD_SOURCES) {
      slot = { src: new WeakRef(src), length: src.length, at: this.sources + this.held.length * this.room, used: this.uses };
      this.held.push(slot);
    } else {
      slot = this.held.reduce((a, b) => (a.used <= b.used ? a : b));
      Object.assign(slot, { src: new WeakRef(src), length: src.length, used: this.uses });
    }
    this.mem.set(src, slot.at);
    this.active = slot;
  }

  /**
   * `add` with the source's bytes [at, at + dst.length) of the held source: writes
   * held[at + i] + block[(phase + i) % block.length] to dst for every float of `dst`; returns the
   * phase after the last float.
   */
  addFromHeld(dst: Uint8Array, at: number, phase = 0): number {
    const held = this.active;
    const length = held?.length ?? 0;
    if (!held || dst.length % 4 !== 0 || at < 0 || at + dst.length > length) throw new RangeError(`addFromHeld: ${dst.length} bytes at ${at} of a held source of ${length}`);
    if (dst.buffer === this.x.memory.buffer) {
      // A piece of this memory (takePiece): written where it lies, not through the stage.
      if (this.blockLength === 0) throw new RangeError('addFromHeld: no block set (setBlock first)');
      if (phase < 0 || phase >= this.blockLength) throw new RangeError(`addFromHeld: phase ${phase} outside a block of ${this.blockLength} floats`);
      return this.x.addTiled(dst.byteOffset, held.at + at, this.blk, this.blockLength, phase, dst.length >>> 2);
    }
    return this.tile(dst, phase, 'addFromHeld', (i) => held.at + at + i * 4);
  }

  /**
   * The loop of `add` and `addFromHeld`: for each stage's worth of floats of `dst`, the kernel
   * writes the perturbed floats into the stage from `from(i)` (the address of float i in the
   * module's memory, where `from` may first copy it), and they are copied out.
   */
  private tile(dst: Uint8Array, phase: number, what: string, from: (i: number, k: number) => number): number {
    if (this.blockLength === 0) throw new RangeError(`${what}: no block set (setBlock first)`);
    if (phase < 0 || phase >= this.blockLength) throw new RangeError(`${what}: phase ${phase} outside a block of ${this.blockLength} floats`);
    const n = dst.length >>> 2;
    let p = phase;
    for (let i = 0; i < n; i += STAGE_FLOATS) {
      const k = Math.min(STAGE_FLOATS, n - i);
      p = this.x.addTiled(this.stage, from(i, k), this.blk, this.blockLength, p, k);
      dst.set(this.mem.subarray(this.stage, this.stage + k * 4), i * 4);
    }
    return p;
  }

  /**
   * Copies `block` (1 to MAX_BLOCK_FLOATS floats) in: what `add` repeats until the next call.
   * The block set last is not copied again, so a block must not change once it was set.
   */
  setBlock(block: Float32Array): this {
    if (block.length < 1 || block.length > MAX_BLOCK_FLOATS) throw new RangeError(`setBlock: ${block.length} floats (1 to ${MAX_BLOCK_FLOATS})`);
    if (this.block === block) return this;
    this.mem.set(bytesOf(block), this.blk);
    this.blockLength = block.length;
    this.block = block;
    return this;
  }

  /**
   * Writes src[i] + block[(phase + i) % block.length] to dst[i] for every float of `src`
   * (`dst` as long as `src`, may be the same memory; any alignment) and returns the phase
   * after the last float, to continue with the next region.
   */
  add(dst: Uint8Array | Float32Array, src: Uint8Array | Float32Array, phase = 0): number {
    const s = bytesOf(src);
    const d = bytesOf(dst);
    if (s.length % 4 !== 0 || d.length !== s.length) throw new RangeError(`add: ${s.length} source bytes into ${d.length}`);
    // Each stage's worth of `src` is copied into the stage and perturbed there, in place.
    return this.tile(d, phase, 'add', (i, k) => {
      this.mem.set(s.subarray(i * 4, (i + k) * 4), this.stage);
      return this.stage;
    });
  }
}

/** Pieces each tilerFor instance has for updates made as they are sent (32 MiB of its memory, touched as used). */
const TILER_PIECES = 32;
const bySize = new Map<number, Tiler>();
/**
 * The process's Tiler for sources of `bytes` (a model's size): made once per size, with rooms
 * for two such sources and TILER_PIECES pieces of SOURCE_PIECE_BYTES, so its memory never
 * grows and a piece handed to a socket stays valid.
 */
export function tilerFor(bytes: number): Tiler {
  const room = Math.max(4096, Math.ceil(bytes / 4096) * 4096);
  let t = bySize.get(room);
  if (!t) bySize.set(room, (t = new Tiler(room, TILER_PIECES, SOURCE_PIECE_BYTES)));
  return t;
}

/** Bytes [offset, offset + length) of a model are float32 weights; the first takes float `k0 % block.length` of the noise block. */
export interface TiledRegion {
  readonly offset: number;
  /** A multiple of 4. */
  readonly length: number;
  readonly k0: number;
}

/**
 * An update made as it is sent: `base` with `block` added float by float over its float
 * regions (sorted, apart), the block's phase running on from one region into the next, and
 * every other byte as in `base`. Any byte range can be made, a float cut at either end of it
 * included: `makeUpdate` is the whole range. Reads `base` where the process's Tiler holds it.
 */
export class TiledSource implements UpdateSource {
  readonly length: number;
  private readonly one = Buffer.alloc(4);
  /** The region the last fill ended in: the next fill (the next piece) usually starts there. */
  private last = 0;

  constructor(
    private readonly base: Buffer,
    private readonly regions: readonly TiledRegion[],
    private readonly block: Float32Array,
  ) {
    this.length = base.length;
  }

  fill(dst: Buffer, at: number): void {
    const end = at + dst.length;
    if (!(at >= 0 && end <= this.length)) throw new RangeError(`fill: bytes ${at}..${end} of an update of ${this.length}`);
    const t = tilerFor(this.length).setBlock(this.block);
    t.holdSource(this.base);
    const regions = this.regions;
    let i = this.regionAt(at);
    let pos = at;
    while (pos < end) {
      const r = regions[i];
      if (!r || r.offset >= end) {
        this.base.copy(dst, pos - at, pos, end);
        break;
      }
      if (r.offset > pos) {
        this.base.copy(dst, pos - at, pos, r.offset);
        pos = r.offset;
      }
      const to = Math.min(end, r.offset + r.length);
      let a = pos - r.offset;
      const b = to - r.offset;
      if (a & 3) {
        // A float cut at the start of the range: made whole, its last bytes taken.
        const j = a >> 2;
        const upTo = Math.min(b, 4 * j + 4);
        this.oneFloat(t, r, j).copy(dst, r.offset + a - at, a - 4 * j, upTo - 4 * j);
        a = upTo;
      }
      const whole = b & ~3;
      if (whole > a) {
        t.addFromHeld(dst.subarray(r.offset + a - at, r.offset + whole - at), r.offset + a, (r.k0 + (a >> 2)) % this.block.length);
        a = whole;
      }
      if (a < b) {
        // A float cut at the end: its first bytes.
        this.oneFloat(t, r, a >> 2).copy(dst, r.offset + a - at, 0, b - a);
        a = b;
      }
      pos = to;
      if (pos === r.offset + r.length) i++;
    }
    this.last = Math.max(0, Math.min(i, regions.length - 1));
  }

  /**
   * Bytes [at, end) made into a piece of the Tiler's own memory (end - at <= SOURCE_PIECE_BYTES):
   * the weights are written there by the kernel, not copied out of its stage. Null when the
   * Tiler has no piece free (the caller makes one elsewhere with fill).
   */
  piece(at: number, end: number): Piece | null {
    if (end - at > SOURCE_PIECE_BYTES) return null;
    const t = tilerFor(this.length);
    const whole = t.takePiece();
    if (!whole) return null;
    const bytes = whole.subarray(0, end - at);
    this.fill(bytes, at);
    return pieceGivenBackOnce(bytes, () => t.givePiece(whole));
  }

  private oneFloat(t: Tiler, r: TiledRegion, j: number): Buffer {
    t.addFromHeld(this.one, r.offset + 4 * j, (r.k0 + j) % this.block.length);
    return this.one;
  }

  /** The first region that ends after byte `at` (regions.length when none does). */
  private regionAt(at: number): number {
    const rs = this.regions;
    const l = this.last;
    if (l < rs.length && rs[l].offset + rs[l].length > at && (l === 0 || rs[l - 1].offset + rs[l - 1].length <= at)) return l;
    let lo = 0;
    let hi = rs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (rs[mid].offset + rs[mid].length > at) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}
