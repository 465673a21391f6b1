import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isRecording, run } from './exec.js';

/**
 * The fault journal: before a privileged backend changes the system (an iptables chain, a
 * tc qdisc, an ifb device), it writes here how to undo it. A run that ends normally
 * removes its journal; one that was killed leaves it, and the next start (or `fedsim
 * netem clean`) replays the undo commands of every journal whose process is gone.
 *
 * One JSON file per node process: `<dir>/faults-<tag>.json`. The directory is
 * `/run/fedsim` (a tmpfs: like the rules themselves it does not survive a reboot), or
 * `FEDSIM_STATE_DIR`.
 */
export interface JournalEntry {
  /** What this undo set removes, for messages: "iptables chains FEDSIM-ab12cd34-o/-i". */
  what: string;
  /** Commands that undo it, in order; each may fail harmlessly (already gone). */
  undo: string[][];
}

export interface JournalFile {
  tag: string;
  pid: number;
  /** The network namespace the changes live in (null: the namespace of the process). */
  netns: string | null;
  startedAt: string;
  entries: Record<string, JournalEntry>;
}

export function journalDir(): string {
  return process.env.FEDSIM_STATE_DIR ?? '/run/fedsim';
}

export class FaultJournal {
  private readonly file: string;
  private readonly data: JournalFile;

  constructor(readonly tag: string) {
    const dir = journalDir();
    this.file = path.join(dir, `faults-${tag}.json`);
    this.data = { tag, pid: process.pid, netns: process.env.FEDSIM_NETNS ?? null, startedAt: new Date().toISOString(), entries: {} };
  }

  get path(): string {
    return this.file;
  }

  /** Records how to undo `key` before it is applied. Written atomically (rename). */
  add(key: string, entry: JournalEntry): void {
    this.data.entries[key] = entry;
    this.write();
  }

  remove(key: string): void {
    if (!(key in this.data.entries)) return;
    delete this.data.entries[key];
    this.write();
  }

  /** Everything undone: the journal goes. */
  close(): void {
    rmSync(this.file, { force: true });
  }

  private write(): void {
    // A dry run changes nothing, so there is nothing to undo.
    if (isRecording()) return;
    mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.data, null, 2));
    renameSync(tmp, this.file);
  }
}

/** What iptables, tc and ip say when the thing to remove is not there: already undone. */
export const alreadyGone = (stderr: string): boolean => /no such|not exist|cannot find|bad rule|no chain|doesn't exist|cannot delete qdisc with handle of zero/i.test(stderr);

/** Is process `pid` running? A zombie (killed, not yet reaped) is not. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX] /s.test(stat);
  } catch {
    // No /proc entry: gone (or no procfs; fall back to a signal 0 probe).
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface CleanResult {
  removed: string[];
  skipped: string[];
  problems: string[];
}

/**
 * Replays the undo commands of journals whose process is gone (`fedsim netem clean`, and
 * every start of a privileged backend). A journal of a live process is left alone: that
 * run is still going and heals its own faults.
 */
export async function cleanJournals(opts: { exceptTag?: string } = {}): Promise<CleanResult> {
  const out: CleanResult = { removed: [], skipped: [], problems: [] };
  const dir = journalDir();
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /^faults-[\w-]+\.json$/.test(n));
  } catch {
    return out;
  }
  for (const name of names) {
    const file = path.join(dir, name);
    let j: JournalFile;
    try {
      j = JSON.parse(readFileSync(file, 'utf8')) as JournalFile;
    } catch (e) {
      out.problems.push(`${file}: unreadable journal (${(e as Error).message}); remove it by hand once you have checked \`iptables -S\` and \`tc qdisc\``);
      continue;
    }
    if (j.tag === opts.exceptTag) continue;
    if (alive(j.pid)) {
      out.skipped.push(`${file}: process ${j.pid} is still running`);
      continue;
    }
    if (j.netns !== null) {
      const list = await run(['ip', 'netns', 'list']);
      if (!list.stdout.split('\n').some((l) => l.trim().split(/\s+/)[0] === j.netns)) {
        // The namespace is gone, and everything in it went with it.
        rmSync(file, { force: true });
        out.removed.push(`journal ${j.tag} (namespace ${j.netns} is already gone)`);
        continue;
      }
    }
    let ok = true;
    for (const e of Object.values(j.entries)) {
      for (const argv of e.undo) {
        const full = j.netns ? ['ip', 'netns', 'exec', j.netns, ...argv] : argv;
        const r = await run(full);
        if (r.code !== 0 && !alreadyGone(r.stderr)) {
          ok = false;
          out.problems.push(`\`${full.join(' ')}\` failed: ${r.stderr.trim()}`);
        }
      }
      out.removed.push(`${e.what}${j.netns ? ` in namespace ${j.netns}` : ''} (left by process ${j.pid})`);
    }
    if (ok) rmSync(file, { force: true });
  }
  return out;
}
