import { seededRandom } from '../../payload/random.js';
import type { FaultBackend } from '../runner.js';
import type { FaultSpec } from '../spec.js';
import type { OpenConnection } from '../../runtime/readBuffer.js';
import { WorkerProxy } from './proxy.js';

/** How a worker reaches its in-process proxy: this opens the worker's connection. */
export interface ProxyRoute {
  readonly connect: OpenConnection;
}

/**
 * How workers reach their proxies: `in-process` (fedsim's own workers, HTTP and gRPC) or
 * `tcp` (loopback; tests and the bench's raw figures). See WorkerProxy.
 */
export type ProxyMode = 'in-process' | 'tcp';

/** The proxy backend: one userspace proxy per worker of the node, started before the workers. */
export class ProxyBackend implements FaultBackend {
  readonly name = 'proxy';
  private readonly proxies = new Map<number, WorkerProxy>();
  private mode: ProxyMode = 'tcp';

  /**
   * `upstream` is where the proxies connect: the server, or per worker (a worker that an
   * iptables fault may touch too goes upstream through its virtual port).
   */
  static async start(
    workers: readonly number[],
    upstream: { host: string; port: number } | ((index: number) => { host: string; port: number }),
    seed: number,
    mode: ProxyMode = 'tcp',
  ): Promise<ProxyBackend> {
    const b = new ProxyBackend();
    b.mode = mode;
    try {
      for (const w of workers) {
        const p = new WorkerProxy(typeof upstream === 'function' ? upstream(w) : upstream, seededRandom(seed * 31 + w));
        b.proxies.set(w, p);
        if (mode === 'tcp') await p.listen();
      }
    } catch (e) {
      await b.close();
      throw e;
    }
    return b;
  }

  /** Where worker `index` connects instead of the server (TCP proxies only). */
  addressOf(index: number): { host: string; port: number } | undefined {
    return this.mode === 'tcp' ? this.proxies.get(index)?.address : undefined;
  }

  /** How worker `index` reaches its proxy (in-process proxies). */
  routeOf(index: number): ProxyRoute | undefined {
    const p = this.proxies.get(index);
    if (!p || this.mode === 'tcp') return undefined;
    return { connect: (reader) => p.connect(reader) };
  }

  apply(f: FaultSpec, instanceId: string, workers: readonly number[]): void {
    for (const w of workers) this.proxies.get(w)?.apply({ ...f, id: instanceId });
  }

  async heal(_f: FaultSpec, instanceId: string, workers: readonly number[]): Promise<void> {
    await Promise.all(workers.map((w) => this.proxies.get(w)?.heal(instanceId)));
  }

  async close(): Promise<void> {
    await Promise.all([...this.proxies.values()].map((p) => p.close()));
  }
}
