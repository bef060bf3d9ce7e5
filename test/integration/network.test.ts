// Workload networks in a real lab: `ferry run` gives each workload a network namespace of its
// own, an address unique in the cluster (allocated by the coordinator, or given with --ip), a
// MAC derived from it and a veth into its host's bridge. The lab's client reaches workloads on
// any host over the fabric, workloads reach each other, and stop and `lab down` remove it all.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostVethName } from '../../agent/net/handle.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { ferry, ferryJson } from './helpers/cli.ts';
import { freshLab, labEnv, untilHosts } from './helpers/lab.ts';

const env = labEnv('itnet');
/** Every namespace of this file's lab starts with it. */
const NS = `ferry-${env.FERRY_LAB}-`;
const execFileP = promisify(execFile);
const PY = '/usr/bin/python3';
const netnsOf = (pid: number) => readlinkSync(`/proc/${pid}/ns/net`);
const labNetns = () => readdirSync('/run/netns').filter((n) => n.startsWith(NS));

/** Runs python inside a lab namespace (nsenter joins only its network) and returns what it prints. */
async function pyIn(netns: string, code: string): Promise<string> {
  const { stdout } = await execFileP('nsenter', [`--net=/run/netns/${netns}`, '--', PY, '-c', code], { encoding: 'utf8', timeout: 20_000 });
  return stdout.trim();
}

/** A TCP exchange from a namespace, retried while the server is still starting. */
const tcpAsk = (netns: string, ip: string, port: number, send: string) =>
  pyIn(
    netns,
    [
      'import socket, time',
      'for i in range(100):',
      '  try:',
      `    s = socket.create_connection(('${ip}', ${port}), timeout=3); break`,
      '  except OSError: time.sleep(0.1)',
      `s.sendall(b'${send}'); print(s.recv(100).decode())`,
    ].join('\n'),
  );

const httpGet = (netns: string, url: string) =>
  pyIn(
    netns,
    [
      'import urllib.request, time',
      'for i in range(100):',
      '  try:',
      `    print(urllib.request.urlopen('${url}', timeout=3).read().decode()); break`,
      '  except OSError: time.sleep(0.1)',
    ].join('\n'),
  );

const ECHO = [
  'import socket',
  's = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 7)); s.listen()',
  'while True:',
  '  c, _ = s.accept(); c.sendall(b"echo:" + c.recv(100)); c.close()',
].join('\n');

describe('workload networks', () => {
  const site = mkdtempSync(join(tmpdir(), 'ferry-it-net-'));

  beforeAll(async () => {
    writeFileSync(join(site, 'hello.txt'), 'hello from a workload\n');
    await freshLab(env);
  });
  afterAll(async () => {
    await ferry(['lab', 'down'], env);
    rmSync(site, { recursive: true, force: true });
  });

  it('gives each workload its own namespace and address, reachable from the client and from workloads on other hosts', async () => {
    const web = await ferryJson<WorkloadInfo>(['run', '--host', 'h1', '--name', 'web', '--', PY, '-m', 'http.server', '8080', '--bind', '0.0.0.0', '--directory', site], env);
    const echo = await ferryJson<WorkloadInfo>(['run', '--host', 'h2', '--name', 'echo', '--ip', '10.77.9.9', '--', PY, '-c', ECHO], env);
    expect(web.address).toBe('10.77.1.1');
    expect(echo.address).toBe('10.77.9.9');

    // Its own namespace: not the test's, not its host's (the agent's).
    const agentPid = Number((await execFileP('ip', ['netns', 'pids', `${NS}h1`], { encoding: 'utf8' })).stdout.trim().split('\n')[0]);
    expect(netnsOf(web.rootPid!)).not.toBe(netnsOf(process.pid));
    expect(netnsOf(web.rootPid!)).not.toBe(netnsOf(agentPid));
    expect(netnsOf(web.rootPid!)).toBe(readlinkSync(`/proc/${web.pids.at(-1)}/ns/net`));
    const inside = JSON.parse((await execFileP('ip', ['-n', `${NS}w-web`, '-j', 'addr'], { encoding: 'utf8' })).stdout) as {
      ifname: string;
      address: string;
      flags: string[];
      addr_info: { local: string; prefixlen: number }[];
    }[];
    expect(inside.find((i) => i.ifname === 'lo')?.flags).toContain('UP');
    const eth0 = inside.find((i) => i.ifname === 'eth0')!;
    expect(eth0.address).toBe('02:fe:0a:4d:01:01');
    expect(eth0.addr_info).toContainEqual(expect.objectContaining({ local: '10.77.1.1', prefixlen: 16 }));
    // Its veth's host end sits in its host's bridge.
    const port = hostVethName(`${NS}w-web`, 'eth0');
    expect((await execFileP('ip', ['-n', `${NS}h1`, '-br', 'link', 'show', 'master', 'br0'], { encoding: 'utf8' })).stdout).toContain(port);

    const ps = await ferryJson<WorkloadInfo[]>(['ps'], env);
    expect(ps.map((w) => [w.name, w.host, w.address])).toEqual([
      ['echo', 'h2', '10.77.9.9'],
      ['web', 'h1', '10.77.1.1'],
    ]);
    expect((await ferry(['ps'], env)).stdout).toMatch(/web\s+h1\s+running.*10\.77\.1\.1/);

    // The lab's client reaches both over the fabric; a workload on h1 reaches one on h2.
    expect(await httpGet(`${NS}client`, 'http://10.77.1.1:8080/hello.txt')).toBe('hello from a workload');
    expect(await tcpAsk(`${NS}client`, '10.77.9.9', 7, 'ping')).toBe('echo:ping');
    expect(await tcpAsk(`${NS}w-web`, '10.77.9.9', 7, 'from-web')).toBe('echo:from-web');

    // An address in use is refused before anything starts.
    const clash = await ferry(['run', '--host', 'h1', '--name', 'other', '--ip', '10.77.9.9', '--', 'sleep', '100'], env);
    expect(clash.code).toBe(2);
    expect(clash.stderr).toContain('10.77.9.9 is taken');
    const bad = await ferry(['run', '--host', 'h1', '--name', 'other', '--ip', '10.77.300.1', '--', 'sleep', '100'], env);
    expect(bad.code).toBe(2);

    // Stop removes the namespace and the veth; the address is free again.
    await ferryJson(['stop', 'web'], env);
    expect(existsSync(`/run/netns/${NS}w-web`)).toBe(false);
    expect((await execFileP('ip', ['-n', `${NS}h1`, '-br', 'link'], { encoding: 'utf8' })).stdout).not.toContain(port);
    const again = await ferryJson<WorkloadInfo>(['run', '--host', 'h2', '--name', 'again', '--', 'sleep', '1000'], env);
    expect(again.address).toBe('10.77.1.1');
  });

  it('refuses any --ip outside the workload subnet or of the infrastructure, with exit code 2', async () => {
    for (const [ip, why] of [
      ['10.77.0.1', 'infrastructure'], // the fabric's switch
      ['10.77.0.2', 'infrastructure'], // the lab's client
      ['10.77.0.11', 'infrastructure'], // host h1's bridge on the fabric
      ['10.78.0.3', 'infrastructure'], // nats-1, on the management network
      ['10.77.0.200', 'outside the workload range'],
      ['10.77.255.255', 'broadcast'],
      ['192.168.5.5', 'outside the workload subnet'],
    ]) {
      const r = await ferry(['run', '--host', 'h1', '--name', 'intruder', '--ip', ip!, '--', 'sleep', '100'], env);
      expect(r.code, ip).toBe(2);
      expect(r.stderr, ip).toContain(why);
    }
    expect(labNetns()).not.toContain(`${NS}w-intruder`);
    expect((await ferryJson<WorkloadInfo[]>(['ps'], env)).map((w) => w.name)).not.toContain('intruder');
  });

  it('a workload that exits gives back its namespace and address, and ps shows it exited', async () => {
    const w = await ferryJson<WorkloadInfo>(['run', '--host', 'h1', '--name', 'brief', '--ip', '10.77.5.5', '--', 'sleep', '1000'], env);
    expect(labNetns()).toContain(`${NS}w-brief`);
    process.kill(w.rootPid!, 'SIGKILL');
    const deadline = Date.now() + 20_000;
    let shown: WorkloadInfo | undefined;
    for (;;) {
      shown = (await ferryJson<WorkloadInfo[]>(['ps'], env)).find((x) => x.name === 'brief');
      if ((shown?.state === 'exited' && !labNetns().includes(`${NS}w-brief`)) || Date.now() > deadline) break;
      await sleep(200);
    }
    expect(shown).toMatchObject({ name: 'brief', host: 'h1', state: 'exited', address: null, pids: [] });
    expect(labNetns()).not.toContain(`${NS}w-brief`);
    // The address is free: a new workload takes it, and exactly one namespace holds it.
    const next = await ferryJson<WorkloadInfo>(['run', '--host', 'h2', '--name', 'next', '--ip', '10.77.5.5', '--', 'sleep', '1000'], env);
    expect(next.address).toBe('10.77.5.5');
    const holders = [];
    for (const n of labNetns()) {
      const { stdout } = await execFileP('ip', ['-n', n, '-br', 'addr'], { encoding: 'utf8' });
      if (/\b10\.77\.5\.5\//.test(stdout)) holders.push(n);
    }
    expect(holders).toEqual([`${NS}w-next`]);
    // stop forgets an exited workload too.
    await ferryJson(['stop', 'brief'], env);
    expect((await ferryJson<WorkloadInfo[]>(['ps'], env)).map((x) => x.name)).not.toContain('brief');
    await ferryJson(['stop', 'next'], env);
  });

  it('while a host is lost, its names and addresses are not given out again (exit 4), and ps says what is missing', async () => {
    const loop = await ferryJson<WorkloadInfo>(['run', '--host', 'h2', '--name', 'loop', '--', 'sleep', '1000'], env);
    await ferry(['lab', 'kill', 'h2'], env);
    await untilHosts(env, 'h2 is lost', (hs) => hs.some((h) => h.name === 'h2' && !h.alive));

    const sameName = await ferry(['run', '--host', 'h1', '--name', 'loop', '--', 'sleep', '1000'], env);
    expect(sameName.code).toBe(4);
    expect(sameName.stderr).toContain('"loop" may still be in use on host h2, which is lost');
    const sameAddress = await ferry(['run', '--host', 'h1', '--name', 'other', '--ip', loop.address!, '--', 'sleep', '1000'], env);
    expect(sameAddress.code).toBe(4);
    expect(sameAddress.stderr).toContain(`${loop.address} may still be in use by "loop" on host h2`);
    const other = await ferryJson<WorkloadInfo>(['run', '--host', 'h1', '--name', 'other', '--', 'sleep', '1000'], env);
    expect(other.address).not.toBe(loop.address);
    const ps = await ferry(['ps', '--json'], env);
    expect(ps.code).toBe(4);
    expect(ps.stderr).toMatch(new RegExp(`host h2 is lost; it may still run .*loop \\(${loop.address!.replaceAll('.', '\\.')}\\)`));

    // Back: exactly one loop, with its address, and one other.
    await ferry(['lab', 'start', 'h2'], env);
    await untilHosts(env, 'h2 is back', (hs) => hs.every((h) => h.alive));
    const after = await ferryJson<WorkloadInfo[]>(['ps'], env);
    expect(after.filter((w) => w.name === 'loop').map((w) => [w.host, w.address, w.state])).toEqual([['h2', loop.address, 'running']]);
    expect(after.filter((w) => w.address === loop.address)).toHaveLength(1);
    await ferryJson(['stop', 'loop'], env);
    await ferryJson(['stop', 'other'], env);
  });

  it('lab down removes every workload namespace', async () => {
    await ferryJson(['run', '--host', 'h1', '--name', 'left', '--', 'sleep', '1000'], env);
    expect(labNetns()).toContain(`${NS}w-left`);
    await ferry(['lab', 'down'], env);
    expect(labNetns()).toEqual([]);
  });
});
