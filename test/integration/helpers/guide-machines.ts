// Three "machines" on this host for the operators' guide's test: each is a network namespace
// (eth0 on a management bridge, eth1 on a workload bridge, both in a switch namespace) and a
// mount and uts namespace of its own, held by one sleeping process, in which /etc and /var/lib
// are overlays with a private upper layer, and /root, /run/netns and /var/backups are tmpfs. Whatever the
// guide's commands write stays in the machine; the real machine's own namespaces are not touched.
// Everything started is tracked by pid and ended by pid; teardown also ends whatever still runs
// inside the machines (their mount namespaces, and the cgroups their agents made).
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { hostLayout } from '../../../agent/cgroups/layout.ts';
import { isGone } from '../../../agent/engine/process/procfs.ts';
import { run } from '../../../deploy/lab/exec.ts';
import { bridge, endpoint, ipBatch, plug, removeNamespaces } from '../../../deploy/lab/network.ts';
import { LAB_MEMBER_ENV, isRunning, killAll, labProcessesInNamespaces, stopProcess, type StartedProcess } from '../../../deploy/lab/processes.ts';
import type { ServiceUnit } from './guide-steps.ts';

export interface Machine {
  name: string;
  netns: string;
  /** The process holding the machine's mount and uts namespaces. */
  holder: StartedProcess;
  dir: string;
}

export interface Machines {
  switchNs: string;
  dir: string;
  list: Machine[];
  /** Daemons the test started from units, to end by pid. */
  daemons: (StartedProcess & { machine: string; unit: string })[];
}

/** A clean environment, as a login shell on a fresh machine would have. */
const MACHINE_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8' };

/** Set in the environment of everything the test starts in the machines, so that a later run finds what a crashed one left. */
let machineMark: Record<string, string> = {};

const enter = (m: Machine): string[] => ['nsenter', '-t', String(m.holder.pid), '-m', '-u', '-n', '-W', '/', '--'];

export interface ShellResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a bash script inside the machine (errexit, pipefail), from /root. */
export function shellIn(m: Machine, script: string, input?: NodeJS.ReadableStream): Promise<ShellResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(enter(m)[0]!, [...enter(m).slice(1), 'bash', '-c', `set -eo pipefail\ncd /root\n${script}`], { env: MACHINE_ENV, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    if (input) input.pipe(child.stdin);
    else child.stdin.end();
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

export async function mustShellIn(m: Machine, script: string): Promise<string> {
  const r = await shellIn(m, script);
  if (r.code !== 0) throw new Error(`on ${m.name}, exit ${r.code}:\n${script}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r.stdout;
}

/** Copies files (a bash word list, expanded on `from`) into directory `dir` on `to`, keeping modes, as `scp -p` would. */
export async function copyBetween(from: Machine, sources: string, to: Machine, dir: string): Promise<void> {
  const tar = spawn(enter(from)[0]!, [...enter(from).slice(1), 'bash', '-c', `set -eo pipefail\ncd /root\ntar -cf - -P --transform='s|.*/||' ${sources}`], { env: MACHINE_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  tar.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const sent = new Promise<number>((resolve) => tar.on('close', (c) => resolve(c ?? 1)));
  const got = await shellIn(to, `tar -xf - -C ${dir}`, tar.stdout);
  const code = await sent;
  if (code !== 0 || got.code !== 0) throw new Error(`copy of ${sources} from ${from.name} to ${to.name}:${dir} failed: ${err}${got.stderr}`);
}

/** Where the machines of lab `lab` will be: filled in by buildMachines as it goes, so a failure halfway still tears down what exists. */
export const machinesOf = (lab: string, dir: string): Machines => ({ switchNs: `ferry-${lab}-sw`, dir, list: [], daemons: [] });

export async function buildMachines(machines: Machines, lab: string, names: string[], mgmtAddress: (i: number) => string): Promise<void> {
  const { switchNs, dir, list } = machines;
  machineMark = { [LAB_MEMBER_ENV]: lab };
  const netnsOf = (n: string) => `ferry-${lab}-${n}`;
  await ipBatch(null, [switchNs, ...names.map(netnsOf)].map((n) => `netns add ${n}`));
  await ipBatch(switchNs, [
    'link set lo up',
    ...bridge('mgmt0'),
    ...bridge('wl0'),
    ...names.flatMap((n) => [...plug('mgmt0', `m-${n}`, netnsOf(n), 'eth0'), ...plug('wl0', `w-${n}`, netnsOf(n), 'eth1')]),
  ]);
  for (const [i, name] of names.entries()) {
    const netns = netnsOf(name);
    await ipBatch(netns, ['link set lo up', ...endpoint('eth0', `${mgmtAddress(i)}/24`)]);
    const mdir = path.join(dir, name);
    for (const d of ['etc-up', 'etc-work', 'var-up', 'var-work']) mkdirSync(path.join(mdir, d), { recursive: true });
    const log = path.join(mdir, 'holder.log');
    const out = openSync(log, 'a');
    // nsenter and unshare exec (neither forks for these namespaces): the pid is the holder's.
    const child = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', 'unshare', '--mount', '--uts', '--propagation', 'private', '--', 'sleep', '1000000'], {
      detached: true,
      stdio: ['ignore', out, out],
      env: { ...MACHINE_ENV, ...machineMark },
    });
    closeSync(out);
    if (child.pid === undefined) throw new Error(`could not start the holder of ${name}`);
    child.unref();
    const m: Machine = { name, netns, holder: { pid: child.pid, marker: 'sleep 1000000', log }, dir: mdir };
    list.push(m);
    await untilInOwnMountNs(m);
    await run('nsenter', ['-t', String(m.holder.pid), '-m', '-u', '--', 'sh', '-ec', [
      `mount -t overlay overlay -o lowerdir=/etc,upperdir=${mdir}/etc-up,workdir=${mdir}/etc-work /etc`,
      `mount -t overlay overlay -o lowerdir=/var/lib,upperdir=${mdir}/var-up,workdir=${mdir}/var-work /var/lib`,
      'mount -t tmpfs -o mode=0700 tmpfs /root',
      'mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns',
      'mount -t tmpfs tmpfs /var/backups',
      `hostname ${name}`,
    ].join('\n')]);
  }
}

/** Until the holder has exec'd into its own mount namespace (nsenter and unshare take a moment). */
async function untilInOwnMountNs(m: Machine): Promise<void> {
  const deadline = Date.now() + 10_000;
  const own = statSync('/proc/self/ns/mnt').ino;
  for (;;) {
    try {
      if (statSync(`/proc/${m.holder.pid}/ns/mnt`).ino !== own && readFileSync(`/proc/${m.holder.pid}/cmdline`, 'utf8').startsWith('sleep')) return;
    } catch {
      throw new Error(`the holder of ${m.name} died: ${readFileSync(m.holder.log, 'utf8')}`);
    }
    if (Date.now() > deadline) throw new Error(`the holder of ${m.name} did not start`);
    await sleep(20);
  }
}

/** Installs the unpacked package onto a machine as dpkg would: files over /usr and into /etc, then its postinst. */
export async function installUnpacked(m: Machine, pkgRoot: string): Promise<void> {
  await run('nsenter', ['-t', String(m.holder.pid), '-m', '--', 'mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${pkgRoot}/usr:/usr`, '/usr']);
  await mustShellIn(m, `cp -a ${pkgRoot}/etc/. /etc/\nsh ${pkgRoot}/DEBIAN/postinst configure`);
}

/** Starts a unit's ExecStart inside the machine as systemd would: its user and group, environment, state directories. */
export async function startUnit(machines: Machines, m: Machine, unitName: string, unit: ServiceUnit): Promise<void> {
  const user = unit.user ?? 'root';
  const group = unit.group ?? (unit.user ? unit.user : 'root');
  for (const d of unit.stateDirectories) await mustShellIn(m, `install -d -o ${user} -g ${group} -m 0755 /var/lib/${d}`);
  const drop = unit.user ? ['setpriv', `--reuid=${user}`, `--regid=${group}`, '--init-groups', '--'] : [];
  const log = path.join(m.dir, `${unitName}.log`);
  const out = openSync(log, 'a');
  const child = spawn(enter(m)[0]!, [...enter(m).slice(1), ...drop, ...unit.execStart], { detached: true, stdio: ['ignore', out, out], env: { ...MACHINE_ENV, ...machineMark, ...unit.environment } });
  closeSync(out);
  if (child.pid === undefined) throw new Error(`could not start ${unitName} on ${m.name}`);
  child.unref();
  machines.daemons.push({ pid: child.pid, marker: unit.execStart[0]!, log, machine: m.name, unit: unitName });
}

/** `systemctl stop`: ends the units' daemons on that machine (SIGTERM, then SIGKILL), by pid. */
export async function stopUnits(machines: Machines, m: Machine, units: string[]): Promise<void> {
  for (const u of units) {
    const running = machines.daemons.filter((d) => d.machine === m.name && d.unit === u && isRunning(d));
    if (running.length === 0) throw new Error(`systemctl stop ${u} on ${m.name}: the test started no such unit there`);
    for (const d of running) await stopProcess(d, 10_000);
  }
}

/** The log of every daemon, for a failure's message. */
export function daemonLogs(machines: Machines, lines = 20): string {
  return machines.daemons
    .map((d) => {
      let text = '';
      try {
        text = readFileSync(d.log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
      } catch {
        text = '(no log)';
      }
      return `--- ${d.unit} on ${d.machine} (pid ${d.pid}${isRunning(d) ? '' : ', not running'})\n${text}`;
    })
    .join('\n');
}

/** Cgroup directories the machines' agents made (default parent ferry/<host>), in every hierarchy, parents first. */
function machineCgroups(names: string[]): string[] {
  const layout = hostLayout();
  const roots = new Set([layout.v2Root, ...layout.v1Mounts.values()].filter((r): r is string => r !== null));
  const dirs: string[] = [];
  const walk = (d: string) => {
    dirs.push(d);
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
  };
  for (const root of roots) for (const n of names) if (existsSync(path.join(root, 'ferry', n))) walk(path.join(root, 'ferry', n));
  return dirs;
}

export function cgroupProcesses(names: string[]): number[] {
  return machineCgroups(names).flatMap((d) => {
    try {
      return readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
}

/** Processes whose mount namespace is one of the machines' (everything started inside them). */
function processesInMachines(list: Machine[]): number[] {
  const mnts = new Set<number>();
  for (const m of list) {
    try {
      mnts.add(statSync(`/proc/${m.holder.pid}/ns/mnt`).ino);
    } catch {
      // holder gone
    }
  }
  const holders = new Set(list.map((m) => m.holder.pid));
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || holders.has(Number(e))) continue;
    try {
      if (mnts.has(statSync(`/proc/${e}/ns/mnt`).ino)) out.push(Number(e));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

export async function teardownMachines(machines: Machines, lab: string, names: string[]): Promise<void> {
  for (const d of [...machines.daemons].reverse()) await stopProcess(d, 2_000);
  const all = (await run('ip', ['netns', 'list'], { allowFail: true })).split('\n').map((l) => l.split(' ')[0]!);
  const namespaces = all.filter((n) => n.startsWith(`ferry-${lab}-`));
  // Workloads (which outlive their agent by design), anything else still inside, and what a
  // crashed earlier run left (marked, in the machines' network namespaces).
  await killAll([...new Set([...cgroupProcesses(names), ...processesInMachines(machines.list), ...labProcessesInNamespaces(lab, namespaces)])]);
  await killAll(machines.list.map((m) => m.holder.pid).filter((pid) => !isGone(pid)));
  // Deepest first, and the agents' parent `ferry` last, once no host's group is left in it.
  const roots = [hostLayout().v2Root, ...hostLayout().v1Mounts.values()].filter((r): r is string => r !== null);
  for (const d of [...machineCgroups(names).reverse(), ...roots.map((r) => path.join(r, 'ferry'))]) {
    try {
      rmdirSync(d);
    } catch {
      // not empty: left for a person to look at
    }
  }
  await removeNamespaces(namespaces);
  rmSync(machines.dir, { recursive: true, force: true });
}
