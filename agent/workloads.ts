// The workloads this agent runs: started as containers (own pid, uts, ipc and time namespaces,
// their own cgroup), kept in a registry file that outlives the agent, so a restarted agent
// still knows them. Workloads are never children of the agent: they outlive it.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import type { WorkloadLoad } from '../shared/facts.ts';
import { ResourceLimits, ResourceRequests, normalizeLimits } from '../shared/resources.ts';
import { PAGE_BYTES } from '../shared/resource-units.ts';
import { WorkloadInfo, type RunRequest, type WorkloadClaim, type WorkloadState } from '../shared/workload.ts';
import { parseRecord } from '../shared/records.ts';
import { assertRequestsFit, hostCapacity } from './cgroups/admission.ts';
import { hostLayout } from './cgroups/layout.ts';
import { WorkloadCgroup, unenforceable } from './cgroups/workload-cgroup.ts';
import { setAsideFile } from './quarantine.ts';
import { isGone, listChildren } from './engine/process/procfs.ts';
import { startInShim } from './workload-shim.ts';
import { type WorkloadNetwork, createWorkloadNetns, removeWorkloadNetns } from './net/workload.ts';

const Entry = WorkloadInfo.pick({ name: true, host: true, state: true, rootPid: true, command: true, startedAt: true, address: true, cgroup: true, log: true }).extend({
  /** The `unshare` process that holds the namespaces open; the container's parent. */
  shimPid: z.number().int().nullable(),
  /** The workload's network namespace file (/run/netns/...), null when it shares the host's. */
  netns: z.string().nullable().default(null),
  limits: ResourceLimits.default({}),
  requests: ResourceRequests.default({}),
});
type Entry = z.infer<typeof Entry>;

const alive = (pid: number | null): boolean => pid !== null && !isGone(pid);

/** Every pid of the tree under root, root first. */
export function treePids(root: number): number[] {
  const out: number[] = [];
  const walk = (pid: number) => {
    out.push(pid);
    for (const c of listChildren(pid)) walk(c);
  };
  try {
    walk(root);
  } catch {
    // a process exited while we walked
  }
  return out;
}

/**
 * Resident bytes from the kernel's counters (statm): smaps_rollup gives the same figure by walking
 * every page table, 16 ms for a GiB, and a freeze reads this.
 */
function rssBytes(pid: number): number {
  try {
    const resident = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return Number.isFinite(resident) ? resident * PAGE_BYTES : 0;
  } catch {
    return 0;
  }
}

export class Workloads {
  readonly #file: string;
  readonly #entries = new Map<string, Entry>();
  /** run, stop and reap one at a time: each creates or removes namespaces named after workloads. */
  #serial: Promise<unknown> = Promise.resolve();
  /** Told the names and addresses this host holds whenever they change (the heartbeat carries them). */
  onClaims: (claims: WorkloadClaim[]) => void = () => undefined;
  readonly #cgroupParent: string;
  /** What keeps watching a running workload between steps (a checkpoint's dirty tracking), with how to let go. */
  readonly #holds = new Map<string, () => void>();

  constructor(
    private readonly host: string,
    private readonly stateDir: string,
    private readonly workloadEnv: Record<string, string> = {},
    cgroupParent = path.join('ferry', host),
    private readonly network?: WorkloadNetwork,
  ) {
    mkdirSync(path.join(stateDir, 'workloads'), { recursive: true });
    this.#file = path.join(stateDir, 'workloads.json');
    if (existsSync(this.#file)) this.#load();
    this.#cgroupParent = cgroupParent;
  }

  /** The workload's cgroup here (its groups in every hierarchy it needs). */
  cgroupOf(name: string): WorkloadCgroup {
    return new WorkloadCgroup(hostLayout(), path.join(this.#cgroupParent, name));
  }

  /**
   * Refuses a workload this host cannot honour: a limit whose controller it lacks, or requests
   * that do not fit beside the other workloads' requests. Nothing is created.
   */
  admit(name: string, limits: ResourceLimits, requests: ResourceRequests): void {
    const missing = unenforceable(hostLayout(), limits);
    if (missing.length) throw new FerryError(ErrorCode.Unsupported, `${this.host} cannot enforce the limits of "${name}": ${missing.join('; ')}`, { details: { problems: missing } });
    const others = [...this.#entries.values()].filter((e) => e.name !== name && alive(e.rootPid)).map((e) => e.requests);
    assertRequestsFit(this.host, name, requests, others, hostCapacity());
  }

  /** Creates the workload's cgroup with its limits in place, before any process joins it. */
  prepareCgroup(name: string, limits: ResourceLimits): WorkloadCgroup {
    const cg = this.cgroupOf(name);
    cg.apply(limits);
    return cg;
  }

  /**
   * Reads the registry, each entry validated on its own: a bad entry is left out, a file that is
   * no list at all is set aside whole (agent/quarantine.ts). The agent starts either way; what
   * was left out is reported, and its workloads are no longer this agent's.
   */
  #load(): void {
    const parsed = parseRecord(z.array(z.unknown()), readFileSync(this.#file, 'utf8'));
    if (!parsed.ok) {
      setAsideFile(path.dirname(this.#file), path.basename(this.#file), parsed.reason, 'the registry starts empty');
      return;
    }
    const bad: unknown[] = [];
    for (const raw of parsed.value) {
      const e = Entry.safeParse(raw);
      if (e.success) this.#entries.set(e.data.name, e.data);
      else bad.push(raw);
    }
    if (bad.length === 0) return;
    // The bad entries are kept in a file of their own beside it, then reported and left out.
    const file = `${path.basename(this.#file)}.bad-entries`;
    writeFileSync(path.join(path.dirname(this.#file), file), JSON.stringify(bad, null, 2));
    setAsideFile(path.dirname(this.#file), file, `${bad.length} registry entr${bad.length === 1 ? 'y' : 'ies'} failed the schema`, 'left out of the registry');
    this.#save();
  }

  #save(): void {
    const tmp = `${this.#file}.tmp`;
    writeFileSync(tmp, JSON.stringify([...this.#entries.values()], null, 2));
    renameSync(tmp, this.#file);
    this.onClaims(this.claims());
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#serial.then(fn, fn);
    this.#serial = next.catch(() => undefined);
    return next;
  }

  /** Names and addresses held here: every workload not yet reaped (an exited one holds them until then). */
  claims(): WorkloadClaim[] {
    return [...this.#entries.values()].filter((e) => e.state !== 'exited').map((e) => ({ name: e.name, address: e.address }));
  }

  /**
   * A workload whose init is gone releases what it held: its network namespace (and with it its
   * address) and its cgroup. It stays listed as exited until it is stopped or its name is run again.
   */
  reap(): Promise<void> {
    return this.#exclusive(() => this.#reap());
  }

  async #reap(): Promise<void> {
    const dead = [...this.#entries.values()].filter((e) => e.state !== 'exited' && !alive(e.rootPid));
    for (const e of dead) {
      this.letGo(e.name);
      if (e.netns && this.network) await removeWorkloadNetns(this.network, e.netns);
      this.cgroupOf(e.name).remove();
      Object.assign(e, { state: 'exited', address: null, netns: null });
    }
    if (dead.length > 0) this.#save();
  }

  #info(e: Entry): WorkloadInfo {
    const running = alive(e.rootPid);
    const pids = running && e.rootPid !== null ? treePids(e.rootPid) : [];
    const state: WorkloadState = running ? e.state : 'exited';
    const { shimPid: _shim, netns: _netns, ...shown } = e;
    return { ...shown, state, pids, memoryBytes: pids.reduce((n, p) => n + rssBytes(p), 0), usage: running ? this.cgroupOf(e.name).usage() : {} };
  }

  list(): WorkloadInfo[] {
    return [...this.#entries.values()].map((e) => this.#info(e));
  }

  /** The list after reaping, so that no exited workload still holds an address when it is read. */
  async listReaped(): Promise<WorkloadInfo[]> {
    await this.reap();
    return this.list();
  }

  /** Each running workload's cgroup usage, limits and requests (for the heartbeats). */
  load(): WorkloadLoad[] {
    return [...this.#entries.values()]
      .filter((e) => alive(e.rootPid))
      .map((e) => ({ name: e.name, usage: this.cgroupOf(e.name).usage(), limits: e.limits, requests: e.requests }));
  }

  get(name: string): WorkloadInfo {
    return this.#info(this.#entry(name));
  }

  /** What the workload was started with, without reading its processes (cheap enough inside a freeze). */
  spec(name: string): Pick<WorkloadInfo, 'command' | 'limits' | 'requests'> {
    const e = this.#entry(name);
    return { command: e.command, limits: e.limits, requests: e.requests };
  }

  #entry(name: string): Entry {
    const e = this.#entries.get(name);
    if (!e) throw new FerryError(ErrorCode.NotFound, `no workload "${name}" on host ${this.host}`);
    return e;
  }

  run(req: RunRequest): Promise<WorkloadInfo> {
    return this.#exclusive(() => this.#run(req));
  }

  async #run(req: RunRequest): Promise<WorkloadInfo> {
    await this.#reap();
    const prev = this.#entries.get(req.name);
    if (prev && alive(prev.rootPid)) throw new FerryError(ErrorCode.InvalidRequest, `workload "${req.name}" already runs on ${this.host}`);
    const log = path.join(this.stateDir, 'workloads', `${req.name}.log`);
    const limits = normalizeLimits(req.limits);
    this.admit(req.name, limits, req.requests);
    // Limits first, then the process: it joins a group that already holds them.
    let cg: WorkloadCgroup;
    try {
      cg = this.prepareCgroup(req.name, limits);
    } catch (err) {
      this.cgroupOf(req.name).remove();
      throw err;
    }
    const cgroup = cg.v2Dir;
    // With a workload network, the shim joins the workload's own namespace first.
    let net: Awaited<ReturnType<typeof createWorkloadNetns>> | null = null;
    try {
      net = this.network && req.address ? await createWorkloadNetns(this.network, req.name, req.address) : null;
    } catch (err) {
      cg.remove();
      throw err;
    }
    let rootPid: number;
    let shimPid: number;
    try {
      ({ shimPid, rootPid } = await startInShim({
        name: req.name,
        command: req.command,
        joinFiles: cg.procsFiles(),
        netns: net?.path ?? null,
        log,
        cwd: req.cwd,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...this.workloadEnv, ...req.env },
      }));
    } catch (err) {
      if (this.network && net) await removeWorkloadNetns(this.network, net.path);
      cg.remove();
      throw err;
    }
    const entry: Entry = {
      limits,
      requests: req.requests,
      name: req.name,
      host: this.host,
      state: 'running',
      rootPid,
      shimPid,
      command: req.command,
      startedAt: new Date().toISOString(),
      address: net ? (req.address ?? null) : null,
      netns: net?.path ?? null,
      cgroup,
      log,
    };
    this.#entries.set(req.name, entry);
    this.#save();
    return this.#info(entry);
  }

  /**
   * The v2 group a workload of this name gets here, relative to the cgroup2 root (created if
   * needed); a restored tree joins it instead of the one it had on its source host.
   */
  cgroupFor(name: string): string | null {
    const cg = this.cgroupOf(name);
    if (!cg.v2Dir) return null;
    mkdirSync(cg.v2Dir, { recursive: true });
    return `/${cg.rel}`;
  }

  /** Changes a running workload's limits: the ones given replace its own, the rest stay. */
  update(name: string, limits: ResourceLimits): WorkloadInfo {
    const e = this.#entries.get(name);
    if (!e || !alive(e.rootPid)) throw new FerryError(ErrorCode.NotFound, `no running workload "${name}" on host ${this.host}`);
    if (e.state !== 'running') throw new FerryError(ErrorCode.Conflict, `workload "${name}" is ${e.state} (a migration holds it): try again once it runs`, { retryable: true });
    const merged = normalizeLimits({ ...e.limits, ...limits });
    this.admit(name, merged, e.requests);
    const cg = this.cgroupOf(name);
    cg.apply(merged);
    cg.verify(merged, `update of "${name}" on ${this.host}`);
    e.limits = merged;
    this.#save();
    return this.#info(e);
  }

  /** Whether a live workload of this name is registered here. */
  runsHere(name: string): boolean {
    return alive(this.#entries.get(name)?.rootPid ?? null);
  }

  /** The workload's own network namespace file, null when it shares the host's. */
  netnsOf(name: string): string | null {
    return this.#entries.get(name)?.netns ?? null;
  }

  /**
   * Marks a workload that a migration holds (frozen) or gives back (running). The freeze is set
   * inside the downtime and not written out then (replacing the registry file costs tens of ms on
   * a busy disk): a restarted agent learns of a held freeze from the migration's own record.
   */
  setState(name: string, state: 'running' | 'frozen'): void {
    const e = this.#entries.get(name);
    if (!e || e.state === state) return;
    e.state = state;
    if (state === 'running') this.#save();
  }

  /**
   * Registers a workload that a migration restored here; shimPid is the parent holding its
   * namespaces; `address` and `netns` when it came with its network namespace (rebuilt here
   * under the name this host's network config gives it).
   */
  adopt(w: { name: string; rootPid: number; shimPid: number | null; command: string[]; address?: string; netns?: string; limits?: ResourceLimits; requests?: ResourceRequests }): WorkloadInfo {
    const cg = this.cgroupOf(w.name);
    cg.create();
    // Built inside its groups already; a tree restored by an older path joins them now.
    for (const pid of treePids(w.rootPid)) cg.join(pid);
    const cgroup = cg.v2Dir;
    const entry: Entry = {
      limits: w.limits ?? {},
      requests: w.requests ?? {},
      name: w.name,
      host: this.host,
      state: 'running',
      rootPid: w.rootPid,
      shimPid: w.shimPid,
      command: w.command,
      startedAt: new Date().toISOString(),
      address: w.address ?? null,
      netns: w.netns ?? null,
      cgroup,
      log: path.join(this.stateDir, 'workloads', `${w.name}.log`),
    };
    this.#entries.set(w.name, entry);
    this.#save();
    return this.#info(entry);
  }

  /**
   * A destination's copy of a moving workload's output log, which its stdout and stderr reopen on
   * restore. The log is host-local (each host keeps what the workload wrote while there), so it
   * is created here, empty, before the restore reopens it.
   */
  ensureLog(name: string): void {
    closeSync(openSync(path.join(this.stateDir, 'workloads', `${name}.log`), 'a'));
  }

  /**
   * Drops a workload from the registry without touching its processes (it moved away). Its
   * network namespace here is the caller's to remove (removeWorkloadNetns) once it is no longer needed.
   */
  forget(name: string): void {
    this.letGo(name);
    const e = this.#entries.get(name);
    if (!e) return;
    this.#entries.delete(name);
    this.#save();
    this.cgroupOf(name).remove();
  }

  /** Registers what watches the workload between steps; any step that takes the workload lets go of it first. */
  hold(name: string, letGo: () => void): void {
    if (this.#holds.get(name) !== letGo) this.letGo(name);
    this.#holds.set(name, letGo);
  }

  /** Ends the hold on a workload, if any (a migration or another owner takes it now). */
  letGo(name: string): void {
    const release = this.#holds.get(name);
    this.#holds.delete(name);
    release?.();
  }

  /** Ends the workload's processes (by pid, the tree only) and forgets it. */
  stop(name: string): Promise<WorkloadInfo> {
    return this.#exclusive(() => this.#stop(name));
  }

  async #stop(name: string): Promise<WorkloadInfo> {
    const e = this.#entries.get(name);
    if (!e) throw new FerryError(ErrorCode.NotFound, `no workload "${name}" on host ${this.host}`);
    this.letGo(name);
    // PID 1 of a pid namespace takes every other process of the namespace with it.
    if (alive(e.rootPid) && e.rootPid !== null) process.kill(e.rootPid, 'SIGKILL');
    const deadline = Date.now() + 5_000;
    while ((alive(e.rootPid) || alive(e.shimPid)) && Date.now() < deadline) await sleep(10);
    if (e.netns && this.network) await removeWorkloadNetns(this.network, e.netns);
    this.cgroupOf(name).remove();
    const info = { ...this.#info(e), state: 'exited' as const };
    this.#entries.delete(name);
    this.#save();
    return info;
  }
}
