// How every command speaks: a human rendering on stdout, or one JSON document with --json.
// Failures go to stderr (human) or stdout (JSON, as {error}) with the exit code of their kind.
import { ErrorCode, FerryError } from '../shared/errors.ts';

export const ExitCode = {
  Ok: 0,
  Failed: 1,
  /** The request was invalid: nothing was attempted. */
  InvalidRequest: 2,
  /** A migration rolled back: the workload still runs on its source host. */
  RolledBack: 3,
  /** A peer could not be reached (NATS, coordinator, agent). */
  Unavailable: 4,
} as const;

export function printResult<T>(json: boolean, value: T, human: (v: T) => string): void {
  if (json) process.stdout.write(JSON.stringify(value, null, 2) + '\n');
  else process.stdout.write(human(value).replace(/\n?$/, '\n'));
}

export function exitCodeFor(err: FerryError): number {
  switch (err.code) {
    case ErrorCode.InvalidRequest:
    case ErrorCode.BadConfig:
    case ErrorCode.BadMessage:
    case ErrorCode.NotFound:
    case ErrorCode.Unsupported:
    case ErrorCode.Incompatible:
      return ExitCode.InvalidRequest;
    case ErrorCode.Unavailable:
    case ErrorCode.Timeout:
      return ExitCode.Unavailable;
    default:
      return ExitCode.Failed;
  }
}

export function reportFailure(err: unknown, json: boolean): never {
  const e = FerryError.from(err);
  if (json) process.stdout.write(JSON.stringify({ error: e.toWire() }, null, 2) + '\n');
  else process.stderr.write(`ferry: ${e.message} [${e.code}]\n`);
  process.exit(exitCodeFor(e));
}

/** Wraps a command action so that thrown errors become the right output and exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      const last = args[args.length - 2];
      const json = typeof last === 'object' && last !== null && (last as { json?: boolean }).json === true;
      reportFailure(err, json || process.argv.includes('--json'));
    }
  };
}
