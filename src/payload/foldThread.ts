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

/** What the thread runs (eval'd, so the single binary needs no file for it). */
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { module, memory, control } = workerData;
const { accumulate } = new WebAssembly.Instance(module, { env: { memory } }).exports;
const c = new Int32Array(control);
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

/** How long drain waits for the thread to finish one more job before it gives up. */
const STALL_MS = 30_000;

export class FoldThread {
  private readonly worker: Worker;
  /** [0]: jobs finished; [1]: 1 once a job failed. */
  private readonly control: Int32Array;
  private posted = 0;
  /** Jobs whose `done` has run. */
  private settled = 0;
  private readonly dones: Array<() => void> = [];
  private failure: string | null = null;

  constructor(module: WebAssembly.Module, memory: WebAssembly.Memory) {
    const control = new SharedArrayBuffer(8);
    this.control = new Int32Array(control);
    this.worker = new Worker(THREAD_SOURCE, { eval: true, workerData: { module, memory, control } });
    this.worker.on('message', (m: unknown) => {
      if (typeof m === 'string') this.failure ??= m;
      this.settle();
    });
    this.worker.on('error', (e) => (this.failure ??= e.stack ?? String(e)));
    this.worker.on('exit', (code) => (this.failure ??= `the fold thread exited (code ${code})`));
    // The sockets being served keep the process alive, not this thread (after the listeners,
    // which would otherwise ref it again).
    this.worker.unref();
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
    this.dones.push(done);
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
      const t0 = performance.now();
      Atomics.wait(this.control, 0, finished, 1000);
      const now = Atomics.load(this.control, 0);
      waited = now === finished ? waited + (performance.now() - t0) : 0;
      finished = now;
      if (Atomics.load(this.control, 1) !== 0) break;
      if (waited >= STALL_MS) throw new Error(`the fold thread finished no job in ${STALL_MS / 1000} s (${this.posted - finished} waiting)`);
    }
    if (Atomics.load(this.control, 1) !== 0) throw new Error(`folding in a thread failed: ${this.failure ?? 'a job threw'}`);
    this.settle();
  }

  /** Runs the `done` of every finished job, in order. */
  private settle(): void {
    const finished = Atomics.load(this.control, 0);
    while (this.settled < finished) {
      this.settled++;
      this.dones.shift()!();
    }
  }

  /** Stops the thread (jobs not finished are dropped; their `done`s never run). */
  close(): Promise<number> {
    return this.worker.terminate();
  }
}
