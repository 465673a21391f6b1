import { Verifier, sessionMessage } from './dist/src/auth/sign.js';
import { exchangeKeyPair, sessionKey, macHex, macMatches } from './dist/src/auth/session.js';
import { readFileSync } from 'fs';
const keys = readFileSync('/tmp/k1000/keys.list', 'utf8').trim().split('\n');
const v = new Verifier({ keys });
const sk = [];
for (let i = 0; i < 1000; i++) { const x = exchangeKeyPair(); v.bindWorker('w' + i, keys[i]); sk.push(sessionKey(x, v.openSession(keys[i], x.publicHex), keys[i], true)); }
const seq = new Array(1000).fill(0);
const N = 200000; const toks = []; const facts = [];
const body = 'a'.repeat(64);
for (let j = 0; j < N; j++) { const i = j % 1000; const s = ++seq[i]; const ts = Date.now();
  const f = { method: 'POST', path: '/v1/update', workerId: 'w' + i, round: 3, bodySha256: body };
  toks.push(`${i}.${ts}.${s}.${macHex(sk[i], sessionMessage(f.method, f.path, keys[i], f.workerId, f.round, ts, s, f.bodySha256))}`); facts.push(f); }
const now = Date.now();
const time = (name, fn) => { const t = process.hrtime.bigint(); let ok = 0; for (let j = 0; j < N; j++) if (fn(j)) ok++; console.log(name, ok, (Number(process.hrtime.bigint() - t) / N).toFixed(0), 'ns'); };
time('sessionMessage', (j) => { const f = facts[j]; return sessionMessage(f.method, f.path, keys[j % 1000], f.workerId, f.round, now, j + 1, f.bodySha256).length > 0; });
const m = sessionMessage('POST', '/v1/update', keys[0], 'w0', 3, now, 1, body);
const mb = Buffer.from(m);
time('macMatches', (j) => macMatches(sk[j % 1000], mb, toks[j], toks[j].length - 64));
time('macHex', (j) => macHex(sk[j % 1000], mb).length > 0);
time('verifySession', (j) => v.verifySession(facts[j], toks[j], now).ok);
