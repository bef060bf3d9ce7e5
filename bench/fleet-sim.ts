// The simulated hosts of bench/fleet-agents.ts: what each one holds and how it answers the agent
// protocol (shared/protocol.ts agentApi), without a kernel. A workload's size and load follow from
// its name alone (h<host>-w<n>), so a host in another bench process can take it in a migration
// knowing only what the protocol tells it; the migration steps take the time their real
// counterparts take at the simulated rates (SIM_RATES).
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import type { HostFacts, WorkloadLoad } from '../shared/facts.ts';
import type { AdmitRequest, PrecopyRequest, PreflightReply, RestoreReply, RoundStatsWire, SendReply, StepBase } from '../shared/migration.ts';
import type { ResourceLimits, ResourceRequests } from '../shared/resources.ts';
import type { RunRequest, WorkloadClaim, WorkloadInfo } from '../shared/workload.ts';
import type { VerifyReport } from '../shared/verify.ts';

const GiB = 1024 ** 3;
const PAGE = 4096;

/** Host size and step costs: a real agent's on a 16 GiB, 8-CPU host with a 1 GB/s data stream. */
export const SIM_RATES = {
  memoryTotalBytes: 16 * GiB,
  /** Kept by the kernel and the agent, never a workload's. */
  baseUsedBytes: 1 * GiB,
  cpus: 8,
  streamBytesPerS: 1e9,
  ms: { preflight: 20, admit: 10, receive: 2, freeze: 10, restore: 50, resume: 5, cleanup: 10, thaw: 10, discard: 10 },
} as const;

/** The data stream's rate for one step: the simulated link, or the pace the coordinator set (a drain's shared cap). */
const streamRate = (s: StepBase): number => Math.min(SIM_RATES.streamBytesPerS, s.bandwidthBps ?? Infinity);

/** Fixed switchover costs as the simulated agents "measured" them (freeze, state dump, restore + resume). */
const FIXED_COSTS = { freezeMs: SIM_RATES.ms.freeze, dumpMs: 20, resumeMs: SIM_RATES.ms.restore + SIM_RATES.ms.resume };

/** A number in [0, 1) that follows from `key` alone, so that every bench process derives the same fleet. */
const unit = (key: string): number => createHash('sha256').update(key).digest().readUInt32BE(0) / 2 ** 32;

export const hostName = (i: number) => `h${i}`;
export const workloadName = (host: number, n: number) => `h${host}-w${n}`;
const pages = (bytes: number) => Math.max(PAGE, Math.floor(bytes / PAGE) * PAGE);

export interface WorkloadSpec {
  memoryBytes: number;
  requests: ResourceRequests;
  /** CPUs it keeps busy. */
  cpuRate: number;
  /** Bytes per second it dirties while pre-copy runs. */
  dirtyBps: number;
}

/**
 * The workload h<i>-w<n> of a fleet with `perHost` workloads per host: host i's workloads
 * together take 20..75% of what its requests may reserve (hosts differ, so a rebalance finds
 * work), split unevenly between them.
 */
export function workloadSpec(name: string, perHost: number): WorkloadSpec {
  const m = /^h(\d+)-w(\d+)$/.exec(name);
  const host = Number(m?.[1] ?? 0);
  const n = Number(m?.[2] ?? 0);
  const share = 0.2 + 0.55 * unit(`share ${host}`);
  const weight = (k: number) => 0.3 + 1.7 * unit(`weight ${host} ${k}`);
  let total = 0;
  for (let k = 0; k < perHost; k++) total += weight(k);
  const capacity = SIM_RATES.memoryTotalBytes * 0.9;
  const memoryBytes = pages((share * capacity * weight(n)) / Math.max(total, 1e-9));
  const r = (what: string) => unit(`${what} ${name}`);
  return {
    memoryBytes,
    requests: { memoryBytes: pages(memoryBytes * (0.7 + 0.3 * r('request'))), cpus: Math.round((0.1 + 0.4 * r('cpus')) * 100) / 100 },
    cpuRate: 0.05 + 0.6 * r('cpu'),
    dirtyBps: memoryBytes * (0.005 + 0.02 * r('dirty')),
  };
}

interface SimWorkload {
  name: string;
  state: 'running' | 'frozen';
  spec: WorkloadSpec;
  limits: ResourceLimits;
  requests: ResourceRequests;
  command: string[];
  startedAt: string;
  /** performance.now() when it came to this host: its CPU time counts from there, as a new cgroup's does. */
  hereSince: number;
  rootPid: number;
}

/** One migration as one of its two agents holds it. */
interface SimMigration {
  role: 'source' | 'destination';
  workload: string;
  /** Bytes dirtied since the last round (source), what a switchover now sends. */
  remainingBytes: number;
  precopy: boolean;
  /** Destination: what admit was given. */
  resources?: { limits: ResourceLimits; requests: ResourceRequests };
  fenced: boolean;
}

const VERIFIED: VerifyReport = {
  processes: 1,
  checked: { status: ['SigIgn', 'SigCgt', 'SigBlk'], mappings: ['range', 'perms'], fds: ['flags', 'pos'] },
  notVerified: [],
  pagesChecked: { precopy: 0, downtime: 0 },
  outsideMs: 0,
  insideMs: 1,
  msByResource: { status: 0.2, mappings: 0.5, fds: 0.3 },
  mismatches: [],
};

export class SimHost {
  readonly workloads = new Map<string, SimWorkload>();
  readonly #migrations = new Map<string, SimMigration>();
  /** Steps by idempotency key: a replay gets the first answer. */
  readonly #steps = new Map<string, Promise<unknown>>();
  readonly startedAt = new Date().toISOString();
  readonly started = performance.now();
  #nextPid = 1000;
  /** Called when what this host holds changes (a heartbeat goes out at once, as a real agent's does). */
  onClaimsChanged: () => void = () => undefined;

  constructor(
    readonly index: number,
    readonly name: string,
    /** The agent's pid as it reports it: unique per simulated host. */
    readonly pid: number,
    private readonly perHost: number,
  ) {
    for (let n = 1; n <= perHost; n++) this.#add(workloadName(index, n), {}, undefined, ['/usr/bin/sim-workload', String(n)]);
  }

  #add(name: string, limits: ResourceLimits, requests: ResourceRequests | undefined, command: string[]): SimWorkload {
    const spec = workloadSpec(name, this.perHost);
    const w: SimWorkload = { name, state: 'running', spec, limits, requests: requests ?? spec.requests, command, startedAt: new Date().toISOString(), hereSince: performance.now(), rootPid: this.#nextPid++ };
    this.workloads.set(name, w);
    return w;
  }

  #usedBytes(): number {
    let n = SIM_RATES.baseUsedBytes;
    for (const w of this.workloads.values()) n += w.spec.memoryBytes;
    return n;
  }

  #usage(w: SimWorkload) {
    return { memoryBytes: w.spec.memoryBytes, cpuUsec: Math.round(w.spec.cpuRate * (performance.now() - w.hereSince) * 1000), pids: 1, cpuThrottled: 0, cpuPeriods: 0 };
  }

  facts(): HostFacts {
    return {
      name: this.name,
      hostname: this.name,
      address: `10.${100 + (this.index >> 16)}.${(this.index >> 8) & 255}.${this.index & 255}`,
      kernel: { release: '6.1.0-sim', version: '#1 SMP PREEMPT_DYNAMIC', arch: 'x86_64' },
      cpu: { model: 'Simulated CPU @ 3.0GHz', count: SIM_RATES.cpus, xsave: { xcr0: '0x2e7', xstateSize: 2696 } },
      memory: { totalBytes: SIM_RATES.memoryTotalBytes, availableBytes: Math.max(0, SIM_RATES.memoryTotalBytes - this.#usedBytes()) },
      features: { uffdWpAsync: true, pagemapScan: true, softDirty: false, clone3SetTid: true, sealedSystemMappings: false, timeNamespaces: true, cgroup2Freezer: true, ptrace: true },
      agent: { version: '0.1.0-sim', pid: this.pid, startedAt: this.startedAt },
      dataStream: { port: 7410, encrypt: true },
      cgroups: { memory: 'v2', cpu: 'v2', pids: 'v2', io: 'v2' },
      workloads: this.load(),
    };
  }

  load(): WorkloadLoad[] {
    return [...this.workloads.values()].map((w) => ({ name: w.name, usage: this.#usage(w), limits: w.limits, requests: w.requests }));
  }

  claims(): WorkloadClaim[] {
    return [...this.workloads.values()].map((w) => ({ name: w.name, address: null }));
  }

  #info(w: SimWorkload): WorkloadInfo {
    return {
      name: w.name,
      host: this.name,
      state: w.state,
      rootPid: w.rootPid,
      pids: [w.rootPid],
      memoryBytes: w.spec.memoryBytes,
      command: w.command,
      startedAt: w.startedAt,
      address: null,
      cgroup: `/sys/fs/cgroup/ferry/${this.name}/${w.name}`,
      log: `/var/lib/ferry/agent/logs/${w.name}.log`,
      limits: w.limits,
      requests: w.requests,
      usage: this.#usage(w),
    };
  }

  list(): WorkloadInfo[] {
    return [...this.workloads.values()].map((w) => this.#info(w));
  }

  #get(name: string): SimWorkload {
    const w = this.workloads.get(name);
    if (!w) throw new FerryError(ErrorCode.NotFound, `no workload "${name}" on host ${this.name}`);
    return w;
  }

  // --- workload endpoints ----------------------------------------------------------------------

  run(req: RunRequest): WorkloadInfo {
    if (this.workloads.has(req.name)) throw new FerryError(ErrorCode.InvalidRequest, `a workload named "${req.name}" already runs on ${this.name}`);
    const w = this.#add(req.name, req.limits, req.requests, req.command);
    this.onClaimsChanged();
    return this.#info(w);
  }

  stop(name: string): WorkloadInfo {
    const info = this.#info(this.#get(name));
    this.workloads.delete(name);
    this.onClaimsChanged();
    return { ...info, state: 'exited', pids: [] };
  }

  update(name: string, limits: ResourceLimits): WorkloadInfo {
    const w = this.#get(name);
    w.limits = { ...w.limits, ...limits };
    return this.#info(w);
  }

  // --- migration steps -------------------------------------------------------------------------

  /** Runs a step once per idempotency key; a step of a migration rolled back here is refused. */
  #once<T>(s: StepBase, role: SimMigration['role'], fn: (m: SimMigration) => Promise<T>): Promise<T> {
    const prev = this.#steps.get(s.idempotencyKey);
    if (prev) return prev as Promise<T>;
    let m = this.#migrations.get(s.migrationId);
    if (!m) this.#migrations.set(s.migrationId, (m = { role, workload: s.workload, remainingBytes: 0, precopy: false, fenced: false }));
    if (m.fenced) return Promise.reject(new FerryError(ErrorCode.Conflict, `migration ${s.migrationId} was rolled back on ${this.name}`));
    const p = fn(m);
    this.#steps.set(s.idempotencyKey, p);
    // A failed step may be tried again under the same key.
    p.catch(() => this.#steps.delete(s.idempotencyKey));
    return p;
  }

  preflight(s: StepBase): Promise<z.input<typeof PreflightReply>> {
    return this.#once(s, 'source', async () => {
      await sleep(SIM_RATES.ms.preflight);
      const w = this.#get(s.workload);
      return { workloadBytes: w.spec.memoryBytes, processes: 1, threads: 2, limits: w.limits, requests: w.requests };
    });
  }

  admit(s: z.infer<typeof AdmitRequest>) {
    return this.#once(s, 'destination', async (m) => {
      await sleep(SIM_RATES.ms.admit);
      if (this.workloads.has(s.workload)) throw new FerryError(ErrorCode.Conflict, `"${s.workload}" already runs on ${this.name}`);
      m.resources = { limits: s.limits, requests: s.requests };
      return { done: true as const };
    });
  }

  receive(s: StepBase) {
    return this.#once(s, 'destination', async () => {
      await sleep(SIM_RATES.ms.receive);
      return { endpoint: { host: this.facts().address, port: 7410 } };
    });
  }

  precopy(s: z.infer<typeof PrecopyRequest>): Promise<RoundStatsWire> {
    return this.#once(s, 'source', async (m) => {
      const w = this.#get(s.workload);
      m.precopy = true;
      const bytes = s.round === 1 ? w.spec.memoryBytes : m.remainingBytes;
      const rate = streamRate(s);
      const durationMs = (1000 * bytes) / rate;
      await sleep(durationMs);
      const dirtyBps = s.throttle ? w.spec.dirtyBps / 4 : w.spec.dirtyBps;
      m.remainingBytes = Math.min(w.spec.memoryBytes, pages((dirtyBps * Math.max(durationMs, 1)) / 1000));
      const fixed = FIXED_COSTS.freezeMs + FIXED_COSTS.dumpMs + FIXED_COSTS.resumeMs;
      return {
        round: s.round,
        pagesScanned: w.spec.memoryBytes / PAGE,
        pagesDirty: m.remainingBytes / PAGE,
        pagesSent: Math.ceil(bytes / PAGE),
        pagesZero: 0,
        bytesOnWire: bytes,
        compressionRatio: 1,
        durationMs,
        dirtyRateBps: dirtyBps,
        bandwidthBps: rate,
        predictedDowntimeMs: fixed + (1000 * m.remainingBytes) / rate,
        throttled: s.throttle,
        tracker: 'uffd-wp',
        remainingPages: m.remainingBytes / PAGE,
        fixedCosts: FIXED_COSTS,
      };
    });
  }

  freeze(s: StepBase) {
    return this.#once(s, 'source', async () => {
      await sleep(SIM_RATES.ms.freeze);
      this.#get(s.workload).state = 'frozen';
      return { tasks: 2 };
    });
  }

  send(s: StepBase): Promise<z.input<typeof SendReply>> {
    return this.#once(s, 'source', async (m) => {
      const bytes = m.precopy ? m.remainingBytes : this.#get(s.workload).spec.memoryBytes;
      await sleep((1000 * bytes) / streamRate(s) + FIXED_COSTS.dumpMs);
      return { bytesTransferred: bytes, bytesOnWire: bytes };
    });
  }

  restore(s: StepBase): Promise<z.input<typeof RestoreReply>> {
    return this.#once(s, 'destination', async () => {
      await sleep(SIM_RATES.ms.restore);
      return { pid: this.#nextPid, ...(s.verify === false ? {} : { verify: VERIFIED }) };
    });
  }

  /** After the commit: the workload runs here now (the source forgets it at cleanup, as a real agent does). */
  resume(s: StepBase): Promise<z.input<typeof RestoreReply>> {
    return this.#once(s, 'destination', async (m) => {
      await sleep(SIM_RATES.ms.resume);
      const w = this.workloads.get(s.workload) ?? this.#add(s.workload, m.resources?.limits ?? {}, m.resources?.requests, ['/usr/bin/sim-workload', s.workload]);
      this.onClaimsChanged();
      return { pid: w.rootPid };
    });
  }

  cleanup(s: StepBase) {
    return this.#once(s, 'source', async () => {
      await sleep(SIM_RATES.ms.cleanup);
      this.workloads.delete(s.workload);
      this.#migrations.delete(s.migrationId);
      this.onClaimsChanged();
      return { done: true as const };
    });
  }

  /** Rollback on the source: it runs here as before. */
  thaw(s: StepBase) {
    return this.#once(s, 'source', async (m) => {
      await sleep(SIM_RATES.ms.thaw);
      const w = this.workloads.get(s.workload);
      if (w) w.state = 'running';
      m.fenced = true;
      return { done: true as const };
    });
  }

  /** Rollback on the destination: nothing of it may run here. */
  discard(s: StepBase) {
    return this.#once(s, 'destination', async (m) => {
      await sleep(SIM_RATES.ms.discard);
      m.fenced = true;
      return { done: true as const };
    });
  }
}
