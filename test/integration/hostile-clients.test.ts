// Hostile clients against a real lab (3-node nats-server cluster with TLS and nkey users, real
// agents and coordinator): from inside a workload's own network namespace nothing of the control
// plane is even reachable; anonymous clients on the management network are refused on every
// subject ferry uses; authenticated identities acting outside their role are refused with
// permission errors, while the operator's own calls keep working in the same lab.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import type { LabStatus } from '../../deploy/lab/lab.ts';
import { labLayout } from '../../deploy/lab/layout.ts';
import { LAB_OPERATOR, labCoordinatorIdentity, labNatsAccess } from '../../deploy/lab/pki.ts';
import { ErrorCode } from '../../shared/errors.ts';
import { securityOptions } from '../../shared/nats.ts';
import { allows, everySubject, inboxPrefix, permissionsFor } from '../../shared/permissions.ts';
import { agentApi, coordinatorApi, type HostRecord } from '../../shared/protocol.ts';
import { call, encode, permissionViolation } from '../../shared/rpc.ts';
import { buckets, subjects } from '../../shared/subjects.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { ferry, ferryJson } from './helpers/cli.ts';
import { freshLab, labEnv } from './helpers/lab.ts';
import { labNats } from './helpers/lab-nats.ts';
import { Kvm } from '@nats-io/kv';

const execFileP = promisify(execFile);
const env = labEnv('ithostile');
const HOSTS = ['h1', 'h2'];
const ALL = everySubject(HOSTS);

/** TCP connection attempts from inside a network namespace: 'connected', 'refused' (reachable, port closed) or 'unreachable'. */
const PROBE = `
const net = require('node:net');
const targets = JSON.parse(process.argv[1]);
Promise.all(targets.map(([host, port]) => new Promise((resolve) => {
  const s = net.connect({ host, port, timeout: 1500 });
  const done = (r) => { s.destroy(); resolve([host + ':' + port, r]); };
  s.once('connect', () => done('connected'));
  s.once('timeout', () => done('unreachable'));
  s.once('error', (e) => done(e.code === 'ECONNREFUSED' ? 'refused' : 'unreachable'));
}))).then((r) => console.log(JSON.stringify(Object.fromEntries(r))));
`;
async function probeFrom(ns: string, targets: [string, number][]): Promise<Record<string, string>> {
  const { stdout } = await execFileP('ip', ['netns', 'exec', ns, process.execPath, '-e', PROBE, JSON.stringify(targets)]);
  return JSON.parse(stdout) as Record<string, string>;
}

/** A request that nats-server refuses to publish rejects with its permissions violation. */
async function publishRefused(nc: NatsConnection, subject: string): Promise<boolean> {
  try {
    await nc.request(subject, encode({}), { timeout: 5_000 });
    return false;
  } catch (err) {
    const v = permissionViolation(err);
    return v?.operation === 'publish' && v.subject === subject;
  }
}

describe('hostile clients', () => {
  let lab: LabStatus;
  let workloadNs: string;
  const conns: Record<string, NatsConnection> = {};
  const as = (identity: string) => conns[identity]!;

  beforeAll(async () => {
    lab = await freshLab(env, 2);
    await ferryJson<WorkloadInfo>(['run', '--host', 'h1', '--name', 'victim', '--', 'sleep', '100000'], env);
    workloadNs = `${labLayout(env.FERRY_LAB).workloadNetnsPrefix}victim`;
    for (const id of ['agent.h1', 'agent.h2', labCoordinatorIdentity('coordinator2'), LAB_OPERATOR]) conns[id] = await labNats(env, id);
  }, 120_000);

  afterAll(async () => {
    for (const nc of Object.values(conns)) await nc.close().catch(() => undefined);
    await ferry(['lab', 'down'], env);
  });

  it('from inside a workload, no NATS node, coordinator or agent control address is reachable, even with a route added by a root workload', async () => {
    const mgmt: [string, number][] = [
      ...lab.natsServers.flatMap((n): [string, number][] => {
        const host = new URL(n.url).hostname;
        return [[host, 4222], [host, 6222], [host, 8222]];
      }),
      ['10.78.0.1', 4222],
      ...lab.hosts.map((h): [string, number] => [h.address, 4222]),
    ];
    // The same probe from the client namespace (on the management network) does reach them: the probe can tell.
    const fromClient = await probeFrom(lab.clientNamespace, mgmt);
    expect(Object.values(fromClient).filter((r) => r === 'unreachable')).toEqual([]);

    // The fabric's old control address (NATS used to listen there) and the hosts' fabric side: nothing listens for the control plane.
    const fabric: [string, number][] = [['10.77.0.1', 4222], ...lab.hosts.map((h): [string, number] => [h.fabricAddress, 4222])];
    const before = await probeFrom(workloadNs, [...mgmt, ...fabric]);
    expect(Object.entries(before).filter(([, r]) => r === 'connected')).toEqual([]);
    for (const [host, port] of mgmt) expect(before[`${host}:${port}`], `${host}:${port}`).toBe('unreachable');

    // A workload with root in its namespace routes the management network through its host: the host neither forwards nor accepts it.
    await execFileP('ip', ['-n', workloadNs, 'route', 'add', '10.78.0.0/24', 'via', lab.hosts[0]!.fabricAddress]);
    try {
      const routed = await probeFrom(workloadNs, mgmt);
      for (const [host, port] of mgmt) expect(routed[`${host}:${port}`], `${host}:${port}`).toBe('unreachable');
    } finally {
      await execFileP('ip', ['-n', workloadNs, 'route', 'del', '10.78.0.0/24']);
    }
  });

  it('an anonymous client on the management network is refused on every subject: no certificate, no nkey, or neither', async () => {
    const access = labNatsAccess(labLayout(env.FERRY_LAB), LAB_OPERATOR);
    const modes = {
      // No credentials at all (the client still speaks TLS, as the servers require it).
      nothing: { tls: { caFile: access.tls!.ca } },
      // A certificate from the CA, but no nkey: the servers' authorization refuses it.
      'certificate only': { ...securityOptions({ tls: access.tls }), authenticator: undefined },
      // A valid nkey, but no client certificate: the TLS handshake refuses it.
      'nkey only': { ...securityOptions({ credentials: access.credentials }), tls: { caFile: access.tls!.ca } },
    };
    for (const [mode, opts] of Object.entries(modes)) {
      const outcomes = await Promise.all(
        ALL.map(async (subject) => {
          try {
            const nc = await connect({ servers: access.servers, maxReconnectAttempts: 0, reconnect: false, timeout: 5_000, ...opts });
            const refused = await publishRefused(nc, subject);
            await nc.close();
            return refused ? 'refused' : `${subject}: answered`;
          } catch (err) {
            return (err as Error).message;
          }
        }),
      );
      expect(outcomes.length, mode).toBe(ALL.length);
      for (const o of outcomes) expect(o, mode).not.toMatch(/answered/);
      if (mode === 'certificate only') for (const o of outcomes) expect(o, mode).toMatch(/authorization violation/i);
    }
  });

  it('every identity is refused, with a permissions violation, every subject its role does not allow', async () => {
    for (const [identity, nc] of Object.entries(conns)) {
      const forbidden = ALL.filter((s) => !allows(permissionsFor(identity).publish.allow, s));
      expect(forbidden.length).toBeGreaterThan(0);
      const refused = await Promise.all(forbidden.map(async (s) => [s, await publishRefused(nc, s)] as const));
      expect(refused.filter(([, r]) => !r).map(([s]) => s), identity).toEqual([]);
    }
  });

  it("an agent calling another host's run, or the coordinator's stop, gets FERRY_FORBIDDEN; the workload keeps running", async () => {
    await expect(call(as('agent.h2'), subjects.agent('h1', 'run'), agentApi.run, { name: 'evil', command: ['sh', '-c', 'id'] })).rejects.toMatchObject({
      code: ErrorCode.Forbidden,
    });
    await expect(call(as('agent.h2'), subjects.coordinator('stop'), coordinatorApi.stop, { name: 'victim' })).rejects.toMatchObject({ code: ErrorCode.Forbidden });
    await expect(call(as('agent.h1'), subjects.agent('h1', 'mig.freeze'), agentApi['mig.freeze'], { migrationId: 'forged', workload: 'victim' } as never)).rejects.toMatchObject({
      code: ErrorCode.Forbidden,
    });
    // The operator may not reach an agent directly either: only through the coordinator.
    await expect(call(as(LAB_OPERATOR), subjects.agent('h1', 'stop'), agentApi.stop, { name: 'victim' })).rejects.toMatchObject({ code: ErrorCode.Forbidden });
    const ps = await ferryJson<WorkloadInfo[]>(['ps'], env);
    expect(ps.map((w) => [w.name, w.host, w.state])).toEqual([['victim', 'h1', 'running']]);
  });

  it('the operator writing KV directly is refused and the record stays what the coordinator wrote', async () => {
    const coordinatorKv = await new Kvm(as(labCoordinatorIdentity('coordinator2'))).open(buckets.hosts);
    const before = await coordinatorKv.get('h1');
    expect((JSON.parse(new TextDecoder().decode(before!.value)) as HostRecord).facts.name).toBe('h1');
    await expect(publishRefused(as(LAB_OPERATOR), `$KV.${buckets.hosts}.h1`)).resolves.toBe(true);
    await expect(publishRefused(as('agent.h1'), `$KV.${buckets.hosts}.h1`)).resolves.toBe(true);
    await expect(new Kvm(as(LAB_OPERATOR)).open(buckets.hosts).then((kv) => kv.put('h1', encode({ forged: true })))).rejects.toBeInstanceOf(Error);
    expect((await coordinatorKv.get('h1'))!.revision).toBe(before!.revision);
  });

  it("no identity can take over another's endpoints or read another's replies", async () => {
    const refusedSub = async (nc: NatsConnection, subject: string) => {
      const sub = nc.subscribe(subject);
      const closed = await sub.closed;
      return closed instanceof PermissionViolationError && closed.operation === 'subscription';
    };
    expect(await refusedSub(as('agent.h2'), subjects.agent('h1', 'run'))).toBe(true);
    expect(await refusedSub(as(LAB_OPERATOR), `${inboxPrefix(labCoordinatorIdentity('coordinator'))}.>`)).toBe(true);
    expect(await refusedSub(as(LAB_OPERATOR), subjects.heartbeatAll)).toBe(true);
    expect(await refusedSub(as('agent.h1'), subjects.migrationEventsAll)).toBe(true);
  });

  it('a forged heartbeat for another host is refused', async () => {
    const errors: Error[] = [];
    void (async () => {
      for await (const s of as('agent.h2').status()) if (s.type === 'error') errors.push(s.error as Error);
    })();
    as('agent.h2').publish(subjects.heartbeat('h1'), encode({ forged: true }));
    const deadline = Date.now() + 10_000;
    while (!errors.some((e) => e instanceof PermissionViolationError && e.subject === subjects.heartbeat('h1')) && Date.now() < deadline) {
      await as('agent.h2').flush();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(errors.some((e) => e instanceof PermissionViolationError && e.subject === subjects.heartbeat('h1'))).toBe(true);
  });

  it("the operator's own calls work in the same lab: ps, stop", async () => {
    const listing = await call(as(LAB_OPERATOR), subjects.coordinator('ps'), coordinatorApi.ps, {});
    expect(listing.workloads.map((w) => w.name)).toEqual(['victim']);
    const stopped = await ferryJson<WorkloadInfo>(['stop', 'victim'], env);
    expect(stopped.name).toBe('victim');
    expect(await ferryJson<WorkloadInfo[]>(['ps'], env)).toEqual([]);
  });
});
