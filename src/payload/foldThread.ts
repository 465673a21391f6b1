import { Worker } from 'node:worker_threads';

/**
 * The thread a running sum folds received updates in (Float64Sum with `thread`), so the
 * server's main thread goes on reading the next upload while the last one is summed: on a
 * busy server the two overlap on two cores instead of taking turns on one
 * (docs/benchmarks.md, session 25).
 *
 * The sum's WebAssembly memory is shared: this thread and the main one each instantiate the
 * kernels over it (kernels.wat assembled importing it). A job is a list of `accumulate`
 * calls; jobs run one at a time, in the order they were posted, so a round's sum adds its
 * updates in the same order as folding them on the main thread would. The thread counts
 * the jobs it finished in a shared Int32Array (Atomics), which `drain` waits on; each job's
 * `done` runs on the main thread once that job has finished (when the thread's message
 * arrives, or in drain), which is when the update's buffer may be reused.
 */

/** control[2]: the thread's state. */
const STARTING = 0;
const RUNNING = 1;
/** The main thread gave up on a thread that had not started, and runs its jobs itself. */
const ABANDONED = 2;

/** What the thread runs (eval'd, so the single binary needs no file for it). */
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { module, memory, control } = workerData;
const c = new Int32Array(control);
// Running, unless the main thread gave up waiting for this one to start (then it folds itself).
if (Atomics.compareExchange(c, 2, ${STARTING}, ${RUNNING}) !== ${STARTING}) process.exit(0);
Atomics.notify(c, 2);
let accumulate;
try {
  ({ accumulate } = new WebAssembly.Instance(module, { env: { memory } }).exports);
} catch (e) {
  Atomics.store(c, 1, 1);
  Atomics.notify(c, 0);
  parentPort.postMessage(String(e && e.stack || e));
}
parentPort.on('message', (calls) => {
  try {
    for (let i = 0; i < calls.length; i += 3) accumulate(calls[i], calls[i + 1], calls[i + 2]);
  } catch (e) {
    Atomics.store(c, 1, 1);
    parentPort.postMessage(String(e && e.stack || e));
  }
  Atomics.add(c, 0, 1);
  Atomics.notify(c, 0);
  parentPort.postMessage(0);
});
`;

/** How long a thread may take to start before its jobs are run on the calling thread instead. */
const START_MS = 5_000;
/** How long a running thread may go without finishing a job it has before it is given up as failed. */
const STALL_MS = 30_000;
/** How often the jobs' progress is looked at while some are posted (an unref'd timer). */
const WATCH_MS = 1_000;

export class FoldThread {
  private readonly worker: Worker;
  /** [0]: jobs finished; [1]: 1 once a job failed; [2]: STARTING, RUNNING or ABANDONED. */
  private readonly control: Int32Array;
  private posted = 0;
  /** Jobs whose `done` has run. */
  private settled = 0;
  /** The jobs not settled, in order. */
  private readonly jobs: Array<{ calls: Int32Array; done: () => void }> = [];
  private failure: string | null = null;
  /** Looks at the jobs' progress while some are posted (watch). */
  private watcher: NodeJS.Timeout | null = null;
  /** When the watcher last saw a job finish (or the first job posted). */
  private progressAt = 0;
  private progressSeen = 0;
  private readonly createdAt = performance.now();
  private closed = false;
  /** Exited or errored with every job finished: nothing lost, but no thread to post to. */
  private stopped = false;
  private exitSeen = false;

  /**
   * `runHere` runs a job's calls on this thread: the jobs of a thread that never started.
   * `test` (tests only): another source for the thread, how long to wait for it to start and
   * for a running one to finish a job.
   */
  constructor(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    private readonly runHere: (calls: Int32Array) => void,
    private readonly test: { source?: string; startMs?: number; stallMs?: number } = {},
  ) {
    const control = new SharedArrayBuffer(12);
    this.control = new Int32Array(control);
    // No flags of this process's (an --input-type=module would make the source above ESM).
    this.worker = new Worker(test.source ?? THREAD_SOURCE, { eval: true, workerData: { module, memory, control }, execArgv: [], stdout: false, stderr: false });
    this.worker.on('message', (m: unknown) => {
      if (typeof m === 'string') this.fail(`a fold failed in the thread: ${m}`);
      else this.settle();
    });
    this.worker.on('error', (e) => this.ended(`the fold thread failed: ${e.stack ?? String(e)}`));
    this.worker.on('exit', (code) => {
      this.exitSeen = true;
      this.ended(`the fold thread exited (code ${code})`);
    });
    // The sockets being served keep the process alive, not this thread (after the listeners,
    // which would otherwise ref it again).
    this.worker.unref();
  }

  /** False once the thread was given up on (it never started), stopped or failed: fold on the calling thread. */
  get usable(): boolean {
    return this.failure === null && !this.stopped && Atomics.load(this.control, 2) !== ABANDONED;
  }

  /** True once the thread has exited: nothing of it touches the memory any more. */
  get exited(): boolean {
    return this.exitSeen;
  }

  /** Why the thread failed (its sum is not to be trusted), or null. */
  get failed(): string | null {
    return this.failure;
  }

  /** Jobs posted and not finished yet. */
  get pending(): number {
    return this.posted - Atomics.load(this.control, 0);
  }

  /**
   * Runs the accumulate calls `calls` ([acc, src, n] triples, addresses in the shared memory)
   * in the thread after the jobs posted before; `done` runs on this thread once they have
   * (or once the thread failed: nothing more of the job is read then either).
   */
  post(calls: Int32Array, done: () => void): void {
    if (!this.usable) throw new Error(`the fold thread is not usable: ${this.failure ?? (this.stopped ? 'it stopped' : 'it never started')}`);
    this.posted++;
    this.jobs.push({ calls, done });
    this.worker.postMessage(calls);
    this.watch();
  }

  /**
   * Blocks until every job posted has finished and their `done`s have run. Throws when a job
   * failed or the thread failed or stopped finishing them (the sum is then not to be trusted).
   */
  drain(): void {
    let finished = Atomics.load(this.control, 0);
    let waited = 0;
    while (this.failure === null && finished < this.posted) {
      const starting = Atomics.load(this.control, 2) === STARTING;
      if (starting && performance.now() - this.createdAt >= (this.test.startMs ?? START_MS) && this.abandon()) return;
      const t0 = performance.now();
      if (starting) Atomics.wait(this.control, 2, STARTING, 100);
      else Atomics.wait(this.control, 0, finished, 1000);
      const now = Atomics.load(this.control, 0);
      waited = now === finished ? waited + (performance.now() - t0) : 0;
      finished = now;
      if (Atomics.load(this.control, 1) !== 0) this.fail('a fold failed in the thread');
      else if (!starting && waited >= (this.test.stallMs ?? STALL_MS)) this.fail(`the fold thread finished no job in ${Math.round(waited / 1000)} s (${this.posted - finished} waiting)`);
    }
    if (this.failure !== null) throw new Error(`folding in a thread failed: ${this.failure}`);
    this.settle();
  }

  /** Runs the `done` of every finished job, in order. */
  private settle(): void {
    const finished = Atomics.load(this.control, 0);
    while (this.settled < finished && this.jobs.length > 0) {
      this.settled++;
      this.jobs.shift()!.done();
    }
    if (this.settled >= this.posted) this.unwatch();
  }

  /**
   * Looks at the jobs every WATCH_MS while some are posted, so a thread that never starts or
   * stops finishing them is noticed with no drain called: the jobs' `done`s let go of the
   * slots they hold, which the server needs to read the updates that would close the round.
   */
  private watch(): void {
    if (this.watcher) return;
    this.progressAt = performance.now();
    this.progressSeen = Atomics.load(this.control, 0);
    this.watcher = setInterval(() => {
      const state = Atomics.load(this.control, 2);
      const now = performance.now();
      const finished = Atomics.load(this.control, 0);
      if (finished !== this.progressSeen) {
        this.progressSeen = finished;
        this.progressAt = now;
      }
      if (state === STARTING && now - this.createdAt >= (this.test.startMs ?? START_MS)) this.abandon();
      else if (state === RUNNING && finished < this.posted && now - this.progressAt >= (this.test.stallMs ?? STALL_MS)) {
        this.fail(`the fold thread finished no job in ${Math.round((now - this.progressAt) / 1000)} s (${this.posted - finished} waiting)`);
      }
    }, WATCH_MS);
    this.watcher.unref();
  }

  private unwatch(): void {
    if (this.watcher) clearInterval(this.watcher);
    this.watcher = null;
  }

  /** The thread stopped: one that had not started is given up on (its jobs run here), one that was running failed. */
  private ended(why: string): void {
    if (this.closed || this.abandon() || Atomics.load(this.control, 2) === ABANDONED) return;
    // Every job done, none failed: the sum is whole; only later folds go elsewhere.
    if (this.settled === this.posted && Atomics.load(this.control, 0) === this.posted && Atomics.load(this.control, 1) === 0) {
      this.stopped = true;
      this.unwatch();
      return;
    }
    this.fail(why);
  }

  /** Gives up on a thread that has not started: true when it was, and its jobs, untouched, ran here. */
  private abandon(): boolean {
    if (Atomics.compareExchange(this.control, 2, STARTING, ABANDONED) !== STARTING) return false;
    for (const j of this.jobs.splice(0)) {
      this.runHere(j.calls);
      j.done();
    }
    this.settled = this.posted;
    Atomics.store(this.control, 0, this.posted);
    this.unwatch();
    void this.worker.terminate();
    return true;
  }

  /**
   * A job failed, or the running thread stopped: what was summed is not to be trusted. The
   * thread is stopped and every job's `done` runs now (nothing more of them is read), so the
   * slots they hold are let go.
   */
  private fail(why: string): void {
    if (this.failure !== null) return;
    this.failure = why;
    this.unwatch();
    void this.worker.terminate();
    for (const j of this.jobs.splice(0)) j.done();
    this.settled = this.posted;
  }

  /** Stops the thread (jobs not finished are dropped; their `done`s never run). */
  close(): Promise<number> {
    this.closed = true;
    this.unwatch();
    return this.worker.terminate();
  }
}
