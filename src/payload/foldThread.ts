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

/** How long drain waits for the thread to start before it runs the jobs itself. */
const START_MS = 5_000;
/** How long drain waits for a running thread to finish one more job before it gives up. */
const STALL_MS = 30_000;

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

  /**
   * `runHere` runs a job's calls on this thread: the jobs of a thread that never started.
   * `test` (tests only): another source for the thread, and how long to wait for it to start.
   */
  constructor(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    private readonly runHere: (calls: Int32Array) => void,
    private readonly test: { source?: string; startMs?: number } = {},
  ) {
    const control = new SharedArrayBuffer(12);
    this.control = new Int32Array(control);
    // No flags of this process's (an --input-type=module would make the source above ESM).
    this.worker = new Worker(test.source ?? THREAD_SOURCE, { eval: true, workerData: { module, memory, control }, execArgv: [], stdout: false, stderr: false });
    this.worker.on('message', (m: unknown) => {
      if (typeof m === 'string') this.failure ??= m;
      this.settle();
    });
    this.worker.on('error', (e) => (this.failure ??= e.stack ?? String(e)));
    this.worker.on('exit', (code) => {
      if (Atomics.load(this.control, 2) !== ABANDONED) this.failure ??= `the fold thread exited (code ${code})`;
    });
    // The sockets being served keep the process alive, not this thread (after the listeners,
    // which would otherwise ref it again).
    this.worker.unref();
  }

  /** False once the thread was given up on (it never started): fold on the calling thread. */
  get usable(): boolean {
    return this.failure === null && Atomics.load(this.control, 2) !== ABANDONED;
  }

  /** Jobs posted and not finished yet. */
  get pending(): number {
    return this.posted - Atomics.load(this.control, 0);
  }

  /**
   * Runs the accumulate calls `calls` ([acc, src, n] triples, addresses in the shared memory)
   * in the thread after the jobs posted before; `done` runs on this thread once they have.
   */
  post(calls: Int32Array, done: () => void): void {
    if (this.failure) throw new Error(`folding in a thread failed: ${this.failure}`);
    this.posted++;
    this.jobs.push({ calls, done });
    this.worker.postMessage(calls);
  }

  /**
   * Blocks until every job posted has finished and their `done`s have run. Throws when a job
   * failed (the sum is then not to be trusted) or the thread stopped finishing them.
   */
  drain(): void {
    let finished = Atomics.load(this.control, 0);
    let waited = 0;
    while (finished < this.posted) {
      const starting = Atomics.load(this.control, 2) === STARTING;
      if (starting && waited >= (this.test.startMs ?? START_MS) && Atomics.compareExchange(this.control, 2, STARTING, ABANDONED) === STARTING) {
        // It never started (and now never will): its jobs, untouched, run here.
        for (const j of this.jobs.splice(0)) {
          this.runHere(j.calls);
          j.done();
        }
        this.settled = this.posted;
        Atomics.store(this.control, 0, this.posted);
        void this.worker.terminate();
        return;
      }
      const t0 = performance.now();
      if (starting) Atomics.wait(this.control, 2, STARTING, 100);
      else Atomics.wait(this.control, 0, finished, 1000);
      const now = Atomics.load(this.control, 0);
      waited = now === finished ? waited + (performance.now() - t0) : 0;
      finished = now;
      if (Atomics.load(this.control, 1) !== 0) break;
      if (!starting && waited >= STALL_MS) throw new Error(`the fold thread finished no job in ${STALL_MS / 1000} s (${this.posted - finished} waiting)`);
    }
    if (Atomics.load(this.control, 1) !== 0) throw new Error(`folding in a thread failed: ${this.failure ?? 'a job threw'}`);
    this.settle();
  }

  /** Runs the `done` of every finished job, in order. */
  private settle(): void {
    const finished = Atomics.load(this.control, 0);
    while (this.settled < finished) {
      this.settled++;
      this.jobs.shift()!.done();
    }
  }

  /** Stops the thread (jobs not finished are dropped; their `done`s never run). */
  close(): Promise<number> {
    return this.worker.terminate();
  }
}
