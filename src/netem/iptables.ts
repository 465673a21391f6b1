import { randomBytes } from 'node:crypto';
import { RunError } from '../errors.js';
import { isRecording, mustRun, run } from './exec.js';
import { FaultJournal, alreadyGone } from './journal.js';
import type { FaultBackend } from './runner.js';
import type { FaultKind, FaultSpec } from './spec.js';
import { wholeNodeTarget } from './targets.js';

/** Fault kinds iptables carries faithfully: packets dropped, reset, refused, randomly lost. */
export const IPTABLES_KINDS: readonly FaultKind[] = ['blackhole', 'reset', 'refuse', 'loss'];

export interface Peer {
  host: string;
  port: number;
}

/**
 * The chains of one node process. Rules for packets this node sends to the server hang off
 * OUTPUT (`-o`), rules for packets it receives from the server off INPUT (`-i`). On one
 * host (loopback) a packet passes both hooks, so the matches (server port as destination
 * or source; per worker, the conntrack direction) let each packet meet exactly one rule.
 */
export function chainNames(tag: string): { out: string; in: string } {
  return { out: `FEDSIM-${tag}-o`, in: `FEDSIM-${tag}-i` };
}

/** The nat chain of one node: it maps the workers' virtual ports back to the server's port. */
export const natChainName = (tag: string): string => `FEDSIM-${tag}-n`;

export const comment = (tag: string, instance?: string) => ['-m', 'comment', '--comment', instance ? `fedsim:${tag}:${instance}` : `fedsim:${tag}`];

/**
 * Virtual destination ports (grpc-js, the gRPC worker client until session 15, could not bind
 * a channel's local port; they serve both transports alike): a worker that a
 * single-worker iptables fault may touch connects to SERVER:`base + (i - first)` instead of
 * SERVER:PORT, and a DNAT rule of the node maps that range back to the real port. The
 * original port stays in the connection's conntrack entry, so a rule can pick one worker's
 * packets in both directions by it (docs/faults.md, "iptables").
 */
export interface VirtualPorts {
  /** The virtual port of worker `first`. */
  base: number;
  /** The node's first worker (a global index) and how many workers it runs. */
  first: number;
  count: number;
}

/**
 * Where the run's virtual ports start: below Linux's default ephemeral range (32768-60999),
 * so no socket that listens on port 0 (the server here, a fault proxy, the coordinator)
 * sits in the range, where the DNAT rule would take its connections to the server.
 */
export const VIRTUAL_PORT_START = 20000;

/**
 * The virtual ports of one node: `start + first` onwards, so the ranges of the chunks of
 * one run never overlap (on one host without namespaces the nodes share the nat table).
 * Every node of the run computes the same `start`: after the server's port when the run's
 * range would hold it. Pure.
 */
export function virtualPorts(o: { first: number; count: number; total: number; serverPort: number; start?: number }): VirtualPorts {
  let start = o.start ?? VIRTUAL_PORT_START;
  if (o.serverPort >= start && o.serverPort < start + o.total) start = o.serverPort + 1;
  const base = start + o.first;
  const end = base + o.count - 1;
  if (end > 65535) {
    throw new RunError(
      `the iptables backend gives each worker a virtual port of its own from ${start} (worker i connects to port ${start}+i), ` +
        `so worker ${o.first + o.count - 1} would need port ${end}, above 65535: run fewer workers, or carry the single-worker faults with backend proxy`,
    );
  }
  return { base, first: o.first, count: o.count };
}

/** The virtual port of worker `index` (a global index) of a node. */
export function virtualPortOf(vp: VirtualPorts, index: number): number {
  if (index < vp.first || index >= vp.first + vp.count) {
    throw new Error(`worker ${index} is not one of this node's workers ${vp.first}..${vp.first + vp.count - 1}: it has no virtual port here`);
  }
  return vp.base + (index - vp.first);
}

/** Ports as iptables port ranges: consecutive ports in one "A:B", others alone. Pure. */
export function portRanges(ports: readonly number[]): string[] {
  const sorted = [...new Set(ports)].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    out.push(i === j ? String(sorted[i]) : `${sorted[i]}:${sorted[j]}`);
    i = j + 1;
  }
  return out;
}

/**
 * The `-A`-less rule specs (chain first) of one fault: pure, tested without root.
 *
 * Without `ports` the rules match the node's whole link: `-d SERVER --dport PORT` out,
 * `-s SERVER --sport PORT` in. With `ports` (the virtual ports of the targeted workers)
 * they match those workers' connections alone, by the original destination in conntrack:
 * `--ctdir ORIGINAL` for what a worker sends, `--ctdir REPLY` for what the server answers
 * (on loopback both chains see both directions, so the direction is part of the match).
 * Consecutive ports share one rule.
 */
export function ruleSpecs(f: FaultSpec, instanceId: string, server: Peer, tag: string, ports?: readonly number[]): string[][] {
  if (!IPTABLES_KINDS.includes(f.kind)) {
    throw new Error(`the iptables backend cannot carry a ${f.kind} fault (it carries ${IPTABLES_KINDS.join(', ')}): use backend proxy or netem`);
  }
  if (ports === undefined) return kindSpecs(f, instanceId, tag, [{ up: (syn) => [...upMatch(server), ...syn], down: downMatch(server) }]);
  if (ports.length === 0) throw new Error(`fault ${instanceId}: no worker to match (an empty list of virtual ports)`);
  const byConn = (range: string, dir: 'ORIGINAL' | 'REPLY') => ['-m', 'conntrack', '--ctorigdst', server.host, '--ctorigdstport', range, '--ctdir', dir];
  return kindSpecs(
    f,
    instanceId,
    tag,
    portRanges(ports).map((r) => ({
      // `--syn` belongs to the tcp match: it goes right after `-p tcp`.
      up: (syn: string[]) => ['-p', 'tcp', ...syn, ...byConn(r, 'ORIGINAL')],
      down: ['-p', 'tcp', ...byConn(r, 'REPLY')],
    })),
  );
}

const upMatch = (server: Peer) => ['-p', 'tcp', '-d', server.host, '--dport', String(server.port)];
const downMatch = (server: Peer) => ['-p', 'tcp', '-s', server.host, '--sport', String(server.port)];

/** One set of matches: packets towards the server (`up`, optionally SYNs only) and back (`down`). */
interface Matches {
  up: (syn: string[]) => string[];
  down: string[];
}

function kindSpecs(f: FaultSpec, instanceId: string, tag: string, sets: readonly Matches[]): string[][] {
  const c = chainNames(tag);
  const tagArgs = comment(tag, instanceId);
  const specs: string[][] = [];
  const add = (chain: string, match: string[], target: string[]) => specs.push([chain, ...match, ...tagArgs, ...target]);
  for (const { up: upSyn, down } of sets) {
    const up = upSyn([]);
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
        // (A SYN to a virtual port has its conntrack entry from nat OUTPUT, before filter OUTPUT.)
        add(c.out, upSyn(['--syn']), ['-j', 'REJECT', '--reject-with', 'tcp-reset']);
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

/**
 * Commands that create the node's nat chain, map its workers' virtual ports back to the
 * server's port in it, and hook it into nat OUTPUT (packets this host sends; a new
 * connection meets it before filter OUTPUT). The chain is hooked last, once it is whole.
 */
export function natSetupCommands(tag: string, server: Peer, vp: VirtualPorts): string[][] {
  const n = natChainName(tag);
  const range = vp.count === 1 ? String(vp.base) : `${vp.base}:${vp.base + vp.count - 1}`;
  return [
    ['iptables', '-w', '-t', 'nat', '-N', n],
    ['iptables', '-w', '-t', 'nat', '-A', n, '-p', 'tcp', '-d', server.host, '--dport', range, '-j', 'DNAT', '--to-destination', `${server.host}:${server.port}`],
    ['iptables', '-w', '-t', 'nat', '-I', 'OUTPUT', '1', ...comment(tag), '-j', n],
  ];
}

/** Commands that remove the nat chain and its hook (separate from the filter chains: only a node with virtual ports has them). */
export function natTeardownCommands(tag: string): string[][] {
  const n = natChainName(tag);
  return [
    ['iptables', '-w', '-t', 'nat', '-D', 'OUTPUT', ...comment(tag), '-j', n],
    ['iptables', '-w', '-t', 'nat', '-F', n],
    ['iptables', '-w', '-t', 'nat', '-X', n],
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
 *
 * With virtual ports (`vp`), faults that target single workers match those workers'
 * connections by their original destination port; `prepare()` sets up the DNAT of the
 * virtual ports before any worker connects, and `close()` removes it.
 */
export class IptablesBackend implements FaultBackend {
  readonly name = 'iptables';
  readonly tag = randomBytes(4).toString('hex');
  private readonly journal = new FaultJournal(this.tag);
  private chains = false;
  private nat = false;
  private readonly active = new Map<string, string[][]>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly server: Peer,
    private readonly vp?: VirtualPorts,
  ) {}

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const p = this.queue.then(op);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Sets up the nat chain of the virtual ports (journaled first). Nothing to do without them. */
  prepare(): Promise<void> {
    return this.serial(async () => {
      const vp = this.vp;
      if (!vp || this.nat) return;
      const n = natChainName(this.tag);
      const what = `iptables nat chain ${n} (virtual ports ${vp.base}-${vp.base + vp.count - 1} to ${this.server.host}:${this.server.port})`;
      this.journal.add('nat', { what, undo: natTeardownCommands(this.tag) });
      this.nat = true;
      for (const argv of natSetupCommands(this.tag, this.server, vp)) await mustRun(argv);
    });
  }

  /** The virtual ports a fault on `workers` matches, or undefined when it takes the whole link. */
  private portsFor(f: FaultSpec, workers: readonly number[]): number[] | undefined {
    if (wholeNodeTarget(f.target)) return undefined;
    if (!this.vp || !this.nat) {
      throw new Error(`fault ${f.id} targets single workers, but this node set up no virtual ports for them (the iptables backend needs them to tell its workers apart)`);
    }
    const vp = this.vp;
    return workers.map((w) => virtualPortOf(vp, w));
  }

  apply(f: FaultSpec, instanceId: string, workers: readonly number[] = []): Promise<void> {
    return this.serial(async () => {
      const specs = ruleSpecs(f, instanceId, this.server, this.tag, this.portsFor(f, workers));
      if (!this.chains) {
        this.journal.add('chains', { what: `iptables chains ${chainNames(this.tag).out} and ${chainNames(this.tag).in}`, undo: teardownCommands(this.tag) });
        this.chains = true;
        for (const argv of setupCommands(this.tag)) await mustRun(argv);
      }
      this.active.set(instanceId, specs);
      for (const s of specs) await mustRun(['iptables', '-w', '-A', ...s]);
    });
  }

  heal(_f: FaultSpec, instanceId: string, _workers?: readonly number[]): Promise<void> {
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
      // Only what was set up; each command may find its part already gone.
      const undo = [...(this.chains ? teardownCommands(this.tag) : []), ...(this.nat ? natTeardownCommands(this.tag) : [])];
      if (undo.length > 0) {
        const problems: string[] = [];
        for (const argv of undo) {
          const r = await run(argv);
          if (r.code !== 0 && !alreadyGone(r.stderr)) problems.push(`\`${argv.join(' ')}\`: ${r.stderr.trim()}`);
        }
        if (problems.length > 0) throw new Error(`iptables cleanup: ${problems.join('; ')} (the journal ${this.journal.path} is kept: run \`fedsim netem clean\`)`);
        this.chains = false;
        this.nat = false;
      }
      this.journal.close();
    });
  }
}
