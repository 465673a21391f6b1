import { randomBytes } from 'node:crypto';
import { NS_PREFIX } from './netns.js';
import { isRecording, mustRun, run } from './exec.js';
import { FaultJournal, alreadyGone } from './journal.js';
import type { Peer } from './iptables.js';
import type { FaultBackend } from './runner.js';
import type { FaultKind, FaultSpec } from './spec.js';

/** Fault kinds `tc netem` carries: delay ± jitter, random loss, a rate limit, and a blackhole as 100 % loss. */
export const NETEM_KINDS: readonly FaultKind[] = ['delay', 'loss', 'bandwidth', 'blackhole'];

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

/** Interface names go into argv; still, only plain names are accepted. */
export function checkIfName(name: string): string {
  if (!IFNAME.test(name)) throw new Error(`interface name "${name}" is not a plain interface name (letters, digits, _ . -; at most 15)`);
  return name;
}

/** The netem parameters of one fault: ["delay", "200ms", "20ms", ...]. */
export function netemArgs(f: FaultSpec): string[] {
  switch (f.kind) {
    case 'delay':
      return ['delay', `${f.delayMs}ms`, ...(f.jitterMs > 0 ? [`${f.jitterMs}ms`, 'distribution', 'normal'] : [])];
    case 'loss':
      return ['loss', `${f.lossPercent}%`];
    case 'bandwidth':
      return ['rate', `${Math.round(f.rateBytesPerSec * 8)}bit`];
    case 'blackhole':
      return ['loss', '100%'];
    default:
      throw new Error(`the netem backend cannot carry a ${f.kind} fault (it carries ${NETEM_KINDS.join(', ')}): use backend iptables or proxy`);
  }
}

export interface TcPlan {
  apply: string[][];
  undo: string[][];
}

/**
 * The commands of one netem fault on interface `dev` for the traffic between this node and
 * `server`. Egress (towards the server) goes through a prio qdisc whose fourth band, fed
 * only by a u32 filter on the server's address and port, holds the netem qdisc. Ingress
 * (from the server) is redirected to an ifb device that holds a second netem qdisc. On
 * loopback both directions leave through `lo`, so both filters sit on its egress.
 */
export function tcPlan(f: FaultSpec, dev: string, server: Peer, tag: string): TcPlan {
  checkIfName(dev);
  const ne = netemArgs(f);
  const loop = dev === 'lo';
  const ifb = checkIfName(`fsifb${tag.slice(0, 6)}`);
  const up = ['match', 'ip', 'dst', `${server.host}/32`, 'match', 'ip', 'dport', String(server.port), '0xffff'];
  const down = ['match', 'ip', 'src', `${server.host}/32`, 'match', 'ip', 'sport', String(server.port), '0xffff'];
  const wantUp = f.direction !== 'down';
  const wantDown = f.direction !== 'up';
  const apply: string[][] = [];
  const undo: string[][] = [];
  if (wantUp || (wantDown && loop)) {
    apply.push(['tc', 'qdisc', 'add', 'dev', dev, 'root', 'handle', 'fe5:', 'prio', 'bands', '4', 'priomap', '1', '2', '2', '2', '1', '2', '0', '0', '1', '1', '1', '1', '1', '1', '1', '1']);
    apply.push(['tc', 'qdisc', 'add', 'dev', dev, 'parent', 'fe5:4', 'handle', 'fe6:', 'netem', ...ne]);
    if (wantUp) apply.push(['tc', 'filter', 'add', 'dev', dev, 'parent', 'fe5:', 'protocol', 'ip', 'prio', '1', 'u32', ...up, 'flowid', 'fe5:4']);
    if (wantDown && loop) apply.push(['tc', 'filter', 'add', 'dev', dev, 'parent', 'fe5:', 'protocol', 'ip', 'prio', '2', 'u32', ...down, 'flowid', 'fe5:4']);
    undo.push(['tc', 'qdisc', 'del', 'dev', dev, 'root', 'handle', 'fe5:']);
  }
  if (wantDown && !loop) {
    apply.push(['ip', 'link', 'add', ifb, 'type', 'ifb']);
    apply.push(['ip', 'link', 'set', ifb, 'up']);
    apply.push(['tc', 'qdisc', 'add', 'dev', ifb, 'root', 'handle', 'fe7:', 'netem', ...ne]);
    apply.push(['tc', 'qdisc', 'add', 'dev', dev, 'handle', 'ffff:', 'ingress']);
    apply.push(['tc', 'filter', 'add', 'dev', dev, 'parent', 'ffff:', 'protocol', 'ip', 'u32', ...down, 'action', 'mirred', 'egress', 'redirect', 'dev', ifb]);
    undo.push(['tc', 'qdisc', 'del', 'dev', dev, 'handle', 'ffff:', 'ingress']);
    undo.push(['ip', 'link', 'del', ifb]);
  }
  return { apply, undo };
}

let probe: Promise<string | null> | null = null;

/**
 * Can this machine run netem? Null when it can, else the reason in plain words. The probe
 * adds a netem qdisc to the loopback of a throwaway namespace, so nothing real is touched.
 */
export function netemUnavailable(): Promise<string | null> {
  if (isRecording()) return Promise.resolve(null);
  probe ??= (async () => {
    if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'the netem backend needs root';
    const v = await run(['tc', '-V']);
    if (v.code !== 0) return 'the tc command is missing (Debian package iproute2)';
    const ns = `${NS_PREFIX}probe-${randomBytes(3).toString('hex')}`;
    const add = await run(['ip', 'netns', 'add', ns]);
    if (add.code !== 0) return `cannot create a network namespace to probe netem: ${add.stderr.trim()}`;
    try {
      const r = await run(['tc', '-n', ns, 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms']);
      if (r.code === 0) return null;
      const why = r.stderr.trim();
      if (/unknown|not supported|no such file/i.test(why)) {
        return `this kernel has no netem qdisc (module sch_netem; tc said: "${why}"): delay, loss and bandwidth faults go through the proxy (or iptables for loss)`;
      }
      return `netem does not work here: tc said "${why}"`;
    } finally {
      await run(['ip', 'netns', 'del', ns]);
    }
  })();
  return probe;
}

/** The interface that carries traffic to `host` (`ip route get`). */
export async function routeDevice(host: string): Promise<string> {
  const out = await mustRun(['ip', '-o', 'route', 'get', host]);
  const m = / dev (\S+)/.exec(out);
  if (!m) throw new Error(`\`ip route get ${host}\` named no device: ${out.trim()}`);
  return checkIfName(m[1]);
}

/**
 * The netem backend: `tc` on the interface towards the server. One netem fault at a time
 * per node (a second one while the first is on fails with that reason).
 */
export class NetemBackend implements FaultBackend {
  readonly name = 'netem';
  readonly tag = randomBytes(4).toString('hex');
  private readonly journal = new FaultJournal(this.tag);
  private current: { id: string; undo: string[][] } | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly server: Peer,
    private readonly dev: string,
  ) {}

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const p = this.queue.then(op);
    this.queue = p.catch(() => undefined);
    return p;
  }

  apply(f: FaultSpec, instanceId: string): Promise<void> {
    return this.serial(async () => {
      if (this.current) throw new Error(`netem fault ${this.current.id} is still on ${this.dev}: one netem fault at a time per node`);
      const existing = await run(['tc', 'qdisc', 'show', 'dev', this.dev, 'root']);
      if (/qdisc \S+ [1-9a-f][0-9a-f]*: root/.test(existing.stdout)) {
        throw new Error(`${this.dev} already has a root qdisc (${existing.stdout.trim()}); fedsim will not replace it`);
      }
      const plan = tcPlan(f, this.dev, this.server, this.tag);
      this.journal.add(instanceId, { what: `netem qdiscs on ${this.dev} (fault ${instanceId})`, undo: plan.undo });
      this.current = { id: instanceId, undo: plan.undo };
      for (const argv of plan.apply) await mustRun(argv);
    });
  }

  heal(): Promise<void> {
    return this.serial(async () => {
      if (!this.current) return;
      const { id, undo } = this.current;
      this.current = null;
      const problems: string[] = [];
      for (const argv of undo) {
        const r = await run(argv);
        if (r.code !== 0 && !alreadyGone(r.stderr)) problems.push(`\`${argv.join(' ')}\`: ${r.stderr.trim()}`);
      }
      if (problems.length > 0) throw new Error(`netem heal: ${problems.join('; ')} (run \`fedsim netem clean\`)`);
      this.journal.remove(id);
    });
  }

  async close(): Promise<void> {
    await this.heal();
    this.journal.close();
  }
}
