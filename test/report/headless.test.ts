import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeadlessSink } from '../../src/report/headless.js';
import { RunStore } from '../../src/sim/runStore.js';
import { WORKER_STATES } from '../../src/sim/workerStats.js';
import { encodeHistogram, newHistogram, recordMs } from '../../src/sim/stats.js';

/** A store with one chunk of `workers`, and a function that closes round r at clock time `at`. */
function setup(workers: number, rounds: number) {
  let clock = 0;
  const lines: Array<{ at: number; text: string }> = [];
  const store = new RunStore(workers, rounds);
  const sink = new HeadlessSink(store, (text) => lines.push({ at: clock, text }), { now: () => clock });
  store.apply({ type: 'phase', phase: 'running', at: 0 });
  let messages = 0;
  const close = (round: number, at: number) => {
    clock = at;
    messages += workers * 2;
    store.apply({ type: 'rounds', rounds: [{ round, durationMs: 40 + round, updates: workers, byQuorum: false, messages: workers * 2, bytes: 1000, publishedAtMs: at }] });
    const h = newHistogram();
    for (let i = 0; i < workers; i++) recordMs(h, 3);
    const states = Object.fromEntries(WORKER_STATES.map((s) => [s, 0])) as Record<(typeof WORKER_STATES)[number], number>;
    states.waiting = workers;
    store.apply({
      type: 'workerSnapshot',
      snapshot: { chunk: '1 of 1', workers, states, roundsDone: round * workers, errors: 0, retries: 0, messages, bytes: round * 1000, propagation: [{ version: round, histogram: encodeHistogram(h) }] },
    });
  };
  const tick = (at: number) => {
    clock = at;
    sink.tick();
  };
  return { store, sink, lines, close, tick };
}

test('headless lines: fast rounds give a line every 2 s (not one per round), always the last round', () => {
  const { sink, lines, close, tick } = setup(4, 100);
  // A round every 100 ms for 10 s.
  for (let r = 1; r <= 100; r++) {
    close(r, r * 100);
    tick(r * 100 + 50);
  }
  sink.close();
  const rounds = lines.filter((l) => l.text.startsWith('round'));
  assert.ok(rounds.length >= 4 && rounds.length <= 6, rounds.map((l) => `${l.at} ${l.text}`).join('\n'));
  for (let i = 1; i < rounds.length - 1; i++) assert.ok(rounds[i].at - rounds[i - 1].at >= 2000, 'at least 2 s apart');
  assert.match(rounds[rounds.length - 1].text, /^round 100\/100 +140\.0 ms \(p95 135\.0 ms\) +propagation p99 3\.0 ms +\d+ msg\/s +[\d.]+ MB\/s +errors 0/);
  assert.match(rounds[0].text, /^round +1\/100 /, 'the first round at once');
  assert.match(rounds[1].text, /\(\+\d+ rounds since the last line\)/);
});

test('headless lines: slow rounds give one line per round; silence gives a progress line', () => {
  const { sink, lines, close, tick } = setup(3, 3);
  close(1, 5000);
  close(2, 10_000);
  tick(21_000);
  close(3, 25_000);
  sink.close();
  assert.deepEqual(
    lines.map((l) => l.text.replace(/ {2}.*/, '')),
    ['round 1/3', 'round 2/3', '… 2/3 rounds closed; workers: waiting 3', 'round 3/3'],
  );
});

test('worker states add up to the run\'s workers: a node that has not reported yet counts as idle', () => {
  const store = new RunStore(30, 3);
  const zero = () => Object.fromEntries(WORKER_STATES.map((s) => [s, 0])) as Record<(typeof WORKER_STATES)[number], number>;
  assert.deepEqual(store.states(), { ...zero(), idle: 30 });
  const states = { ...zero(), training: 6, waiting: 4 };
  store.apply({ type: 'workerSnapshot', snapshot: { chunk: '1 of 3', workers: 10, states, roundsDone: 0, errors: 0, retries: 0, messages: 0, bytes: 0, propagation: [] } });
  assert.deepEqual(store.states(), { ...zero(), idle: 20, training: 6, waiting: 4 });
  const sink = new HeadlessSink(new RunStore(5, 1), () => undefined, { now: () => 0 });
  assert.match(sink.progressLine(), /none reported yet/);
});
