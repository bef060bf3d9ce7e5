// What a NATS server must show to be trusted, with no other import: the heartbeat worker thread
// (agent/heartbeat-worker.ts) checks it too, and must start without the protocol's schemas.

/**
 * The server must show a certificate from the operator's CA issued to a nats.* identity. Its role,
 * not its address, is what is checked: servers are reached by IP (no SNI), and any node of the
 * cluster will do. Node's checkServerIdentity contract: undefined when fine.
 */
export function isNatsServer(_host: string, cert: { subject?: { CN?: string | string[] } }): Error | undefined {
  const cn = cert.subject?.CN;
  return typeof cn === 'string' && NATS_SERVER_IDENTITY.test(cn) ? undefined : new Error(`the server's certificate names ${String(cn)}, not a nats.* identity`);
}
export const NATS_SERVER_IDENTITY = /^nats\.[a-z0-9][a-z0-9-]*$/;
