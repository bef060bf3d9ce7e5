// How the CLI reaches the cluster: --nats URL, FERRY_NATS_URL, or the local lab (whose NATS is
// inside the lab's network: the CLI's main thread joins the lab's client namespace first).
import type { NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import { connectNats } from '../shared/nats.ts';
import { coordinatorApi } from '../shared/protocol.ts';
import { call } from '../shared/rpc.ts';
import { subjects } from '../shared/subjects.ts';
import { joinNetns } from '../deploy/lab/join.ts';
import { labLayout, type LabLayout } from '../deploy/lab/layout.ts';
import { readState } from '../deploy/lab/state.ts';

export interface ClusterOptions {
  nats?: string;
}

export async function connectCluster(o: ClusterOptions): Promise<NatsConnection> {
  const explicit = o.nats ?? process.env.FERRY_NATS_URL;
  if (explicit) return connectNats({ servers: explicit.split(','), name: 'ferry-cli', persistent: false });
  const l = labLayout();
  if (!readState(l.dir)) {
    throw new FerryError(ErrorCode.Unavailable, `no cluster given and lab "${l.name}" is not up: pass --nats URL, set FERRY_NATS_URL, or run \`ferry lab up\``);
  }
  joinNetns(l.clientNamespace);
  return connectNats({ servers: [l.natsUrl], name: 'ferry-cli', persistent: false });
}

export async function withCluster<T>(o: ClusterOptions, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connectCluster(o);
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

/** Polls the coordinator until `hosts` agents are alive; used by `lab up` before it returns. */
export async function waitForLab(l: LabLayout, hosts: number, timeoutMs: number): Promise<void> {
  joinNetns(l.clientNamespace);
  const deadline = Date.now() + timeoutMs;
  let last = 'nats-server not reachable yet';
  while (Date.now() < deadline) {
    try {
      const nc = await connectNats({ servers: [l.natsUrl], name: 'ferry-lab-up', persistent: false });
      try {
        while (Date.now() < deadline) {
          try {
            const view = await call(nc, subjects.coordinator('hosts'), coordinatorApi.hosts, {}, { timeoutMs: 1_000 });
            const alive = view.filter((h) => h.alive).length;
            if (alive >= hosts) return;
            last = `${alive} of ${hosts} agents alive`;
          } catch (err) {
            last = `coordinator not answering yet (${(err as Error).message})`;
          }
          await sleep(200);
        }
      } finally {
        await nc.close();
      }
    } catch (err) {
      last = (err as Error).message;
      await sleep(200);
    }
  }
  throw new FerryError(ErrorCode.Timeout, `the lab did not come up within ${timeoutMs / 1000} s: ${last}`);
}
