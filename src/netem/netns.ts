import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { mustRun, run } from './exec.js';
import { alive, alreadyGone, journalDir } from './journal.js';

/** Every namespace and bridge fedsim makes carries these prefixes, so `fedsim netns clean` finds them. */
export const NS_PREFIX = 'fedsim-';
export const BRIDGE_PREFIX = 'fsbr-';

/**
 * Which process owns a topology: `<state dir>/netns/<id>` holds its pid while the run lives,
 * so `fedsim netns clean` leaves a live run's namespaces alone even in the moments they have
 * no process in them (being set up, or torn down).
 */
const ownersDir = () => path.join(journalDir(), 'netns');

function ownerOf(id: string): number | null {
  try {
    const pid = Number(readFileSync(path.join(ownersDir(), id), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
  } catch {
    return null;
  }
}

/** The run id in `fedsim-<id>-<host>` or `fsbr-<id>`. */
const idOf = (name: string) => (name.startsWith(BRIDGE_PREFIX) ? name.slice(BRIDGE_PREFIX.length) : name.slice(NS_PREFIX.length).split('-')[0]);

export interface NetnsHost {
  /** Node name: "server", "w1", … */
  readonly name: string;
  readonly ns: string;
  readonly address: string;
}

/**
 * Hosts on one machine: each node in its own network namespace, joined to a bridge in
 * the root namespace by a veth pair, so that a fault on one node's link touches that node alone.
 */
export class NetnsTopology {
  readonly id = randomBytes(3).toString('hex').slice(0, 5);
  readonly bridge = `${BRIDGE_PREFIX}${this.id}`;
  readonly subnet: number;
  readonly hosts: NetnsHost[] = [];
  private created = false;

  constructor(private readonly names: readonly string[]) {
    // 10.213.S.0/24, S from the run id: two runs at once get different subnets most of the time.
    this.subnet = 1 + (parseInt(this.id, 16) % 250);
  }

  /** The bridge address in the root namespace: where the coordinator listens. */
  get gateway(): string {
    return `10.213.${this.subnet}.1`;
  }

  static async check(): Promise<void> {
    if (typeof process.getuid === 'function' && process.getuid() !== 0) {
      throw new UsageError('--netns needs root: it creates network namespaces, veth pairs and a bridge (run as root, or drop --netns)');
    }
    const r = await run(['ip', '-V']);
    if (r.code !== 0) throw new UsageError('--netns needs the `ip` command (Debian package iproute2)');
  }

  async create(): Promise<void> {
    this.created = true;
    mkdirSync(ownersDir(), { recursive: true, mode: 0o700 });
    writeFileSync(path.join(ownersDir(), this.id), `${process.pid}\n`);
    await mustRun(['ip', 'link', 'add', this.bridge, 'type', 'bridge']);
    await mustRun(['ip', 'addr', 'add', `${this.gateway}/24`, 'dev', this.bridge]);
    await mustRun(['ip', 'link', 'set', this.bridge, 'up']);
    for (const [i, name] of this.names.entries()) {
      const ns = `${NS_PREFIX}${this.id}-${name}`;
      const outer = `fs${this.id}h${i}`;
      const inner = `fs${this.id}n${i}`;
      const address = `10.213.${this.subnet}.${i + 2}`;
      await mustRun(['ip', 'netns', 'add', ns]);
      this.hosts.push({ name, ns, address });
      await mustRun(['ip', 'link', 'add', outer, 'type', 'veth', 'peer', 'name', inner]);
      await mustRun(['ip', 'link', 'set', inner, 'netns', ns]);
      await mustRun(['ip', 'link', 'set', outer, 'master', this.bridge]);
      await mustRun(['ip', 'link', 'set', outer, 'up']);
      await mustRun(['ip', '-n', ns, 'link', 'set', inner, 'name', 'eth0']);
      await mustRun(['ip', '-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      await mustRun(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
      await mustRun(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      await mustRun(['ip', '-n', ns, 'route', 'add', 'default', 'via', this.gateway]);
    }
  }

  host(name: string): NetnsHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no namespace for ${name}`);
    return h;
  }

  /** The argv that runs `argv` inside a node's namespace. */
  wrap(name: string, argv: readonly string[]): string[] {
    return ['ip', 'netns', 'exec', this.host(name).ns, ...argv];
  }

  /** Removes every namespace (and with it the veth pairs) and the bridge. Never throws. */
  async destroy(): Promise<string[]> {
    if (!this.created) return [];
    const problems: string[] = [];
    for (const h of this.hosts) {
      const r = await run(['ip', 'netns', 'del', h.ns]);
      if (r.code !== 0) problems.push(`ip netns del ${h.ns}: ${r.stderr.trim()}`);
    }
    const r = await run(['ip', 'link', 'del', this.bridge]);
    if (r.code !== 0) problems.push(`ip link del ${this.bridge}: ${r.stderr.trim()}`);
    rmSync(path.join(ownersDir(), this.id), { force: true });
    this.created = false;
    return problems;
  }
}

/**
 * `fedsim netns clean`: removes namespaces and bridges left by a killed run. A namespace
 * with processes in it, or a bridge with ports, belongs to a run that is still going: left alone.
 */
export async function cleanNetns(): Promise<{ removed: string[]; problems: string[]; skipped: string[] }> {
  const removed: string[] = [];
  const problems: string[] = [];
  const skipped: string[] = [];
  const list = await run(['ip', 'netns', 'list']);
  for (const line of list.stdout.split('\n')) {
    const ns = line.trim().split(/\s+/)[0];
    if (!ns?.startsWith(NS_PREFIX)) continue;
    const owner = ownerOf(idOf(ns));
    if (owner !== null) {
      skipped.push(`namespace ${ns}: its run (pid ${owner}) is still going`);
      continue;
    }
    const pids = (await run(['ip', 'netns', 'pids', ns])).stdout.trim();
    if (pids) {
      skipped.push(`namespace ${ns}: processes ${pids.split(/\s+/).join(', ')} still run in it`);
      continue;
    }
    const r = await run(['ip', 'netns', 'del', ns]);
    if (r.code === 0) removed.push(`namespace ${ns}`);
    // Gone between the list and the delete: its own run removed it.
    else if (alreadyGone(r.stderr)) skipped.push(`namespace ${ns}: already removed`);
    else problems.push(`ip netns del ${ns}: ${r.stderr.trim()}`);
  }
  const links = await run(['ip', '-o', 'link', 'show', 'type', 'bridge']);
  for (const line of links.stdout.split('\n')) {
    const m = /^\d+:\s+([^:@\s]+)/.exec(line);
    if (!m || !m[1].startsWith(BRIDGE_PREFIX)) continue;
    const owner = ownerOf(idOf(m[1]));
    if (owner !== null) {
      skipped.push(`bridge ${m[1]}: its run (pid ${owner}) is still going`);
      continue;
    }
    const ports = (await run(['ip', '-o', 'link', 'show', 'master', m[1]])).stdout.trim();
    if (ports) {
      skipped.push(`bridge ${m[1]}: a running run's namespaces are attached to it`);
      continue;
    }
    const r = await run(['ip', 'link', 'del', m[1]]);
    if (r.code === 0) removed.push(`bridge ${m[1]}`);
    else if (alreadyGone(r.stderr)) skipped.push(`bridge ${m[1]}: already removed`);
    else problems.push(`ip link del ${m[1]}: ${r.stderr.trim()}`);
  }
  // Owner files of runs that died (a killed run never removed its own).
  try {
    for (const id of readdirSync(ownersDir())) if (ownerOf(id) === null) rmSync(path.join(ownersDir(), id), { force: true });
  } catch {
    // no state directory: nothing was ever recorded
  }
  return { removed, problems, skipped };
}
