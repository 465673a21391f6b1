import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FOLD_THREAD_MIN_BYTES, Float64Sum, type TiledRegion, foldThreadWanted } from '../../src/payload/kernels.js';
import { seededRandom } from '../../src/payload/random.js';

/** Random float32 weights (of mixed magnitudes, so the order of additions shows in the bits) into `b`. */
function fillRandom(b: Buffer, seed: number): void {
  const rnd = seededRandom(seed);
  for (let o = 0; o + 4 <= b.length; o += 4) b.writeFloatLE((rnd() - 0.5) * 10 ** Math.floor(rnd() * 8 - 4), o);
}

test('a sum with a thread folds the large updates lying in its slots there: the same bits as folding on the calling thread, each slot held until its fold is done', () => {
  const bytes = 2 * FOLD_THREAD_MIN_BYTES + 64; // graph bytes around two float regions
  const floats = (bytes - 64) / 4;
  const regions: TiledRegion[] = [
    { offset: 16, length: FOLD_THREAD_MIN_BYTES, k0: 0 },
    { offset: 32 + FOLD_THREAD_MIN_BYTES, length: FOLD_THREAD_MIN_BYTES, k0: FOLD_THREAD_MIN_BYTES / 4 },
  ];
  const threaded = new Float64Sum(floats, bytes, 3, { thread: true });
  const plain = new Float64Sum(floats);
  const slots = [threaded.takeSlot()!, threaded.takeSlot()!, threaded.takeSlot()!];
  const held: boolean[] = [];
  const heap = Buffer.alloc(bytes);
  for (let u = 0; u < 7; u++) {
    const slot = slots[u % 3];
    // A slot is reused only once the update in it was folded (meanInto below waited for it).
    if (u >= 3) assert.equal(held[u - 3], false, `update ${u - 3} let its slot go before the slot is reused`);
    fillRandom(slot, 100 + u);
    slot.copy(heap);
    held[u] = false;
    threaded.foldRegions(slot, regions, () => {
      held[u] = true;
      return () => (held[u] = false);
    });
    assert.equal(held[u], true, 'held from the call');
    plain.foldRegions(heap, regions);
    if (u % 3 === 2) {
      // meanInto waits for the folds first; their holds are let go by then.
      const a = Buffer.alloc(FOLD_THREAD_MIN_BYTES * 2);
      const b = Buffer.alloc(FOLD_THREAD_MIN_BYTES * 2);
      threaded.meanInto(a, u + 1);
      plain.meanInto(b, u + 1);
      assert.ok(a.equals(b), `the mean of ${u + 1} updates, bit for bit`);
      assert.ok(held.every((h) => !h), 'every hold let go once the folds were waited for');
      assert.equal(threaded.folding, 0);
    }
  }
  // An update outside the slots, or a small one, is folded on the calling thread (no hold taken).
  let taken = 0;
  threaded.foldRegions(heap, regions, () => (taken++, () => undefined));
  const small = threaded.takeSlot();
  assert.equal(small, null, 'all three slots are out');
  threaded.foldRegions(slots[0].subarray(0, 4096), [{ offset: 0, length: 4096, k0: 0 }], () => (taken++, () => undefined));
  assert.equal(taken, 0, 'folded at once');
  assert.throws(() => threaded.foldRegions(slots[0], [{ offset: bytes - 8, length: 16, k0: 0 }]), /do not fit/);
});

test('a sum with a thread lets its process exit, and FEDSIM_FOLD_THREAD=0 turns the thread off', () => {
  const kernels = new URL('../../src/payload/kernels.js', import.meta.url).href;
  const script = `
    const { Float64Sum } = await import(${JSON.stringify(kernels)});
    const s = new Float64Sum(1 << 20, 4 << 20, 1, { thread: true });
    const slot = s.takeSlot();
    let done = false;
    s.foldRegions(slot, [{ offset: 0, length: 4 << 20, k0: 0 }], () => () => (done = true));
    if (s.folding !== 1 && !done) throw new Error('not posted');
    s.meanInto(Buffer.alloc(16), 1);
    if (!done) throw new Error('the hold was not let go');
    console.log('folded');`;
  // The thread is not waited for at exit: without unref this child would hang until the timeout.
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, cwd: fileURLToPath(new URL('.', import.meta.url)) });
  assert.equal(r.error, undefined, `the child exited by itself (${r.error?.message})`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /folded/);
  assert.equal(foldThreadWanted({}), true);
  assert.equal(foldThreadWanted({ FEDSIM_FOLD_THREAD: '0' }), false);
  assert.equal(foldThreadWanted({ FEDSIM_FOLD_THREAD: '1' }), true);
});

test('a fold thread that never starts is given up on: drain runs its jobs on the calling thread, in order, and later folds stay there', async () => {
  const { FoldThread } = await import('../../src/payload/foldThread.js');
  const { KERNELS_SHARED_WASM_BASE64 } = await import('../../src/payload/kernelsWasm.js');
  const module = new WebAssembly.Module(Buffer.from(KERNELS_SHARED_WASM_BASE64, 'base64'));
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  const ran: number[] = [];
  const done: number[] = [];
  // A thread that never gets as far as starting (it sleeps), so never marks itself running.
  const t = new FoldThread(module, memory, (calls) => ran.push(calls[0]), { source: 'Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)', startMs: 300 });
  t.post(new Int32Array([1, 0, 0]), () => done.push(1));
  t.post(new Int32Array([2, 0, 0]), () => done.push(2));
  assert.equal(t.usable, true);
  t.drain();
  assert.deepEqual(ran, [1, 2], 'the jobs ran here, in order');
  assert.deepEqual(done, [1, 2]);
  assert.equal(t.usable, false, 'given up on');
  assert.equal(t.pending, 0);
  await t.close();
});

/** A FoldThread running `source` (with `c`, its control array, and `parentPort` in scope), over a memory of one page. */
async function threadRunning(source: string, times: { startMs?: number; stallMs?: number }, runHere: (calls: Int32Array) => void = () => undefined) {
  const { FoldThread } = await import('../../src/payload/foldThread.js');
  const { KERNELS_SHARED_WASM_BASE64 } = await import('../../src/payload/kernelsWasm.js');
  const module = new WebAssembly.Module(Buffer.from(KERNELS_SHARED_WASM_BASE64, 'base64'));
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  const prelude = `const { parentPort, workerData } = require('node:worker_threads'); const c = new Int32Array(workerData.control);`;
  return new FoldThread(module, memory, runHere, { source: prelude + source, ...times });
}

/** Resolves once `check` is true (looked at every 20 ms), or rejects after `ms`. */
async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a fold thread that fails lets go of its jobs with no drain called (their slots are needed to close the round), and drain then throws at once', async (t) => {
  await t.test('a thread that never starts: its jobs run on the calling thread once startMs has passed', async () => {
    const ran: number[] = [];
    const done: number[] = [];
    const th = await threadRunning('Atomics.wait(c, 0, 0);', { startMs: 200 }, (calls) => ran.push(calls[0]));
    th.post(new Int32Array([7, 0, 0]), () => done.push(7));
    await until(() => done.length === 1, 10_000, 'the job ran here');
    assert.deepEqual(ran, [7]);
    assert.equal(th.usable, false);
    assert.equal(th.failed, null, 'given up on, not failed');
    th.drain();
    await th.close();
  });
  await t.test('a running thread that exits', async () => {
    const done: number[] = [];
    const th = await threadRunning(`Atomics.store(c, 2, 1); Atomics.notify(c, 2); parentPort.once('message', () => process.exit(3));`, {});
    th.post(new Int32Array([1, 0, 0]), () => done.push(1));
    th.post(new Int32Array([2, 0, 0]), () => done.push(2));
    await until(() => done.length === 2, 10_000, 'both jobs let go');
    assert.deepEqual(done, [1, 2], 'in order');
    assert.match(th.failed ?? '', /exited \(code 3\)/);
    assert.throws(() => th.drain(), /folding in a thread failed: the fold thread exited \(code 3\)/);
    assert.throws(() => th.post(new Int32Array(3), () => undefined), /not usable/);
  });
  await t.test('a running thread that stops finishing jobs', async () => {
    const done: number[] = [];
    const th = await threadRunning(`Atomics.store(c, 2, 1); Atomics.notify(c, 2); parentPort.on('message', () => undefined);`, { stallMs: 300 });
    th.post(new Int32Array([1, 0, 0]), () => done.push(1));
    await until(() => done.length === 1, 10_000, 'the job let go');
    assert.match(th.failed ?? '', /finished no job in \d+ s \(1 waiting\)/);
    assert.throws(() => th.drain(), /finished no job/);
  });
  await t.test('a job that throws in the thread', async () => {
    const done: number[] = [];
    const th = await threadRunning(
      `Atomics.store(c, 2, 1); Atomics.notify(c, 2); parentPort.on('message', () => { Atomics.store(c, 1, 1); Atomics.add(c, 0, 1); Atomics.notify(c, 0); parentPort.postMessage('RangeError: out of bounds'); });`,
      {},
    );
    th.post(new Int32Array([1, 0, 0]), () => done.push(1));
    assert.throws(() => th.drain(), /folding in a thread failed: a fold failed in the thread/, 'drain sees the failure flag');
    assert.deepEqual(done, [1], 'and lets the job go');
    assert.equal(th.usable, false);
  });
});

test('a sum whose thread failed: folds taken in the meantime change nothing, meanInto throws until reset, and after reset the sum folds on the calling thread, exactly', async () => {
  const bytes = FOLD_THREAD_MIN_BYTES;
  const floats = bytes / 4;
  const regions: TiledRegion[] = [{ offset: 0, length: bytes, k0: 0 }];
  const sum = new Float64Sum(floats, bytes, 2, { thread: true });
  const plain = new Float64Sum(floats);
  const [a, b] = [sum.takeSlot()!, sum.takeSlot()!];
  fillRandom(a, 1);
  let held = 0;
  const hold = () => (held++, () => held--);
  sum.foldRegions(a, regions, hold);
  sum.meanInto(Buffer.alloc(16), 1);
  assert.equal(held, 0);
  // A fold is posted, and the thread fails with it pending (FoldThread's own tests show how it
  // finds that out; here its failure is called as the watcher would).
  sum.foldRegions(a, regions, hold);
  assert.equal(held, 1);
  const thread = (sum as unknown as { thread: { fail(why: string): void; exited: boolean } }).thread;
  thread.fail('the fold thread finished no job in 30 s (1 waiting)');
  assert.equal(held, 0, 'its slot let go at once');
  sum.foldRegions(a, regions, hold);
  assert.equal(held, 0, 'nothing held: the sum is broken, the fold changes nothing');
  assert.match(sum.failure ?? '', /finished no job/);
  assert.throws(() => sum.meanInto(Buffer.alloc(16), 1), /this running sum is not to be trusted: folding in a thread failed: the fold thread finished no job/);
  // Until the failed thread has exited the memory is not to be summed in again (SpareSum gives another sum meanwhile).
  await until(() => sum.quiet, 10_000, 'the failed thread exited');
  assert.equal(thread.exited, true);
  sum.reset();
  assert.equal(sum.failure, null);
  fillRandom(b, 2);
  sum.foldRegions(a, regions, hold);
  sum.foldRegions(b, regions, hold);
  assert.equal(held, 0, 'folded on the calling thread: no hold taken');
  plain.foldRegions(a, regions);
  plain.foldRegions(b, regions);
  const x = Buffer.alloc(bytes);
  const y = Buffer.alloc(bytes);
  sum.meanInto(x, 2);
  plain.meanInto(y, 2);
  assert.ok(x.equals(y), 'the mean of the two, bit for bit');
});

test('a fold thread that exits with every job done loses nothing: the sum stays whole and folds on the calling thread from then on', async () => {
  const bytes = FOLD_THREAD_MIN_BYTES;
  const regions: TiledRegion[] = [{ offset: 0, length: bytes, k0: 0 }];
  const sum = new Float64Sum(bytes / 4, bytes, 2, { thread: true });
  const plain = new Float64Sum(bytes / 4);
  const [a, b] = [sum.takeSlot()!, sum.takeSlot()!];
  fillRandom(a, 3);
  fillRandom(b, 4);
  let held = 0;
  const hold = () => (held++, () => held--);
  sum.foldRegions(a, regions, hold);
  plain.foldRegions(a, regions);
  sum.meanInto(Buffer.alloc(16), 1);
  const thread = (sum as unknown as { thread: { worker: { terminate(): Promise<number> }; failed: string | null; usable: boolean } }).thread;
  await thread.worker.terminate();
  await until(() => !thread.usable, 10_000, 'the exit seen');
  assert.equal(thread.failed, null, 'not a failure: nothing was pending');
  sum.foldRegions(b, regions, hold);
  plain.foldRegions(b, regions);
  assert.equal(held, 0, 'folded on the calling thread');
  assert.equal(sum.failure, null);
  const x = Buffer.alloc(bytes);
  const y = Buffer.alloc(bytes);
  sum.meanInto(x, 2);
  plain.meanInto(y, 2);
  assert.ok(x.equals(y));
});
