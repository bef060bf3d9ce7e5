// How the CLI reaches the cluster and whom it shows itself as: --nats URL / FERRY_NATS_URL / the
// config file with the operator's certificate and nkey (--tls-*, --creds), or the local lab (whose
// NATS is on the lab's management network: the CLI's main thread joins the lab's client
// namespace first, and acts as the lab's operator identity from the lab's pki directory).
import type { NatsConnection } from '@nats-io/transport-node';
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { NatsAccess, loadConfig } from '../shared/config.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import { connectNats } from '../shared/nats.ts';
import { coordinatorApi, type CoordinatorApi, type EndpointSpec, type HostView } from '../shared/protocol.ts';
import { call } from '../shared/rpc.ts';
import { subjects } from '../shared/subjects.ts';
import { joinNetns } from '../deploy/lab/join.ts';
import { labLayout, type LabLayout } from '../deploy/lab/layout.ts';
import { readState } from '../deploy/lab/state.ts';
import { LAB_OPERATOR, labNatsAccess } from '../deploy/lab/pki.ts';
import { DEFAULT_CLI_CONFIG } from './commands/options.ts';

export interface ClusterOptions {
  nats?: string;
  creds?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  config?: string;
}

/** Where an operator's CLI config lives unless --config or FERRY_CONFIG names another. */

const CliConfig = z.strictObject({ nats: NatsAccess });

/** The options every command that talks to the cluster takes, next to its --nats. */
/** The operator's access from flags, environment, then the config file; null when none is given (the local lab). */
function explicitAccess(o: ClusterOptions): NatsAccess | null {
  const configPath = o.config ?? process.env.FERRY_CONFIG ?? (existsSync(DEFAULT_CLI_CONFIG) ? DEFAULT_CLI_CONFIG : undefined);
  const fromFile = configPath ? loadConfig(CliConfig, configPath).nats : undefined;
  const servers = o.nats ?? process.env.FERRY_NATS_URL;
  if (!servers && !fromFile) return null;
  const ca = o.tlsCa ?? process.env.FERRY_NATS_CA ?? fromFile?.tls?.ca;
  const cert = o.tlsCert ?? process.env.FERRY_NATS_CERT ?? fromFile?.tls?.cert;
  const key = o.tlsKey ?? process.env.FERRY_NATS_KEY ?? fromFile?.tls?.key;
  if ((ca || cert || key) && !(ca && cert && key)) {
    throw new FerryError(ErrorCode.BadConfig, 'TLS needs all three of --tls-ca, --tls-cert and --tls-key (or FERRY_NATS_CA/CERT/KEY, or nats.tls in the config file)');
  }
  return {
    servers: servers ? servers.split(',') : fromFile!.servers,
    tls: ca && cert && key ? { ca, cert, key } : undefined,
    credentials: o.creds ?? process.env.FERRY_NATS_CREDS ?? fromFile?.credentials,
  };
}

/** The local lab's NATS as its operator, from inside the lab's client namespace. */
function labAccess(l: LabLayout): NatsAccess {
  joinNetns(l.clientNamespace);
  return labNatsAccess(l, LAB_OPERATOR);
}

export async function connectCluster(o: ClusterOptions): Promise<NatsConnection> {
  const explicit = explicitAccess(o);
  if (explicit) return connectNats({ ...explicit, name: 'ferry-cli', persistent: false });
  const l = labLayout();
  if (!readState(l.dir)) {
    throw new FerryError(ErrorCode.Unavailable, `no cluster given and lab "${l.name}" is not up: pass --nats URL (with --creds and --tls-*), set FERRY_NATS_URL, write ${DEFAULT_CLI_CONFIG}, or run \`ferry lab up\``);
  }
  return connectNats({ ...labAccess(l), name: 'ferry-cli', persistent: false });
}

export async function withCluster<T>(o: ClusterOptions, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connectCluster(o);
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

/** How long a command waits for a coordinator to lead again (a failover takes a lease's time and a takeover). */
const NO_COORDINATOR_WAIT_MS = 15_000;

/**
 * Calls a coordinator endpoint. "No responders" means no coordinator leads right now (a failover,
 * or the leader standing by a moment after losing NATS): nobody received the request, so it is
 * asked again, for up to 15 s, before the command says the coordinator is unavailable.
 */
export async function askCoordinator<E extends keyof CoordinatorApi>(
  nc: NatsConnection,
  endpoint: E,
  request: z.input<CoordinatorApi[E]['request']>,
  opts: { timeoutMs?: number } = {},
): Promise<z.infer<CoordinatorApi[E]['reply']>> {
  const spec = coordinatorApi[endpoint] as EndpointSpec<z.ZodType, z.ZodType>;
  const deadline = Date.now() + NO_COORDINATOR_WAIT_MS;
  for (;;) {
    try {
      return (await call(nc, subjects.coordinator(endpoint), spec, request, opts)) as z.infer<CoordinatorApi[E]['reply']>;
    } catch (err) {
      if (!(err instanceof FerryError && /no responders/i.test(err.message)) || Date.now() > deadline) throw err;
      await sleep(250);
    }
  }
}

/** Polls the coordinator until `hosts` agents are alive; used by `lab up` before it returns. */
export function waitForLab(l: LabLayout, hosts: number, timeoutMs: number): Promise<void> {
  return untilClusterView(l, timeoutMs, 'the lab did not come up', (view) => {
    const alive = view.filter((h) => h.alive).length;
    return alive >= hosts ? null : `${alive} of ${hosts} agents alive`;
  });
}

/**
 * Polls the coordinator until the agent process `pid` serves `host`: its heartbeats arrive and it
 * has answered the coordinator (coordinator/cluster.ts). Used by `lab start` before it returns.
 */
export function waitForAgent(l: LabLayout, host: string, pid: number, timeoutMs: number): Promise<void> {
  return untilClusterView(l, timeoutMs, `${host}'s agent (pid ${pid}) is not alive`, (view) => {
    const h = view.find((x) => x.name === host);
    if (h?.alive && h.facts.agent.pid === pid) return null;
    return h ? `the coordinator sees ${host} ${h.alive ? 'alive' : 'lost'} with agent pid ${h.facts.agent.pid}` : `the coordinator does not know ${host} yet`;
  });
}

/** Asks the coordinator for its cluster view until `pending` says nothing is missing (null). */
async function untilClusterView(l: LabLayout, timeoutMs: number, failure: string, pending: (view: HostView[]) => string | null): Promise<void> {
  const access = labAccess(l);
  const deadline = Date.now() + timeoutMs;
  let last = 'nats-server not reachable yet';
  while (Date.now() < deadline) {
    try {
      const nc = await connectNats({ ...access, name: 'ferry-lab', persistent: false });
      try {
        while (Date.now() < deadline) {
          try {
            const missing = pending(await call(nc, subjects.coordinator('hosts'), coordinatorApi.hosts, {}, { timeoutMs: 1_000 }));
            if (missing === null) return;
            last = missing;
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
  throw new FerryError(ErrorCode.Timeout, `${failure} within ${timeoutMs / 1000} s: ${last}`);
}
