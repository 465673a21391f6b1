import { type ResolveInput, resolveScenario } from '../config/scenario.js';
import { parseHostPort, parseIntFlag } from '../config/values.js';
import { generateToken } from '../control/protocol.js';
import { ExitCode, RunError } from '../errors.js';
import { coordinate, defaultOutDir, metricsOf, prepareOutDir } from './coordinate.js';
import { emitEvent, log, useTui } from './output.js';

export interface CoordinatorFlags {
  listen: string;
  scenario?: string;
  threshold?: string[];
  thresholds?: boolean;
  expectNodes?: string;
  out?: string;
  headless?: boolean;
  stdinCommands?: boolean;
  token?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  metricsPort?: string;
  metricsHost?: string;
}

/** `fedsim coordinator`: nodes on any host attach; the run starts when all of them are ready. */
export async function runCoordinator(flags: CoordinatorFlags, settingFlags: ResolveInput['flags'], cut: ResolveInput['cut'] = {}): Promise<number> {
  const listen = parseHostPort(flags.listen, '--listen', true);
  const withExpect = { ...settingFlags };
  if (flags.expectNodes !== undefined) {
    parseIntFlag(flags.expectNodes, '--expect-nodes', 1);
    withExpect.nodes = flags.expectNodes;
  }
  const { scenario, thresholds } = resolveScenario({ flags: withExpect, env: process.env, file: flags.scenario, cut, thresholds: flags.threshold as string[] | undefined, noThresholds: flags.thresholds === false });
  const metrics = metricsOf(flags);
  const outDir = prepareOutDir(flags.out ?? defaultOutDir());
  const given = flags.token ?? process.env.FEDSIM_TOKEN;
  const token = given || generateToken();
  const tls = { cert: flags.tlsCert, key: flags.tlsKey, ca: flags.tlsCa };
  const tui = useTui(flags);
  const { code, summary } = await coordinate({
    thresholds,
    metrics,
    scenario,
    listen,
    token,
    tls,
    outDir,
    stdinCommands: flags.stdinCommands,
    tui,
    onListening: (port, _abort, announce) => {
      if (!tui) emitEvent({ event: 'listening', host: listen.host, controlPort: port, pid: process.pid });
      const addr = `${listen.host === '0.0.0.0' ? '<this-host>' : listen.host}:${port}`;
      if (!given) announce(`run token: ${token}  (give it to every node with --token or FEDSIM_TOKEN)`);
      announce(`waiting up to ${scenario.expectTimeout} s for 1 server node and ${scenario.nodes} worker nodes, e.g.:`);
      announce(`  fedsim node --role server --coordinator ${addr} --host 0.0.0.0`);
      announce(`  fedsim node --role worker --coordinator ${addr}   (× ${scenario.nodes}; chunks are assigned in order)`);
    },
  });
  if (code === ExitCode.thresholds) return code;
  if (code !== 0) throw new RunError(summary.failure ?? 'the run failed');
  return code;
}
