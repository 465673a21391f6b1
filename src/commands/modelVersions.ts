import { sha256Hex } from '../runtime/hash.js';
import type { PulledModel } from '../sim/ports.js';
import { SharedBody } from '../transport/headers.js';

/** The largest body a node's pulls share a buffer for (BodyBuffer's own bound). */
const MAX_SHARED_BODY = 2 ** 31;
/** Bodies smaller than this are neither shared nor kept: copying them costs less than a lookup. */
const MIN_SHARED_BODY = 64 * 1024;

/** SHA-256 of a body, computed once per distinct body (bodyHasher); `forget` drops what it knows of a buffer about to be rewritten. */
export interface BodyHasher {
  (body: Buffer): string;
  forget(body: Buffer): void;
}

/**
 * SHA-256 of the models this node's workers receive, computed once per distinct body: a body
 * byte-equal to one already hashed has that hash (Buffer.equals is a memcmp, several times
 * faster than SHA-256), so 64 workers receiving the same 14 MB version hash it once and
 * compare it 63 times. Still a real check of every worker's bytes.
 */
export function bodyHasher(keep = 2): BodyHasher {
  let seen: Array<{ body: Buffer; sha: string }> = [];
  const hash = (body: Buffer) => {
    for (const s of seen) if (s.body === body || (s.body.length === body.length && s.body.equals(body))) return s.sha;
    const sha = sha256Hex(body);
    // Small bodies hash faster than a lookup is worth.
    if (body.length >= MIN_SHARED_BODY) {
      seen.push({ body, sha });
      if (seen.length > keep) seen.shift();
    }
    return sha;
  };
  return Object.assign(hash, {
    forget(body: Buffer) {
      seen = seen.filter((s) => s.body.buffer !== body.buffer);
    },
  });
}

/** A version's buffer: who holds it, and whether the node still keeps it. */
interface Entry {
  readonly shared: SharedBody;
  readonly version: number;
  holders: number;
  /** No longer one of the versions the node keeps: recycled once no one holds or reads it. */
  evicted: boolean;
}

/**
 * The model versions a worker node holds: one copy of each (the last `keep`), however many of
 * its workers hold it, and the buffers its pulls receive a new version into.
 *
 * A version the node holds (checked against its SHA-256 when it first came) is compared with
 * each new copy in place: 25 workers receiving one 1 MiB version allocate and copy it once,
 * not 25 times (the allocations alone cost these nodes a third of their CPU in GC). A version
 * no pull has finished yet is received into one buffer that all its pulls share (SharedBody):
 * they arrive together, so this is the common case.
 *
 * With `recycle`, the buffer of a version the node no longer keeps, once no worker holds it
 * (hold/release) and no pull reads it (SharedBody.readers), receives a later version (the
 * oldest version kept is let go when a new one starts to arrive, so that it can be this one): a
 * worker node otherwise took 14 MB of fresh memory from the kernel for every mobilenetv2
 * version, and the kernel's zeroing of those pages was a tenth of the node's CPU
 * (docs/benchmarks.md, session 26). A pull that ends without its body held (cut, refused by
 * the SHA-256 check) stays a reader, so its buffer is left to the GC instead: a count that
 * errs costs memory, never bytes. A recycled buffer comes back as a new Buffer object over the same
 * memory, so nothing that knew the old object by identity (the Tiler's held sources) takes
 * the new bytes for the old ones; the hasher is told to forget it.
 */
export class ModelVersions {
  /** Versions whole and checked, by SHA-256, oldest first. */
  private readonly models = new Map<string, Entry>();
  /**
   * Every buffer held or kept, by the buffer. Weak: a buffer whose count errs (a pull that
   * ended without its reader being taken off) is kept by no one here once its holders let it
   * go, and goes to the GC; only a buffer known to be unread is recycled.
   */
  private readonly entries = new WeakMap<Buffer, Entry>();
  /** Versions this node's pulls are receiving now, filled together. */
  private readonly receiving = new Map<string, SharedBody>();
  /** Buffers no one holds, reads or keeps, for the next versions. */
  private readonly free: Buffer[] = [];
  /** Buffers taken for new versions, and how many of them were recycled. */
  taken = 0;
  recycled = 0;

  constructor(private readonly opts: { recycle?: boolean; forget?: (body: Buffer) => void; keep?: number; spare?: number } = {}) {}

  /** What a pull of version `sha` (`bytes` long) compares and fills its bytes against (the transports' `heldModel`). */
  reference(sha: string, bytes: number): SharedBody | undefined {
    const have = this.models.get(sha);
    if (have && have.shared.buffer.length === bytes) return have.shared;
    if (bytes < MIN_SHARED_BODY || bytes > MAX_SHARED_BODY) return undefined;
    let body = this.receiving.get(sha);
    if (!body || body.buffer.length !== bytes) {
      // A new version: the oldest kept makes room for it now, so that its buffer (no longer
      // held by then, as a rule) can be the one the new version is received into.
      while (this.models.size >= (this.opts.keep ?? 2)) this.evictOldest();
      body = new SharedBody(this.take(bytes));
      this.receiving.set(sha, body);
      // Its pulls all failed (or it is a corrupt copy's): left to the GC.
      if (this.receiving.size > 2) this.receiving.delete(this.receiving.keys().next().value as string);
    }
    return body;
  }

  /**
   * A pulled (and checked) model as the node's one copy of its version, held for the caller
   * until `release`: a worker that received a version another worker already holds keeps
   * that copy and drops its own.
   */
  hold(m: PulledModel): PulledModel {
    // The version kept, or (no longer kept, or not yet) the entry of this very buffer: one
    // entry per buffer, whatever way its holders came by it.
    let entry = this.models.get(m.sha256) ?? this.entries.get(m.body);
    if (!entry) {
      const receiving = this.receiving.get(m.sha256);
      const shared = receiving?.buffer === m.body ? receiving : new SharedBody(m.body, true);
      shared.filled = shared.buffer.length;
      // An older version than one kept (a straggler's) is held, not kept: it would push a newer one out.
      const stale = [...this.models.values()].some((k) => k.version > m.version);
      entry = { shared, version: m.version, holders: 0, evicted: stale };
      const e = entry;
      shared.onIdle = () => this.maybeFree(e);
      this.entries.set(shared.buffer, entry);
      if (!stale) {
        this.models.set(m.sha256, entry);
        while (this.models.size > (this.opts.keep ?? 2)) this.evictOldest();
      }
    }
    if (this.receiving.get(m.sha256)?.buffer === entry.shared.buffer) this.receiving.delete(m.sha256);
    // This pull read the buffer (its body is that buffer): done reading, now holding.
    if (m.body === entry.shared.buffer && entry.shared.readers > 0) entry.shared.readers--;
    entry.holders++;
    return m.body === entry.shared.buffer ? m : { ...m, body: entry.shared.buffer };
  }

  /** The caller no longer refers to `m`'s bytes (it holds a newer version, or stopped). */
  release(m: PulledModel): void {
    const entry = this.entries.get(m.body);
    if (!entry || entry.holders === 0) return;
    entry.holders--;
    this.maybeFree(entry);
  }

  /** Versions kept. */
  get kept(): number {
    return this.models.size;
  }

  private evictOldest(): void {
    const [sha, old] = this.models.entries().next().value as [string, Entry];
    this.models.delete(sha);
    old.evicted = true;
    this.maybeFree(old);
  }

  private maybeFree(e: Entry): void {
    if (!e.evicted || e.holders > 0 || e.shared.readers > 0) return;
    const body = e.shared.buffer;
    if (this.entries.get(body) !== e) return; // freed already
    this.entries.delete(body);
    e.shared.onIdle = null;
    if (!this.opts.recycle || body.length < MIN_SHARED_BODY || this.free.length >= (this.opts.spare ?? 2)) return;
    this.opts.forget?.(body);
    this.free.push(body);
  }

  private take(bytes: number): Buffer {
    this.taken++;
    const i = this.free.findIndex((b) => b.length === bytes);
    if (i < 0) return Buffer.allocUnsafe(bytes);
    const [b] = this.free.splice(i, 1);
    this.recycled++;
    // A new object over the same memory: see the class comment.
    return Buffer.from(b.buffer, b.byteOffset, b.length);
  }
}
