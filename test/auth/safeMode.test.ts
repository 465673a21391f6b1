import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateKeys, loadWorkerKeys } from '../../src/auth/keys.js';
import { canonical } from '../../src/auth/sign.js';
import { serverChecker, workerSigners } from '../../src/commands/safeMode.js';
import { StringPayload } from '../../src/payload/string.js';
import { systemClock } from '../../src/runtime/clock.js';
import { sha256Hex } from '../../src/runtime/hash.js';
import { sha256OfBody } from '../../src/sim/updateBody.js';
import { FlServer } from '../../src/sim/flServer.js';
import { type RequestSigner, TransportError, type WorkerTransport } from '../../src/sim/ports.js';
import { WorkerNodeStats } from '../../src/sim/workerStats.js';
import { AUTH, EMPTY_SHA256 } from '../../src/transport/auth.js';
import { GrpcWorkerTransport } from '../../src/transport/grpcClient.js';
import { GrpcFlServer } from '../../src/transport/grpcServer.js';
import { HttpWorkerTransport } from '../../src/transport/httpClient.js';
import { HttpFlServer } from '../../src/transport/httpServer.js';
import { tempDir } from '../helpers/cli.js';

const dir = tempDir();
const stranger = tempDir();
after(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(stranger, { recursive: true, force: true });
});
generateKeys({ workers: 4, outDir: dir, force: true });
generateKeys({ workers: 1, outDir: stranger, force: true });
const signers = workerSigners(dir, [0, 1, 2, 3]);
const strangerSigner = workerSigners(stranger, [0]).get(0)!;

/** A signer whose headers are those of `headers` (tests bend them). */
const signerOf = (headers: RequestSigner['headers']): RequestSigner => ({ bodySha256: sha256OfBody, headers, registered: () => undefined });

/** A signer for worker 3 whose clock is ten minutes behind. */
const staleSigner = signerOf((facts) => {
  const key = loadWorkerKeys(dir, [3]).get(3)!;
  const timestamp = Date.now() - 600_000;
  const nonce = 'n-stale';
  return {
    [AUTH.key]: key.publicKeyHex,
    [AUTH.timestamp]: String(timestamp),
    [AUTH.nonce]: nonce,
    [AUTH.bodySha256]: facts.bodySha256,
    [AUTH.signature]: key.sign(canonical({ ...facts, publicKey: key.publicKeyHex, timestamp, nonce })).toString('hex'),
  };
});

/** What changed between two counter maps. */
const delta = (now: Record<string, number>, then: Record<string, number>) =>
  Object.fromEntries(Object.entries(now).filter(([k, v]) => v !== (then[k] ?? 0)).map(([k, v]) => [k, v - (then[k] ?? 0)]));

async function refusal(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  assert.ok(e instanceof TransportError, `expected a refusal, got ${String(e)}`);
  assert.equal(e.kind, 'unauthenticated', e.message);
  assert.equal(e.retryable, false);
  return e.message;
}

for (const kind of ['http', 'grpc'] as const) {
  describe(`safe mode over ${kind}`, () => {
    let fl: FlServer;
    let hs: HttpFlServer;
    let gs: GrpcFlServer;
    let port = 0;
    const clients: WorkerTransport[] = [];
    const logs: string[] = [];
    const client = (signer?: RequestSigner) => {
      const opts = { host: '127.0.0.1', port, requestTimeoutMs: 10_000, signer };
      const c = kind === 'http' ? new HttpWorkerTransport(opts, new WorkerNodeStats(1)) : new GrpcWorkerTransport(opts, new WorkerNodeStats(1));
      clients.push(c);
      return c;
    };
    before(async () => {
      fl = new FlServer({ expectedWorkers: 2, codec: new StringPayload(), clock: systemClock, hash: sha256Hex }, 300);
      fl.auth = serverChecker(path.join(dir, 'keys.list')).checker;
      fl.authLog = (l) => logs.push(l);
      hs = new HttpFlServer(fl, { host: '127.0.0.1', port: 0, maxBodyBytes: 1 << 20 }, () => ({}));
      gs = new GrpcFlServer(fl, 1 << 20);
      const h = await hs.listen();
      const g = await gs.listen('127.0.0.1', 0);
      port = kind === 'http' ? h.port : g;
    });
    after(async () => {
      for (const c of clients) c.close();
      fl.engine.close();
      await Promise.all([hs.close(), gs.close()]);
    });

    test('a listed worker registers, sends and pulls; every kind of bad request is refused with its reason and counted', async () => {
      const a = client(signers.get(0));
      const ra = await a.register(0);
      const body = Buffer.from('update of worker 0');

      // Missing headers, an unknown key, a stale timestamp.
      assert.match(await refusal(client().register(1)), /missing/);
      assert.match(await refusal(client(strangerSigner).register(1)), /unknown-key/);
      assert.match(await refusal(client(staleSigner).register(3)), /stale/);

      // Worker 1's key asks for worker 0's index, then sends an update in worker 0's name.
      assert.match(await refusal(client(signers.get(1)).register(0)), /wrong-worker/);
      const b = client(signers.get(1));
      await b.register(1);
      assert.match(await refusal(b.pushUpdate(ra.workerId, 1, body)), /wrong-worker/);

      // A signature over another body than the one sent.
      const tamper = signerOf((f) => signers.get(0)!.headers({ ...f, bodySha256: sha256Hex(Buffer.from('something else')) }));
      assert.match(await refusal(client(tamper).pushUpdate(ra.workerId, 1, body)), /body-hash/);
      // An update made as it is sent (UpdateSource) is signed over the bytes it makes.
      const made = {
        length: 1000 * 1000,
        fill: (d: Buffer, at: number) => {
          for (let i = 0; i < d.length; i++) d[i] = ((at + i) * 7) % 251;
        },
      };
      assert.match(await refusal(client(tamper).pushUpdate(ra.workerId, 1, made)), /body-hash/);

      // The same signed request twice: the second is a replay.
      let first: Record<string, string> | null = null;
      const replaying = signerOf((f) => (first ??= signers.get(0)!.headers(f)));
      const r = client(replaying);
      assert.equal((await r.pushUpdate(ra.workerId, 1, made)).outcome, 'accepted');
      assert.match(await refusal(r.pushUpdate(ra.workerId, 1, made)), /replay/);

      const m = await a.pullModel(ra.workerId, -1, () => undefined);
      assert.ok(m);
      assert.deepEqual(fl.authRefused, { missing: 1, 'unknown-key': 1, stale: 1, 'wrong-worker': 2, 'body-hash': 2, replay: 1 });
      assert.equal(fl.report().safeMode, true);
      assert.ok(logs.some((l) => /safe mode: refused .* wrong-worker/.test(l)), logs.join('\n'));
    });

    test('session scheme: a signed registration opens a session, later requests carry a MAC; ed25519 signs every request; forged, sessionless and swapped-key requests are refused', async () => {
      const refused = { ...fl.authRefused };
      const accepted = { ...fl.authAccepted };
      /** Records the names of the auth headers of each request, and can bend them. */
      const spy = (inner: RequestSigner, bend: (h: Record<string, string>) => void = () => undefined) => {
        const sent: string[] = [];
        const s: RequestSigner = {
          bodySha256: (b) => inner.bodySha256(b),
          headers(f) {
            const h = { ...inner.headers(f) };
            bend(h);
            sent.push(Object.keys(h).filter((k) => k === AUTH.signature || k === AUTH.mac || k === AUTH.exchange || k === AUTH.bodySha256).sort().join('+'));
            return h;
          },
          registered: (k) => inner.registered(k),
        };
        return { s, sent };
      };
      const body = Buffer.from('update of worker 2 or 3');

      // Worker 2 signs every request (the ed25519 scheme): the server opens no session for it.
      const ed = spy(workerSigners(dir, [2], 'ed25519').get(2)!);
      const c2 = client(ed.s);
      const r2 = await c2.register(2);
      assert.notEqual((await c2.pushUpdate(r2.workerId, 1, body)).outcome, undefined);
      assert.ok(await c2.pullModel(r2.workerId, -1, () => undefined));
      // A pull (an empty body) leaves out its body's hash.
      assert.deepEqual(ed.sent, ['x-fedsim-body-sha256+x-fedsim-sig', 'x-fedsim-body-sha256+x-fedsim-sig', 'x-fedsim-sig']);
      // A MAC from a key without a session.
      const sessionless = spy(workerSigners(dir, [2], 'ed25519').get(2)!, (h) => {
        h[AUTH.mac] = `2.${h[AUTH.timestamp]}.${h[AUTH.nonce]}.${'ab'.repeat(32)}`;
      });
      assert.match(await refusal(client(sessionless.s).pullModel(r2.workerId, -1, () => undefined)), /no-session/);

      // Worker 3 (the default session scheme): an exchange key swapped after signing is refused.
      const swapped = spy(workerSigners(dir, [3]).get(3)!, (h) => {
        h[AUTH.exchange] = 'cd'.repeat(32);
      });
      assert.match(await refusal(client(swapped.s).register(3)), /bad-signature/);
      const ses = workerSigners(dir, [3]).get(3)!;
      const good = spy(ses);
      const c3 = client(good.s);
      const r3 = await c3.register(3);
      assert.notEqual((await c3.pushUpdate(r3.workerId, 1, body)).outcome, undefined);
      assert.ok(await c3.pullModel(r3.workerId, -1, () => undefined));
      assert.deepEqual(good.sent, ['x-fedsim-body-sha256+x-fedsim-kx+x-fedsim-sig', 'x-fedsim-body-sha256+x-fedsim-mac', 'x-fedsim-mac']);
      // Each registration attempt carries a fresh exchange key (a held-back attempt replayed
      // later then opens a session under another key than the one in use).
      const fresh = workerSigners(dir, [2]).get(2)!;
      const kx = () => fresh.headers({ method: 'POST', path: '/v1/register', workerId: '#2', round: 0, bodySha256: 'e'.repeat(64) })[AUTH.exchange];
      const first = kx();
      assert.match(first, /^[0-9a-f]{64}$/);
      assert.notEqual(kx(), first);
      // A session-scheme request carries two headers: its body's hash and the MAC token.
      assert.deepEqual(Object.keys(ses.headers({ method: 'RPC', path: '/x', workerId: r3.workerId, round: 1, bodySha256: 'e'.repeat(64) })).sort(), [AUTH.bodySha256, AUTH.mac]);
      // A MAC with one character changed.
      const forged = spy(ses, (h) => {
        h[AUTH.mac] = h[AUTH.mac].slice(0, -1) + (h[AUTH.mac].endsWith('0') ? '1' : '0');
      });
      assert.match(await refusal(client(forged.s).pullModel(r3.workerId, -1, () => undefined)), /bad-signature/);

      assert.deepEqual(delta(fl.authRefused, refused), { 'no-session': 1, 'bad-signature': 2 });
      assert.deepEqual(delta(fl.authAccepted, accepted), { ed25519: 4, session: 2 });
    });

    test('a request that leaves out its body hash claims an empty body: an update with a body (small or streamed) is then refused body-hash, under either scheme; a stripped header is bad-signature', async () => {
      const refused = { ...fl.authRefused };
      for (const scheme of ['session', 'ed25519'] as const) {
        const inner = workerSigners(dir, [1], scheme).get(1)!;
        // Updates signed (or MACed) as if their body were empty: the signer then leaves the header out.
        const empty: RequestSigner = {
          bodySha256: (b) => inner.bodySha256(b),
          headers: (f, into) => inner.headers(/pdate/i.test(f.path) ? { ...f, bodySha256: EMPTY_SHA256 } : f, into),
          registered: (k) => inner.registered(k),
        };
        const c = client(empty);
        const r = await c.register(1);
        for (const size of [23, 2000]) {
          // (Into the open round: a late update's body is read and dropped, never folded nor hashed.)
          assert.match(await refusal(c.pushUpdate(r.workerId, fl.engine.openRound, Buffer.alloc(size, 7))), /body-hash/, `${scheme}, ${size} bytes`);
        }
        // The header stripped from a request that had it: what it claims is no longer what was signed.
        const stripped: RequestSigner = {
          bodySha256: (b) => inner.bodySha256(b),
          headers: (f, into) => {
            const h = inner.headers(f, into);
            if (/pdate/i.test(f.path)) delete h[AUTH.bodySha256];
            return h;
          },
          registered: (k) => inner.registered(k),
        };
        assert.match(await refusal(client(stripped).pushUpdate(r.workerId, fl.engine.openRound, Buffer.alloc(23, 7))), /bad-signature/, scheme);
      }
      assert.deepEqual(delta(fl.authRefused, refused), { 'body-hash': 4, 'bad-signature': 2 });
    });
  });
}
