import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { buildInfo, isBinary } from './sea.js';

/**
 * The argv that starts this same program again (child nodes of `fedsim run`): the binary
 * itself (docs/binary.md), or node with its flags, `nodeFlags` it does not already have, and
 * the script. The binary takes no node flags (every argument is the program's), so
 * `nodeFlags` are dropped there.
 */
export function selfCommand(nodeFlags: readonly string[] = []): { command: string; args: string[] } {
  if (isBinary()) return { command: process.execPath, args: [] };
  const script = process.argv[1];
  const flags = [...process.execArgv, ...nodeFlags.filter((f) => !process.execArgv.includes(f))];
  return { command: process.execPath, args: script ? [...flags, script] : flags };
}

/**
 * Node flags for the worker nodes of `fedsim run` on a host with `cores` cores running
 * `processes` fedsim processes: with fewer cores than processes, V8's background GC threads
 * (concurrent marking, parallel scavenge) only compete with the nodes for the cores, and
 * `--single-threaded-gc` made a 100-worker `bytes:1MiB` round about 20 % faster on 2 cores
 * (docs/benchmarks.md). `FEDSIM_NODE_GC=default` keeps V8's default, `single` forces it.
 */
export function childNodeFlags(processes: number, cores: number, env: NodeJS.ProcessEnv = process.env): string[] {
  const choice = env.FEDSIM_NODE_GC || 'auto';
  if (!['auto', 'single', 'default'].includes(choice)) throw new UsageError(`FEDSIM_NODE_GC=${choice}: expected auto, single or default`);
  if (choice === 'default') return [];
  if (choice === 'single' || cores < processes) return ['--single-threaded-gc'];
  return [];
}

/**
 * Node flags for the server node of `fedsim run`. `--initial-old-space-size=128` lets V8's
 * old generation grow to 128 MB before its first major GC. With 1 MiB updates the server
 * takes in and lets go of ~100 MiB of buffers a round, and with the default limits that
 * started ~3 major GCs a round: 100 workers × `bytes:1MiB` over gRPC went from 0.68–0.86 to
 * 0.49–0.56 s a round, over HTTP 0.33–0.42 to 0.29–0.34 s, for 10–30 MB more peak RSS
 * (docs/benchmarks.md). With `mobilenetv2` either way the server's peak RSS has a target
 * of its own (docs/payloads.md): there V8's young generation is held to 2 MB semi-spaces
 * instead. At 128 workers V8's default let them grow mid-run (it sizes them by the rate of
 * allocation), taking the server's heap from 33 to 51 MB (64 workers stayed at 33) and its
 * peak RSS from about 180 to 205 MB (docs/benchmarks.md, "Session 23").
 * `FEDSIM_NODE_GC=default` keeps V8's defaults in both cases.
 */
export function serverNodeFlags(carriesMobilenet: boolean, env: NodeJS.ProcessEnv = process.env): string[] {
  if ((env.FEDSIM_NODE_GC || 'auto') === 'default') return [];
  return carriesMobilenet ? ['--max-semi-space-size=2'] : ['--initial-old-space-size=128'];
}

/** dist/src/runtime → package root (run from source). */
function packageRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
}

let cachedVersion: string | undefined;
export function fedsimVersion(): string {
  if (cachedVersion) return cachedVersion;
  const built = buildInfo();
  if (built) return (cachedVersion = built.version);
  try {
    const pkg = JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
    cachedVersion = pkg.version;
  } catch {
    cachedVersion = 'unknown';
  }
  return cachedVersion;
}

/** The commit of a git checkout, read from its files (no git process): HEAD, then the ref, loose or packed. */
export function gitCommitOf(root: string): string | null {
  try {
    let gitDir = path.join(root, '.git');
    let head: string;
    try {
      head = readFileSync(path.join(gitDir, 'HEAD'), 'utf8').trim();
    } catch {
      // A worktree or submodule: .git is a file "gitdir: PATH".
      const m = /^gitdir:\s*(.+)$/m.exec(readFileSync(gitDir, 'utf8'));
      if (!m) return null;
      gitDir = path.resolve(root, m[1].trim());
      head = readFileSync(path.join(gitDir, 'HEAD'), 'utf8').trim();
    }
    const ref = /^ref:\s*(.+)$/.exec(head);
    if (!ref) return /^[0-9a-f]{40}$/.test(head) ? head : null;
    let common = gitDir;
    try {
      common = path.resolve(gitDir, readFileSync(path.join(gitDir, 'commondir'), 'utf8').trim());
    } catch {
      // not a linked worktree
    }
    for (const dir of [gitDir, common]) {
      try {
        const sha = readFileSync(path.join(dir, ref[1]), 'utf8').trim();
        if (/^[0-9a-f]{40}$/.test(sha)) return sha;
      } catch {
        // not a loose ref here
      }
    }
    const packed = readFileSync(path.join(common, 'packed-refs'), 'utf8');
    for (const line of packed.split('\n')) {
      const [sha, name] = line.trim().split(' ');
      if (name === ref[1] && /^[0-9a-f]{40}$/.test(sha ?? '')) return sha;
    }
    return null;
  } catch {
    return null;
  }
}

/** The short commit fedsim was built from (the binary), or of the checkout it runs from, or "unknown". */
export function fedsimCommit(): string {
  const built = buildInfo();
  if (built) return built.commit;
  return gitCommitOf(packageRoot())?.slice(0, 7) ?? 'unknown';
}

/** `fedsim --version`: the version first (scripts read the first token), then node and the commit. */
export function versionLine(): string {
  return `${fedsimVersion()} (node ${process.version}, commit ${fedsimCommit()}${isBinary() ? ', single executable' : ''})`;
}
