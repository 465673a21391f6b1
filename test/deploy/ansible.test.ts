/**
 * `fedsim deploy ansible` for real: the playbook it writes runs with ansible-playbook
 * against an inventory whose coordinator, server and two worker "hosts" are all this
 * machine (local connection), with the single executable built once for this file. A
 * complete run brings its run directory back; a run cut short by the play's own timeout
 * still stops every process and removes every directory it made.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { runCli, runProcess, tempDir } from '../helpers/cli.js';
import { requireTool } from '../helpers/privileged.js';
import { buildBinary } from '../helpers/sea.js';

const supported = process.platform === 'linux' && process.arch === 'x64';
const skip = supported ? false : 'the binary is built for Linux x64 only';
const haveAnsible = spawnSync('ansible-playbook', ['--version'], { stdio: 'ignore' }).status === 0;

let root = '';
let exe = '';

before(() => {
  if (!supported) return;
  root = tempDir('fedsim-deploy-ansible-');
  // Built only where the tests can run (requireTool skips them, or fails them in CI, otherwise).
  if (haveAnsible) exe = buildBinary(path.join(root, 'build'));
});
after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

/** Sockets listening on `port` (any address), from /proc/net/tcp and tcp6: state 0A is LISTEN. */
function listenersOn(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 3 && f[1].endsWith(`:${hex}`) && f[3] === '0A') n++;
    }
  }
  return n;
}

/** Processes that hold the run token in their environment, or run in / from the run's remote directory. */
function leftovers(token: string, remoteRoot: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8');
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      const exePath = readlinkSync(`/proc/${pid}/exe`);
      if (env.includes(`FEDSIM_TOKEN=${token}`) || cwd.startsWith(remoteRoot) || exePath.startsWith(remoteRoot)) {
        found.push(`${pid}: ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ')}`);
      }
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

async function playbook(dir: string, inventory: string, extra: string[], timeoutMs = 150_000): Promise<{ code: number | null; out: string; ms: number }> {
  const env = {
    ...process.env,
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_RETRY_FILES_ENABLED: '0',
    ANSIBLE_HOME: path.join(dir, 'ansible-home'),
    ANSIBLE_LOCAL_TEMP: path.join(dir, 'ansible-local'),
    ANSIBLE_REMOTE_TEMP: path.join(dir, 'ansible-remote'),
  };
  const r = await runProcess('ansible-playbook', ['-i', inventory, path.join(dir, 'play', 'playbook.yml'), ...extra], { env }, timeoutMs);
  return { code: r.code, out: r.stdout + r.stderr, ms: r.ms };
}

interface Setup {
  dir: string;
  inventory: string;
  ports: number[];
  token: string;
  remoteRoot: string;
}

/** A scenario, an inventory of four local "hosts", and `fedsim deploy ansible` writing the playbook. */
async function setup(name: string, scenario: string, inventoryOf: (ports: number[]) => { file: string; text: string }): Promise<Setup> {
  const dir = path.join(root, name);
  const ports = [await freePort(), await freePort(), await freePort()];
  const sc = path.join(root, `${name}.yaml`);
  writeFileSync(sc, scenario);
  const inv = inventoryOf(ports);
  const inventory = path.join(root, inv.file);
  writeFileSync(inventory, inv.text);
  const r = await runCli(['deploy', 'ansible', '--scenario', sc, '--inventory', inventory, '--out', path.join(dir, 'play'), '--binary', exe]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`run it with: ansible-playbook -i ${inventory} ${path.join(dir, 'play', 'playbook.yml')}`));
  const vars = parseYaml(readFileSync(path.join(dir, 'play', 'fedsim.yml'), 'utf8')) as { fedsim_token: string; fedsim_run_id: string; fedsim_chunk_plan: Record<string, number[]> };
  return { dir, inventory, ports, token: vars.fedsim_token, remoteRoot: `/tmp/fedsim-${vars.fedsim_run_id}` };
}

/** Nothing of the run is left on the "hosts": no process, no listening port, no directory. */
function assertNothingLeft(s: Setup): void {
  assert.deepEqual(leftovers(s.token, s.remoteRoot), [], 'fedsim processes left running');
  for (const p of s.ports) assert.equal(listenersOn(p), 0, `something still listens on port ${p}`);
  assert.equal(existsSync(s.remoteRoot), false, `${s.remoteRoot} was not removed`);
}

test('deploy ansible: a complete run on four local hosts, the run directory fetched, nothing left behind', { skip, timeout: 240_000 }, async (t) => {
  if (!requireTool(t, 'ansible-playbook', ['--version'], 'ansible')) return;
  const s = await setup('full', 'name: ansible-e2e\nworkers: 20\nnodes: 2\nrounds: 3\ntrainMs: 0..5\ntransport: grpc\n', (ports) => ({
    file: 'full.yml',
    text: [
      'all:',
      '  vars:',
      '    ansible_connection: local',
      '    ansible_host: 127.0.0.1',
      '    ansible_python_interpreter: /usr/bin/python3',
      `    fedsim_control_port: ${ports[0]}`,
      `    fedsim_http_port: ${ports[1]}`,
      `    fedsim_grpc_port: ${ports[2]}`,
      '    fedsim_listen_host: 127.0.0.1',
      '    fedsim_bind: 127.0.0.1',
      '  children:',
      '    coordinator:',
      '      hosts:',
      '        coord:',
      '    server:',
      '      hosts:',
      '        srv:',
      '    workers:',
      '      hosts:',
      '        w1:',
      '        w2:',
      '',
    ].join('\n'),
  }));
  const r = await playbook(s.dir, s.inventory, []);
  t.diagnostic(`ansible-playbook took ${(r.ms / 1000).toFixed(1)} s`);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /fedsim run ansible-e2e passed/);
  assert.match(r.out, /coord +: ok=\d+ +changed=\d+ +unreachable=0 +failed=0/);
  const run = path.join(s.dir, 'play', 'run');
  const summary = JSON.parse(readFileSync(path.join(run, 'summary.json'), 'utf8'));
  assert.equal(summary.status, 'passed');
  assert.equal(summary.rounds.completed, 3);
  assert.equal(summary.updates.accepted, 60);
  assert.deepEqual(summary.perChunk.map((c: { chunk: string }) => c.chunk), ['1 of 2', '2 of 2']);
  assert.ok(existsSync(path.join(run, 'report.html')));
  assert.deepEqual(readdirSync(path.join(run, 'logs')).sort(), ['coordinator.log', 'server.log', 'worker-1.log', 'worker-2.log']);
  assert.match(readFileSync(path.join(run, 'logs', 'worker-2.log'), 'utf8'), /worker node 2 of 2: assigned by the coordinator/);
  assertNothingLeft(s);
});

test('deploy ansible: a run cut short by the play (run timeout) still stops every process and removes its directories', { skip, timeout: 240_000 }, async (t) => {
  if (!requireTool(t, 'ansible-playbook', ['--version'], 'ansible')) return;
  // An INI inventory this time; rounds that outlast the play's 4 s wait.
  const s = await setup('cut', 'name: ansible-cut\nworkers: 6\nnodes: 3\nrounds: 1000\ntrainMs: 100..200\n', (ports) => ({
    file: 'cut.ini',
    text: [
      '[all:vars]',
      'ansible_connection=local',
      'ansible_host=127.0.0.1',
      'ansible_python_interpreter=/usr/bin/python3',
      `fedsim_control_port=${ports[0]}`,
      `fedsim_http_port=${ports[1]}`,
      `fedsim_grpc_port=${ports[2]}`,
      'fedsim_listen_host=127.0.0.1',
      'fedsim_bind=127.0.0.1',
      '',
      '[coordinator]',
      'coord',
      '[server]',
      'srv',
      '[workers]',
      'w1 fedsim_chunks=2',
      'w2',
      '',
    ].join('\n'),
  }));
  const r = await playbook(s.dir, s.inventory, ['-e', 'fedsim_run_timeout=4']);
  t.diagnostic(`ansible-playbook took ${(r.ms / 1000).toFixed(1)} s`);
  assert.notEqual(r.code, 0, r.out);
  assert.match(r.out, /TASK \[wait for the end of the run\][\s\S]*fatal: \[coord\]/);
  assert.match(r.out, /coord +: ok=\d+ +changed=\d+ +unreachable=0 +failed=1/);
  // The always-part ran: the logs came back, w1 ran chunks 1 and 2, w2 chunk 3.
  const logs = path.join(s.dir, 'play', 'run', 'logs');
  assert.deepEqual(readdirSync(logs).sort(), ['coordinator.log', 'server.log', 'worker-1.log', 'worker-2.log', 'worker-3.log']);
  assert.match(readFileSync(path.join(logs, 'coordinator.log'), 'utf8'), /all 4 nodes ready/);
  assertNothingLeft(s);
});
