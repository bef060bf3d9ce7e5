// `ferry pki`: the operator's CA, per-identity credentials and nats-server's authorization
// config, for a real cluster (the lab makes its own in <lab dir>/pki). docs/security.md.
import type { Command } from 'commander';
import { action } from '../output.ts';

const collect = (v: string, acc: string[]): string[] => [...acc, v];

export function registerPki(program: Command): void {
  const pki = program.command('pki').description("credentials for a real cluster: the operator's CA, one identity per daemon and operator, nats-server's authorization");

  pki
    .command('init')
    .argument('<dir>', 'directory for the CA (created, mode 0700); keep it on the operator\'s machine')
    .option('--name <cn>', 'the CA certificate\'s common name', 'ferry CA')
    .option('--json', 'print as JSON')
    .description('create the CA (kept if it exists)')
    .action(
      action(async (dir: string, opts: { name: string; json?: boolean }) => (await import('../run/pki.ts')).init(dir, opts)),
    );

  pki
    .command('issue')
    .argument('<dir>', 'the CA directory')
    .argument('<identity>', 'agent.<host>, coordinator.<name>, operator.<name> or nats.<name>')
    .option('--ip <address>', 'an IP address the identity serves on (repeatable; nats servers and agents)', collect, [])
    .option('--dns <name>', 'a DNS name the identity serves on (repeatable)', collect, [])
    .option('--days <n>', 'validity in days', (v) => Number(v), 825)
    .option('--json', 'print as JSON')
    .description('issue (or rotate) an identity: certificate and key, and for users an nkey seed file (mode 0600)')
    .action(
      action(async (dir: string, identity: string, opts: { ip: string[]; dns: string[]; days: number; json?: boolean }) => (await import('../run/pki.ts')).issue(dir, identity, opts)),
    );

  pki
    .command('nats-auth')
    .argument('<dir>', 'the CA directory')
    .option('--out <file>', 'write the authorization config here (include it from each nats-server config)')
    .option('--json', 'print as JSON')
    .description("nats-server's authorization config: one nkey user per identity in <dir>, with its role's permissions")
    .action(
      action(async (dir: string, opts: { out?: string; json?: boolean }) => (await import('../run/pki.ts')).natsAuth(dir, opts)),
    );

  pki
    .command('permissions')
    .argument('<identity>', 'agent.<host>, coordinator.<name> or operator.<name>')
    .option('--json', 'print as JSON')
    .description('what an identity may publish and subscribe to')
    .action(
      action(async (identity: string, opts: { json?: boolean }) => (await import('../run/pki.ts')).permissions(identity, opts)),
    );
}
