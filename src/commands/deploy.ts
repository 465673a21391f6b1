import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { parseIntFlag } from '../config/values.js';
import { generateToken } from '../control/protocol.js';
import { writeAnsible } from '../deploy/ansible.js';
import { k8sHeader, k8sManifests } from '../deploy/k8s.js';
import { deployName, loadDeployScenario } from '../deploy/plan.js';
import { ExitCode } from '../errors.js';
import { isBinary } from '../runtime/sea.js';
import { fedsimVersion } from '../runtime/self.js';
import { log } from './output.js';

export interface DeployK8sFlags {
  scenario: string;
  namespace: string;
  image?: string;
  hold: string;
}

export interface DeployAnsibleFlags {
  scenario: string;
  inventory: string;
  out?: string;
  binary?: string;
  runTimeout: string;
}

/** `fedsim deploy k8s`: the manifests on stdout (YAML documents), one line about them on stderr. */
export function runDeployK8s(flags: DeployK8sFlags): number {
  const d = loadDeployScenario(flags.scenario);
  const version = fedsimVersion();
  const opts = {
    namespace: flags.namespace,
    image: flags.image ?? `fedsim:${version}`,
    token: generateToken(),
    holdSeconds: parseIntFlag(flags.hold, '--hold', 0),
    version,
  };
  const docs = k8sManifests(d, opts);
  process.stdout.write(k8sHeader(d, opts) + docs.map((doc) => stringify(doc, { lineWidth: 0 })).join('---\n'));
  log(`fedsim deploy: ${docs.length} manifests for run "${d.scenario.name}" (${deployName(d.scenario.name)}) in namespace ${opts.namespace}, image ${opts.image}, with a new run token`);
  return ExitCode.ok;
}

/** The single executable to copy: this one, when fedsim runs as it; else dist/fedsim of this package (`npm run build`). */
function defaultBinary(): string {
  if (isBinary()) return process.execPath;
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fedsim');
}

/** `fedsim deploy ansible`: writes the playbook directory and says how to run it. */
export function runDeployAnsible(flags: DeployAnsibleFlags): number {
  const d = loadDeployScenario(flags.scenario);
  const out = flags.out ?? `${deployName(d.scenario.name)}-ansible`;
  const w = writeAnsible(d, {
    inventory: flags.inventory,
    out,
    binary: flags.binary ?? defaultBinary(),
    token: generateToken(),
    runTimeout: parseIntFlag(flags.runTimeout, '--run-timeout', 1),
    version: fedsimVersion(),
  });
  const chunks = [...w.plan.chunks].map(([h, c]) => `${h} ${c.length === 1 ? c[0] : `${c[0]}..${c[c.length - 1]}`}`).join(', ');
  log(`fedsim deploy: wrote ${w.dir} (playbook.yml, fedsim.yml, scenario.yaml): coordinator on ${w.plan.coordinator}, server on ${w.plan.server}, chunks of ${d.scenario.nodes}: ${chunks}`);
  log(`run it with: ${w.command.join(' ')}`);
  log(`the run directory and the node logs come back to ${path.join(w.dir, 'run')}`);
  return ExitCode.ok;
}
