import { run } from './exec.js';
import { type CleanResult, alive, cleanJournals, journalDir } from './journal.js';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { natTeardownCommands, teardownCommands } from './iptables.js';

function ownerAlive(tag: string): boolean {
  const file = path.join(journalDir(), `faults-${tag}.json`);
  if (!existsSync(file)) return false;
  try {
    return alive((JSON.parse(readFileSync(file, 'utf8')) as { pid: number }).pid);
  } catch {
    return false;
  }
}

/**
 * `fedsim netem clean`: replays the journals of dead runs, then removes any FEDSIM-* chain
 * of this namespace that no live run owns (a journal lost with its directory): the filter
 * chains of faults, and the nat chains of virtual ports.
 */
export async function cleanFaults(): Promise<CleanResult> {
  const out = await cleanJournals();
  const list = await run(['iptables', '-w', '-S']);
  if (list.code !== 0) return out;
  await cleanNatChains(out);
  const tags = new Set<string>();
  for (const m of list.stdout.matchAll(/^-N FEDSIM-([0-9a-f]+)-[oi]$/gm)) tags.add(m[1]);
  for (const tag of tags) {
    if (ownerAlive(tag)) {
      out.skipped.push(`iptables chains FEDSIM-${tag}-o/-i: their run is still going`);
      continue;
    }
    for (const argv of teardownCommands(tag)) await run(argv);
    const again = await run(['iptables', '-w', '-S']);
    if (again.stdout.includes(`FEDSIM-${tag}-`)) out.problems.push(`iptables chains FEDSIM-${tag}-o/-i are still there: remove them with iptables -D/-F/-X`);
    else out.removed.push(`iptables chains FEDSIM-${tag}-o/-i (no journal)`);
  }
  return out;
}

/** The nat chains (FEDSIM-<tag>-n, virtual ports of single-worker iptables faults) no live run owns. */
async function cleanNatChains(out: CleanResult): Promise<void> {
  const list = await run(['iptables', '-w', '-t', 'nat', '-S']);
  if (list.code !== 0) return;
  for (const m of list.stdout.matchAll(/^-N FEDSIM-([0-9a-f]+)-n$/gm)) {
    const tag = m[1];
    if (ownerAlive(tag)) {
      out.skipped.push(`iptables nat chain FEDSIM-${tag}-n: its run is still going`);
      continue;
    }
    for (const argv of natTeardownCommands(tag)) await run(argv);
    const again = await run(['iptables', '-w', '-t', 'nat', '-S']);
    if (again.stdout.includes(`FEDSIM-${tag}-n`)) out.problems.push(`iptables nat chain FEDSIM-${tag}-n is still there: remove it with iptables -t nat -D/-F/-X`);
    else out.removed.push(`iptables nat chain FEDSIM-${tag}-n (no journal)`);
  }
}
