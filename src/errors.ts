/**
 * The exit-code table. Every failure that reaches the top level is one of these,
 * and src/cli.ts maps it to the process exit code. Documented in README.md.
 */
export const ExitCode = {
  ok: 0,
  runFailed: 1,
  usage: 2,
  /** The run completed but a threshold failed (k6's convention). */
  thresholds: 99,
} as const;

/** Bad flags, bad files, bad values: the user can fix it by changing the input. */
export class UsageError extends Error {
  readonly exitCode = ExitCode.usage;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The run itself failed (a node died, rounds did not complete, the server is unreachable). */
export class RunError extends Error {
  readonly exitCode = ExitCode.runFailed;
  constructor(message: string) {
    super(message);
    this.name = 'RunError';
  }
}

export function exitCodeOf(err: unknown): number {
  if (err instanceof UsageError || err instanceof RunError) return err.exitCode;
  return ExitCode.runFailed;
}
