// The data stream's identity check: a certificate is accepted as agent.<host> only when its CN
// and one of its DNS names are exactly that name.
import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureCa, issueCert } from '../../deploy/pki/certs.ts';
import { agentIdentity, assertAgentIdentity, commonName } from '../../agent/transfer/identity.ts';
import { ErrorCode } from '../../shared/errors.ts';

describe('data stream identity', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-identity-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const ca = ensureCa(dir);
  const cert = (identity: string, dns: string[] = []) => new X509Certificate(readFileSync(issueCert(dir, identity, { dns, ips: ['10.77.0.11'] }).cert));

  /** A certificate made by hand with openssl: any CN and SANs, signed by the same CA. */
  function custom(cn: string, san: string): X509Certificate {
    const key = join(dir, 'c.key');
    const csr = join(dir, 'c.csr');
    const ext = join(dir, 'c.ext');
    const out = join(dir, 'c.crt');
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
    execFileSync('openssl', ['req', '-new', '-key', key, '-subj', `/CN=${cn}`, '-out', csr]);
    writeFileSync(ext, san ? `subjectAltName=${san}\n` : 'basicConstraints=CA:FALSE\n');
    execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '1', '-extfile', ext, '-out', out], { stdio: 'ignore' });
    return new X509Certificate(readFileSync(out));
  }

  it('accepts the certificate issued to agent.<host>', () => {
    const c = cert('agent.h1', ['h1']);
    expect(agentIdentity('h1')).toBe('agent.h1');
    expect(commonName(c)).toBe('agent.h1');
    expect(() => assertAgentIdentity(c, 'h1', 'source')).not.toThrow();
  });

  it('refuses another agent, another role, and a host name alone', () => {
    expect(() => assertAgentIdentity(cert('agent.h3', ['h3']), 'h1', 'source')).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidRequest, message: expect.stringContaining('agent.h3, not agent.h1 (the source') }),
    );
    expect(() => assertAgentIdentity(cert('coordinator.h1'), 'h1', 'source')).toThrow(/coordinator\.h1, not agent\.h1/);
    // agent.h10 is not agent.h1, nor is a certificate that names h1 only as a plain DNS name.
    expect(() => assertAgentIdentity(cert('agent.h10', ['h1']), 'h1', 'destination')).toThrow(/agent\.h10, not agent\.h1 \(the destination/);
  });

  it('refuses a CN without the matching DNS name, a wildcard, and no certificate', () => {
    expect(() => assertAgentIdentity(custom('agent.h1', 'DNS:agent.h2'), 'h1', 'source')).toThrow(/not agent\.h1/);
    expect(() => assertAgentIdentity(custom('agent.h1', ''), 'h1', 'source')).toThrow(/not agent\.h1/);
    expect(() => assertAgentIdentity(custom('agent.h1', 'DNS:*.h1,DNS:agent.*'), 'h1', 'source')).toThrow(/not agent\.h1/);
    expect(() => assertAgentIdentity(custom('agent.h1', 'DNS:agent.h1'), 'h1', 'source')).not.toThrow();
    expect(() => assertAgentIdentity(undefined, 'h1', 'source')).toThrow(/showed no certificate \(expected agent\.h1/);
  });
});
