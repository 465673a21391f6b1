import assert from 'node:assert/strict';
import { test } from 'node:test';
import { render } from 'ink-testing-library';
import { HeadlessSink } from '../../src/report/headless.js';
import { type NodeView, RunStore } from '../../src/sim/runStore.js';
import { WORKER_STATES, type WorkerState } from '../../src/sim/workerStats.js';
import { ChunkTable, FaultList, Header, NodeList, Screen, chunkBarWidth } from '../../src/tui/components.js';
import { RateMeter, type ScreenModel, barCells, screenModel, sparkline } from '../../src/tui/model.js';
import { type TuiActions, handleKey } from '../../src/tui/sink.js';

const zero = () => Object.fromEntries(WORKER_STATES.map((s) => [s, 0])) as Record<WorkerState, number>;

function node(id: string, role: 'server' | 'worker', chunk: string, status: NodeView['status'] = 'running'): NodeView {
  return { id, role, chunk, host: 'hostA', pid: 1, status, lastHeardAt: 900, cpuPercent: 12, rssBytes: 120e6, clockOffsetMs: 0.2, rttMs: 0.1, exitCode: null, error: '' };
}

/** A recorded run: K chunks of W workers each, mid-run, one fault on, one judged, one node lost. */
function recorded(k: number, w: number): RunStore {
  const s = new RunStore(k * w, 5);
  s.apply({ type: 'node', node: node('server', 'server', '') });
  for (let n = 1; n <= k; n++) {
    const chunk = `${n} of ${k}`;
    s.apply({ type: 'node', node: node(`worker ${chunk}`, 'worker', chunk, n === 2 ? 'lost' : 'running') });
    const states = zero();
    states.training = Math.floor(w / 2);
    states.sending = Math.floor(w / 4);
    states.waiting = w - states.training - states.sending - 1;
    states.cut = 1;
    s.apply({ type: 'workerSnapshot', snapshot: { chunk, workers: w, states, roundsDone: 2 * w, errors: n, retries: 0, messages: 100 * n, bytes: 1000, propagation: [{ version: 2, histogram: '' }].slice(0, 0) } });
  }
  s.apply({ type: 'phase', phase: 'running', at: 0 });
  s.apply({ type: 'rounds', rounds: [1, 2].map((r) => ({ round: r, durationMs: 100 * r, updates: k * w, byQuorum: false, messages: 10, bytes: 10, publishedAtMs: 0 })) });
  s.apply({ type: 'faultApplied', instanceId: 'hand-blackhole-c1#1', kind: 'blackhole', target: 'all workers of chunk 1', backend: 'proxy', chunk: `1 of ${k}`, affected: w, durationMs: 10_000, at: 500 });
  s.apply({ type: 'faultApplied', instanceId: 'cut#1', kind: 'reset', target: 'one worker of chunk 1', backend: 'iptables', chunk: `1 of ${k}`, affected: 1, durationMs: 100, at: 100 });
  s.apply({
    type: 'faultReport',
    at: 800,
    report: { faultId: 'cut', instance: 1, kind: 'reset', backend: 'iptables', target: 'one worker of chunk 1', trigger: 'round 2', chunk: `1 of ${k}`, affected: 1, appliedAtMs: 0, healedAtMs: 0, noticedAfterMs: 1, noticedBy: 'reset', firstExchangeAfterHealMs: 1, nextRoundAfterHealMs: 5, degradedWorkers: 0, stuckWorkers: 0, verdict: 'recovered' },
  });
  for (let i = 0; i < 8; i++) s.apply({ type: 'notable', text: `note ${i}` });
  return s;
}

function model(store: RunStore, k: number, over: Partial<{ width: number; height: number; color: boolean; selected: number; help: boolean }> = {}): ScreenModel {
  const ui = { selected: 1, help: false, message: '', width: 80, height: 24, color: false, ...over };
  return screenModel(store, { name: 'frames', transport: 'http', payload: 'string', nodes: k, handFaults: true }, ui, new RateMeter(), 1000);
}

const lines = (frame: string | undefined) => (frame ?? '').split('\n');

test('the whole screen at 80x24 without colour: header, a row per chunk with its states, faults, nodes, keys', () => {
  const { lastFrame, unmount } = render(<Screen m={model(recorded(3, 100), 3)} />);
  const f = lastFrame()!;
  unmount();
  const ls = lines(f);
  assert.ok(ls.length <= 24, `${ls.length} lines:\n${f}`);
  for (const l of ls) assert.ok(l.length <= 80, `line over 80 columns: "${l}"`);
  assert.match(ls[0], /fedsim frames · http · string · round 3\/5 .* 40% · 1\.0s/);
  assert.match(f, /rounds last 200 ms p95 200 ms · prop\. p99 – · 0 msg\/s · 0\.00 MB\/s · errors 6/);
  assert.match(f, /> 1 of 3 +hostA +100 T+S+W+X +2 +1/);
  assert.match(f, /  2 of 3 +hostA +100 T+S+W+X +2 +2 LOST/);
  assert.match(f, /hand-blackhole-c1#1 +blackhole chunk 1 +proxy +on, 9\.5 s left/);
  assert.match(f, /cut#1 +reset +one of chunk 1 +iptables recovered/);
  assert.match(f, /worker 2 of 3 +hostA +lost/);
  assert.match(f, /g reg T train S send W wait R recv ! retry X cut F fail # done/);
  assert.match(f, /note 7/);
  assert.match(ls[ls.length - 1], /↑↓ chunk +d disconnect +b blackhole +l delay +h heal +p pause +\? help +q quit/);
});

test('10,000 workers in 40 chunks fit 80x24: a window of chunk rows around the selection, the lost node first', () => {
  const store = recorded(40, 250);
  const f = render(<Screen m={model(store, 40, { selected: 30 })} />).lastFrame()!;
  const ls = lines(f);
  assert.ok(ls.length <= 24, `${ls.length} lines`);
  assert.match(f, /states 28-32\/40/);
  assert.match(f, /> 30 of 40/);
  assert.match(f, /nodes \(\d+ of 41\)\n  worker 2 of 40 +hostA +lost/);
});

// ink-testing-library's terminal is 100 columns wide: the widest frame it can show.
test('wider terminals get wider bars; colour draws blocks instead of letters (the colours themselves are seen in tmux)', () => {
  const store = recorded(2, 10);
  const narrow = render(<ChunkTable m={model(store, 2, { width: 80 })} maxRows={2} />).lastFrame()!;
  const wide = render(<ChunkTable m={model(store, 2, { width: 100 })} maxRows={2} />).lastFrame()!;
  const bar = (f: string) => /1 of 2 +hostA +10 ([TSWX]+)/.exec(f)![1].length;
  assert.equal(bar(narrow), chunkBarWidth(80));
  assert.equal(bar(wide), chunkBarWidth(100));
  assert.ok(chunkBarWidth(100) > chunkBarWidth(80));
  assert.match(render(<ChunkTable m={model(store, 2, { width: 100 })} maxRows={2} />).lastFrame()!, /g registering T training S sending/);
  const colour = render(<ChunkTable m={model(store, 2, { color: true })} maxRows={2} />).lastFrame()!;
  assert.match(colour, /█/);
});

test('components alone: header paused, fault list empty, node list', () => {
  const store = recorded(1, 10);
  store.apply({ type: 'paused', paused: true });
  assert.match(render(<Header m={model(store, 1)} />).lastFrame()!, /PAUSED/);
  const empty = new RunStore(10, 5);
  assert.match(render(<FaultList m={model(empty, 1)} maxRows={3} />).lastFrame()!, /faults none yet \(keys d, b, l add one on the selected chunk\)/);
  const wide = model(store, 1, { width: 100 });
  wide.nodes = wide.nodes.map((n) => ({ ...n, loopDelayMs: 12.3, openFds: 41 }));
  assert.match(render(<NodeList m={wide} maxRows={5} />).lastFrame()!, /off \+0\.2ms lag 12ms fds 41/);
  assert.match(render(<NodeList m={model(store, 1)} maxRows={5} />).lastFrame()!, /server +hostA +running +beat +0\.1s cpu +12% +120 MB off \+0\.2ms/);
  assert.match(render(<Screen m={model(store, 1, { help: true })} />).lastFrame()!, /p +pause \/ resume new rounds/);
});

test('bars fill their width exactly, and a state with one worker of 10,000 still shows', () => {
  const st = zero();
  st.training = 9999;
  st.failed = 1;
  const cells = barCells(st, 10_000, 40);
  assert.equal(cells.reduce((a, [, n]) => a + n, 0), 40);
  assert.deepEqual(cells.find(([s]) => s === 'failed'), ['failed', 1]);
  assert.deepEqual(barCells(zero(), 0, 10), []);
  assert.equal(sparkline([1, 2, 4, 8], 10), '▁▂▄█');
});

test('keys: arrows move within the chunks, d/b/l/h/p/q reach the coordinator, ? opens help and any key closes it', () => {
  const calls: string[] = [];
  const a: TuiActions = {
    fireHand: (c, k) => (calls.push(`fire ${c} ${k}`), 'fired'),
    healChunk: (c) => (calls.push(`heal ${c}`), 'healed'),
    setPaused: (p) => (calls.push(`pause ${p}`), 'paused'),
    quit: () => void calls.push('quit'),
  };
  const ui = { selected: 1, help: false, message: '', width: 80, height: 24, color: false };
  const k = { upArrow: false, downArrow: false, ctrl: false, escape: false };
  handleKey('', { ...k, upArrow: true }, ui, 3, false, a);
  assert.equal(ui.selected, 1);
  handleKey('', { ...k, downArrow: true }, ui, 3, false, a);
  handleKey('', { ...k, downArrow: true }, ui, 3, false, a);
  handleKey('', { ...k, downArrow: true }, ui, 3, false, a);
  assert.equal(ui.selected, 3);
  for (const key of ['d', 'b', 'l', 'h']) handleKey(key, k, ui, 3, false, a);
  handleKey('p', k, ui, 3, true, a);
  handleKey('?', k, ui, 3, false, a);
  assert.equal(ui.help, true);
  handleKey('d', k, ui, 3, false, a);
  assert.equal(ui.help, false, 'a key closes help and does nothing else');
  handleKey('c', { ...k, ctrl: true }, ui, 3, false, a);
  assert.deepEqual(calls, ['fire 3 reset', 'fire 3 blackhole', 'fire 3 delay', 'heal 3', 'pause false', 'quit']);
  assert.match(ui.message, /quitting/);
});

test('without a terminal: plain lines from the same store (a round line once every worker holds its model)', () => {
  const out: string[] = [];
  const s = new RunStore(2, 2);
  const sink = new HeadlessSink(s, (l) => out.push(l), { everyMs: 60_000 });
  s.apply({ type: 'phase', phase: 'running', at: 0 });
  s.apply({ type: 'rounds', rounds: [{ round: 1, durationMs: 12.5, updates: 2, byQuorum: false, messages: 6, bytes: 100, publishedAtMs: 0 }] });
  assert.equal(out.length, 0, 'not before the workers hold the model');
  sink.close();
  assert.match(out.join('\n'), /round 1\/2 +12\.5 ms \(p95 12\.5 ms\)/);
});
