import type { AddressInfo } from 'node:net';
import type { UpdateSlot } from '../sim/updateSlots.js';
import type { RequestFacts } from '../sim/ports.js';
import { AUTH, EMPTY_SHA256, registrationId } from './auth.js';
import type { FlServer } from '../sim/flServer.js';
import { H } from './headers.js';
import { type Exchange, Http1Server, TooLarge } from './http1Server.js';

export interface HttpServerOptions {
  readonly host: string;
  readonly port: number;
  /** Largest update body accepted. */
  readonly maxBodyBytes: number;
}

/** Reads an update body into its slot (never whole per worker beyond the slots). */
function readInto(ex: Exchange, slot: UpdateSlot, hash: { update(chunk: Buffer): void } | null): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // (Its size was checked against the limit before it waited for the slot, and a body never
    // runs past its Content-Length here.)
    if (ex.contentLength > 0) slot.reserve(ex.contentLength);
    // A client that went away while its update waited for the slot ends here at once (the
    // slot is given back); one that goes away in the middle of its body too: a body that ends
    // short of its declared length is not an update, nothing of it is folded.
    // The socket reads the body straight into the slot's room (a view of it comes back, and
    // write() only counts it): no copy from the read buffer.
    ex.readBody(
      (c) => {
        slot.write(c);
        // Safe mode: the body's hash is computed from the slot, as it streams in (not over a second copy).
        hash?.update(c);
      },
      (err) => (err ? reject(err) : resolve(slot.bytes())),
      (max) => slot.aim(max),
    );
  });
}

/**
 * The long-poll HTTP face of the FL server:
 * POST /v1/register, GET /v1/model?after=V, POST /v1/update?round=R, GET /v1/status.
 */
export class HttpFlServer {
  private readonly server: Http1Server;

  constructor(private readonly fl: FlServer, private readonly opts: HttpServerOptions, private readonly status: () => unknown) {
    this.server = new Http1Server({ keepAliveMs: 120_000, headersTimeoutMs: 60_000 }, (ex) => {
      this.handle(ex).catch((err: unknown) => {
        if (err instanceof TooLarge) {
          this.fl.error('too-large');
          // Answered, then the connection closes: the rest of the body is not read.
          if (!ex.sent) ex.json(413, { error: err.message }, true);
          return;
        }
        // Counted as before node:http was replaced, a request whose client went away in the middle included.
        this.fl.error('http-internal');
        if (!ex.sent && !ex.gone) ex.json(500, { error: String(err) }, true);
      });
    });
    this.server.onMalformed = () => this.fl.error('bad-request');
  }

  listen(): Promise<AddressInfo> {
    return this.server.listen(this.opts.host, this.opts.port);
  }

  close(): Promise<void> {
    return this.server.close();
  }

  private async handle(ex: Exchange): Promise<void> {
    const q = ex.target.indexOf('?');
    const pathname = q < 0 ? ex.target : ex.target.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : ex.target.slice(q + 1));
    const route = `${ex.method} ${pathname}`;
    const fl = this.fl;
    const header = (name: string) => ex.header(name);
    /** Safe mode: checks the signed headers; a refused request is answered 401 and its body not read. */
    const authorize = (facts: RequestFacts): { ok: true; publicKey: string; exchangeKey?: string } | null => {
      if (!fl.auth) return { ok: true, publicKey: '' };
      const r = fl.authorize(facts, header);
      if (r.ok) return r;
      ex.json(401, { error: `safe mode: request refused: ${r.reason}`, reason: r.reason });
      return null;
    };
    // Left out, it claims an empty body (a pull sends none).
    const claimed = header(AUTH.bodySha256) ?? EMPTY_SHA256;
    switch (route) {
      case 'POST /v1/register': {
        // A registration is a few bytes: read it first, so the signature can be checked against the index it asks for.
        const body = await ex.readWhole(4096);
        fl.in('register', body.length);
        let index: unknown;
        try {
          index = (JSON.parse(body.toString('utf8')) as { workerIndex?: unknown }).workerIndex;
        } catch {
          index = undefined;
        }
        const facts = { method: 'POST', path: pathname, workerId: typeof index === 'number' ? registrationId(index) : '', round: 0, bodySha256: claimed };
        const auth = authorize(facts);
        if (!auth) return;
        if (fl.auth && fl.auth.bodySha256(body) !== claimed) {
          fl.refused('body-hash', auth.publicKey, facts);
          ex.json(401, { error: 'safe mode: request refused: body-hash', reason: 'body-hash' });
          return;
        }
        if (typeof index !== 'number' || !Number.isInteger(index) || index < 0) {
          fl.error('bad-request');
          ex.json(400, { error: 'body must be JSON {"workerIndex": N} with N a whole number >= 0' });
          return;
        }
        const reg = fl.engine.register(index);
        const exchangeKey = fl.auth?.bind(reg.workerId, auth.publicKey, auth.exchangeKey);
        fl.out('register', ex.json(200, exchangeKey ? { ...reg, exchangeKey } : reg));
        return;
      }
      case 'POST /v1/update': {
        const round = Number(query.get('round'));
        const worker = query.get('worker') ?? '';
        if (!Number.isInteger(round) || round < 1 || !worker) {
          fl.error('bad-request');
          ex.json(400, { error: 'query must carry round=R (R >= 1) and worker=ID' });
          return;
        }
        const facts = { method: 'POST', path: pathname, workerId: worker, round, bodySha256: claimed };
        const auth = authorize(facts);
        if (!auth) return;
        const pre = fl.engine.precheck(worker, round);
        if (pre !== 'ok') {
          // The body is not needed: read and dropped, and the answer goes at once.
          ex.discardBody(() => fl.in('update', ex.contentLength));
          const ack = fl.engine.submit(worker, round, Buffer.alloc(0));
          fl.out('ack', ex.json(pre === 'rejected' ? 409 : 200, ack));
          return;
        }
        // Over the limit: refused before it waits for a slot.
        if (ex.contentLength > this.opts.maxBodyBytes) throw new TooLarge(`body of ${ex.contentLength} bytes is over the limit of ${this.opts.maxBodyBytes} bytes`);
        const slot = await fl.slots.acquire();
        try {
          const hash = fl.auth ? fl.auth.bodyDigest(() => slot.bytes()) : null;
          const body = await readInto(ex, slot, hash);
          fl.in('update', body.length);
          if (hash && !hash.matches(claimed)) {
            // Signed, but not this body: nothing of it is folded.
            fl.refused('body-hash', auth.publicKey, facts);
            ex.json(401, { error: 'safe mode: request refused: body-hash', reason: 'body-hash' });
            return;
          }
          // Folded from the slot (which a fold in a thread holds until it is done): the
          // aggregator keeps nothing of the body.
          const ack = fl.engine.submit(worker, round, body, () => slot.hold());
          const status = ack.outcome === 'accepted' ? 202 : ack.outcome === 'rejected' ? 409 : 200;
          fl.out('ack', ex.json(status, ack));
        } finally {
          slot.release();
        }
        return;
      }
      case 'GET /v1/model': {
        const after = Number(query.get('after') ?? '-1');
        if (!Number.isInteger(after)) {
          fl.error('bad-request');
          ex.json(400, { error: 'after=V must be a whole number' });
          return;
        }
        if (fl.auth && !authorize({ method: 'GET', path: pathname, workerId: query.get('worker') ?? '', round: after, bodySha256: claimed })) return;
        fl.in('pull', 0);
        ex.dropHeaders();
        const wait = fl.engine.waitHeld(after, fl.pollTimeoutMs);
        const stop = ex.onGone(() => wait.cancel());
        const held = await wait.promise;
        stop();
        if (ex.gone) {
          held?.release();
          return;
        }
        if (!held) {
          ex.send(204, {});
          fl.out('empty', 0);
          return;
        }
        // The model's buffer is given back (for a later version) once the socket is done with it.
        const model = held.model;
        ex.send(
          200,
          {
            'content-type': 'application/octet-stream',
            [H.version]: String(model.version),
            [H.sha256]: model.sha256,
            [H.publishedAt]: String(model.publishedAtMs),
          },
          model.body,
          false,
          held.release,
        );
        fl.out('model', model.body.length);
        return;
      }
      case 'GET /v1/status':
        ex.json(200, this.status());
        return;
      default:
        ex.json(404, { error: `no route ${route}; see docs/protocols.md` });
    }
  }
}
