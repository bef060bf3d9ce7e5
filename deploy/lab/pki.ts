// The lab's own certificate authority and the identities it issues, in <lab dir>/pki (mode
// 0700). A real cluster makes the same files with `ferry pki` (docs/security.md).
import path from 'node:path';
import type { TlsFiles } from '../../shared/config.ts';
import { ensureCa, issueCert } from '../pki/certs.ts';
import type { LabLayout } from './layout.ts';

export const labPkiDir = (l: LabLayout): string => path.join(l.dir, 'pki');

/** The CA, created on first use. */
export const labCa = (l: LabLayout): string => ensureCa(labPkiDir(l), `ferry lab ${l.name} CA`).cert;

/** An agent's identity, agent.<host>, valid for its host address. */
export function labAgentTls(l: LabLayout, host: string, address: string): TlsFiles {
  const ca = labCa(l);
  const { cert, key } = issueCert(labPkiDir(l), `agent.${host}`, { dns: [host], ips: [address] });
  return { ca, cert, key };
}
