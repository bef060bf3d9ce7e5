// A test's own NATS connection into a lab, as one of the lab's identities (the CLI acts as
// operator.lab; a test that calls agents directly acts as a coordinator), from the lab's client
// namespace (the test's main thread joins it).
import type { NatsConnection } from '@nats-io/transport-node';
import { joinNetns } from '../../../deploy/lab/join.ts';
import { labLayout } from '../../../deploy/lab/layout.ts';
import { labNatsAccess } from '../../../deploy/lab/pki.ts';
import { connectNats } from '../../../shared/nats.ts';

export async function labNats(env: { FERRY_LAB: string }, identity: string): Promise<NatsConnection> {
  const l = labLayout(env.FERRY_LAB);
  joinNetns(l.clientNamespace);
  return connectNats({ ...labNatsAccess(l, identity), name: `test-${identity}`, persistent: false });
}
