// Daemon configuration: one schema per daemon, defaults in the schema, unknown keys rejected
// (a misspelt key is an error, not a silently ignored setting).
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ErrorCode, FerryError } from './errors.ts';
import { HostName } from './names.ts';
import { describeZodError } from './rpc.ts';
import { WorkloadSubnet } from './subnet.ts';

/** PEM files of one identity issued by the operator's CA (see deploy/pki/certs.ts). */
export const TlsFiles = z.strictObject({
  /** The CA certificate that every peer's certificate must chain to. */
  ca: z.string().min(1),
  cert: z.string().min(1),
  /** Private key; readable by this daemon alone. */
  key: z.string().min(1),
});
export type TlsFiles = z.infer<typeof TlsFiles>;

/** How a process reaches NATS and whom it shows itself as (`ferry pki issue` makes the files). */
export const NatsAccess = z.strictObject({
  /** One or more server URLs of the NATS cluster (tls:// or nats://; TLS is used either way when `tls` is set). */
  servers: z.array(z.string().min(1)).min(1).default(['nats://127.0.0.1:4222']),
  /** Connection name prefix shown in the server's monitoring. */
  name: z.string().optional(),
  /** This identity's certificate (CN names the identity) and the CA the servers' certificates chain to. */
  tls: TlsFiles.optional(),
  /** This identity's nkey seed file (mode 0600), which authenticates it to nats-server. */
  credentials: z.string().min(1).optional(),
});
export type NatsAccess = z.infer<typeof NatsAccess>;
const Nats = NatsAccess;

/**
 * The daemon's Prometheus endpoint (docs/metrics.md): GET /metrics on `listen` ("ADDRESS:PORT",
 * "[IPv6]:PORT"), answered only to a scrape carrying `Authorization: Bearer <token>` with the
 * token in `tokenFile` (mode 0600, at least 32 characters). Absent: no endpoint.
 */
export const MetricsEndpoint = z.strictObject({
  listen: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/, 'listen is ADDRESS:PORT (an IPv6 address in brackets)'),
  tokenFile: z.string().min(1),
});
export type MetricsEndpoint = z.infer<typeof MetricsEndpoint>;

export const AgentConfig = z.strictObject({
  /** This host's name in the cluster. */
  name: HostName,
  /** This host's address on the cluster network (data-plane listeners bind here). */
  address: z.string().min(1),
  nats: Nats.prefault({}),
  /** This agent's identity (certificate CN agent.<name>), which it shows to peer agents on the data stream. */
  tls: TlsFiles.optional(),
  /**
   * The agent-to-agent data stream of migrations (docs/security.md "Data stream"): one listener on
   * `address`:`port`, mutual TLS with `tls`. `encrypt: false` (only for a fabric every host on it
   * trusts) still authenticates both agents but sends memory in clear; a stream goes in clear
   * only when both of its agents say so.
   */
  stream: z
    .strictObject({
      port: z.number().int().min(1).max(65535).default(7410),
      encrypt: z.boolean().default(true),
    })
    .prefault({}),
  heartbeatMs: z.number().int().min(100).max(60_000).default(1_000),
  /** Where this agent's workload cgroups live, relative to the cgroup v2 root (default ferry/<name>). */
  cgroupParent: z.string().regex(/^[a-zA-Z0-9_./-]+$/).optional(),
  /** Variables added to the environment of every workload this agent starts. */
  workloadEnv: z.record(z.string(), z.string()).default({}),
  /**
   * Workloads get a network namespace of their own with a veth into this host's bridge and an
   * address from the coordinator (see agent/net). Absent: workloads share the host's network.
   */
  network: z
    .strictObject({
      /** The bridge in the agent's network namespace that takes the workloads' veths. */
      bridge: z.string().min(1).max(15),
      /** Prefix length of the workloads' addresses on that bridge's segment (an on-link route covers it). */
      prefixLen: z.number().int().min(8).max(30),
      /** Workload namespaces are /run/netns/<prefix><workload name>. */
      netnsPrefix: z.string().regex(/^[a-zA-Z0-9_.-]+$/),
    })
    .optional(),
  /** Where the agent keeps its own state (workload registry, images in flight). */
  stateDir: z.string().min(1).default('/var/lib/ferry/agent'),
  /**
   * Dirty tracking of live migrations: auto (userfaultfd write-protect where the kernel and the
   * workload allow it, else content hashing), or one method forced. FERRY_DIRTY_TRACKING in the
   * agent's environment overrides it (`ferry lab start h1 --env FERRY_DIRTY_TRACKING=hash`).
   */
  dirtyTracking: z.enum(['auto', 'uffd-wp', 'hash']).default('auto'),
  metrics: MetricsEndpoint.optional(),
});
export type AgentConfig = z.infer<typeof AgentConfig>;

const ms = z.number().int().positive();

export const CoordinatorConfig = z.strictObject({
  nats: Nats.prefault({}),
  /** A host whose heartbeats stop for this long is shown as lost (and migrations through it roll back before commit). */
  hostLostAfterMs: z.number().int().min(500).default(3_000),
  /**
   * Where workloads' own addresses come from (`ferry run` allocates from it and checks `--ip`
   * against it). Absent: workloads get no address of their own and `--ip` is refused. Every
   * coordinator of a cluster must have the same one.
   */
  workloadNetwork: WorkloadSubnet.optional(),
  /** This coordinator's identity in the leader lease (default: hostname and pid). */
  id: z.string().min(1).optional(),
  /** A leader that cannot renew its lease for this long is replaced by a standby. */
  leaseTtlMs: z.number().int().min(1_000).default(5_000),
  metrics: MetricsEndpoint.optional(),
  /** Replicas of each KV bucket this coordinator creates (3 on a 3-node NATS cluster; at most the number of nodes). */
  kvReplicas: z.number().int().min(1).max(5).default(1),
  /**
   * The read-only web dashboard (docs/dashboard.md): HTTPS on `listen` with this coordinator's
   * identity (`tls`, default nats.tls), logins through `ferry dashboard` only. Absent: none.
   */
  dashboard: z
    .strictObject({
      /** host:port to listen on, e.g. the coordinator's management address and 7480. */
      listen: z.string().regex(/^[^\s:]+:\d{1,5}$/, 'host:port'),
      /** The URL browsers reach it on (login links name it); default https://<listen>. */
      publicUrl: z.string().url().optional(),
      /** Certificate and key it serves; default the coordinator's NATS identity (nats.tls). */
      tls: TlsFiles.optional(),
      /** How long a browser session lasts after its login. */
      sessionTtlMs: z.number().int().min(60_000).max(7 * 24 * 3_600_000).default(8 * 3_600_000),
    })
    .optional(),
  /** Time allowed for one attempt of each phase. */
  timeouts: z
    .strictObject({
      preflight: ms.default(15_000),
      precopy: ms.default(120_000),
      freeze: ms.default(30_000),
      transfer: ms.default(600_000),
      restore: ms.default(600_000),
      commit: ms.default(10_000),
      resume: ms.default(30_000),
      cleanup: ms.default(60_000),
    })
    .prefault({}),
});
export type CoordinatorConfig = z.infer<typeof CoordinatorConfig>;

/** Reads a JSON config file and validates it; the error names the file and every bad key. */
export function loadConfig<S extends z.ZodType>(schema: S, path: string): z.infer<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new FerryError(ErrorCode.BadConfig, `cannot read config ${path}: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new FerryError(ErrorCode.BadConfig, `config ${path}: ${describeZodError(parsed.error)}`);
  return parsed.data;
}
