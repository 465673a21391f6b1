import type { OpenConnection } from '../runtime/readBuffer.js';
import type { UpdateBody } from '../sim/updateBody.js';
import type { PulledModel, UpdateOutcome, WorkerTransport } from '../sim/ports.js';
import { TransportError } from '../sim/ports.js';
import type { WorkerNodeStats } from '../sim/workerStats.js';
import { HttpConnection, type HttpHeaders } from './httpWire.js';
import { BodyBuffer, H, type SharedBody } from './headers.js';
import { EMPTY_SHA256, type RequestSigner, registrationId } from './auth.js';

export interface HttpClientOptions {
  readonly host: string;
  readonly port: number;
  /** No answer for this long ends a request (must exceed the server's poll timeout). */
  readonly requestTimeoutMs: number;
  /** TCP keepalive idle time of the worker's connection (a dead peer under a long-poll is noticed). */
  readonly keepaliveMs?: number;
  /** Aborting ends the request in flight at once (the node is stopping). */
  readonly signal?: AbortSignal;
  /** Safe mode: signs every request with this worker's key. */
  readonly signer?: RequestSigner;
  /**
   * A copy of the model with this SHA-256 and size that the node already holds and has
   * checked, or that the node's pulls are receiving now: a received body is compared with it
   * (and fills it) in place instead of being copied (BodyBuffer).
   */
  readonly heldModel?: (sha256: string, bytes: number) => Buffer | SharedBody | undefined;
  /**
   * Opens the worker's connection instead of a TCP socket of its own (the in-process fault
   * proxy, src/netem/proxy/pipe.ts).
   */
  readonly connect?: OpenConnection;
}

interface Reply {
  status: number;
  headers: HttpHeaders;
  body: Buffer;
}

/**
 * One worker's long-poll HTTP client. Each worker keeps its own keep-alive connection,
 * as a real worker process would, so a fault on one worker's link touches that worker alone.
 * The connection is fedsim's lean HTTP/1.1 client (httpWire.ts), not node:http's.
 */
export class HttpWorkerTransport implements WorkerTransport {
  private readonly conn: HttpConnection;
  private readonly target: string;

  constructor(private readonly opts: HttpClientOptions, private readonly stats: WorkerNodeStats) {
    this.target = `http://${opts.host}:${opts.port}`;
    this.conn = new HttpConnection({ host: opts.host, port: opts.port, target: this.target, timeoutMs: opts.requestTimeoutMs, keepaliveMs: opts.keepaliveMs, connect: opts.connect });
    // One listener per worker, not one per request: the chunk's workers share one signal, and
    // adding to an EventTarget with hundreds of listeners walks them all (a tenth of these
    // nodes' CPU at 250 workers).
    opts.signal?.addEventListener('abort', () => this.conn.close(new TransportError('stopped', 'stopped', false)), { once: true });
  }

  async register(workerIndex: number): Promise<{ workerId: string; version: number }> {
    const body = Buffer.from(JSON.stringify({ workerIndex }));
    this.stats.sent('register', body.length);
    const r = await this.request('POST', '/v1/register', body, undefined, { workerId: registrationId(workerIndex), round: 0 });
    this.stats.received('register', r.body.length);
    this.expect(r, [200], 'register');
    const j = JSON.parse(r.body.toString('utf8')) as { workerId: string; version: number; exchangeKey?: unknown };
    this.opts.signer?.registered(typeof j.exchangeKey === 'string' ? j.exchangeKey : '');
    return { workerId: j.workerId, version: j.version };
  }

  async pushUpdate(workerId: string, round: number, body: UpdateBody): Promise<{ outcome: UpdateOutcome; reason?: string }> {
    this.stats.sent('update', body.length);
    const r = await this.request('POST', `/v1/update?round=${round}&worker=${encodeURIComponent(workerId)}`, body, undefined, { workerId, round });
    this.stats.received('ack', r.body.length);
    this.expect(r, [200, 202, 409], 'update');
    return JSON.parse(r.body.toString('utf8')) as { outcome: UpdateOutcome; reason?: string };
  }

  async pullModel(workerId: string, after: number, onHeaders: () => void): Promise<PulledModel | null> {
    this.stats.sent('pull', 0);
    const r = await this.request('GET', `/v1/model?after=${after}&worker=${encodeURIComponent(workerId)}`, null, onHeaders, { workerId, round: after });
    if (r.status === 204) {
      this.stats.received('empty', 0);
      return null;
    }
    this.expect(r, [200], 'model');
    this.stats.received('model', r.body.length);
    return {
      version: Number(r.headers[H.version]),
      sha256: String(r.headers[H.sha256] ?? ''),
      publishedAtMs: Number(r.headers[H.publishedAt]),
      body: r.body,
    };
  }

  close(): void {
    this.conn.close();
  }

  private expect(r: Reply, ok: number[], what: string): void {
    if (ok.includes(r.status)) return;
    const text = r.body.toString('utf8').slice(0, 200);
    const retryable = r.status >= 500 || r.status === 429;
    // Refused by safe mode: the same request would be refused again.
    if (r.status === 401) throw new TransportError('unauthenticated', `${this.target} ${what}: HTTP 401 ${text}`, false);
    throw new TransportError(`http-${r.status}`, `${this.target} ${what}: HTTP ${r.status} ${text}`, retryable);
  }

  private async request(method: string, path: string, body: UpdateBody | null, onHeaders?: () => void, who?: { workerId: string; round: number }): Promise<Reply> {
    const signal = this.opts.signal;
    if (signal?.aborted) throw new TransportError('stopped', 'stopped', false);
    const headers: Record<string, string> = body ? { 'content-type': 'application/octet-stream' } : {};
    if (this.opts.signer && who) {
      const bodySha256 = body ? this.opts.signer.bodySha256(body) : EMPTY_SHA256;
      const q = path.indexOf('?');
      const signed = this.opts.signer.headers({ method, path: q < 0 ? path : path.slice(0, q), workerId: who.workerId, round: who.round, bodySha256 }, headers);
      if (signed !== headers) Object.assign(headers, signed);
    }
    const r = await this.conn.request(method, path, headers, body, (status, h) => {
      if (status === 200) onHeaders?.();
      // With a declared length the body goes into one buffer as it arrives (a 14 MB model is not held twice).
      const length = Number(h['content-length'] ?? -1);
      const sha = status === 200 ? h[H.sha256] : undefined;
      return new BodyBuffer(length, sha !== undefined ? this.opts.heldModel?.(sha, length) : undefined);
    });
    return { status: r.status, headers: r.headers, body: r.sink.bytes() };
  }
}
