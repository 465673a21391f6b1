/**
 * `fedsim deploy ansible`: a playbook directory for one run across the hosts of an
 * inventory (docs/multi-host.md). It holds:
 *
 *   playbook.yml   the play (src/deploy/playbook.ts): the same for every run
 *   fedsim.yml     this run: token, chunk plan, binary, paths, timeouts (mode 0600: the token)
 *   scenario.yaml  the scenario file, copied to the coordinator host
 *   run/           after the play: the coordinator's run directory and every node's log
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { UsageError } from '../errors.js';
import { hostPlan, readInventory, type HostPlan } from './inventory.js';
import { type DeployScenario, kernelBackends } from './plan.js';
import { PLAYBOOK } from './playbook.js';

export interface AnsibleOptions {
  readonly inventory: string;
  readonly out: string;
  /** The single executable to copy to the hosts (dist/fedsim). */
  readonly binary: string;
  /** The run token, generated per `fedsim deploy` invocation. */
  readonly token: string;
  /** Seconds the play waits for the coordinator to end the run. */
  readonly runTimeout: number;
  readonly version: string;
}

export interface AnsibleDir {
  readonly dir: string;
  readonly playbook: string;
  readonly plan: HostPlan;
  /** How to run it. */
  readonly command: string[];
}

/** Seconds the play waits for the coordinator's "listening" line, and for processes to stop after SIGTERM. */
const START_TIMEOUT_S = 30;
const STOP_TIMEOUT_S = 10;

export function checkBinary(file: string): string {
  let ok = false;
  try {
    ok = statSync(file).isFile();
  } catch {
    ok = false;
  }
  if (!ok) throw new UsageError(`--binary ${file} is not a file: build the single executable with \`npm run build\` (dist/fedsim) or pass --binary FILE`);
  return path.resolve(file);
}

/** Writes the playbook directory; the inventory and the binary are checked first, so nothing is written for a bad input. */
export function writeAnsible(d: DeployScenario, o: AnsibleOptions): AnsibleDir {
  const plan = hostPlan(readInventory(o.inventory), d.scenario.nodes);
  const binary = checkBinary(o.binary);
  const dir = path.resolve(o.out);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new UsageError(`--out ${o.out} cannot be created (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): choose a writable directory`);
  }
  const vars = {
    fedsim_name: d.scenario.name,
    fedsim_version: o.version,
    fedsim_run_id: randomBytes(4).toString('hex'),
    fedsim_token: o.token,
    fedsim_binary: binary,
    fedsim_out: dir,
    fedsim_nodes: d.scenario.nodes,
    fedsim_chunk_plan: Object.fromEntries(plan.chunks),
    // Worker nodes may use iptables/netem: the play becomes root (unless fedsim_become says otherwise).
    fedsim_kernel_faults: kernelBackends(d.scenario).size > 0,
    fedsim_start_timeout: START_TIMEOUT_S,
    fedsim_run_timeout: o.runTimeout,
    fedsim_stop_timeout: STOP_TIMEOUT_S,
  };
  const head = `# fedsim run "${d.scenario.name}" from ${d.file}, inventory ${path.resolve(o.inventory)}: written by fedsim deploy ansible ${o.version}.\n# Holds the run token: keep it to yourself.\n`;
  const varsFile = path.join(dir, 'fedsim.yml');
  writeFileSync(varsFile, head + stringify(vars, { lineWidth: 0 }), { mode: 0o600 });
  chmodSync(varsFile, 0o600);
  writeFileSync(path.join(dir, 'scenario.yaml'), d.text);
  const playbook = path.join(dir, 'playbook.yml');
  writeFileSync(playbook, PLAYBOOK);
  return { dir, playbook, plan, command: ['ansible-playbook', '-i', path.resolve(o.inventory), playbook] };
}
