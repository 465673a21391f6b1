/**
 * The inventory `fedsim deploy ansible` reads (src/deploy/inventory.ts): groups, children
 * and variables in both formats, and the chunk plan: every chunk exactly once, on the host
 * the inventory says.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { hostPlan, readInventory } from '../../src/deploy/inventory.js';
import { tempDir } from '../helpers/cli.js';

const dir = tempDir('fedsim-deploy-inv-');
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
}

const plan = (f: string, nodes: number) => Object.fromEntries(hostPlan(readInventory(f), nodes).chunks);

test('INI: groups, children, host and group variables', () => {
  const f = file(
    'hosts.ini',
    [
      '# a comment',
      '[coordinator]',
      'ctl.example.com ansible_host=10.0.0.1',
      '',
      '[server]',
      'fl-server:2222 ansible_user=fl   ; port and a comment',
      '',
      '[gpu]',
      'g1 fedsim_chunks=3',
      'g2',
      '',
      '[cpu]',
      'c1',
      '',
      '[workers:children]',
      'gpu',
      'cpu',
      '',
      '[gpu:vars]',
      'fedsim_chunks=2',
      '',
      '[all:vars]',
      'fedsim_isolated=true',
      'greeting="hello world"',
    ].join('\n'),
  );
  const inv = readInventory(f);
  assert.deepEqual(inv.hostsOf('workers'), ['g1', 'g2', 'c1']);
  assert.deepEqual(inv.hostsOf('server'), ['fl-server']);
  assert.equal(inv.varOf('ctl.example.com', 'ansible_host'), '10.0.0.1');
  assert.equal(inv.varOf('g1', 'fedsim_chunks'), 3, 'the host var wins');
  assert.equal(inv.varOf('g2', 'fedsim_chunks'), 2, 'then its group');
  assert.equal(inv.varOf('c1', 'fedsim_chunks'), undefined);
  assert.equal(inv.varOf('c1', 'fedsim_isolated'), true, 'then all');
  assert.equal(inv.varOf('c1', 'greeting'), 'hello world');
  // g1 3 chunks, g2 2, c1 1 (the default once any host says): 6 in all.
  assert.deepEqual(plan(f, 6), { g1: [1, 2, 3], g2: [4, 5], c1: [6] });
  assert.throws(() => plan(f, 7), /worker hosts run 6 chunks \(g1 3, g2 2, c1 1\) but the scenario has 7 worker nodes/);
});

test('YAML: all/children/hosts/vars; chunks spread evenly when no host sets fedsim_chunks', () => {
  const f = file(
    'hosts.yml',
    [
      'all:',
      '  vars:',
      '    ansible_user: fl',
      '  children:',
      '    coordinator:',
      '      hosts:',
      '        a:',
      '    server:',
      '      hosts:',
      '        a:',
      '    workers:',
      '      hosts:',
      '        w1:',
      '          ansible_host: 10.0.0.11',
      '        w2:',
      '        w3:',
      '',
    ].join('\n'),
  );
  const inv = readInventory(f);
  assert.equal(inv.varOf('w1', 'ansible_host'), '10.0.0.11');
  assert.equal(inv.varOf('w2', 'ansible_user'), 'fl');
  const p = hostPlan(inv, 7);
  assert.equal(p.coordinator, 'a');
  assert.equal(p.server, 'a');
  assert.deepEqual(Object.fromEntries(p.chunks), { w1: [1, 2, 3], w2: [4, 5], w3: [6, 7] });
  assert.deepEqual(plan(f, 3), { w1: [1], w2: [2], w3: [3] });
  assert.throws(() => plan(f, 2), /3 worker hosts but the scenario has 2 worker nodes/);
});

test('every chunk exactly once, for any count of hosts and nodes', () => {
  for (let hosts = 1; hosts <= 5; hosts++) {
    const f = file(`n${hosts}.ini`, `[coordinator]\nc\n[server]\ns\n[workers]\n${Array.from({ length: hosts }, (_, i) => `w${i}`).join('\n')}\n`);
    for (let nodes = hosts; nodes <= 12; nodes++) {
      const all = Object.values(plan(f, nodes)).flat();
      assert.deepEqual(all, Array.from({ length: nodes }, (_, i) => i + 1), `${hosts} hosts, ${nodes} nodes`);
    }
  }
});

test('an inventory without the groups, or with two coordinators, names the file and the group', () => {
  const noWorkers = file('no-workers.ini', '[coordinator]\nc\n[server]\ns\n');
  assert.throws(() => hostPlan(readInventory(noWorkers), 2), new RegExp(`inventory ${noWorkers} has no hosts in group "workers": it needs the groups coordinator`));
  const two = file('two.yml', 'all:\n  children:\n    coordinator:\n      hosts:\n        c1:\n        c2:\n    server:\n      hosts:\n        s:\n    workers:\n      hosts:\n        w:\n');
  assert.throws(() => hostPlan(readInventory(two), 1), /has 2 hosts in group "coordinator" \(c1, c2\): it takes exactly one/);
  const bad = file('bad.ini', '[coordinator]\nc\n[server]\ns\n[workers]\nw fedsim_chunks=none\n');
  assert.throws(() => hostPlan(readInventory(bad), 1), /fedsim_chunks of host w is "none"/);
  assert.throws(() => readInventory(file('range.ini', '[workers]\nw[01:10]\n')), /host ranges such as "w\[01:10\]" are not read/);
  assert.throws(() => readInventory(path.join(dir, 'missing.ini')), /--inventory .*missing\.ini cannot be read \(ENOENT\)/);
  assert.throws(() => readInventory(dir), /is a directory/);
});
