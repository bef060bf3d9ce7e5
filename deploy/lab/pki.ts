// The lab's own certificate authority and the identities it issues, in <lab dir>/pki (mode
// 0700): one per nats-server, coordinator, agent, and the operator the CLI acts as. A real
// cluster makes the same files with `ferry pki` (docs/security.md).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { NatsAccess, TlsFiles } from '../../shared/config.ts';
import { ensureCa } from '../pki/certs.ts';
import { issueIdentity, userIdentities, type IdentityFiles } from '../pki/identity.ts';
import { natsAuthorization } from '../pki/nats-auth.ts';
import type { LabLayout } from './layout.ts';

export const labPkiDir = (l: LabLayout): string => path.join(l.dir, 'pki');

/** The lab's coordinators (`coordinator`, `coordinator2`) and its operator, by identity. */
export const labCoordinatorIdentity = (daemon: 'coordinator' | 'coordinator2'): string => (daemon === 'coordinator' ? 'coordinator.c1' : 'coordinator.c2');
export const LAB_OPERATOR = 'operator.lab';
export const labNatsIdentity = (n: number): string => `nats.n${n}`;

/** The CA, created on first use. */
export const labCa = (l: LabLayout): string => ensureCa(labPkiDir(l), `ferry lab ${l.name} CA`).cert;

const tlsOf = (f: IdentityFiles): TlsFiles => ({ ca: f.ca, cert: f.cert, key: f.key });

/** An agent's identity, agent.<host>, valid for its host's addresses. */
export function labAgentTls(l: LabLayout, host: string, addresses: string[]): TlsFiles {
  labCa(l);
  return tlsOf(issueIdentity(labPkiDir(l), `agent.${host}`, { dns: [host], ips: addresses, keepNkey: true }));
}

/** The files an identity issued in this lab connects to NATS with (certificate, key, nkey seed). */
export function labNatsAccess(l: LabLayout, identity: string): NatsAccess {
  const dir = labPkiDir(l);
  return {
    servers: l.natsUrls,
    tls: { ca: path.join(dir, 'ca.crt'), cert: path.join(dir, `${identity}.crt`), key: path.join(dir, `${identity}.key`) },
    credentials: path.join(dir, `${identity}.nk`),
  };
}

/**
 * Every identity a lab of `hosts` hosts needs, and the servers' authorization config listing the
 * users among them (written to <pki>/auth.conf, included by each server's config).
 */
export function issueLabIdentities(l: LabLayout, hosts: number, nodes: number): { authFile: string } {
  const dir = labPkiDir(l);
  labCa(l);
  for (let n = 1; n <= nodes; n++) issueIdentity(dir, labNatsIdentity(n), { dns: [l.natsName(n)], ips: [l.natsAddress(n)] });
  // The coordinators' certificates also serve their dashboards, reached on the control address.
  for (const id of [labCoordinatorIdentity('coordinator'), labCoordinatorIdentity('coordinator2')]) issueIdentity(dir, id, { keepNkey: true, ips: [l.controlAddress] });
  issueIdentity(dir, LAB_OPERATOR, { keepNkey: true });
  for (let i = 1; i <= hosts; i++) labAgentTls(l, l.hostName(i), [l.hostAddress(i), l.hostFabricAddress(i)]);
  const authFile = path.join(dir, 'auth.conf');
  writeFileSync(authFile, natsAuthorization(userIdentities(dir)));
  return { authFile };
}
