// `ferry pki` implementations, loaded only when a pki command runs (the permissions table pulls in
// every message schema, which `ferry --help` must not pay for).
import { writeFileSync } from 'node:fs';
import { ensureCa } from '../../deploy/pki/certs.ts';
import { issueIdentity, userIdentities } from '../../deploy/pki/identity.ts';
import { natsAuthorization } from '../../deploy/pki/nats-auth.ts';
import { permissionsFor } from '../../shared/permissions.ts';
import { printResult } from '../output.ts';

export function init(dir: string, opts: { name: string; json?: boolean }): void {
  const ca = ensureCa(dir, opts.name);
  printResult(!!opts.json, ca, (c) => `CA certificate ${c.cert} (key ${c.key}: never copy it to a host)`);
}

export function issue(dir: string, identity: string, opts: { ip: string[]; dns: string[]; days: number; json?: boolean }): void {
  const files = issueIdentity(dir, identity, { ips: opts.ip, dns: opts.dns, days: opts.days });
  printResult(!!opts.json, files, (f) =>
    [
      `${f.identity}: certificate ${f.cert}, key ${f.key}`,
      ...(f.credentials ? [`nkey seed ${f.credentials} (public key ${f.publicKey}); run \`ferry pki nats-auth\` and reload nats-server`] : []),
    ].join('\n'),
  );
}

export function natsAuth(dir: string, opts: { out?: string; json?: boolean }): void {
  const users = userIdentities(dir);
  const conf = natsAuthorization(users);
  if (opts.out) writeFileSync(opts.out, conf);
  const result = { out: opts.out ?? null, users: users.map((u) => ({ ...u, permissions: permissionsFor(u.identity) })) };
  printResult(!!opts.json, result, (r) => (r.out ? `${r.out}: ${r.users.length} users (${r.users.map((u) => u.identity).join(', ')})` : conf));
}

export function permissions(identity: string, opts: { json?: boolean }): void {
  printResult(!!opts.json, permissionsFor(identity), (p) =>
    [`publish:   ${p.publish.allow.join(' ')}`, `subscribe: ${p.subscribe.allow.join(' ')}`, `replies:   ${p.allow_responses ? 'yes' : 'no'}`].join('\n'),
  );
}
