import path from 'node:path';
import { type ResolveInput, resolveScenario } from '../config/scenario.js';
import { generateToken } from '../control/protocol.js';
import { RunError } from '../errors.js';
import { ChildNode } from './children.js';
import { coordinate, defaultOutDir, prepareOutDir } from './coordinate.js';
import { log } from './output.js';

export interface RunFlags {
  scenario?: string;
  out?: string;
  headless?: boolean;
  [setting: string]: string | boolean | undefined;
}

/**
 * `fedsim run`: the coordinator in this process, and a server node and K worker nodes as
 * child processes on loopback, attached over the same control protocol as remote nodes.
 */
export async function runRun(flags: RunFlags, settingFlags: ResolveInput['flags']): Promise<number> {
  const { scenario } = resolveScenario({ flags: settingFlags, env: process.env, file: flags.scenario });
  const outDir = prepareOutDir(flags.out ?? defaultOutDir());
  const token = generateToken();
  const children: ChildNode[] = [];
  try {
    const { code, summary } = await coordinate({
      scenario,
      listen: { host: '127.0.0.1', port: 0 },
      token,
      tls: {},
      outDir,
      onListening: (port, abort) => {
        const env = { ...process.env, FEDSIM_TOKEN: token };
        const base = ['node', '--coordinator', `127.0.0.1:${port}`];
        const spawnNode = (name: string, args: string[], file: string) => {
          const child = new ChildNode(name, [...base, ...args], path.join(outDir, 'logs', file), () => undefined, env);
          children.push(child);
          void child.exited.then((c) => {
            if (c !== 0) abort(`the ${name} node exited with code ${c}: ${child.lastLines(3) || 'no output'}`);
          });
        };
        spawnNode('server', ['--role', 'server', '--host', '127.0.0.1'], 'server.log');
        for (let i = 1; i <= scenario.nodes; i++) spawnNode(`worker ${i} of ${scenario.nodes}`, ['--role', 'worker', '--chunk', `${i} of ${scenario.nodes}`], `worker-${i}.log`);
      },
    });
    log(`logs: ${path.join(outDir, 'logs')}`);
    if (code !== 0) throw new RunError(summary.failure ?? 'the run failed');
    return code;
  } finally {
    await Promise.all(children.map((c) => c.stop()));
  }
}
