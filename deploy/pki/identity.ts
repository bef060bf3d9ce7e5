// One identity's credentials, as the operator issues them with `ferry pki issue`: a certificate
// and key from the CA (TLS, see certs.ts) and, for users (agents, coordinators, operators), an
// nkey whose seed authenticates it to nats-server. Seeds stay in the directory they are made in
// (mode 0600): nats-server only ever learns the public key, from the authorization config.
import { createUser, fromSeed } from '@nats-io/nkeys';
import { existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseIdentity } from '../../shared/permissions.ts';
import { caFiles, issueCert, type IssueOptions } from './certs.ts';

export interface IdentityFiles {
  identity: string;
  ca: string;
  cert: string;
  key: string;
  /** The nkey seed file; absent for nats.* (server) identities. */
  credentials?: string;
  /** The nkey's public key (what the server's authorization config names). */
  publicKey?: string;
}

export const seedFile = (dir: string, identity: string): string => join(dir, `${identity}.nk`);

/** The public key of an nkey seed file. */
export const publicKeyOf = (seedPath: string): string => fromSeed(new TextEncoder().encode(readFileSync(seedPath, 'utf8').trim())).getPublicKey();

/** A new nkey for a user identity, replacing any earlier one (that is how it is rotated). */
function newNkey(path: string): string {
  const kp = createUser();
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${new TextDecoder().decode(kp.getSeed())}\n`, { mode: 0o600 });
  renameSync(tmp, path);
  return kp.getPublicKey();
}

/**
 * Issues an identity's certificate (and its nkey, for users). `keepNkey` keeps an existing seed
 * (the lab re-issues nothing it already has); otherwise both are new.
 */
export function issueIdentity(dir: string, identity: string, o: IssueOptions & { keepNkey?: boolean } = {}): IdentityFiles {
  const { cert, key } = issueCert(dir, identity, o);
  const files: IdentityFiles = { identity, ca: caFiles(dir).cert, cert, key };
  if (!parseIdentity(identity)) return files;
  const seed = seedFile(dir, identity);
  const publicKey = o.keepNkey && existsSync(seed) ? publicKeyOf(seed) : newNkey(seed);
  return { ...files, credentials: seed, publicKey };
}

/** Every user identity with an nkey in dir, sorted: what the authorization config lists. */
export function userIdentities(dir: string): { identity: string; publicKey: string }[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.nk') && parseIdentity(f.slice(0, -3)))
    .sort()
    .map((f) => ({ identity: f.slice(0, -3), publicKey: publicKeyOf(join(dir, f)) }));
}
