import type { OnnxTrainer } from './ort.js';

/**
 * onnxruntime (a large native library) is loaded only by nodes that use it. Kept as one
 * promise so a load that failed keeps failing with its own error: in the binary's bundle a
 * module whose first evaluation threw is not evaluated again (docs/binary.md).
 */
let ortLoad: Promise<typeof import('./ort.js')> | undefined;
const ortModule = () => (ortLoad ??= import('./ort.js'));

/**
 * The onnxruntime side of one worker node: every worker's training phase and model checks
 * go through here, one session run at a time with `threads` intra-op threads, so a node
 * with hundreds of workers uses `threads` cores for onnxruntime, not hundreds of threads.
 * Sessions are shared per model version (all workers hold the same bytes, checked by
 * SHA-256), so a version is loaded once per node.
 */
export class OnnxNodeRunner {
  private trainer: { sha: string; ready: Promise<OnnxTrainer> } | null = null;
  private readonly checked = new Map<string, Promise<void>>();
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly threads = 1) {}

  /** Runs `op` after everything queued before it: one onnxruntime job at a time per node. */
  private queue<T>(op: () => Promise<T>): Promise<T> {
    const p = this.tail.then(op);
    this.tail = p.catch(() => undefined);
    return p;
  }

  /** `steps` forward passes of model `sha` (the worker's training phase). */
  train(body: Buffer, sha: string, steps: number): Promise<void> {
    return this.queue(async () => {
      if (this.trainer?.sha !== sha) {
        const old = this.trainer;
        this.trainer = { sha, ready: ortModule().then((m) => m.OnnxTrainer.load(body, this.threads)) };
        if (old) void old.ready.then((t) => t.release()).catch(() => undefined);
      }
      const t = await this.trainer.ready;
      await t.steps(steps);
    });
  }

  /** Loads model `sha` and runs it once: rejects when it does not load or gives a wrong or non-finite output. */
  validate(body: Buffer, sha: string): Promise<void> {
    let p = this.checked.get(sha);
    if (!p) {
      p = this.queue(async () => {
        const r = await (await ortModule()).runOnce(body, { threads: this.threads });
        if (r.dims.join('x') !== '1x1000' || !r.finite) throw new Error(`the model gives output ${r.dims.join('x')}${r.finite ? '' : ' with non-finite values'}, not a finite 1x1000`);
      });
      this.checked.set(sha, p);
    }
    return p;
  }

  async close(): Promise<void> {
    await this.tail;
    if (this.trainer) await (await this.trainer.ready.catch(() => null))?.release();
    this.trainer = null;
  }
}
