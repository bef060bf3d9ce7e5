// Options and argument parsers that several commands share. Kept light: `ferry --help` loads
// every command's definition, and nothing here may pull in zod, NATS or the engine.
import type { Command } from 'commander';
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

export const DEFAULT_CLI_CONFIG = '/etc/ferry/cli.json';

/** Every command that reaches the cluster (it has --nats) also takes the operator's credentials. */
export function addClusterAccessOptions(cmd: Command): void {
  for (const sub of cmd.commands) addClusterAccessOptions(sub);
  if (!cmd.options.some((o) => o.long === '--nats')) return;
  cmd
    .option('--creds <file>', "this operator's nkey seed file (default: FERRY_NATS_CREDS, the config file, or the local lab's operator)")
    .option('--tls-ca <file>', 'CA certificate of the cluster (default: FERRY_NATS_CA or the config file)')
    .option('--tls-cert <file>', "this operator's certificate (default: FERRY_NATS_CERT or the config file)")
    .option('--tls-key <file>', "this operator's private key (default: FERRY_NATS_KEY or the config file)")
    .option('--config <file>', `CLI config, {"nats": {servers, tls, credentials}} (default: FERRY_CONFIG or ${DEFAULT_CLI_CONFIG} if present)`);
}
