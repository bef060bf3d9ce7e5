// The foundation end to end: a real lab of network namespaces, a real nats-server, real agent
// and coordinator processes, driven through the real CLI.
import { existsSync, openSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { Svcm } from '@nats-io/services';
import { probeKernel } from '../../agent/engine/probes.ts';
import { LAB_OPERATOR, labCoordinatorIdentity } from '../../deploy/lab/pki.ts';
import type { LabStatus } from '../../deploy/lab/lab.ts';
import { ErrorCode } from '../../shared/errors.ts';
import { agentApi, replyEnvelope, type HostView } from '../../shared/protocol.ts';
import { decode, encode } from '../../shared/rpc.ts';
import { serviceNames, subjects } from '../../shared/subjects.ts';
import { ferry, ferryJson } from './helpers/cli.ts';
import { freshLab, labEnv } from './helpers/lab.ts';
import { labNats } from './helpers/lab-nats.ts';

const env = labEnv('itlab');
// The machine's own namespace, held open before this test's main thread joins the lab's.
const ownNetns = `/proc/${process.pid}/fd/${openSync('/proc/thread-self/ns/net', 'r')}`;
const inOwnNetns = (...args: string[]) => execFileSync('nsenter', [`--net=${ownNetns}`, 'ip', ...args], { encoding: 'utf8' });
const rootLinks = () => inOwnNetns('-d', '-o', 'link', 'show');
const rootAddrs = () => inOwnNetns('-o', 'addr', 'show');

describe('lab and cluster membership', () => {
  let lab: LabStatus;
  let nc: NatsConnection;
  let asCoordinator: NatsConnection;
  const linksBefore = rootLinks();
  const addrsBefore = rootAddrs();

  beforeAll(async () => {
    lab = await freshLab(env, 3);
    nc = await labNats(env, LAB_OPERATOR);
    // Agent endpoints answer coordinators only: the test calls them as the lab's standby coordinator.
    asCoordinator = await labNats(env, labCoordinatorIdentity('coordinator2'));
  });

  afterAll(async () => {
    await nc?.close();
    await asCoordinator?.close();
    await ferry(['lab', 'down'], env);
  });

  it('lab status names every namespace and address', async () => {
    const status = await ferryJson<LabStatus>(['lab', 'status'], env);
    expect(status.up).toBe(true);
    // Three nats-server nodes on the management network, each in a namespace of its own, all running.
    expect(status.natsServers.map((n) => [n.name, n.url, n.running])).toEqual([
      ['nats-1', 'tls://10.78.0.3:4222', true],
      ['nats-2', 'tls://10.78.0.4:4222', true],
      ['nats-3', 'tls://10.78.0.5:4222', true],
    ]);
    expect(status.natsUrl).toBe(status.natsServers.map((n) => n.url).join(','));
    expect(status.hosts.map((h) => [h.name, h.address, h.fabricAddress])).toEqual([
      ['h1', '10.78.0.11', '10.77.0.11'],
      ['h2', '10.78.0.12', '10.77.0.12'],
      ['h3', '10.78.0.13', '10.77.0.13'],
    ]);
    const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    for (const ns of [status.switchNamespace, status.clientNamespace, ...status.natsServers.map((n) => n.namespace), ...status.hosts.map((h) => h.namespace)]) {
      expect(namespaces).toContain(ns);
    }
    for (const n of status.natsServers) {
      expect(execFileSync('stat', ['-L', '-c', '%i', `/proc/${n.pid}/ns/net`], { encoding: 'utf8' })).toBe(
        execFileSync('stat', ['-L', '-c', '%i', `/run/netns/${n.namespace}`], { encoding: 'utf8' }),
      );
    }
    for (const h of status.hosts) {
      expect(h.agent.running).toBe(true);
      // The agent really runs inside its host's namespace, and the host answers from the client namespace.
      expect(execFileSync('stat', ['-L', '-c', '%i', `/proc/${h.agent.pid}/ns/net`], { encoding: 'utf8' })).toBe(
        execFileSync('stat', ['-L', '-c', '%i', `/run/netns/${h.namespace}`], { encoding: 'utf8' }),
      );
      execFileSync('ip', ['netns', 'exec', status.clientNamespace, 'ping', '-c1', '-W2', h.address]);
      execFileSync('ip', ['netns', 'exec', status.clientNamespace, 'ping', '-c1', '-W2', h.fabricAddress]);
    }
  });

  it('every host is registered with facts that match this machine', async () => {
    const hosts = await ferryJson<HostView[]>(['hosts'], env);
    expect(hosts.map((h) => [h.name, h.alive])).toEqual([
      ['h1', true],
      ['h2', true],
      ['h3', true],
    ]);
    const probes = await probeKernel();
    for (const [i, h] of hosts.entries()) {
      expect(h.kernel).toBe(os.release());
      expect(h.facts.address).toBe(lab.hosts[i]?.address);
      expect(h.facts.cpu.xsave).toEqual(probes.xsave);
      expect(h.facts.cpu.xsave?.xstateSize).toBeGreaterThanOrEqual(512 + 64);
      expect(h.facts.features.uffdWpAsync).toBe(probes.uffdWpAsync);
      expect(h.facts.features.softDirty).toBe(readFileSync('/proc/self/smaps', 'utf8').includes(' sd '));
      expect(h.facts.memory.totalBytes).toBe(os.totalmem());
      expect(h.facts.agent.pid).toBe(lab.hosts[i]?.agent.pid);
    }
  });

  it('agents and the coordinator are discoverable NATS micro services', async () => {
    const client = new Svcm(nc).client();
    const found: string[] = [];
    for await (const info of await client.info()) found.push(`${info.name}:${info.metadata?.host ?? ''}`);
    expect(found.sort()).toEqual([`${serviceNames.agent}:h1`, `${serviceNames.agent}:h2`, `${serviceNames.agent}:h3`, `${serviceNames.coordinator}:`]);
  });

  it('a malformed request gets a clear error reply and the agent keeps serving', async () => {
    const reply = await asCoordinator.request(subjects.agent('h1', 'facts'), encode({ surprise: true }), { timeout: 3000 });
    const env1 = decode(replyEnvelope(agentApi.facts.reply), reply.data, 'reply');
    expect(env1.ok).toBe(false);
    if (!env1.ok) {
      expect(env1.error.code).toBe(ErrorCode.BadMessage);
      expect(env1.error.message).toContain('surprise');
    }
    const junk = await asCoordinator.request(subjects.agent('h1', 'facts'), new TextEncoder().encode('not json'), { timeout: 3000 });
    expect(decode(replyEnvelope(agentApi.facts.reply), junk.data, 'reply').ok).toBe(false);
    const good = await asCoordinator.request(subjects.agent('h1', 'facts'), encode({}), { timeout: 3000 });
    const env2 = decode(replyEnvelope(agentApi.facts.reply), good.data, 'reply');
    expect(env2.ok && env2.result.name).toBe('h1');
  });

  it('a killed agent is shown as lost within a few seconds, the others stay alive', async () => {
    const victim = lab.hosts[1]!;
    process.kill(victim.agent.pid, 'SIGKILL');
    const t0 = Date.now();
    let hosts: HostView[] = [];
    // Waits for the state, with a generous deadline: the machine may be loaded (timings are for benchmarks).
    while (Date.now() - t0 < 30_000) {
      hosts = await ferryJson<HostView[]>(['hosts'], env);
      if (hosts.find((h) => h.name === victim.name)?.alive === false) break;
      await sleep(250);
    }
    expect(hosts.map((h) => [h.name, h.alive])).toEqual([
      ['h1', true],
      ['h2', false],
      ['h3', true],
    ]);
  });

  it('lab down removes every namespace, process and file, leaves the machine untouched, and is safe twice', async () => {
    const before = await ferryJson<LabStatus>(['lab', 'status'], env);
    const pids = [...before.natsServers.map((n) => n.pid), before.coordinator.pid, ...before.hosts.map((h) => h.agent.pid)].filter((p): p is number => p !== null);
    await nc.close();
    await asCoordinator.close();
    const down = await ferry(['lab', 'down'], env);
    expect(down.code).toBe(0);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toMatch(/ferry-itlab-/);
    for (const pid of pids) expect(existsSync(`/proc/${pid}/cmdline`) && readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] !== 'Z').toBe(false);
    expect(existsSync(before.dir)).toBe(false);
    expect(rootLinks()).toBe(linksBefore);
    expect(rootAddrs()).toBe(addrsBefore);
    const again = await ferry(['lab', 'down'], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to remove');
    expect((await ferryJson<LabStatus>(['lab', 'status'], env)).up).toBe(false);
  });
});
