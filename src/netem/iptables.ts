import { randomBytes } from 'node:crypto';
import { isRecording, mustRun, run } from './exec.js';
import { FaultJournal, alreadyGone } from './journal.js';
import type { FaultBackend } from './runner.js';
import type { FaultKind, FaultSpec } from './spec.js';

/** Fault kinds iptables carries faithfully: packets dropped, reset, refused, randomly lost. */
export const IPTABLES_KINDS: readonly FaultKind[] = ['blackhole', 'reset', 'refuse', 'loss'];

export interface Peer {
  host: string;
  port: number;
}

/**
 * The chains of one node process. Rules for packets this node sends to the server hang off
 * OUTPUT (`-o`), rules for packets it receives from the server off INPUT (`-i`). On one
 * host (loopback) a packet passes both hooks, so each packet meets exactly one chain.
 */
export function chainNames(tag: string): { out: string; in: string } {
  return { out: `FEDSIM-${tag}-o`, in: `FEDSIM-${tag}-i` };
}

export const comment = (tag: string, instance?: string) => ['-m', 'comment', '--comment', instance ? `fedsim:${tag}:${instance}` : `fedsim:${tag}`];

/** The `-A`-less rule specs (chain first) of one fault: pure, tested without root. */
export function ruleSpecs(f: FaultSpec, instanceId: string, server: Peer, tag: string): string[][] {
  if (!IPTABLES_KINDS.includes(f.kind)) {
    throw new Error(`the iptables backend cannot carry a ${f.kind} fault (it carries ${IPTABLES_KINDS.join(', ')}): use backend proxy or netem`);
  }
  const c = chainNames(tag);
  const up = ['-p', 'tcp', '-d', server.host, '--dport', String(server.port)];
  const down = ['-p', 'tcp', '-s', server.host, '--sport', String(server.port)];
  const tagArgs = comment(tag, instanceId);
  const specs: string[][] = [];
  const add = (chain: string, match: string[], target: string[]) => specs.push([chain, ...match, ...tagArgs, ...target]);
  switch (f.kind) {
    case 'blackhole':
      if (f.direction !== 'down') add(c.out, up, ['-j', 'DROP']);
      if (f.direction !== 'up') add(c.in, down, ['-j', 'DROP']);
      break;
    case 'reset':
      // Packets this node sends are answered with a reset to its own sockets; packets from
      // the server are answered with a reset to the server.
      if (f.direction !== 'down') add(c.out, up, ['-j', 'REJECT', '--reject-with', 'tcp-reset']);
      if (f.direction !== 'up') add(c.in, down, ['-j', 'REJECT', '--reject-with', 'tcp-reset']);
      break;
    case 'refuse':
      // New connections only: a SYN towards the server is refused, open connections live on.
      add(c.out, [...up, '--syn'], ['-j', 'REJECT', '--reject-with', 'tcp-reset']);
      break;
    case 'loss': {
      const p = ['-m', 'statistic', '--mode', 'random', '--probability', (f.lossPercent / 100).toFixed(4)];
      if (f.direction !== 'down') add(c.out, [...up, ...p], ['-j', 'DROP']);
      if (f.direction !== 'up') add(c.in, [...down, ...p], ['-j', 'DROP']);
      break;
    }
    default:
      break;
  }
  return specs;
}

/** Commands that create the node's chains and hook them in. */
export function setupCommands(tag: string): string[][] {
  const c = chainNames(tag);
  return [
    ['iptables', '-w', '-N', c.out],
    ['iptables', '-w', '-N', c.in],
    ['iptables', '-w', '-I', 'OUTPUT', '1', ...comment(tag), '-j', c.out],
    ['iptables', '-w', '-I', 'INPUT', '1', ...comment(tag), '-j', c.in],
  ];
}

/** Commands that remove the chains and their hooks (and with them every rule in them). */
export function teardownCommands(tag: string): string[][] {
  const c = chainNames(tag);
  return [
    ['iptables', '-w', '-D', 'OUTPUT', ...comment(tag), '-j', c.out],
    ['iptables', '-w', '-D', 'INPUT', ...comment(tag), '-j', c.in],
    ['iptables', '-w', '-F', c.out],
    ['iptables', '-w', '-F', c.in],
    ['iptables', '-w', '-X', c.out],
    ['iptables', '-w', '-X', c.in],
  ];
}

/** Is iptables usable here (root, the command, the kernel tables)? Null when it is, else why not. */
export async function iptablesUnavailable(): Promise<string | null> {
  if (isRecording()) return null;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'the iptables backend needs root';
  const r = await run(['iptables', '-w', '-S', 'OUTPUT']);
  if (r.code === 127) return 'the iptables command is missing (Debian package iptables)';
  if (r.code !== 0) return `iptables does not work here: ${r.stderr.trim()}`;
  return null;
}

/**
 * The iptables backend: the node's own chains, one rule set per fault instance tagged with
 * a comment, a journal written before anything is applied. Applies and heals run one at a
 * time, in order.
 */
export class IptablesBackend implements FaultBackend {
  readonly name = 'iptables';
  readonly tag = randomBytes(4).toString('hex');
  private readonly journal = new FaultJournal(this.tag);
  private chains = false;
  private readonly active = new Map<string, string[][]>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly server: Peer) {}

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const p = this.queue.then(op);
    this.queue = p.catch(() => undefined);
    return p;
  }

  apply(f: FaultSpec, instanceId: string): Promise<void> {
    return this.serial(async () => {
      const specs = ruleSpecs(f, instanceId, this.server, this.tag);
      if (!this.chains) {
        this.journal.add('chains', { what: `iptables chains ${chainNames(this.tag).out} and ${chainNames(this.tag).in}`, undo: teardownCommands(this.tag) });
        this.chains = true;
        for (const argv of setupCommands(this.tag)) await mustRun(argv);
      }
      this.active.set(instanceId, specs);
      for (const s of specs) await mustRun(['iptables', '-w', '-A', ...s]);
    });
  }

  heal(_f: FaultSpec, instanceId: string): Promise<void> {
    return this.serial(async () => {
      const specs = this.active.get(instanceId) ?? [];
      this.active.delete(instanceId);
      for (const s of specs) {
        const argv = ['iptables', '-w', '-D', ...s];
        const r = await run(argv);
        // A rule an apply that failed half-way never added is not an error here.
        if (r.code !== 0 && !alreadyGone(r.stderr)) throw new Error(`\`${argv.join(' ')}\` failed (exit ${r.code}): ${r.stderr.trim()}`);
      }
    });
  }

  close(): Promise<void> {
    return this.serial(async () => {
      if (this.chains) {
        const problems: string[] = [];
        for (const argv of teardownCommands(this.tag)) {
          const r = await run(argv);
          if (r.code !== 0 && !alreadyGone(r.stderr)) problems.push(`\`${argv.join(' ')}\`: ${r.stderr.trim()}`);
        }
        if (problems.length > 0) throw new Error(`iptables cleanup: ${problems.join('; ')} (the journal ${this.journal.path} is kept: run \`fedsim netem clean\`)`);
        this.chains = false;
      }
      this.journal.close();
    });
  }
}
