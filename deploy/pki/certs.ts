// The operator's certificate authority and the certificates it issues: one per identity (an
// agent, a coordinator, an operator, a nats-server). Built on the openssl command and Node's
// crypto (key generation), not on cryptography of our own. Keys are EC P-256 and never leave the directory they are made in
// (mode 0600); certificates are public.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';

/** Identities name their role first: agent.h1, coordinator.c1, operator.admin, nats.n1. */
export const IDENTITY = /^(agent|coordinator|operator|nats)\.[a-z0-9][a-z0-9-]{0,62}$/;

export interface CertFiles {
  cert: string;
  key: string;
}

export interface IssueOptions {
  /** DNS names and IP addresses the certificate is valid for (server side of TLS). */
  dns?: string[];
  ips?: string[];
  days?: number;
}

export const caFiles = (dir: string): CertFiles => ({ cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') });
export const identityFiles = (dir: string, identity: string): CertFiles => ({ cert: join(dir, `${identity}.crt`), key: join(dir, `${identity}.key`) });

function openssl(args: string[]): string {
  try {
    return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new FerryError(ErrorCode.Internal, `openssl ${args[0]} failed: ${stderr || (err as Error).message}`, { cause: err });
  }
}

/** A new EC P-256 private key (Node's crypto), PKCS#8 PEM, mode 0600. */
function newKey(path: string): void {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  chmodSync(path, 0o600);
}

/** Creates the CA in dir unless one is there already; returns its files. */
export function ensureCa(dir: string, subject = 'ferry CA', days = 3650): CertFiles {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = caFiles(dir);
  if (existsSync(ca.cert) && existsSync(ca.key)) return ca;
  newKey(ca.key);
  openssl(['req', '-x509', '-new', '-key', ca.key, '-sha256', '-days', String(days), '-subj', `/CN=${subject}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', ca.cert]);
  return ca;
}

/**
 * Issues (or re-issues, which is how a certificate is rotated) the certificate of one identity,
 * signed by the CA in dir. The identity is the certificate's CN and its first DNS name, so a peer
 * checks whom it talks to by name; it is good for both ends of TLS (agents are both).
 */
export function issueCert(dir: string, identity: string, o: IssueOptions = {}): CertFiles {
  if (!IDENTITY.test(identity)) throw new FerryError(ErrorCode.InvalidRequest, `bad identity "${identity}": expected agent|coordinator|operator|nats followed by .name`);
  const ca = caFiles(dir);
  if (!existsSync(ca.cert)) throw new FerryError(ErrorCode.InvalidRequest, `no CA in ${dir}: create it first`);
  const out = identityFiles(dir, identity);
  const tmp = mkdtempSync(join(dir, '.issue-'));
  try {
    const conf = join(tmp, 'req.cnf');
    const san = [identity, ...(o.dns ?? [])].map((d) => `DNS:${d}`).concat((o.ips ?? []).map((ip) => `IP:${ip}`));
    // A config of our own, so that nothing of the system's openssl.cnf (e.g. CA:true) gets in.
    writeFileSync(conf, [
      '[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', `CN = ${identity}`, '[ext]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage = serverAuth,clientAuth',
      `subjectAltName = ${san.join(',')}`,
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
    ].join('\n'));
    newKey(join(tmp, 'key.pem'));
    // One openssl run: request and signature by the CA together (openssl 3's req -CA).
    openssl(['req', '-new', '-config', conf, '-key', join(tmp, 'key.pem'), '-CA', ca.cert, '-CAkey', ca.key, '-extensions', 'ext',
      '-sha256', '-days', String(o.days ?? 825), '-out', join(tmp, 'cert.pem')]);
    // Key first, then certificate: a reader that sees the new certificate finds its key.
    renameSync(join(tmp, 'key.pem'), out.key);
    renameSync(join(tmp, 'cert.pem'), out.cert);
    chmodSync(out.key, 0o600);
    return out;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The identity (CN) a PEM certificate was issued to. */
export function certIdentity(certPath: string): string {
  const subject = openssl(['x509', '-in', certPath, '-noout', '-subject', '-nameopt', 'RFC2253']).trim();
  const m = /CN=([^,]+)/.exec(subject);
  if (!m) throw new FerryError(ErrorCode.Internal, `certificate ${certPath} has no CN`);
  return m[1]!;
}
