import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { resolveScenario, scenarioJsonSchema } from '../../src/config/scenario.js';
import { SETTINGS, envOf, flagOf } from '../../src/config/settings.js';
import { UsageError } from '../../src/errors.js';
import { ROOT, tempDir } from '../helpers/cli.js';

test('precedence: flags > FEDSIM_* environment > file > defaults', () => {
  const dir = tempDir();
  const file = path.join(dir, 's.yaml');
  writeFileSync(file, 'name: precedence\nworkers: 10\nrounds: 4\ntransport: grpc\ntrainMs: 5..9\n');
  try {
    const env = { FEDSIM_ROUNDS: '6', FEDSIM_WORKERS: '12' };
    const a = resolveScenario({ flags: { rounds: '8' }, env, file });
    assert.equal(a.scenario.rounds, 8);
    assert.equal(a.sources.rounds, 'flag');
    assert.equal(a.scenario.workers, 12);
    assert.equal(a.sources.workers, 'env');
    assert.equal(a.scenario.transport, 'grpc');
    assert.equal(a.sources.transport, 'file');
    assert.equal(a.scenario.trainMs, '5..9');
    assert.equal(a.scenario.payload, 'string');
    assert.equal(a.sources.payload, 'default');
    const b = resolveScenario({ flags: {}, env: {}, file });
    assert.equal(b.scenario.rounds, 4);
    assert.equal(b.scenario.workers, 10);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('errors name where the value came from', () => {
  assert.throws(() => resolveScenario({ flags: { rounds: 'x' }, env: {} }), /--rounds "x" is not a whole number/);
  assert.throws(() => resolveScenario({ flags: {}, env: { FEDSIM_TRANSPORT: 'udp' } }), /FEDSIM_TRANSPORT "udp" is not allowed: use http or grpc/);
  assert.throws(() => resolveScenario({ flags: { minWorkers: '3' }, env: {} }), (e: unknown) => e instanceof UsageError && /--min-workers and --round-timeout go together/.test(e.message));
  assert.throws(() => resolveScenario({ flags: { onNodeLoss: 'continue' }, env: {} }), /--on-node-loss continue needs a quorum/);
});

test('flag and variable names follow the keys', () => {
  assert.equal(flagOf('trainMs'), '--train-ms');
  assert.equal(envOf('trainMs'), 'FEDSIM_TRAIN_MS');
  const schema = scenarioJsonSchema() as { properties: Record<string, unknown> };
  assert.deepEqual(Object.keys(schema.properties), [...SETTINGS.map((d) => d.key), 'faults', 'thresholds']);
});

test('every example scenario is valid', async () => {
  const { readdirSync } = await import('node:fs');
  const dir = path.join(ROOT, 'examples');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.length >= 2);
  for (const f of files) resolveScenario({ flags: {}, env: {}, file: path.join(dir, f) });
});

test('docs/scenario.md documents every key, flag and variable', async () => {
  const { readFileSync } = await import('node:fs');
  const doc = readFileSync(path.join(ROOT, 'docs', 'scenario.md'), 'utf8');
  for (const d of SETTINGS) {
    for (const name of [`\`${d.key}\``, `\`${flagOf(d.key)}\``, `\`${envOf(d.key)}\``]) assert.ok(doc.includes(name), `docs/scenario.md lacks ${name}`);
  }
});
