/**
 * Running fedsim's ONNX payloads in onnxruntime (CPU): one forward pass as a smoke check,
 * and a trainer whose "training phase" is n forward passes — the compute a worker spends
 * between receiving the global model and sending its update.
 */
import * as ort from 'onnxruntime-node';
import { seededRandom } from '../random.js';
import { INPUT_SHAPE } from './model.js';

/** Seed of the synthetic input image, fixed so runs are comparable. */
const INPUT_SEED = 12345;

/** Sequential execution with a bounded intra-op pool, so many simulated workers on one machine don't oversubscribe it. */
function sessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential' };
}

/** A seeded uniform [0, 1) input of `shape`. */
function randomInput(shape: readonly number[], seed = INPUT_SEED): ort.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const rnd = seededRandom(seed);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rnd();
  return new ort.Tensor('float32', data, shape);
}

function allFinite(data: ort.Tensor['data']): boolean {
  if (!(data instanceof Float32Array)) return false;
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return false;
  return true;
}

/**
 * Loads `bytes`, runs one forward pass on a random input and releases the session.
 * `ms` is the forward pass only (session creation excluded).
 */
export async function runOnce(bytes: Buffer, opts: { threads?: number } = {}): Promise<{ dims: readonly number[]; finite: boolean; ms: number }> {
  const session = await ort.InferenceSession.create(bytes, sessionOptions(opts.threads ?? 1));
  try {
    const feeds = { [session.inputNames[0]]: randomInput(INPUT_SHAPE) };
    const start = performance.now();
    const results = await session.run(feeds);
    const ms = performance.now() - start;
    const output = results[session.outputNames[0]];
    return { dims: output.dims, finite: allFinite(output.data), ms };
  } finally {
    await session.release();
  }
}

/** A loaded model a worker "trains" by running forward passes on a fixed random batch. */
export class OnnxTrainer {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly feeds: Record<string, ort.Tensor>,
  ) {}

  static async load(bytes: Buffer, threads = 1): Promise<OnnxTrainer> {
    const session = await ort.InferenceSession.create(bytes, sessionOptions(threads));
    return new OnnxTrainer(session, { [session.inputNames[0]]: randomInput(INPUT_SHAPE) });
  }

  /** Runs `n` forward passes one after another. */
  async steps(n: number): Promise<void> {
    for (let i = 0; i < n; i++) await this.session.run(this.feeds);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
