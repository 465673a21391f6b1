import { seededRandom } from '../../payload/random.js';
import type { FaultBackend } from '../runner.js';
import { alive } from '../journal.js';
import type { FaultSpec } from '../spec.js';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { WorkerProxy } from './proxy.js';

/** How a worker reaches its proxy: in process (HTTP) or over a Unix socket (gRPC). */
export type ProxyRoute = { readonly connect: () => Duplex } | { readonly socketPath: string };

/**
 * How workers reach their proxies: `in-process` (HTTP workers), `unix` (gRPC workers: a Unix
 * socket each, in a private temp directory) or `tcp` (loopback; tests and the bench's raw
 * figures). See WorkerProxy.
 */
export type ProxyMode = 'in-process' | 'unix' | 'tcp';

const SOCKET_DIR_PREFIX = 'fedsim-proxy-';

/** Socket directories of worker nodes that are gone (killed before they could remove theirs). */
function removeStaleSocketDirs(): void {
  let names: string[];
  try {
    names = readdirSync(tmpdir());
  } catch {
    return;
  }
  const owned = new RegExp(`^${SOCKET_DIR_PREFIX}(\\d+)-`);
  for (const name of names) {
    const m = owned.exec(name);
    if (m && !alive(Number(m[1]))) rmSync(path.join(tmpdir(), name), { recursive: true, force: true });
  }
}

/** The proxy backend: one userspace proxy per worker of the node, started before the workers. */
export class ProxyBackend implements FaultBackend {
  readonly name = 'proxy';
  private readonly proxies = new Map<number, WorkerProxy>();
  private mode: ProxyMode = 'tcp';
  private dir = '';

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
    // Owner-only, so no other user can connect to (or replace) a worker's socket.
    if (mode === 'unix') {
      removeStaleSocketDirs();
      b.dir = mkdtempSync(path.join(tmpdir(), `${SOCKET_DIR_PREFIX}${process.pid}-`));
    }
    try {
      for (const w of workers) {
        const p = new WorkerProxy(typeof upstream === 'function' ? upstream(w) : upstream, seededRandom(seed * 31 + w));
        b.proxies.set(w, p);
        if (mode === 'tcp') await p.listen();
        else if (mode === 'unix') await p.listen(path.join(b.dir, `w${w}.sock`));
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

  /** How worker `index` reaches its proxy (in-process and Unix-socket proxies). */
  routeOf(index: number): ProxyRoute | undefined {
    const p = this.proxies.get(index);
    if (!p || this.mode === 'tcp') return undefined;
    return this.mode === 'unix' ? { socketPath: p.socketPath } : { connect: () => p.connect() };
  }

  apply(f: FaultSpec, instanceId: string, workers: readonly number[]): void {
    for (const w of workers) this.proxies.get(w)?.apply({ ...f, id: instanceId });
  }

  async heal(_f: FaultSpec, instanceId: string, workers: readonly number[]): Promise<void> {
    await Promise.all(workers.map((w) => this.proxies.get(w)?.heal(instanceId)));
  }

  async close(): Promise<void> {
    await Promise.all([...this.proxies.values()].map((p) => p.close()));
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
