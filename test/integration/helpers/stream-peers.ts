// Agents' identities for data streams on loopback (tests and benchmarks): a throwaway CA in a
// temporary directory issuing agent.<host> certificates, and a second CA that nobody trusts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureCa, issueCert } from '../../../deploy/pki/certs.ts';
import { loadCredentials, type StreamCredentials } from '../../../agent/transfer/auth.ts';
import { StreamServer } from '../../../agent/transfer/stream-server.ts';
import { type DataConnection, type StreamEndpoint, connectStream } from '../../../agent/transfer/stream.ts';
import type { TlsFiles } from '../../../shared/config.ts';

let root: string | null = null;
const cache = new Map<string, StreamCredentials>();

function pkiRoot(): string {
  if (!root) {
    root = mkdtempSync(path.join(tmpdir(), 'ferry-stream-pki-'));
    const dir = root;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return root;
}

/** The files of agent.<host>'s identity, issued by the test CA (`ca: 'other'`: by a CA nobody trusts). */
function agentFiles(host: string, ca: 'ferry' | 'other' = 'ferry'): TlsFiles {
  const dir = path.join(pkiRoot(), ca);
  const caCert = ensureCa(dir, `${ca} test CA`).cert;
  const { cert, key } = issueCert(dir, `agent.${host}`, { dns: [host], ips: ['127.0.0.1'] });
  return { ca: caCert, cert, key };
}

/** agent.<host>'s credentials, issued once per process. */
export function agentCredentials(host: string, ca: 'ferry' | 'other' = 'ferry'): StreamCredentials {
  const k = `${ca}/${host}`;
  let c = cache.get(k);
  if (!c) cache.set(k, (c = loadCredentials(host, agentFiles(host, ca))));
  return c;
}

/** A destination h2's listener on loopback (any free port unless given). */
export const loopbackServer = (o: { encrypt?: boolean; port?: number; host?: string } = {}): Promise<StreamServer> =>
  StreamServer.open({ address: '127.0.0.1', port: o.port ?? 0, credentials: agentCredentials(o.host ?? 'h2'), encrypt: o.encrypt ?? true });

export interface LoopbackPair {
  out: DataConnection;
  inc: DataConnection;
  close(): void;
}

/**
 * An authenticated stream h1 -> h2 on loopback, encrypted unless `encrypt: false`; `via` maps the
 * listener's endpoint to the one the sender dials (a proxy in between).
 */
export async function loopbackPair(o: { migrationId?: string; encrypt?: boolean; via?: (e: StreamEndpoint) => Promise<StreamEndpoint> } = {}): Promise<LoopbackPair> {
  const migrationId = o.migrationId ?? `m-loop-${Math.random().toString(36).slice(2, 10)}`;
  const encrypt = o.encrypt ?? true;
  const server = await loopbackServer({ encrypt });
  const expected = server.expect(migrationId, 'h1');
  const endpoint = o.via ? await o.via(server.endpoint) : server.endpoint;
  try {
    const [out, inc] = await Promise.all([
      connectStream(endpoint, { migrationId, peer: 'h2', credentials: agentCredentials('h1'), encrypt }),
      expected.accept({ timeoutMs: 10_000 }),
    ]);
    return {
      out,
      inc,
      close: () => {
        out.destroy();
        inc.destroy();
      },
    };
  } finally {
    server.close();
  }
}
