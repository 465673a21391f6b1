/**
 * What both `fedsim deploy` targets (Kubernetes manifests, an Ansible playbook) need to know
 * about a scenario before anything runs: the scenario itself, resolved as the coordinator
 * will resolve it, which kernel fault backends its worker nodes may use, and names.
 */
import { readFileSync } from 'node:fs';
import { resolveScenario } from '../config/scenario.js';
import type { Scenario } from '../config/settings.js';
import { chooseBackend } from '../netem/choose.js';

export interface DeployScenario {
  readonly file: string;
  /** The file's text, shipped as it is (the coordinator reads it on its own host). */
  readonly text: string;
  readonly scenario: Scenario;
}

/**
 * The scenario file alone: no flags and no FEDSIM_* variables of this shell, since the
 * coordinator that runs it elsewhere sees neither. A bad file is the usual UsageError.
 */
export function loadDeployScenario(file: string): DeployScenario {
  const { scenario } = resolveScenario({ flags: {}, env: {}, file });
  return { file, text: readFileSync(file, 'utf8'), scenario };
}

export type KernelBackend = 'iptables' | 'netem';

/**
 * The kernel backends the worker nodes may pick for this scenario's faults, when each node
 * has a host or pod of its own (`--isolated`) and the tools work there: the same choice a
 * node makes (src/netem/choose.ts), with every backend available. Empty: the proxy carries
 * everything, and no node needs root or NET_ADMIN. (Kernel backends run on the worker
 * nodes only: a fault on the server's link is applied by every worker node on its own link.)
 */
export function kernelBackends(sc: Scenario): Set<KernelBackend> {
  const out = new Set<KernelBackend>();
  for (const f of sc.faults) {
    const b = chooseBackend(f, sc.faultBackend, { iptables: null, netem: null, isolated: true });
    if (b !== 'proxy') out.add(b);
  }
  return out;
}

/** Longest base name, so that base + "-coordinator" stays a 63-character DNS label. */
const BASE_MAX = 63 - '-coordinator'.length;

/**
 * `fedsim-<name>`: the scenario name made a DNS-1035 label (lower case, [a-z0-9-], starting
 * with a letter), short enough for every suffix the manifests add. Kubernetes object names
 * and Ansible paths both use it.
 */
export function deployName(scenarioName: string): string {
  const safe = scenarioName
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '');
  const base = `fedsim-${safe || 'run'}`.slice(0, BASE_MAX).replace(/-+$/, '');
  return base;
}
