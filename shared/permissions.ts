// Who may publish and subscribe on which NATS subject: the one table that nats-server enforces
// (through the authorization config `ferry pki nats-auth` writes) and docs/security.md shows.
// Built from shared/subjects.ts and the endpoint lists in shared/protocol.ts, so a new endpoint
// or bucket changes the permissions with it instead of drifting from them.
import { agentApi, coordinatorApi } from './protocol.ts';
import { HostName } from './names.ts';
import { buckets, serviceNames, subjects } from './subjects.ts';

/** The roles an identity can have; nats.* identities are servers and have no user permissions. */
export const USER_ROLES = ['agent', 'coordinator', 'operator'] as const;
export type UserRole = (typeof USER_ROLES)[number];

/** The permissions block of one nats-server user (the server's own field names). */
export interface NatsPermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
  /** May answer requests sent to it (publish once to each request's reply subject). */
  allow_responses: boolean;
}

/**
 * Every identity takes its replies on an inbox of its own (the connection's inboxPrefix), so no
 * identity can read the answers meant for another.
 */
export const inboxPrefix = (identity: string): string => `_INBOX.${identity}`;

/** The services framework's discovery subjects a service answers on ($SRV.PING|INFO|STATS[.name[.id]]). */
const serviceDiscovery = (service: string): string[] =>
  ['PING', 'INFO', 'STATS'].flatMap((verb) => [`$SRV.${verb}`, `$SRV.${verb}.${service}`, `$SRV.${verb}.${service}.*`]);

const agentEndpoints = (host: string): string[] => Object.keys(agentApi).map((e) => subjects.agent(host, e as keyof typeof agentApi));
const coordinatorEndpoints = (): string[] => Object.keys(coordinatorApi).map((e) => subjects.coordinator(e as keyof typeof coordinatorApi));

/** The JetStream API (bucket management, reads, watches) and the KV write subjects of ferry's buckets. */
const kvWrites = (): string[] => ['$JS.API.>', ...Object.values(buckets).map((b) => `$KV.${b}.>`)];

/**
 * A read of one migration's decision, and nothing else of KV: the last `<id>.decision` by direct
 * get, whose API subject names the key (nats.js puts last_by_subj in the subject when the bucket
 * is opened with allow_direct), so the server can allow it per key. What an agent's
 * AbortReconciler (agent/migration/reconcile.ts) needs; no KV write, no other key, no JetStream API.
 */
export const decisionRead = (migrationId = '*'): string => `$JS.API.DIRECT.GET.KV_${buckets.migrations}.$KV.${buckets.migrations}.${migrationId}.decision`;

/** `agent.h1` -> { role: 'agent', name: 'h1' }; null for anything that is not a user identity. */
export function parseIdentity(identity: string): { role: UserRole; name: string } | null {
  const dot = identity.indexOf('.');
  const role = identity.slice(0, dot) as UserRole;
  const name = identity.slice(dot + 1);
  if (dot < 0 || !USER_ROLES.includes(role) || !HostName.safeParse(name).success) return null;
  return { role, name };
}

/** What one identity may do on NATS. Throws for a name that is no user identity. */
export function permissionsFor(identity: string): NatsPermissions {
  const id = parseIdentity(identity);
  if (!id) throw new Error(`"${identity}" is not a user identity: expected agent.<host>, coordinator.<name> or operator.<name>`);
  const inbox = `${inboxPrefix(identity)}.>`;
  switch (id.role) {
    case 'agent':
      // Its own heartbeats, its progress in a round it sends, and the records it set aside out, migration decisions read; its own
      // endpoints in. Replies to its callers through allow_responses.
      return {
        publish: { allow: [subjects.heartbeat(id.name), subjects.migrationProgress(id.name), subjects.recordEvents, decisionRead()] },
        subscribe: { allow: [...agentEndpoints(id.name), ...serviceDiscovery(serviceNames.agent), inbox] },
        allow_responses: true,
      };
    case 'coordinator':
      // Calls every agent's endpoints (not their heartbeats), publishes migration events and the
      // records it set aside, and alone writes the KV buckets (ferry_quarantine among them);
      // serves the coordinator's endpoints. Follows migration events (whoever leads publishes
      // them) for its dashboard, standbys included.
      return {
        publish: { allow: [...agentEndpoints('*'), subjects.migrationEventsAll, subjects.recordEvents, ...kvWrites()] },
        subscribe: { allow: [subjects.heartbeatAll, subjects.migrationProgressAll, subjects.migrationEventsAll, ...coordinatorEndpoints(), ...serviceDiscovery(serviceNames.coordinator), inbox] },
        allow_responses: true,
      };
    case 'operator':
      // Calls the coordinator's endpoints (run, stop, migrate, ...), discovers services, follows
      // migration events and records set aside. No agent endpoint, no KV, no JetStream API.
      return {
        publish: { allow: [...coordinatorEndpoints(), '$SRV.>'] },
        subscribe: { allow: [subjects.migrationEventsAll, subjects.recordEvents, inbox] },
        allow_responses: false,
      };
  }
}

/** The table as docs/security.md prints it: one row per role, with <host>/<name> placeholders. */
export function permissionsMarkdown(): string {
  const rows = USER_ROLES.map((role) => {
    const identity = role === 'agent' ? 'agent.HOST' : `${role}.NAME`;
    const p = permissionsFor(`${role}.${role === 'agent' ? 'host' : 'name'}`);
    const list = (xs: string[]) => xs.map((s) => `\`${s.replace(/\.host\b/g, '.HOST').replace(/\.name\b/g, '.NAME')}\``).join(', ');
    return `| \`${identity}\` | ${list(p.publish.allow)} | ${list(p.subscribe.allow)} | ${p.allow_responses ? 'yes' : 'no'} |`;
  });
  return ['| identity | may publish | may subscribe | may reply to requests |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

/** Whether a NATS subject pattern (`*` one token, `>` the rest) covers a concrete subject. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

/** Whether an allow list (as in NatsPermissions) covers a subject. */
export const allows = (allow: string[], subject: string): boolean => allow.some((p) => subjectMatches(p, subject));

/**
 * Every concrete subject ferry uses in a cluster of these hosts, with these bucket keys: each
 * endpoint of each agent and of the coordinator, heartbeats, progress, migration events, the services
 * framework's discovery, records set aside, the JetStream API and KV reads and writes of every bucket. What the hostile-client
 * tests try, and what the unit tests hold the table against.
 */
export function everySubject(hosts: string[], sample = { migrationId: 'm-1', key: 'k' }): string[] {
  const srv = (['agent', 'coordinator'] as const).flatMap((k) => ['PING', 'INFO', 'STATS'].flatMap((v) => [`$SRV.${v}`, `$SRV.${v}.${serviceNames[k]}`]));
  return [
    ...hosts.flatMap((h) => [...agentEndpoints(h), subjects.heartbeat(h), subjects.migrationProgress(h)]),
    ...coordinatorEndpoints(),
    subjects.migrationEvents(sample.migrationId),
    subjects.recordEvents,
    ...new Set(srv),
    ...Object.values(buckets).flatMap((b) => [`$JS.API.STREAM.INFO.KV_${b}`, `$JS.API.DIRECT.GET.KV_${b}.$KV.${b}.${sample.key}`, `$KV.${b}.${sample.key}`]),
    ...['decision', 'state'].flatMap((k) => [`$JS.API.DIRECT.GET.KV_${buckets.migrations}.$KV.${buckets.migrations}.${sample.migrationId}.${k}`, `$KV.${buckets.migrations}.${sample.migrationId}.${k}`]),
    `$JS.API.STREAM.MSG.GET.KV_${buckets.migrations}`,
    '$JS.API.INFO',
  ];
}
