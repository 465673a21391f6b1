import { Command, CommanderError, Option } from 'commander';
import { runServerNode, type ServerFlags } from './commands/nodeServer.js';
import { runWorkerNode, type WorkerFlags } from './commands/nodeWorker.js';
import { runRun, type RunFlags } from './commands/run.js';
import { ExitCode, UsageError, exitCodeOf } from './errors.js';
import { fedsimVersion } from './runtime/self.js';

function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('fedsim')
    .description('Stress-test and fault-test the communication of federated learning')
    .version(fedsimVersion(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('node')
    .description('run one node: the FL server under test, or one chunk of workers')
    .addOption(new Option('--role <role>', 'server or worker').choices(['server', 'worker']).makeOptionMandatory())
    .option('--workers <W>', 'workers in the whole run (server: expected per round)')
    .option('--host <host>', '[server] address to bind', '127.0.0.1')
    .option('--http-port <P>', '[server] long-poll HTTP port (0 picks a free one)', '0')
    .option('--grpc-port <Q>', '[server] gRPC port (0 picks a free one)', '0')
    .option('--min-workers <M>', '[server] with --round-timeout: close a round with M updates after the deadline')
    .option('--round-timeout <S>', '[server] seconds before a round may close on the quorum')
    .option('--poll-timeout <S>', '[server] seconds a model long-poll is held before 204', '25')
    .option('--max-update-bytes <SIZE>', '[server] largest update accepted', '1GiB')
    .option('--chunk <n of k>', '[worker] which chunk of the workers to run: "3 of 4", "3of4" or "3/4"')
    .option('--server <HOST:PORT>', '[worker] the server port of the chosen transport')
    .option('--transport <t>', '[worker] http or grpc', 'http')
    .option('--rounds <R>', '[worker] rounds each worker completes', '3')
    .option('--train-ms <A..B>', '[worker] simulated training time per round, uniform in A..B ms', '0')
    .option('--payload <p>', 'string or bytes:SIZE (e.g. bytes:1MiB)', 'string')
    .option('--retries <N>', '[worker] retries of a failed request', '5')
    .option('--retry-base-ms <ms>', '[worker] first backoff (doubles each retry, full jitter)', '100')
    .option('--retry-max-ms <ms>', '[worker] longest backoff', '2000')
    .option('--request-timeout <S>', '[worker] seconds without an answer before a request fails (above --poll-timeout)', '60')
    .option('--seed <N>', '[worker] seed of the jitter and payload randomness', '1')
    .option('--events', 'print NDJSON events on stdout (used by fedsim run)')
    .action(async (opts: ServerFlags & WorkerFlags & { role: string }) => {
      setExit(opts.role === 'server' ? await runServerNode(opts) : await runWorkerNode(opts));
    });

  program
    .command('run')
    .description('the embedded default: a server node and worker nodes on this machine, one command')
    .option('--workers <W>', 'simulated workers', '200')
    .option('--nodes <K>', 'worker nodes (child processes)', '2')
    .option('--rounds <R>', 'rounds', '5')
    .option('--transport <t>', 'http or grpc', 'http')
    .option('--payload <p>', 'string or bytes:SIZE (e.g. bytes:1MiB)', 'string')
    .option('--train-ms <A..B>', 'simulated training time per round, uniform in A..B ms', '10..50')
    .option('--min-workers <M>', 'with --round-timeout: close a round with M updates after the deadline')
    .option('--round-timeout <S>', 'seconds before a round may close on the quorum')
    .option('--poll-timeout <S>', 'seconds a model long-poll is held before 204', '25')
    .option('--retries <N>', 'retries of a failed request', '5')
    .option('--seed <N>', 'seed of the jitter and payload randomness', '1')
    .option('--out <DIR>', 'run directory (default ./fedsim-runs/<timestamp>)')
    .option('--headless', 'plain progress lines (the default until the terminal UI lands)')
    .action(async (opts: RunFlags) => {
      setExit(await runRun(opts));
    });

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
      if (err.code === 'commander.executeSubCommandAsync') return err.exitCode;
      return ExitCode.usage;
    }
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`fedsim: ${err instanceof UsageError ? 'error' : 'failed'}: ${msg}\n`);
    if (!(err instanceof UsageError) && !(err instanceof Error && err.name === 'RunError') && err instanceof Error && err.stack && process.env.FEDSIM_DEBUG) {
      process.stderr.write(`${err.stack}\n`);
    }
    return exitCodeOf(err);
  }
}
