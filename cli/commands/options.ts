// Options and argument parsers that several commands share. Kept light: `ferry --help` loads
// every command's definition, and nothing here may pull in zod, NATS or the engine.
import { ErrorCode, FerryError } from '../../shared/errors.ts';

export const natsOpt = ['--nats <url>', 'NATS server URL(s), comma-separated (default: FERRY_NATS_URL or the local lab)'] as const;

export function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new FerryError(ErrorCode.InvalidRequest, `expected a whole number above 0, got "${v}"`);
  return n;
}

/** KEY=VALUE, repeatable, into one record. */
export function collectEnv(v: string, acc: Record<string, string>): Record<string, string> {
  const i = v.indexOf('=');
  if (i <= 0) throw new FerryError(ErrorCode.InvalidRequest, `--env takes KEY=VALUE, got "${v}"`);
  return { ...acc, [v.slice(0, i)]: v.slice(i + 1) };
}
