// The data stream's credentials: the agent's own certificate and key, and the CA that every
// peer's certificate must chain to (AgentConfig.tls). Nothing about a migration's stream is
// secret except what TLS derives for the two ends alone; no secret is stored in KV or sent over
// NATS. In clear mode the data connection is bound to the authenticated TLS connection by a
// token exported from that TLS session (RFC 5705/8446 exporter): only its two ends can know it.
import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import tls from 'node:tls';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { TlsFiles } from '../../shared/config.ts';

export interface StreamCredentials {
  /** This agent's host name (its identity is agent.<host>). */
  host: string;
  context: tls.SecureContext;
  /** The PEM pieces, for tls.connect. */
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** TLS 1.3 only; AES-128-GCM first (AES-NI makes it the cheapest per byte, and 128 bits is plenty). */
export const TLS_OPTIONS = { minVersion: 'TLSv1.3', ciphersuites: 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256' } as const;

/** Reads the agent's identity; a missing or unreadable file is a config error naming it. */
export function loadCredentials(host: string, files: TlsFiles): StreamCredentials {
  const read = (what: string, p: string) => {
    try {
      return readFileSync(p);
    } catch (err) {
      throw new FerryError(ErrorCode.BadConfig, `data stream: cannot read the ${what} ${p}: ${(err as Error).message}`, { cause: err });
    }
  };
  const ca = read('CA certificate', files.ca);
  const cert = read('certificate', files.cert);
  const key = read('private key', files.key);
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ ca, cert, key, ...TLS_OPTIONS });
  } catch (err) {
    throw new FerryError(ErrorCode.BadConfig, `data stream: the TLS identity in ${files.cert} is unusable: ${(err as Error).message}`, { cause: err });
  }
  return { host, context, ca, cert, key };
}

/** The error of an agent that has no identity: it takes no part in migrations. */
export const noIdentity = (host: string): FerryError =>
  new FerryError(ErrorCode.BadConfig, `agent ${host} has no TLS identity (tls {ca, cert, key} in its config): it cannot take part in migrations, whose data stream is authenticated with it`);

const EXPORTER_LABEL = 'EXPORTER-ferry-data-stream-clear-binding';

/** The clear data connection's token: bound to this TLS session and to the migration. */
export function bindingToken(socket: tls.TLSSocket, migrationId: string): Buffer {
  return socket.exportKeyingMaterial(32, EXPORTER_LABEL, Buffer.from(migrationId));
}

export function sameToken(expected: Buffer, got: unknown): boolean {
  if (typeof got !== 'string' || !/^[0-9a-f]{64}$/.test(got)) return false;
  return timingSafeEqual(expected, Buffer.from(got, 'hex'));
}
