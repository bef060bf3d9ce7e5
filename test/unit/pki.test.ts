import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { certIdentity, ensureCa, issueCert } from '../../deploy/pki/certs.ts';

describe('pki (openssl)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-pki-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('issues a certificate the CA verifies, named by identity, with a private key', () => {
    const ca = ensureCa(dir);
    const c = issueCert(dir, 'agent.h1', { ips: ['10.77.0.11'] });
    expect(certIdentity(c.cert)).toBe('agent.h1');
    expect(execFileSync('openssl', ['verify', '-CAfile', ca.cert, c.cert], { encoding: 'utf8' })).toContain('OK');
    expect(statSync(c.key).mode & 0o077).toBe(0);
    const text = execFileSync('openssl', ['x509', '-in', c.cert, '-noout', '-ext', 'subjectAltName'], { encoding: 'utf8' });
    expect(text).toContain('DNS:agent.h1');
    expect(text).toContain('IP Address:10.77.0.11');
  });

  it('keeps an existing CA and refuses a malformed identity', () => {
    const before = statSync(ensureCa(dir).cert).mtimeMs;
    expect(statSync(ensureCa(dir).cert).mtimeMs).toBe(before);
    expect(() => issueCert(dir, 'root')).toThrow(/bad identity/);
  });
});
