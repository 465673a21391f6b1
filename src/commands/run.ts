import { availableParallelism } from 'node:os';
import path from 'node:path';
import { KEY_LIST_FILE, checkKeysDir } from '../auth/keys.js';
import { type ResolveInput, resolveScenario } from '../config/scenario.js';
import { generateToken } from '../control/protocol.js';
import { ExitCode, RunError, UsageError } from '../errors.js';
import { requestedBackend, wholeNodeTarget } from '../netem/choose.js';
import { NetnsTopology } from '../netem/netns.js';
import { ChildNode } from './children.js';
import { isBinary } from '../runtime/sea.js';
import { childNodeFlags, serverNodeFlags } from '../runtime/self.js';
import { payloadDirections, payloadOf } from '../config/payload.js';
import { coordinate, defaultOutDir, metricsOf, prepareOutDir } from './coordinate.js';
import { log, useTui } from './output.js';

export interface RunFlags {
  scenario?: string;
  netns?: boolean;
  dryRun?: boolean;
  keys?: string;
  out?: string;
  headless?: boolean;
  stdinCommands?: boolean;
  threshold?: string[];
  metricsPort?: string;
  metricsHost?: string;
  [setting: string]: string | boolean | string[] | undefined;
}

/**
 * `fedsim run`: the coordinator in this process, and a server node and K worker nodes as
 * child processes on loopback, attached over the same control protocol as remote nodes.
 */
export async function runRun(flags: RunFlags, settingFlags: ResolveInput['flags'], cut: ResolveInput['cut'] = {}): Promise<number> {
  const { scenario, thresholds } = resolveScenario({ flags: settingFlags, env: process.env, file: flags.scenario, cut, thresholds: flags.threshold as string[] | undefined, noThresholds: flags.thresholds === false });
  if (!flags.netns && !flags.dryRun) {
    // Without namespaces every node shares this host's network: a kernel rule for one chunk would reach them all.
    for (const f of scenario.faults) {
      const b = requestedBackend(f, scenario.faultBackend);
      // Single workers through iptables are told apart by their virtual ports, even on one host.
      const perWorker = b === 'iptables' && !wholeNodeTarget(f.target);
      if ((b === 'iptables' || b === 'netem') && !perWorker && f.target.scope === 'workers' && f.target.chunk !== undefined && scenario.nodes > 1) {
        throw new UsageError(
          `fault ${f.id}: the ${b} backend on one chunk needs --netns (on one host without namespaces its rules reach every node); use --netns, target all workers, single workers (iptables), or backend proxy`,
        );
      }
    }
  }
  if (flags.keys !== undefined) checkKeysDir(flags.keys);
  const metrics = metricsOf(flags);
  const outDir = prepareOutDir(flags.out ?? defaultOutDir());
  const token = generateToken();
  const children: ChildNode[] = [];
  let topo: NetnsTopology | null = null;
  if (flags.netns) {
    await NetnsTopology.check();
    topo = new NetnsTopology(['server', ...Array.from({ length: scenario.nodes }, (_, i) => `w${i + 1}`)]);
  }
  try {
    if (topo) {
      await topo.create();
      log(`netns: bridge ${topo.bridge} ${topo.gateway}/24; ${topo.hosts.map((h) => `${h.name} ${h.ns} ${h.address}`).join(', ')}`);
    }
    const controlHost = topo ? topo.gateway : '127.0.0.1';
    // This process, the server and the worker nodes share the host's cores.
    // (The binary takes no node flags: docs/binary.md.)
    const nodeFlags = isBinary() ? [] : childNodeFlags(scenario.nodes + 2, availableParallelism());
    const carriesMobilenet = payloadDirections(payloadOf(scenario)).some((d) => d.kind === 'mobilenetv2');
    const serverFlags = isBinary() ? [] : serverNodeFlags(carriesMobilenet);
    if (nodeFlags.length > 0) log(`run: worker nodes start with ${nodeFlags.join(' ')} (${availableParallelism()} cores for ${scenario.nodes + 2} fedsim processes; FEDSIM_NODE_GC=default turns it off)`);
    if (serverFlags.length > 0) log(`run: the server node starts with ${serverFlags.join(' ')} (fewer major GCs under large updates; FEDSIM_NODE_GC=default turns it off)`);
    const tui = useTui(flags);
    const { code, summary } = await coordinate({
      thresholds,
      metrics,
      tui,
      scenario,
      listen: { host: controlHost, port: 0 },
      token,
      tls: {},
      outDir,
      stdinCommands: flags.stdinCommands,
      onListening: (port, abort) => {
        const env: NodeJS.ProcessEnv = { ...process.env, FEDSIM_TOKEN: token, ...(flags.dryRun ? { FEDSIM_DRY_RUN: '1' } : {}) };
        const base = ['node', '--coordinator', `${controlHost}:${port}`];
        const spawnNode = (name: string, nsName: string, args: string[], file: string, flags: readonly string[] = []) => {
          const wrap = topo ? (argv: string[]) => topo.wrap(nsName, argv) : undefined;
          const childEnv = topo ? { ...env, FEDSIM_NETNS: topo.host(nsName).ns } : env;
          const child = new ChildNode(name, [...base, ...args], path.join(outDir, 'logs', file), () => undefined, childEnv, wrap, flags);
          children.push(child);
          void child.exited.then((c) => {
            if (c !== 0) abort(`the ${name} node exited with code ${c}: ${child.lastLines(3) || 'no output'}`);
          });
        };
        const serverHost = topo ? topo.host('server').address : '127.0.0.1';
        const keys = (arg: string) => (flags.keys ? ['--keys', arg] : []);
        spawnNode('server', 'server', ['--role', 'server', '--host', serverHost, ...keys(path.join(flags.keys ?? '', KEY_LIST_FILE))], 'server.log', serverFlags);
        for (let i = 1; i <= scenario.nodes; i++) {
          spawnNode(`worker ${i} of ${scenario.nodes}`, `w${i}`, ['--role', 'worker', '--chunk', `${i} of ${scenario.nodes}`, ...keys(flags.keys ?? '')], `worker-${i}.log`, nodeFlags);
        }
      },
    });
    log(`logs: ${path.join(outDir, 'logs')}`);
    if (code === ExitCode.thresholds) return code;
    if (code !== 0) throw new RunError(summary.failure ?? 'the run failed');
    return code;
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    if (topo) {
      const problems = await topo.destroy();
      for (const p of problems) log(`netns: cleanup problem: ${p} (run \`fedsim netns clean\`)`);
    }
  }
}
