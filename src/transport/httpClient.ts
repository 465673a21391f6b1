import { createHash } from 'node:crypto';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { PulledModel, UpdateOutcome, WorkerTransport } from '../sim/ports.js';
import { TransportError } from '../sim/ports.js';
import type { WorkerNodeStats } from '../sim/workerStats.js';
import { fromSocketError } from './errors.js';
import { BodyBuffer, H } from './headers.js';
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
   * checked: a received body is compared with it in place instead of copied (BodyBuffer).
   */
  readonly heldModel?: (sha256: string, bytes: number) => Buffer | undefined;
  /**
   * Opens the worker's connection instead of a TCP socket of its own (the in-process fault
   * proxy, src/netem/proxy/pipe.ts).
   */
  readonly connect?: () => Duplex;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * One worker's long-poll HTTP client. Each worker keeps its own keep-alive connection,
 * as a real worker process would, so a fault on one worker's link touches that worker alone.
 */
export class HttpWorkerTransport implements WorkerTransport {
  private readonly agent: http.Agent;
  private readonly target: string;

  constructor(private readonly opts: HttpClientOptions, private readonly stats: WorkerNodeStats) {
    this.agent = new http.Agent({ keepAlive: true, keepAliveMsecs: opts.keepaliveMs ?? 10_000, maxSockets: 1 });
    this.target = `http://${opts.host}:${opts.port}`;
    const connect = opts.connect;
    if (connect) (this.agent as unknown as { createConnection: () => Duplex }).createConnection = () => connect();
    // One listener per worker, not one per request: the chunk's workers share one signal, and
    // adding to an EventTarget with hundreds of listeners walks them all (a tenth of these
    // nodes' CPU at 250 workers).
    opts.signal?.addEventListener('abort', () => {
      for (const req of this.inFlight) req.destroy(new TransportError('stopped', 'stopped', false));
    }, { once: true });
  }

  private readonly inFlight = new Set<http.ClientRequest>();

  async register(workerIndex: number): Promise<{ workerId: string; version: number }> {
    const body = Buffer.from(JSON.stringify({ workerIndex }));
    this.stats.sent('register', body.length);
    const r = await this.request('POST', '/v1/register', body, undefined, { workerId: registrationId(workerIndex), round: 0 });
    this.stats.received('register', r.body.length);
    this.expect(r, [200], 'register');
    const j = JSON.parse(r.body.toString('utf8')) as { workerId: string; version: number };
    return j;
  }

  async pushUpdate(workerId: string, round: number, body: Buffer): Promise<{ outcome: UpdateOutcome; reason?: string }> {
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
    this.agent.destroy();
  }

  private expect(r: Reply, ok: number[], what: string): void {
    if (ok.includes(r.status)) return;
    const text = r.body.toString('utf8').slice(0, 200);
    const retryable = r.status >= 500 || r.status === 429;
    // Refused by safe mode: the same request would be refused again.
    if (r.status === 401) throw new TransportError('unauthenticated', `${this.target} ${what}: HTTP 401 ${text}`, false);
    throw new TransportError(`http-${r.status}`, `${this.target} ${what}: HTTP ${r.status} ${text}`, retryable);
  }

  private request(method: string, path: string, body: Buffer | null, onHeaders?: () => void, who?: { workerId: string; round: number }): Promise<Reply> {
    const signal = this.opts.signal;
    if (signal?.aborted) return Promise.reject(new TransportError('stopped', 'stopped', false));
    const headers: Record<string, string | number> = body ? { 'content-type': 'application/octet-stream', 'content-length': body.length } : {};
    if (this.opts.signer && who) {
      const bodySha256 = body ? createHash('sha256').update(body).digest('hex') : EMPTY_SHA256;
      Object.assign(headers, this.opts.signer({ method, path: path.split('?')[0], workerId: who.workerId, round: who.round, bodySha256 }));
    }
    return new Promise<Reply>((resolve, reject) => {
      const req = http.request(
        {
          host: this.opts.host,
          port: this.opts.port,
          method,
          path,
          agent: this.agent,
          headers,
        },
        (res) => {
          if (res.statusCode === 200) onHeaders?.();
          // With a declared length the body goes into one buffer as it arrives (a 14 MB model is not held twice).
          const length = Number(res.headers['content-length'] ?? -1);
          const sha = res.statusCode === 200 ? res.headers[H.sha256] : undefined;
          const body = new BodyBuffer(length, typeof sha === 'string' ? this.opts.heldModel?.(sha, length) : undefined);
          res.on('data', (c: Buffer) => body.push(c));
          res.on('end', () => {
            const expected = res.headers['content-length'];
            if (expected !== undefined && Number(expected) !== body.length) {
              reject(new TransportError('truncated', `${this.target}${path}: body ended after ${body.length} of ${expected} bytes`, true));
              return;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: body.bytes() });
          });
          res.on('error', (e) => reject(fromSocketError(e, this.target)));
          res.on('aborted', () => reject(new TransportError('reset', `${this.target}${path}: response aborted`, true)));
        },
      );
      req.setTimeout(this.opts.requestTimeoutMs, () => {
        req.destroy(new TransportError('timeout', `${this.target}${path}: no answer within ${this.opts.requestTimeoutMs} ms`, true));
      });
      req.on('error', (e) => reject(fromSocketError(e, this.target)));
      this.inFlight.add(req);
      req.on('close', () => this.inFlight.delete(req));
      if (body) req.end(body);
      else req.end();
    });
  }
}
