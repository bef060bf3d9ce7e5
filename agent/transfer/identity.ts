// Who is at the other end of a data stream: the identity in the peer's certificate, which the
// operator's CA issued as agent.<host> (CN and first DNS name, deploy/pki/certs.ts). TLS has
// already checked the chain to the CA; this checks that the certificate names the one agent this
// migration is between, so another agent of the same cluster cannot stand in for it.
import type { X509Certificate } from 'node:crypto';
import { ErrorCode, FerryError } from '../../shared/errors.ts';

/** The identity of the agent of `host`. */
export const agentIdentity = (host: string): string => `agent.${host}`;

/** The certificate's subject CN, or null without one. */
export function commonName(cert: X509Certificate): string | null {
  // X509Certificate.subject has one "KEY=value" per line; a CN is a single label-like name here.
  const cn = cert.subject.split('\n').find((l) => l.startsWith('CN='));
  return cn ? cn.slice(3) : null;
}

/**
 * Throws unless `cert` was issued to agent.<host>: its CN is exactly that name and the name is
 * among its DNS names (matched exactly: no wildcards). `cert` absent (no certificate shown) fails.
 */
export function assertAgentIdentity(cert: X509Certificate | undefined, host: string, role: 'source' | 'destination'): void {
  const expected = agentIdentity(host);
  if (!cert) throw new FerryError(ErrorCode.InvalidRequest, `data stream: the peer showed no certificate (expected ${expected}, the ${role})`);
  const cn = commonName(cert);
  const dnsMatch = cert.checkHost(expected, { subject: 'never', wildcards: false, partialWildcards: false, singleLabelSubdomains: false }) === expected;
  if (cn !== expected || !dnsMatch) {
    throw new FerryError(ErrorCode.InvalidRequest, `data stream: the peer is ${cn ?? 'a certificate without a CN'}, not ${expected} (the ${role} of this migration)`, {
      details: { expected, got: cn },
    });
  }
}
