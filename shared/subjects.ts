// Every NATS subject ferry uses, declared once. Host names are single subject tokens
// (validated by HostName in protocol.ts), so they can be embedded safely.

export const SUBJECT_ROOT = 'ferry';

export const subjects = {
  /** Agent -> all: liveness and current host facts, every heartbeat interval. Payload: Heartbeat. */
  heartbeat: (host: string) => `${SUBJECT_ROOT}.agent.${host}.heartbeat`,
  heartbeatAll: `${SUBJECT_ROOT}.agent.*.heartbeat`,
  /** Agent -> coordinator: how far the round it is sending got (TransferProgress in shared/migration.ts). */
  migrationProgress: (host: string) => `${SUBJECT_ROOT}.agent.${host}.progress`,
  migrationProgressAll: `${SUBJECT_ROOT}.agent.*.progress`,
  /** Request/reply endpoints of one agent (a NATS micro service group). */
  agentGroup: (host: string) => `${SUBJECT_ROOT}.agent.${host}`,
  agent: (host: string, endpoint: AgentEndpoint) => `${SUBJECT_ROOT}.agent.${host}.${endpoint}`,
  /** Request/reply endpoints of the leading coordinator. */
  coordinatorGroup: `${SUBJECT_ROOT}.coord`,
  coordinator: (endpoint: CoordinatorEndpoint) => `${SUBJECT_ROOT}.coord.${endpoint}`,
  /** Events of one migration (MigrationEventWire in shared/migration.ts); `*` for all of them. */
  migrationEvents: (id: string) => `${SUBJECT_ROOT}.events.migration.${id}`,
  migrationEventsAll: `${SUBJECT_ROOT}.events.migration.*`,
  /** A stored record that failed its schema and was set aside (RecordSetAside in shared/records.ts). */
  recordEvents: `${SUBJECT_ROOT}.events.record`,
} as const;

export type AgentEndpoint = keyof typeof import('./protocol.ts').agentApi;
export type CoordinatorEndpoint = keyof typeof import('./protocol.ts').coordinatorApi;

/** JetStream KV buckets. */
export const buckets = {
  /** key = host name; value = HostRecord (the registration, durable across restarts). */
  hosts: 'ferry_hosts',
  /** key = `<id>.state` (persisted statechart snapshot) and `<id>.decision` (the commit point). */
  migrations: 'ferry_migrations',
  /** key = `coordinator`: the leader lease. */
  leases: 'ferry_leases',
  /** key = `<bucket>.<key>` of a record that failed its schema; value = what it held and why it was set aside. */
  quarantine: 'ferry_quarantine',
  /** key = host name: a cordon (shared/fleet.ts CordonRecord). */
  cordons: 'ferry_cordons',
  /** key = workload name: its placement policy (group, spread, pinned). */
  policies: 'ferry_policies',
  /** key = drain or rebalance id: its plan and progress (FleetJob). */
  fleet: 'ferry_fleet',
  /** key = workload name: where its checkpoint is and its checkpoints and restores (shared/job-image.ts CheckpointRecord). */
  checkpoints: 'ferry_checkpoints',
} as const;

/** NATS micro service names (discoverable with `$SRV.INFO`). */
export const serviceNames = {
  agent: 'ferry-agent',
  coordinator: 'ferry-coordinator',
} as const;

/** The host named by a heartbeat subject (ferry.agent.<host>.heartbeat), or null for any other subject. */
export const heartbeatHost = (subject: string): string | null => /^ferry\.agent\.([^.]+)\.heartbeat$/.exec(subject)?.[1] ?? null;
/** The host named by a progress subject (ferry.agent.<host>.progress), or null for any other subject. */
export const progressHost = (subject: string): string | null => /^ferry\.agent\.([^.]+)\.progress$/.exec(subject)?.[1] ?? null;

/** Options every process uses when it creates a bucket, so creators never disagree (plus the coordinator's kvReplicas). */
export const bucketOptions = {
  hosts: { history: 1, description: 'ferry cluster membership: one record per registered host' },
  migrations: { history: 1, description: 'ferry migrations: statechart snapshots and commit decisions' },
  leases: { history: 1, description: 'ferry leader lease of the coordinators' },
  quarantine: { history: 5, description: 'ferry records set aside because they failed their schema' },
  cordons: { history: 1, description: 'ferry cordoned hosts: no new workloads, no incoming migrations' },
  policies: { history: 1, description: "ferry workloads' placement policies (group, spread, pinned)" },
  fleet: { history: 1, description: 'ferry drains and rebalances: plans and progress' },
  checkpoints: { history: 1, description: "ferry workloads' checkpoints on shared storage: where each is, and its checkpoints and restores" },
} as const;
