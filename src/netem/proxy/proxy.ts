import net from 'node:net';
import { sharedRead } from '../../runtime/readBuffer.js';
import type { FaultSpec } from '../spec.js';
import { Link, type LinkEffects, NO_EFFECTS } from './link.js';
import { ProxyEnd, type WorkerEnd, pipePair, refusedEnd } from './pipe.js';

/** Resets the worker's side: an RST (in process: the same error on the worker's end). */
function resetClient(client: net.Socket | ProxyEnd): void {
  client.resetAndDestroy();
}

interface Conn {
  client: net.Socket | ProxyEnd;
  upstream: net.Socket;
  up: Link;
  down: Link;
}

/**
 * A userspace proxy for one worker, between it and the server: no root, and a fault can land
 * on this worker alone, in the middle of a stream. Faults are small: each one changes the
 * effects of the links or the fate of connections (see STYLE.md, toxiproxy).
 *
 * The worker reaches it one of two ways:
 * - in process (`connect()` gives the worker's HTTP or gRPC client an in-memory socket whose
 *   other end the proxy reads and writes): fedsim's own workers. The same links and faults
 *   without a second TCP connection per worker, whose extra copies through the kernel cost a
 *   quarter of the throughput of a 1 MiB payload on 2 cores (docs/benchmarks.md, `proxy`);
 * - over loopback TCP (`listen()`, then the worker connects to `address`): tests, and the
 *   bench's raw figures.
 * Either way the proxy's connection to the server is a real TCP connection.
 */
export class WorkerProxy {
  private readonly server: net.Server;
  private readonly conns = new Set<Conn>();
  private readonly faults = new Map<string, FaultSpec>();
  private port = 0;
  private listening = false;
  /** Whether workers reach it through a listening socket (listen() was called). */
  private listens = false;

  constructor(private readonly upstream: { host: string; port: number }, private readonly random: () => number) {
    // Half-open: a FIN crosses the proxy as a FIN, and the other direction goes on.
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, (client) => this.accept(client));
  }

  /** Listens on loopback TCP (a free port the first time, the same one after a refuse). */
  async listen(): Promise<number> {
    this.listens = true;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: '127.0.0.1', port: this.port, backlog: 512 }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.listening = true;
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  get address(): { host: string; port: number } {
    return { host: '127.0.0.1', port: this.port };
  }

  /**
   * A new connection of the worker, in process: the worker's end of an in-memory socket. With
   * a refuse fault on it fails with ECONNREFUSED, as a connect to the TCP proxy would.
   */
  connect(reader?: (chunk: Buffer) => void): WorkerEnd {
    if (this.has('refuse')) return refusedEnd(reader);
    const { worker, proxy } = pipePair(reader);
    const conn = this.accept(proxy);
    if (conn) {
      worker.upstream = conn.upstream;
      worker.passUp = conn.up;
      conn.down.viewSink = worker;
    }
    return worker;
  }

  apply(f: FaultSpec): void {
    this.faults.set(f.id, f);
    if (f.kind === 'reset') for (const c of this.conns) this.reset(c);
    if (f.kind === 'refuse' && this.listens && this.listening) {
      // Nothing listens: new connections get ECONNREFUSED; open ones go on.
      this.listening = false;
      this.server.close();
    }
    this.kick();
  }

  async heal(id: string): Promise<void> {
    const f = this.faults.get(id);
    if (!f) return;
    this.faults.delete(id);
    if (f.kind === 'refuse' && this.listens && !this.has('refuse')) await this.listen();
    this.kick();
  }

  async close(): Promise<void> {
    for (const c of this.conns) {
      c.client.destroy();
      c.upstream.destroy();
    }
    if (this.listening) await new Promise<void>((r) => this.server.close(() => r()));
    this.listening = false;
  }

  private has(kind: FaultSpec['kind']): boolean {
    for (const f of this.faults.values()) if (f.kind === kind) return true;
    return false;
  }

  private effects(dir: 'up' | 'down'): LinkEffects {
    if (this.faults.size === 0) return NO_EFFECTS;
    const e: LinkEffects = { ...NO_EFFECTS };
    for (const f of this.faults.values()) {
      if (f.direction !== 'both' && f.direction !== dir) continue;
      switch (f.kind) {
        case 'blackhole':
          e.held = true;
          break;
        case 'delay':
          e.delayMs += f.delayMs;
          e.jitterMs += f.jitterMs;
          break;
        case 'loss':
          e.lossPercent = Math.max(e.lossPercent, f.lossPercent);
          break;
        case 'bandwidth':
          e.rateBytesPerSec = e.rateBytesPerSec ? Math.min(e.rateBytesPerSec, f.rateBytesPerSec) : f.rateBytesPerSec;
          break;
        default:
          break;
      }
    }
    return e;
  }

  private kick(): void {
    for (const c of this.conns) {
      c.up.kick();
      c.down.kick();
    }
  }

  private accept(client: net.Socket | ProxyEnd): Conn | null {
    if (this.has('reset')) {
      // In process, a turn later: the HTTP client listens for its socket's errors from the next tick on.
      if (client instanceof ProxyEnd) setImmediate(() => client.resetAndDestroy());
      else resetClient(client);
      return null;
    }
    // The upstream reads into the process's shared read buffer (readBuffer.ts), up to 256 KiB
    // at a time. An in-process worker's reader takes a read as a view while no fault is on
    // the link; otherwise the read is copied out whole (a fault may hold or delay it), one
    // exact copy per read, which costs less than node's fresh 64 KiB buffer per read.
    let down: Link | null = null;
    const upstream: net.Socket = net.connect({
      host: this.upstream.host,
      port: this.upstream.port,
      noDelay: true,
      allowHalfOpen: true,
      onread: sharedRead((c) => down?.offerView(c)),
    });
    const conn: Conn = {
      client,
      upstream,
      up: new Link(client, upstream, () => this.effects('up'), this.random),
      down: new Link(upstream, client, () => this.effects('down'), this.random),
    };
    down = conn.down;
    this.conns.add(conn);
    const close = () => {
      if (!this.conns.delete(conn)) return;
      conn.up.close();
      conn.down.close();
      client.destroy();
      upstream.destroy();
    };
    // An upstream that fails is a reset for a worker on TCP; in process the worker gets the
    // error itself (a refused connect is ECONNREFUSED), as it would without the proxy.
    upstream.on('error', (err) => {
      if (client instanceof ProxyEnd) client.failWorker(err);
      else if (!client.destroyed) resetClient(client);
      close();
    });
    client.on('error', () => {
      if (!upstream.destroyed) upstream.resetAndDestroy();
      close();
    });
    client.on('close', close);
    upstream.on('close', close);
    return conn;
  }

  private reset(c: Conn): void {
    c.up.close();
    c.down.close();
    if (!c.client.destroyed) resetClient(c.client);
    if (!c.upstream.destroyed) c.upstream.resetAndDestroy();
    this.conns.delete(c);
  }
}
