import { seededRandom } from '../../payload/random.js';
import type { FaultBackend } from '../runner.js';
import type { FaultSpec } from '../spec.js';
import type { WorkerEnd } from './pipe.js';
import { WorkerProxy } from './proxy.js';

/**
 * The proxy backend: one userspace proxy per worker of the node, started before the workers.
 * HTTP workers reach theirs in process (`connectorOf`), gRPC workers over loopback TCP
 * (`addressOf`): see WorkerProxy.
 */
export class ProxyBackend implements FaultBackend {
  readonly name = 'proxy';
  private readonly proxies = new Map<number, WorkerProxy>();
  private inProcess = false;

  /**
   * `upstream` is where the proxies connect: the server, or per worker (a worker that an
   * iptables fault may touch too goes upstream through its virtual port).
   */
  static async start(
    workers: readonly number[],
    upstream: { host: string; port: number } | ((index: number) => { host: string; port: number }),
    seed: number,
    /** Workers connect in process (HTTP) rather than over loopback TCP (gRPC). */
    inProcess = false,
  ): Promise<ProxyBackend> {
    const b = new ProxyBackend();
    b.inProcess = inProcess;
    for (const w of workers) {
      const p = new WorkerProxy(typeof upstream === 'function' ? upstream(w) : upstream, seededRandom(seed * 31 + w));
      if (!inProcess) await p.listen();
      b.proxies.set(w, p);
    }
    return b;
  }

  /** Where worker `index` connects instead of the server (TCP proxies only). */
  addressOf(index: number): { host: string; port: number } | undefined {
    return this.inProcess ? undefined : this.proxies.get(index)?.address;
  }

  /** How worker `index` opens a connection through its proxy (in-process proxies only). */
  connectorOf(index: number): (() => WorkerEnd) | undefined {
    const p = this.inProcess ? this.proxies.get(index) : undefined;
    return p ? () => p.connect() : undefined;
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
