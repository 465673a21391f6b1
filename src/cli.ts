import { Command, CommanderError, Option } from 'commander';
import { runAttachedNode, type AgentFlags } from './commands/nodeAgent.js';
import { runCoordinator, type CoordinatorFlags } from './commands/coordinator.js';
import { runServerNode, type ServerFlags } from './commands/nodeServer.js';
import { runWorkerNode, type WorkerFlags } from './commands/nodeWorker.js';
import { runRun, type RunFlags } from './commands/run.js';
import { type DeployAnsibleFlags, type DeployK8sFlags, runDeployAnsible, runDeployK8s } from './commands/deploy.js';
import type { ResolveInput } from './config/scenario.js';
import { SETTINGS, envOf, flagOf } from './config/settings.js';
import { parseIntFlag, parseSize } from './config/values.js';
import { chunkFromEnv, formatChunk } from './config/chunk.js';
import { generateKeys } from './auth/keys.js';
import { ExitCode, UsageError, exitCodeOf } from './errors.js';
import { cleanNetns } from './netem/netns.js';
import { cleanFaults } from './netem/clean.js';
import { versionLine } from './runtime/self.js';

/** Scenario settings as flags: no commander defaults, so precedence (flag > env > file > default) stays ours. */
function addScenarioOptions(cmd: Command): Command {
  for (const d of SETTINGS) {
    const unit = d.unit ? ` (${d.unit})` : '';
    const def = d.default === null ? '' : `; default ${d.default}`;
    cmd.addOption(new Option(`${flagOf(d.key)} <value>`, `${d.help}${unit}${def}; env ${envOf(d.key)}`));
  }
  return cmd;
}

const CUT_OPTIONS: Array<[string, string]> = [
  ['--cut-on-log <regex>', 'cut when a log line matches (see --cut-log-source)'],
  ['--cut-log-source <src>', 'whose log lines: server, any, or "chunk N" (default any)'],
  ['--cut-on-phase <phase>', 'cut when a targeted worker enters training, sending, waiting or receiving'],
  ['--cut-on-round <R>', 'cut when round R opens'],
  ['--cut-at <time>', 'cut this long after the start (e.g. 5s)'],
  ['--cut-for <duration>', 'how long the cut lasts (default 10s)'],
  ['--cut-max <N>', 'cut at most N times (default 1)'],
  ['--cut-target <target>', 'server, all, one, fixed:N, percent:P, ids 1,2, optionally after "chunk N"'],
  ['--cut-kind <kind>', 'blackhole (default), reset, refuse, delay, loss, bandwidth'],
  ['--cut-direction <dir>', 'up, down or both (default)'],
  ['--cut-delay <duration>', 'for --cut-kind delay'],
  ['--cut-loss <percent>', 'for --cut-kind loss'],
  ['--cut-rate <rate>', 'for --cut-kind bandwidth (e.g. 10mbit)'],
];

/** One fault from flags, for the common case (docs/faults.md has the full `faults:` list). */
function addCutOptions(cmd: Command): Command {
  for (const [flag, help] of CUT_OPTIONS) cmd.option(flag, help);
  // Thresholds come with the scenario (docs/thresholds.md).
  cmd.option('--threshold <METRIC:EXPR>', "pass/fail criterion, repeatable, e.g. 'round_ms:p(95)<2000' (exit 99 when one fails; add ':abortOnFail' to stop the run when it fails)", (v: string, prev: string[] = []) => [...prev, v]);
  cmd.option('--no-thresholds', 'ignore every threshold (of the file and of --threshold)');
  cmd.option('--metrics-port <P>', 'serve the live figures for Prometheus at http://HOST:P/metrics (0 picks a free port)');
  cmd.option('--metrics-host <HOST>', 'address of --metrics-port (default 127.0.0.1; 0.0.0.0 for a Prometheus on another host)');
  return cmd;
}

function cutFlags(opts: Record<string, unknown>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const k of Object.keys(opts)) if (k.startsWith('cut') && typeof opts[k] === 'string') out[k] = opts[k] as string;
  return out;
}

function settingFlags(opts: Record<string, unknown>): ResolveInput['flags'] {
  const out: ResolveInput['flags'] = {};
  for (const d of SETTINGS) if (typeof opts[d.key] === 'string') out[d.key] = opts[d.key] as string;
  return out;
}

/** What a clean command did, on stderr; exit 1 when something could not be removed. */
function reportClean(r: { removed: string[]; skipped: string[]; problems: string[] }): number {
  for (const x of r.removed) process.stderr.write(`removed ${x}\n`);
  for (const x of r.skipped) process.stderr.write(`left alone: ${x}\n`);
  for (const x of r.problems) process.stderr.write(`could not remove: ${x}\n`);
  if (r.removed.length === 0 && r.problems.length === 0) process.stderr.write('nothing to clean\n');
  return r.problems.length ? ExitCode.runFailed : ExitCode.ok;
}

function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('fedsim')
    .description('Stress-test and fault-test the communication of federated learning')
    .version(versionLine(), '-V, --version', 'print the version, the Node.js version and the commit')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('node')
    .description('run one node: the FL server under test, or one chunk of workers; with --coordinator it takes everything else from the coordinator')
    .addOption(new Option('--role <role>', 'server or worker').choices(['server', 'worker']).makeOptionMandatory())
    .option('--coordinator <HOST:PORT>', 'attach to a coordinator, which assigns the scenario (and the chunk, unless --chunk)')
    .option('--token <token>', 'the run token the coordinator printed (or FEDSIM_TOKEN)')
    .option('--tls-ca <file>', 'CA certificate to check a TLS coordinator')
    .option('--workers <W>', 'workers in the whole run (server: expected per round)')
    .option('--host <host>', '[server] address to bind', '127.0.0.1')
    .option('--advertise <host>', '[server, with --coordinator] the host name or address workers are told to reach this server at (e.g. a Kubernetes Service name)')
    .option('--http-port <P>', '[server] long-poll HTTP port (0 picks a free one)', '0')
    .option('--grpc-port <Q>', '[server] gRPC port (0 picks a free one)', '0')
    .option('--min-workers <M>', '[server] with --round-timeout: close a round with M updates after the deadline')
    .option('--round-timeout <S>', '[server] seconds before a round may close on the quorum')
    .option('--poll-timeout <S>', '[server] seconds a model long-poll is held before 204', '25')
    .option('--max-update-bytes <SIZE>', '[server] largest update accepted', '1GiB')
    .option('--chunk <n of k>', '[worker] which chunk of the workers to run: "3 of 4", "3of4" or "3/4"')
    .option('--chunk-from-env <VAR of K>', '[worker] chunk (i+1) of K where $VAR holds the zero-based index i, e.g. "JOB_COMPLETION_INDEX of 4" (Kubernetes Indexed Jobs)')
    .option('--server <HOST:PORT>', '[worker] the server port of the chosen transport')
    .option('--transport <t>', '[worker] http or grpc', 'http')
    .option('--rounds <R>', '[worker] rounds each worker completes', '3')
    .option('--train-ms <A..B>', '[worker] simulated training time per round, uniform in A..B ms', '0')
    .option('--payload <p>', 'string, bytes:SIZE (e.g. bytes:1MiB) or mobilenetv2', 'string')
    .option('--global-payload <p>', 'what the server publishes, when it differs from --payload')
    .option('--update-payload <p>', 'what workers send back, when it differs from --payload')
    .option('--retries <N>', '[worker] retries of a failed request', '5')
    .option('--retry-base-ms <ms>', '[worker] first backoff (doubles each retry, full jitter)', '100')
    .option('--retry-max-ms <ms>', '[worker] longest backoff', '2000')
    .option('--request-timeout <S>', '[worker] seconds without an answer before a request fails (above --poll-timeout)', '60')
    .option('--keepalive <S>', '[worker] gRPC keepalive ping interval and TCP keepalive idle time, seconds', '10')
    .option('--keepalive-timeout <S>', '[worker] a gRPC keepalive ping unanswered this long ends the connection, seconds', '5')
    .option('--train <t>', '[worker] sleep, or onnx:STEPS forward passes of the held mobilenetv2 model per round', 'sleep')
    .option('--onnx-threads <N>', '[worker] onnxruntime threads of this node', '1')
    .option('--validate-model', '[worker] load each received mobilenetv2 model in onnxruntime')
    .option('--seed <N>', '[worker] seed of the jitter and payload randomness', '1')
    .option('--keys <PATH>', 'safe mode: [server] the list of admitted public keys; [worker] the directory of worker keys (fedsim keys gen)')
    .option('--auth-scheme <s>', '[worker] safe mode: session (the registration is signed and opens a session; later requests carry a MAC under its key) or ed25519 (every request signed)', 'session')
    .option('--events', 'print NDJSON events on stdout')
    .option('--dry-run', '[with --coordinator] print the iptables/tc commands of kernel fault backends instead of running them')
    .option('--isolated', '[with --coordinator] this node has its own host or network namespace: backend auto may use iptables/netem')
    .action(async (opts: ServerFlags & WorkerFlags & AgentFlags & { role: 'server' | 'worker'; dryRun?: boolean; isolated?: boolean; chunkFromEnv?: string }) => {
      if (opts.chunkFromEnv !== undefined) {
        if (opts.chunk !== undefined) throw new UsageError('--chunk and --chunk-from-env go alone: give one of them');
        if (opts.role !== 'worker') throw new UsageError('--chunk-from-env is for --role worker');
        opts.chunk = formatChunk(chunkFromEnv(opts.chunkFromEnv, process.env));
      }
      if (opts.advertise !== undefined) {
        if (opts.role !== 'server' || opts.coordinator === undefined) throw new UsageError('--advertise is for --role server with --coordinator (the coordinator tells the workers where the server is)');
        if (!/^[A-Za-z0-9.:_-]+$/.test(opts.advertise)) throw new UsageError(`--advertise "${opts.advertise}" is not a host name or address`);
      }
      if (opts.dryRun) process.env.FEDSIM_DRY_RUN = '1';
      if (opts.isolated) process.env.FEDSIM_ISOLATED = '1';
      if (opts.coordinator !== undefined) {
        setExit(await runAttachedNode(opts, parseSize(opts.maxUpdateBytes, '--max-update-bytes')));
      } else {
        setExit(opts.role === 'server' ? await runServerNode(opts) : await runWorkerNode(opts));
      }
    });

  addCutOptions(addScenarioOptions(
    program
      .command('run')
      .description('the embedded default: coordinator here, a server node and worker nodes as local child processes')
      .option('--scenario <file>', 'scenario file (YAML); flags and FEDSIM_* variables override it')
      .option('--out <DIR>', 'run directory (default ./fedsim-runs/<timestamp>)')
      .option('--headless', 'plain progress lines (the default until the terminal UI lands)')
      .option('--netns', '(root) run each node in its own network namespace, joined by veth pairs and a bridge')
      .option('--dry-run', 'print the iptables/tc commands of kernel fault backends instead of running them (the run goes on without them)')
      .option('--stdin-commands', 'read commands from standard input: "fire FAULT_ID" fires a manual fault, "faults" lists them')
      .option('--keys <DIR>', 'safe mode: a directory from `fedsim keys gen` (the server reads DIR/keys.list, each worker node its own worker keys)'),
  )).action(async (opts: RunFlags) => {
    setExit(await runRun(opts, settingFlags(opts), cutFlags(opts)));
  });

  addCutOptions(addScenarioOptions(
    program
      .command('coordinator')
      .description('control plane: nodes on any host attach; starts them together, watches them, writes the reports')
      .option('--listen <HOST:PORT>', 'control address to listen on', '127.0.0.1:7070')
      .option('--scenario <file>', 'scenario file (YAML); flags and FEDSIM_* variables override it')
      .option('--expect-nodes <N>', 'worker nodes to wait for (sets nodes); the server node is always expected too')
      .option('--token <token>', 'run token nodes must present (default: generated and printed; or FEDSIM_TOKEN)')
      .option('--tls-cert <file>', 'serve the control plane over TLS with this certificate')
      .option('--tls-key <file>', 'private key of --tls-cert')
      .option('--tls-ca <file>', 'CA bundle (reserved for client certificates)')
      .option('--out <DIR>', 'run directory (default ./fedsim-runs/<timestamp>)')
      .option('--headless', 'plain progress lines (the default until the terminal UI lands)')
      .option('--stdin-commands', 'read commands from standard input: "fire FAULT_ID" fires a manual fault, "faults" lists them'),
  )).action(async (opts: CoordinatorFlags & Record<string, unknown>) => {
    setExit(await runCoordinator(opts, settingFlags(opts), cutFlags(opts)));
  });

  program
    .command('netns')
    .description('network namespaces of --netns runs')
    .command('clean')
    .description('remove namespaces and bridges left by a killed run (names fedsim-* and fsbr-*)')
    .action(async () => {
      if (typeof process.getuid === 'function' && process.getuid() !== 0) throw new UsageError('fedsim netns clean needs root');
      setExit(reportClean(await cleanNetns()));
    });

  program
    .command('netem')
    .description('kernel fault backends (iptables, tc netem)')
    .command('clean')
    .description('undo the iptables chains and tc qdiscs a killed run left (from its journal in /run/fedsim, and any FEDSIM-* chain)')
    .action(async () => {
      if (typeof process.getuid === 'function' && process.getuid() !== 0) throw new UsageError('fedsim netem clean needs root');
      setExit(reportClean(await cleanFaults()));
    });

  program
    .command('keys')
    .description('safe mode: ed25519 keys that authenticate workers to the server')
    .command('gen')
    .description('write one key pair per worker (worker-<i>.key, owner-only, and worker-<i>.pub) and keys.list, the public keys the server accepts')
    .requiredOption('--workers <N>', 'key pairs to write, for workers 0..N-1')
    .requiredOption('--out <DIR>', 'directory to write them to (created 0700)')
    .option('--force', 'overwrite existing key files')
    .action((opts: { workers: string; out: string; force?: boolean }) => {
      const workers = parseIntFlag(opts.workers, '--workers', 1);
      const { dir, list } = generateKeys({ workers, outDir: opts.out, force: opts.force === true });
      process.stderr.write(`wrote ${workers} key pair${workers === 1 ? '' : 's'} to ${dir} (worker-0.key .. worker-${workers - 1}.key, mode 0600, and .pub files)\n`);
      process.stderr.write(`public key list: ${list} (give it to the server; each worker node needs only its own .key files)\n`);
      setExit(ExitCode.ok);
    });

  const deploy = program
    .command('deploy')
    .description('one run beyond one machine: Kubernetes manifests or an Ansible playbook (docs/multi-host.md)');
  deploy
    .command('k8s')
    .description('print the Kubernetes manifests of a run (YAML) on stdout: coordinator, server node, worker nodes as an Indexed Job, token Secret, scenario ConfigMap')
    .requiredOption('--scenario <file>', 'the scenario file (YAML); its name names the objects')
    .option('--namespace <NS>', 'namespace of every object (created, unless "default")', 'fedsim')
    .option('--image <IMG>', 'container image holding the fedsim binary at /usr/local/bin/fedsim (deploy/docker/Dockerfile; default fedsim:<version>)')
    .option('--hold <S>', 'seconds the coordinator pod keeps the run directory after the run, for kubectl cp', '3600')
    .action((opts: DeployK8sFlags) => setExit(runDeployK8s(opts)));
  deploy
    .command('ansible')
    .description('write a playbook directory that copies the binary to the inventory hosts, runs the nodes and the coordinator, fetches the run directory and cleans up')
    .requiredOption('--scenario <file>', 'the scenario file (YAML)')
    .requiredOption('--inventory <file>', 'Ansible inventory (INI or YAML) with groups coordinator, server and workers')
    .option('--out <DIR>', 'the playbook directory (default ./fedsim-<name>-ansible)')
    .option('--binary <FILE>', 'the single executable to copy (default: this one, or dist/fedsim of `npm run build`)')
    .option('--run-timeout <S>', 'seconds the play waits for the run to end', '3600')
    .action((opts: DeployAnsibleFlags) => setExit(runDeployAnsible(opts)));

  return program;
}

export async function main(argv: string[]): Promise<number> {
  let code: number = ExitCode.ok;
  const program = buildProgram((c) => (code = c));
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return ExitCode.ok;
      return ExitCode.usage;
    }
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`fedsim: ${err instanceof UsageError ? 'error' : 'failed'}: ${msg}\n`);
    if (process.env.FEDSIM_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return exitCodeOf(err);
  }
}
