import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCli, startCli, tempDir } from '../helpers/cli.js';

/** One series' value from Prometheus text (`name{labels} value`), or null. */
function series(text: string, name: string, labels = ''): number | null {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name && (labels === '' || (m[2] ?? '').includes(labels))) return Number(m[3]);
  }
  return null;
}

test('--metrics-port serves Prometheus text during a run: the round counter moves, workers by state, nodes', async (t) => {
  const out = tempDir();
  const p = startCli(['run', '--workers', '8', '--nodes', '2', '--rounds', '40', '--train-ms', '100..150', '--headless', '--metrics-port', '0', '--out', out]);
  t.after(() => {
    p.kill('SIGKILL');
    rmSync(out, { recursive: true, force: true });
  });
  let stderr = '';
  p.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => p.on('close', resolve));
  let url = '';
  for (let i = 0; i < 200 && !url; i++) {
    url = /metrics: (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(stderr)?.[1] ?? '';
    await sleep(50);
  }
  assert.ok(url, `no metrics line: ${stderr}`);
  const scrape = async () => {
    const r = await fetch(url);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return r.text();
  };
  // Wait for the run to start closing rounds, then see the counter move.
  let first = '';
  for (let i = 0; i < 200; i++) {
    first = await scrape();
    if ((series(first, 'fedsim_rounds_closed_total') ?? 0) >= 2) break;
    await sleep(100);
  }
  const r1 = series(first, 'fedsim_rounds_closed_total') ?? 0;
  assert.ok(r1 >= 2, first);
  let later = first;
  // Until the round counter moved, and the nodes' first heartbeats brought their resources.
  for (let i = 0; i < 100 && ((series(later, 'fedsim_rounds_closed_total') ?? 0) <= r1 + 1 || series(later, 'fedsim_node_rss_bytes', 'node="server"') === null); i++) {
    await sleep(100);
    later = await scrape();
  }
  assert.ok((series(later, 'fedsim_rounds_closed_total') ?? 0) > r1 + 1, 'the round counter moves');
  assert.equal(series(later, 'fedsim_rounds_planned'), 40);
  assert.equal(series(later, 'fedsim_run_phase', 'phase="running"'), 1);
  assert.ok((series(later, 'fedsim_round_duration_seconds_count') ?? 0) >= r1);
  // Workers by state add up to the chunk's workers.
  let chunk1 = 0;
  for (const line of later.split('\n')) if (line.startsWith('fedsim_workers{chunk="1 of 2"')) chunk1 += Number(line.split(' ').pop());
  assert.equal(chunk1, 4);
  assert.ok((series(later, 'fedsim_messages_total', 'chunk="2 of 2"') ?? 0) > 0);
  assert.ok((series(later, 'fedsim_node_rss_bytes', 'node="server"') ?? 0) > 1e6);
  assert.equal(series(later, 'fedsim_node_up', 'role="server"'), 1);
  assert.equal((await fetch(url.replace('/metrics', '/nope'))).status, 404);
  assert.equal(await exited, 0, stderr);
});

test('--metrics-port: a bad port is a usage error (exit 2); a port in use says which', async (t) => {
  const out = tempDir();
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const bad = await runCli(['run', '--workers', '2', '--nodes', '1', '--rounds', '1', '--headless', '--metrics-port', '70000', '--out', out]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--metrics-port 70000 is out of range/);
  const host = await runCli(['run', '--workers', '2', '--nodes', '1', '--rounds', '1', '--headless', '--metrics-host', '0.0.0.0', '--out', out]);
  assert.equal(host.code, 2);
  assert.match(host.stderr, /--metrics-host needs --metrics-port/);
  const busy = createServer().listen(0, '127.0.0.1');
  await once(busy, 'listening');
  t.after(() => busy.close());
  const port = (busy.address() as AddressInfo).port;
  const inUse = await runCli(['run', '--workers', '2', '--nodes', '1', '--rounds', '1', '--headless', '--metrics-port', String(port), '--out', out]);
  assert.equal(inUse.code, 2);
  assert.match(inUse.stderr, new RegExp(`--metrics-port ${port}: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
});
