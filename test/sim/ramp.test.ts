import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunkRange } from '../../src/config/chunk.js';
import { resolveScenario } from '../../src/config/scenario.js';
import { parseRamp, rampPlanOf } from '../../src/config/settings.js';
import { activeInChunk, expectedInRound, joinRound, rampRounds } from '../../src/sim/ramp.js';

test('ramp: STEP:MAX[:HOLD] and lists parse; bad ones name the input', () => {
  assert.deepEqual(parseRamp('250:1000', 'x', 3), { steps: [250, 500, 750, 1000], hold: 3 });
  assert.deepEqual(parseRamp('300:1000:2', 'x', 3), { steps: [300, 600, 900, 1000], hold: 2 });
  assert.deepEqual(parseRamp('100, 200,400:4', 'x', 3), { steps: [100, 200, 400], hold: 4 });
  assert.throws(() => parseRamp('500:100', '--ramp', 3), /--ramp "500:100" ends \(100\) below its step \(500\)/);
  assert.throws(() => parseRamp('100,50', '--ramp', 3), /must grow at every step/);
  assert.throws(() => parseRamp('abc', '--ramp', 3), /is not STEP:MAX\[:HOLD\]: write STEP:MAX\[:HOLD\]/);
  assert.throws(() => parseRamp('1:5000', '--ramp', 3), /more than 1000 steps/);
  assert.throws(() => parseRamp('0:10', '--ramp', 3), /has "0" where a whole number of at least 1 belongs/);
});

test('ramp plan: every step spread over the chunks, every worker active by the last step, joins agree with the server', () => {
  for (const [W, k, ramp] of [[1000, 4, '250:1000:3'], [7, 3, '2:7:1'], [13, 5, '3,4,9,13:2'], [5, 2, '1:5:2']] as const) {
    const plan = rampPlanOf({ ramp, rampHold: 3, nodes: k })!;
    assert.equal(plan.steps[plan.steps.length - 1], W);
    for (let r = 1; r <= rampRounds(plan); r++) {
      // The server's count of updates for round r is exactly the workers whose join round is ≤ r.
      let joined = 0;
      for (let n = 1; n <= k; n++) {
        const { count } = chunkRange({ n, k }, W);
        for (let j = 0; j < count; j++) if (joinRound(plan, { n }, j) <= r) joined++;
      }
      assert.equal(expectedInRound(plan, r), joined, `${ramp} round ${r}`);
    }
    for (let n = 1; n <= k; n++) assert.equal(activeInChunk(plan, n, W), chunkRange({ n, k }, W).count);
  }
  // Proportional, not chunk 1 first: the first step of 250 over 4 chunks is 62 or 63 each.
  const p = rampPlanOf({ ramp: '250:1000', rampHold: 3, nodes: 4 })!;
  assert.deepEqual([1, 2, 3, 4].map((n) => activeInChunk(p, n, 250)), [62, 63, 62, 63]);
});

test('ramp in a scenario: sets workers and rounds; a disagreeing workers or rounds is refused', () => {
  const r = resolveScenario({ flags: { ramp: '100:400:2' }, env: {} });
  assert.deepEqual([r.scenario.workers, r.scenario.rounds, r.scenario.rampHold], [400, 8, 2]);
  const env = resolveScenario({ flags: {}, env: { FEDSIM_RAMP: '10,20', FEDSIM_RAMP_HOLD: '4' } });
  assert.deepEqual([env.scenario.workers, env.scenario.rounds], [20, 8]);
  assert.throws(() => resolveScenario({ flags: { ramp: '100:400', workers: '300' }, env: {} }), /--ramp "100:400" ends at 400 workers but --workers is 300/);
  assert.throws(() => resolveScenario({ flags: { ramp: '100:400', rounds: '5' }, env: {} }), /takes 4 steps × 3 rounds = 12 rounds but --rounds is 5/);
  assert.throws(() => resolveScenario({ flags: { ramp: '100:400', minWorkers: '150', roundTimeout: '5' }, env: {} }), /--min-workers 150 is more than the first ramp step \(100 workers\)/);
});
