/**
 * `fedsim deploy` usage errors (exit 2, naming the input), and the node flags it relies on:
 * `--chunk-from-env` and `--advertise`.
 */
import assert from 'node:assert/strict';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { chunkFromEnv } from '../../src/config/chunk.js';
import { ROOT, runCli, tempDir } from '../helpers/cli.js';

const dir = tempDir('fedsim-deploy-cli-');
after(() => rmSync(dir, { recursive: true, force: true }));

const scenario = path.join(ROOT, 'examples', 'default.yaml');
const inventory = path.join(dir, 'hosts.ini');
writeFileSync(inventory, '[coordinator]\nc\n[server]\ns\n[workers]\nw1\nw2\n');
const fakeBinary = path.join(dir, 'fedsim');
writeFileSync(fakeBinary, '');

test('deploy: usage errors exit 2 and name the input', async () => {
  const noWorkers = path.join(dir, 'no-workers.ini');
  writeFileSync(noWorkers, '[coordinator]\nc\n[server]\ns\n');
  const badScenario = path.join(dir, 'bad.yaml');
  writeFileSync(badScenario, 'workers: 2\nwrokers: 3\n');
  const cases: Array<[string[], RegExp]> = [
    [['deploy', 'bogus'], /unknown command 'bogus'/],
    [['deploy', 'k8s'], /required option '--scenario <file>' not specified/],
    [['deploy', 'k8s', '--scenario', path.join(dir, 'missing.yaml')], /scenario file .*missing\.yaml cannot be read \(ENOENT\)/],
    [['deploy', 'k8s', '--scenario', badScenario], /bad\.yaml:2: unknown key "wrokers"/],
    [['deploy', 'k8s', '--scenario', scenario, '--namespace', 'Load_Test'], /--namespace "Load_Test" is not a Kubernetes namespace name/],
    [['deploy', 'k8s', '--scenario', scenario, '--image', 'has space'], /--image "has space" is not an image reference/],
    [['deploy', 'k8s', '--scenario', scenario, '--hold', 'soon'], /--hold "soon"/],
    [['deploy', 'k8s', '--scenario', scenario, '--bogus'], /unknown option '--bogus'/],
    [['deploy', 'ansible', '--scenario', scenario], /required option '--inventory <file>' not specified/],
    [['deploy', 'ansible', '--inventory', inventory], /required option '--scenario <file>' not specified/],
    [['deploy', 'ansible', '--scenario', scenario, '--inventory', noWorkers, '--binary', fakeBinary, '--out', path.join(dir, 'out1')], /inventory .*no-workers\.ini has no hosts in group "workers"/],
    [['deploy', 'ansible', '--scenario', scenario, '--inventory', path.join(dir, 'nope.ini'), '--binary', fakeBinary], /--inventory .*nope\.ini cannot be read \(ENOENT\)/],
    [['deploy', 'ansible', '--scenario', scenario, '--inventory', inventory, '--binary', path.join(dir, 'no-such-binary'), '--out', path.join(dir, 'out2')], /--binary .*no-such-binary is not a file: build the single executable with `npm run build`/],
    [['deploy', 'ansible', '--scenario', scenario, '--inventory', inventory, '--binary', fakeBinary, '--run-timeout', '0'], /--run-timeout 0 is out of range/],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.equal(r.stdout, '', `${args.join(' ')} printed on stdout`);
  }
  // Nothing written for a bad inventory or binary.
  assert.equal(existsSync(path.join(dir, 'out1')), false);
  assert.equal(existsSync(path.join(dir, 'out2')), false);
});

test('deploy ansible: chunks that do not add up to the scenario nodes exit 2', async () => {
  const inv = path.join(dir, 'three.ini');
  writeFileSync(inv, '[coordinator]\nc\n[server]\ns\n[workers]\nw1 fedsim_chunks=2\nw2\n');
  const r = await runCli(['deploy', 'ansible', '--scenario', scenario, '--inventory', inv, '--binary', fakeBinary, '--out', path.join(dir, 'out3')]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /the worker hosts run 3 chunks \(w1 2, w2 1\) but the scenario has 2 worker nodes \(nodes\): make fedsim_chunks add up to 2/);
});

test('--chunk-from-env: chunk i+1 of K from the variable; bad values exit 2 naming it', async () => {
  assert.deepEqual(chunkFromEnv('JOB_COMPLETION_INDEX of 4', { JOB_COMPLETION_INDEX: '0' }), { n: 1, k: 4 });
  assert.deepEqual(chunkFromEnv(' IDX  of 4 ', { IDX: '3' }), { n: 4, k: 4 });
  assert.throws(() => chunkFromEnv('IDX of 4', { IDX: '4' }), /IDX=4 is outside 0\.\.3/);
  assert.throws(() => chunkFromEnv('IDX of 4', { IDX: '-1' }), /IDX="-1" is not a whole number/);
  assert.throws(() => chunkFromEnv('IDX of 4', {}), /the environment variable IDX is not set/);
  assert.throws(() => chunkFromEnv('IDX/4', { IDX: '1' }), /is not "VAR of K"/);
  assert.throws(() => chunkFromEnv('IDX of 0', { IDX: '0' }), /at least 1/);
  const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [['node', '--role', 'worker', '--coordinator', '127.0.0.1:1', '--token', 't', '--chunk-from-env', 'JOB_COMPLETION_INDEX of 2'], { JOB_COMPLETION_INDEX: '' }, /JOB_COMPLETION_INDEX is not set/],
    [['node', '--role', 'worker', '--coordinator', '127.0.0.1:1', '--token', 't', '--chunk-from-env', 'JOB_COMPLETION_INDEX of 2'], { JOB_COMPLETION_INDEX: '2' }, /JOB_COMPLETION_INDEX=2 is outside 0\.\.1/],
    [['node', '--role', 'worker', '--coordinator', '127.0.0.1:1', '--token', 't', '--chunk-from-env', 'X of 2', '--chunk', '1 of 2'], { X: '0' }, /--chunk and --chunk-from-env go alone/],
    [['node', '--role', 'server', '--coordinator', '127.0.0.1:1', '--token', 't', '--chunk-from-env', 'X of 2'], { X: '0' }, /--chunk-from-env is for --role worker/],
    [['node', '--role', 'worker', '--coordinator', '127.0.0.1:1', '--token', 't', '--advertise', 'fl.example'], {}, /--advertise is for --role server with --coordinator/],
    [['node', '--role', 'server', '--workers', '2', '--advertise', 'fl.example'], {}, /--advertise is for --role server with --coordinator/],
    [['node', '--role', 'server', '--coordinator', '127.0.0.1:1', '--token', 't', '--advertise', 'a b'], {}, /--advertise "a b" is not a host name or address/],
  ];
  for (const [args, env, re] of cases) {
    const r = await runCli(args, 30_000, env);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
});
