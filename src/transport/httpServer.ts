import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { UpdateSlot } from '../sim/updateSlots.js';
import type { RequestFacts } from '../sim/ports.js';
import { AUTH, registrationId } from './auth.js';
import type { FlServer } from '../sim/flServer.js';
import { H } from './headers.js';

export interface HttpServerOptions {
  readonly host: string;
  readonly port: number;
  /** Largest update body accepted. */
  readonly maxBodyBytes: number;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): number {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
  return Buffer.byteLength(text);
}

class TooLarge extends Error {}

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new TooLarge(`body of ${declared} bytes is over the limit of ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > limit) {
        reject(new TooLarge(`body over the limit of ${limit} bytes`));
        req.pause();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, n)));
    req.on('error', reject);
    req.on('aborted', () => reject(new Error('request aborted')));
    req.on('close', () => {
      if (!req.readableEnded) reject(new Error('request aborted'));
    });
  });
}

/** Reads an update body into its slot (never whole per worker beyond the slots). */
function readInto(req: http.IncomingMessage, slot: UpdateSlot, limit: number, hash: { update(chunk: Buffer): void } | null): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new TooLarge(`body of ${declared} bytes is over the limit of ${limit} bytes`));
      return;
    }
    // A client that went away while its update waited for the slot: nothing more will come
    // (and no 'close' either, it is past), so the slot is given back now, not held for good.
    if (req.destroyed && !req.readableEnded) {
      reject(new Error('request aborted'));
      return;
    }
    if (declared > 0) slot.reserve(declared);
    req.on('data', (c: Buffer) => {
      if (slot.length + c.length > limit) {
        reject(new TooLarge(`body over the limit of ${limit} bytes`));
        req.pause();
        return;
      }
      slot.write(c);
      // Safe mode: the body's hash is computed as it streams in, not over a second copy.
      hash?.update(c);
    });
    // A body that ends short of its declared length (the client closed its side in the
    // middle) is not an update: nothing of it is folded.
    req.on('end', () => (declared > 0 && slot.length !== declared ? reject(new Error(`request body ended after ${slot.length} of ${declared} bytes`)) : resolve(slot.bytes())));
    req.on('error', reject);
    req.on('aborted', () => reject(new Error('request aborted')));
    req.on('close', () => {
      if (!req.readableEnded) reject(new Error('request aborted'));
    });
  });
}

/**
 * The long-poll HTTP face of the FL server:
 * POST /v1/register, GET /v1/model?after=V, POST /v1/update?round=R, GET /v1/status.
 */
export class HttpFlServer {
  private server: http.Server;

  constructor(private readonly fl: FlServer, private readonly opts: HttpServerOptions, private readonly status: () => unknown) {
    this.server = http.createServer({ keepAliveTimeout: 120_000, requestTimeout: 0, headersTimeout: 60_000 }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (err instanceof TooLarge) {
          this.fl.error('too-large');
          // Answer, then drop the connection: the rest of the body is not read.
          res.setHeader('connection', 'close');
          if (!res.headersSent) sendJson(res, 413, { error: err.message });
          res.on('finish', () => req.destroy());
          return;
        }
        this.fl.error('http-internal');
        if (!res.headersSent) sendJson(res, 500, { error: String(err) });
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 120_000;
    this.server.maxHeadersCount = 100;
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.opts.host, port: this.opts.port, backlog: 4096 }, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const route = `${req.method} ${url.pathname}`;
    const fl = this.fl;
    const header = (name: string) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    /** Safe mode: checks the signed headers; a refused request is answered 401 and its body not read. */
    const authorize = (facts: RequestFacts): { ok: true; publicKey: string; exchangeKey?: string } | null => {
      if (!fl.auth) return { ok: true, publicKey: '' };
      const r = fl.authorize(facts, header);
      if (r.ok) return r;
      req.resume();
      sendJson(res, 401, { error: `safe mode: request refused: ${r.reason}`, reason: r.reason });
      return null;
    };
    const claimed = header(AUTH.bodySha256) ?? '';
    switch (route) {
      case 'POST /v1/register': {
        // A registration is a few bytes: read it first, so the signature can be checked against the index it asks for.
        const body = await readBody(req, 4096);
        fl.in('register', body.length);
        let index: unknown;
        try {
          index = (JSON.parse(body.toString('utf8')) as { workerIndex?: unknown }).workerIndex;
        } catch {
          index = undefined;
        }
        const facts = { method: 'POST', path: url.pathname, workerId: typeof index === 'number' ? registrationId(index) : '', round: 0, bodySha256: claimed };
        const auth = authorize(facts);
        if (!auth) return;
        if (fl.auth && fl.auth.bodySha256(body) !== claimed) {
          fl.refused('body-hash', auth.publicKey, facts);
          sendJson(res, 401, { error: 'safe mode: request refused: body-hash', reason: 'body-hash' });
          return;
        }
        if (typeof index !== 'number' || !Number.isInteger(index) || index < 0) {
          fl.error('bad-request');
          sendJson(res, 400, { error: 'body must be JSON {"workerIndex": N} with N a whole number >= 0' });
          return;
        }
        const reg = fl.engine.register(index);
        const exchangeKey = fl.auth?.bind(reg.workerId, auth.publicKey, auth.exchangeKey);
        fl.out('register', sendJson(res, 200, exchangeKey ? { ...reg, exchangeKey } : reg));
        return;
      }
      case 'POST /v1/update': {
        const round = Number(url.searchParams.get('round'));
        const worker = url.searchParams.get('worker') ?? '';
        if (!Number.isInteger(round) || round < 1 || !worker) {
          req.resume();
          fl.error('bad-request');
          sendJson(res, 400, { error: 'query must carry round=R (R >= 1) and worker=ID' });
          return;
        }
        const facts = { method: 'POST', path: url.pathname, workerId: worker, round, bodySha256: claimed };
        const auth = authorize(facts);
        if (!auth) return;
        const pre = fl.engine.precheck(worker, round);
        if (pre !== 'ok') {
          // The body is not needed: drain it and answer at once.
          req.resume();
          req.on('end', () => fl.in('update', Number(req.headers['content-length'] ?? 0)));
          const ack = fl.engine.submit(worker, round, Buffer.alloc(0));
          fl.out('ack', sendJson(res, pre === 'rejected' ? 409 : 200, ack));
          return;
        }
        const slot = await fl.slots.acquire();
        try {
          const hash = fl.auth ? fl.auth.bodyDigest() : null;
          const body = await readInto(req, slot, this.opts.maxBodyBytes, hash);
          fl.in('update', body.length);
          if (hash && hash.hex() !== claimed) {
            // Signed, but not this body: nothing of it is folded.
            fl.refused('body-hash', auth.publicKey, facts);
            sendJson(res, 401, { error: 'safe mode: request refused: body-hash', reason: 'body-hash' });
            return;
          }
          // Folded now, from the slot: the aggregator keeps nothing of the body.
          const ack = fl.engine.submit(worker, round, body);
          const status = ack.outcome === 'accepted' ? 202 : ack.outcome === 'rejected' ? 409 : 200;
          fl.out('ack', sendJson(res, status, ack));
        } finally {
          slot.release();
        }
        return;
      }
      case 'GET /v1/model': {
        const after = Number(url.searchParams.get('after') ?? '-1');
        if (!Number.isInteger(after)) {
          fl.error('bad-request');
          sendJson(res, 400, { error: 'after=V must be a whole number' });
          return;
        }
        if (fl.auth && !authorize({ method: 'GET', path: url.pathname, workerId: url.searchParams.get('worker') ?? '', round: after, bodySha256: claimed })) return;
        fl.in('pull', 0);
        const wait = fl.engine.waitModel(after, fl.pollTimeoutMs);
        const onClose = () => wait.cancel();
        res.on('close', onClose);
        const model = await wait.promise;
        res.off('close', onClose);
        if (res.destroyed) return;
        if (!model) {
          res.writeHead(204);
          res.end();
          fl.out('empty', 0);
          return;
        }
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': model.body.length,
          [H.version]: String(model.version),
          [H.sha256]: model.sha256,
          [H.publishedAt]: String(model.publishedAtMs),
        });
        res.end(model.body);
        fl.out('model', model.body.length);
        return;
      }
      case 'GET /v1/status':
        sendJson(res, 200, this.status());
        return;
      default:
        req.resume();
        sendJson(res, 404, { error: `no route ${route}; see docs/protocols.md` });
    }
  }
}
