/**
 * Memory and CPU for each kind of node, sized from the scenario (docs/multi-host.md,
 * "Resources", has the same formula). The allowances come from the figures of
 * docs/benchmarks.md: a worker node holds, per worker, its connection, the model it
 * received and the update it builds (and their transfer buffers); the server holds, per
 * worker, a connection (and over gRPC a model download in flight), and for the run the
 * published model, the template, the float64 sums of the updates (2 bytes per model byte)
 * and 32 MiB of update slots, 64 MiB while uploads stall (in the 160 MiB base). (A worker
 * node no longer holds its workers' updates, which are made as they are sent; the allowance
 * still counts one per worker, a margin.)
 */
import { type SinglePayload, payloadOf } from '../config/payload.js';
import type { Scenario } from '../config/settings.js';

const KiB = 1024;
const MiB = 1024 * 1024;

/** Bytes of one payload on the wire: string payloads are short texts; mobilenetv2 is about 14 MB. */
export function payloadBytes(p: SinglePayload): number {
  switch (p.kind) {
    case 'string':
      return KiB;
    case 'bytes':
      return p.size;
    case 'mobilenetv2':
      return 14_000_000;
  }
}

export interface NodeResources {
  /** Memory request, MiB; the limit is twice this. */
  readonly memoryMiB: number;
  readonly memoryLimitMiB: number;
  /** CPU request in cores (no CPU limit: a throttled node would show up as network latency). */
  readonly cpu: string;
}

export interface RunResources {
  readonly coordinator: NodeResources;
  readonly server: NodeResources;
  /** One worker node (one chunk). */
  readonly worker: NodeResources;
}

function sized(bytes: number, cpu: string): NodeResources {
  const memoryMiB = Math.ceil(bytes / MiB);
  return { memoryMiB, memoryLimitMiB: 2 * memoryMiB, cpu };
}

/**
 * G = bytes of the global model, U = of an update, w = workers of the largest chunk,
 * W = all workers, k = worker nodes:
 *
 * - worker node: 128 MiB + w × (conn + m × (G + U)), conn = 64 KiB and m = 2 over HTTP,
 *   192 KiB and 3 over gRPC; + w × 64 KiB of proxy buffers when the scenario has faults;
 *   + 256 MiB for onnxruntime with `train: onnx:N` or `validateModel: on`;
 * - server: 160 MiB + W × conn + 2 × (G + U), conn = 16 KiB over HTTP; over gRPC conn =
 *   64 KiB and each worker's model download holds up to min(G, 1 MiB) more;
 * - coordinator: 192 MiB + k × 2 MiB.
 */
export function runResources(sc: Scenario): RunResources {
  const p = payloadOf(sc);
  const G = payloadBytes(p.kind === 'pair' ? p.global : p);
  const U = payloadBytes(p.kind === 'pair' ? p.update : p);
  const w = Math.ceil(sc.workers / sc.nodes);
  const grpc = sc.transport === 'grpc';
  const onnx = sc.train !== 'sleep' || sc.validateModel === 'on';
  const worker =
    128 * MiB + w * ((grpc ? 192 : 64) * KiB + (grpc ? 3 : 2) * (G + U)) + (sc.faults.length > 0 ? w * 64 * KiB : 0) + (onnx ? 256 * MiB : 0);
  const server = 160 * MiB + sc.workers * (grpc ? 64 * KiB + Math.min(G, MiB) : 16 * KiB) + 2 * (G + U);
  const coordinator = 192 * MiB + sc.nodes * 2 * MiB;
  return { coordinator: sized(coordinator, '250m'), server: sized(server, '1'), worker: sized(worker, '1') };
}
