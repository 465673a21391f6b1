import { RunError, UsageError } from '../errors.js';
import { IPTABLES_KINDS } from './iptables.js';
import type { FaultBackend } from './runner.js';
import type { BackendName, FaultSpec } from './spec.js';
import { wholeNodeTarget } from './targets.js';
import { NETEM_KINDS } from './tc.js';

export type Carrier = Exclude<BackendName, 'auto'>;

export { wholeNodeTarget };

/** The backend a fault asked for: its own, else the scenario's `faultBackend`. */
export function requestedBackend(f: FaultSpec, scenarioBackend: BackendName): BackendName {
  return f.backend !== 'auto' ? f.backend : scenarioBackend;
}

const KINDS: Record<'iptables' | 'netem', readonly string[]> = { iptables: IPTABLES_KINDS, netem: NETEM_KINDS };

/**
 * What can be checked before any node starts: a kernel backend carries the kinds it knows;
 * netem shapes a node's whole link (it matches the node's traffic to the server, not one
 * worker's). iptables takes single workers too, through their virtual ports (docs/faults.md).
 */
export function checkBackendRequest(f: FaultSpec, scenarioBackend: BackendName, what: string): void {
  const b = requestedBackend(f, scenarioBackend);
  if (b !== 'iptables' && b !== 'netem') return;
  if (!KINDS[b].includes(f.kind)) {
    throw new UsageError(`${what}: the ${b} backend cannot carry a ${f.kind} fault (it carries ${KINDS[b].join(', ')}): use backend auto or proxy`);
  }
  if (b === 'netem' && !wholeNodeTarget(f.target)) {
    throw new UsageError(
      `${what}: the netem backend shapes a node's whole link, so its target must be "server", "all" or "chunk N" (not one worker, ids, fixed:N or percent:P): use backend proxy for single workers (or iptables, for ${IPTABLES_KINDS.join(', ')})`,
    );
  }
}

export interface BackendEnv {
  /** Null when usable, else why not. */
  iptables: string | null;
  netem: string | null;
  /** The node has its own network namespace or host, so a kernel rule touches it alone. */
  isolated: boolean;
}

/**
 * Picks the carrier of one fault on a node. `auto` takes the most faithful backend there
 * is: the kernel's (netem for delay, loss and bandwidth; iptables for blackhole, reset,
 * refuse and, without netem, loss) when the node is isolated and the fault takes its whole
 * link; the proxy otherwise, so single workers go to the proxy unless a fault asks for
 * iptables by name. An explicit backend that cannot run here is an error that says why.
 */
export function chooseBackend(f: FaultSpec, scenarioBackend: BackendName, env: BackendEnv): Carrier {
  const b = requestedBackend(f, scenarioBackend);
  if (b === 'proxy') return 'proxy';
  if (b === 'iptables' || b === 'netem') {
    const why = env[b];
    if (why !== null) throw new RunError(`fault ${f.id} asks for the ${b} backend, but ${why}`);
    return b;
  }
  if (!env.isolated || !wholeNodeTarget(f.target)) return 'proxy';
  if (env.netem === null && (f.kind === 'delay' || f.kind === 'loss' || f.kind === 'bandwidth')) return 'netem';
  if (env.iptables === null && IPTABLES_KINDS.includes(f.kind)) return 'iptables';
  return 'proxy';
}

/** One FaultBackend over the carriers of a node: each fault goes to the one chosen for it. */
export class BackendSet implements FaultBackend {
  readonly name = 'set';

  constructor(
    private readonly choice: ReadonlyMap<string, Carrier>,
    private readonly carriers: Partial<Record<Carrier, FaultBackend>>,
  ) {}

  nameOf(f: FaultSpec): string {
    return this.choice.get(f.id) ?? 'none';
  }

  private of(f: FaultSpec): FaultBackend {
    const b = this.carriers[this.choice.get(f.id) ?? 'proxy'];
    if (!b) throw new Error(`fault ${f.id}: no ${this.choice.get(f.id)} backend on this node`);
    return b;
  }

  apply(f: FaultSpec, instanceId: string, workers: readonly number[]): void | Promise<void> {
    return this.of(f).apply(f, instanceId, workers);
  }

  heal(f: FaultSpec, instanceId: string, workers: readonly number[]): Promise<void> {
    return this.of(f).heal(f, instanceId, workers);
  }

  async close(): Promise<void> {
    const errors: string[] = [];
    for (const b of Object.values(this.carriers)) {
      try {
        await b.close();
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    if (errors.length > 0) throw new Error(errors.join('; '));
  }
}
