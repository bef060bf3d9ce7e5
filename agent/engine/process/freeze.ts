// Holding a process tree still. The order matters for safety: a cgroup v2 freeze stops every
// task at once and survives the agent's death; ptrace is seized on frozen tasks; before any
// syscall is injected (which cannot run while frozen) the tasks are moved into a SIGSTOP
// group-stop, which also survives the agent's death. A guardian process resumes the workload if
// the agent dies before the checkpoint ends, so an abandoned checkpoint leaves it running.
import diagnostics_channel from 'node:diagnostics_channel';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { PTEV, PTO, cont, detach, interrupt, seize, waitStop } from '../../ffi/ptrace.ts';
import { killPid } from '../../ffi/syscalls.ts';
import { cgroup2Root } from '../../cgroups/root.ts';
import { GuardEntry } from './guardian.ts';
import { treeOf } from '../preflight.ts';
import { isGone, listTasks } from './procfs.ts';

/** The tree under root without zombies (an exited child not yet reaped cannot be carried or frozen). */
const liveTree = (root: number): number[] => treeOf(root).filter((p) => !isGone(p));

const chan = diagnostics_channel.channel('ferry:freeze');
const SIGSTOP = 19;
const SIGCONT = 18;
const SIGKILL = 9;

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const nap = (ms: number): void => void Atomics.wait(sleeper, 0, 0, ms);

function cgroupOf(pid: number): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('0::'));
  return line ? line.slice(3) : '/';
}

export type FreezeState = 'running' | 'frozen' | 'group-stopped' | 'released' | 'killed';

/**
 * A freeze that outlives this agent: what a restarted agent needs to end it either way. The
 * tasks stay in group-stop (ptrace detaches when the agent dies; the stop holds).
 */
export interface HeldFreeze {
  pids: number[];
  /** The freezer cgroup the tasks were moved into (absolute path), if any. */
  cgroup: string | null;
  /** Where each pid came from, relative to the cgroup2 root, to move it back on thaw. */
  origCgroups: Record<string, string>;
  cgroupRoot: string | null;
  /** The cgroup is the workload's own, frozen in place: thawed at the end, never removed. */
  inPlace?: boolean;
}

export class FrozenTree {
  state: FreezeState = 'running';
  /** Every traced task: tid -> owning pid. */
  readonly tasks = new Map<number, number>();
  private cgroup: string | null = null;
  /** Frozen in the workload's own cgroup (no process moved): see freezeInPlace. */
  private inPlace = false;
  private readonly origCgroup = new Map<number, string>();
  private cgRoot: string | null = null;
  private guard: GuardEntry | null = null;
  readonly frozenAt = performance.now();

  private constructor(
    private list: number[],
    /** When set, the tree under root is re-listed until a freeze holds all of it. */
    private readonly root: number | null,
  ) {}

  /** The frozen processes, parents before children. */
  get pids(): readonly number[] {
    return this.list;
  }

  /**
   * Freezes and seizes every thread of every pid. On any failure everything done so far is
   * undone and the workload runs on.
   */
  static freeze(pids: readonly number[], opts: { useCgroup?: boolean } = {}): FrozenTree {
    return new FrozenTree([...pids], null).start(opts);
  }

  /**
   * Freezes the whole tree under root, including children forked and processes exited while
   * the freeze lands (a shell loop forks all the time).
   */
  static freezeTree(root: number, opts: { ownCgroup?: string | null } = {}): FrozenTree {
    return new FrozenTree(liveTree(root), root).start(opts);
  }

  private start(opts: { useCgroup?: boolean; ownCgroup?: string | null }): FrozenTree {
    try {
      this.armGuardian();
      const inPlace = opts.ownCgroup ? this.freezeInPlace(opts.ownCgroup) : false;
      if (!inPlace && opts.useCgroup !== false) this.cgroupFreeze();
      this.seizeAll();
      if (!this.cgroup) this.enterGroupStop();
      if (chan.hasSubscribers) chan.publish({ kind: 'frozen', pids: this.list, tasks: this.tasks.size, cgroup: this.cgroup });
      return this;
    } catch (err) {
      this.release();
      throw err;
    }
  }

  private armGuardian(): void {
    this.guard = new GuardEntry(`${this.pids[0]}-${Date.now()}`);
    this.writeUndo();
    this.guard.arm();
  }

  private writeUndo(): void {
    if (!this.guard) return;
    this.guard.writeUndo([
      ...(this.cgroup ? [`echo 0 > '${this.cgroup}/cgroup.freeze'`] : []),
      `for p in ${this.pids.join(' ')}; do kill -CONT $p; done`,
      ...[...this.origCgroup].map(([pid, cg]) => `echo ${pid} > '${this.cgRoot}${cg}/cgroup.procs' 2>/dev/null`),
      ...(this.cgroup && !this.inPlace ? [`rmdir '${this.cgroup}' 2>/dev/null`] : []),
    ]);
  }

  /**
   * Freezes the tree in the cgroup it already runs in, when that group is the workload's own and
   * holds exactly the tree. Moving a process between cgroups waits for an RCU grace period (10 ms
   * and more, inside the downtime); writing cgroup.freeze does not. A group that holds anything
   * else (a container's shim, a process moved in from outside) is left alone: false, and the
   * caller moves the tree into a freezer group of its own.
   */
  private freezeInPlace(dir: string): boolean {
    const members = (): number[] | null => {
      try {
        return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number).sort((a, b) => a - b);
      } catch {
        return null;
      }
    };
    const same = (a: readonly number[] | null, b: readonly number[]) => a !== null && a.length === b.length && a.every((p, i) => p === b[i]);
    const tree = () => (this.root === null ? [...this.list] : liveTree(this.root)).sort((a, b) => a - b);
    if (!existsSync(join(dir, 'cgroup.freeze')) || !same(members(), tree())) return false;
    this.cgroup = dir;
    this.inPlace = true;
    this.writeUndo();
    freezeCgroup(dir, `cgroup freeze of ${this.list.join(',')}`);
    // A child forked meanwhile was born in the group and is frozen with it; anything else thaws.
    const now = tree();
    if (!same(members(), now)) {
      thawCgroup(dir);
      this.cgroup = null;
      this.inPlace = false;
      this.writeUndo();
      return false;
    }
    this.list = this.root === null ? this.list : liveTree(this.root);
    this.state = 'frozen';
    return true;
  }

  private cgroupFreeze(): void {
    const root = cgroup2Root();
    if (!root) return;
    this.cgRoot = root;
    const dir = join(root, `ferry-ckpt-${this.list[0]}-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    this.cgroup = dir;
    for (let round = 0; ; round++) {
      for (const pid of this.list) if (!this.origCgroup.has(pid)) this.moveIn(pid);
      this.list = this.list.filter((p) => this.origCgroup.has(p));
      freezeCgroup(dir, `cgroup freeze of ${this.list.join(',')}`);
      if (this.root === null) break;
      // Everything moved in is frozen now; a child forked by a process before it moved is not.
      const now = liveTree(this.root);
      const fresh = now.filter((p) => !this.origCgroup.has(p));
      // A process that left the tree (orphaned to an outside reaper) goes back, and thaws.
      for (const [pid, cg] of this.origCgroup) {
        if (now.includes(pid)) continue;
        writeQuiet(join(root, cg, 'cgroup.procs'), String(pid));
        this.origCgroup.delete(pid);
      }
      this.list = now.filter((p) => this.origCgroup.has(p) || fresh.includes(p));
      if (fresh.length === 0) break;
      if (round > 20) throw new FerryError(ErrorCode.Conflict, `process tree of ${this.root} keeps changing while freezing; try again`, { retryable: true });
    }
    this.writeUndo();
    this.state = 'frozen';
  }

  /** Into the freezer cgroup; a process that exited meanwhile is dropped. */
  private moveIn(pid: number): void {
    try {
      this.origCgroup.set(pid, cgroupOf(pid));
      this.writeUndo();
      writeFileSync(join(this.cgroup!, 'cgroup.procs'), String(pid));
    } catch (err) {
      this.origCgroup.delete(pid);
      if (!isGone(pid)) throw err;
    }
  }

  /** Seizes every thread; repeats until the task lists stop changing (threads born before the freeze landed). */
  private seizeAll(): void {
    for (let round = 0; ; round++) {
      let added = 0;
      for (const pid of this.pids) {
        for (const tid of listTasks(pid)) {
          if (this.tasks.has(tid)) continue;
          seize(tid, PTO.TRACESYSGOOD);
          this.tasks.set(tid, pid);
          interrupt(tid);
          const s = waitStop(tid, 2000);
          if (s.exited || s.signaled) {
            this.tasks.delete(tid);
            continue;
          }
          added++;
        }
      }
      if (added === 0) break;
      if (round > 50) throw new FerryError(ErrorCode.Internal, 'tasks keep appearing while seizing');
    }
    if (this.state === 'running') this.state = 'frozen';
  }

  /**
   * From ptrace-stop under the freezer to a SIGSTOP group-stop with the cgroup thawed, where
   * injected syscalls run. No user code runs on the way: a pending SIGSTOP is handled on the
   * return to user mode before anything else.
   */
  enterGroupStop(): void {
    if (this.state === 'group-stopped') return;
    for (const pid of this.pids) killPid(pid, SIGSTOP);
    if (this.cgroup) writeFileSync(join(this.cgroup, 'cgroup.freeze'), '0');
    const pending = new Set(this.tasks.keys());
    for (const tid of pending) cont(tid);
    const deadline = performance.now() + 5000;
    while (pending.size > 0) {
      for (const tid of [...pending]) {
        let s;
        try {
          s = waitStop(tid, 1);
        } catch (err) {
          if (err instanceof FerryError && err.code === ErrorCode.Timeout) continue;
          throw err;
        }
        if (s.exited || s.signaled) {
          // A thread that was already on its way out (a worker being joined) finishes exiting once
          // the cgroup thaws: it is simply not part of the checkpoint. A whole process is.
          if (tid !== this.tasks.get(tid) && s.exited) {
            this.tasks.delete(tid);
            pending.delete(tid);
            continue;
          }
          throw new FerryError(ErrorCode.Internal, `task ${tid} died while stopping`, { details: { tid } });
        }
        if (s.event === PTEV.STOP && (s.sig === SIGSTOP || s.sig === 20 || s.sig === 21 || s.sig === 22)) pending.delete(tid);
        else if (s.event === PTEV.STOP) cont(tid);
        else cont(tid, s.sig); // signal-delivery stop: deliver (SIGSTOP starts the group stop)
      }
      if (performance.now() > deadline) throw new FerryError(ErrorCode.Timeout, `tasks ${[...pending].join(',')} did not reach group-stop`);
    }
    this.state = 'group-stopped';
    if (chan.hasSubscribers) chan.publish({ kind: 'group-stopped', tasks: this.tasks.size });
  }

  /** Lets the workload run on as before: detach, thaw, SIGCONT, back to its own cgroup. Never throws. */
  release(): void {
    if (this.state === 'released' || this.state === 'killed') return;
    this.detachAll();
    this.thawCgroup();
    this.signalAll(SIGCONT);
    this.leaveCgroup();
    this.state = 'released';
    if (chan.hasSubscribers) chan.publish({ kind: 'released', pids: this.pids });
  }

  /** Ends the checkpointed workload (its image now carries it). Never throws. */
  kill(): void {
    if (this.state === 'released' || this.state === 'killed') return;
    this.detachAll();
    this.signalAll(SIGKILL);
    this.thawCgroup();
    this.state = 'killed';
    this.leaveCgroup();
  }

  /** Stops tracing every task; one already running or gone is skipped. */
  private detachAll(): void {
    for (const tid of this.tasks.keys()) {
      try {
        detach(tid);
      } catch {
        // not stopped (already running) or gone
      }
    }
    this.tasks.clear();
  }

  private thawCgroup(): void {
    if (this.cgroup) thawCgroup(this.cgroup);
  }

  private signalAll(sig: number): void {
    signalQuiet(this.pids, sig);
  }

  private leaveCgroup(): void {
    if (this.inPlace) {
      // The group is the workload's: whoever removes it next finds it empty once the killed are gone.
      if (this.state === 'killed' && this.cgroup) waitEmpty(this.cgroup);
      this.cgroup = null;
    }
    if (this.cgroup && this.cgRoot) {
      for (const [pid, cg] of this.origCgroup) writeQuiet(join(this.cgRoot, cg, 'cgroup.procs'), String(pid));
      removeCgroup(this.cgroup);
      this.cgroup = null;
    }
    this.guard?.remove();
    this.guard = null;
  }

  /**
   * From here on the agent's death no longer thaws the workload: a migration past its freeze
   * must not let the source run on by itself while a destination may commit. The caller
   * persists the returned record first, then calls this, so that no instant is unrecorded.
   */
  heldFreeze(): HeldFreeze {
    return {
      pids: [...this.pids],
      cgroup: this.cgroup,
      origCgroups: Object.fromEntries([...this.origCgroup].map(([pid, cg]) => [String(pid), cg])),
      cgroupRoot: this.cgRoot,
      ...(this.inPlace ? { inPlace: true } : {}),
    };
  }

  /** Disarms the guardian (see heldFreeze). */
  holdOnAgentDeath(): void {
    this.guard?.disarm();
  }

  /** The cgroup (v2 path) a process was in before the freeze moved it. */
  originalCgroup(pid: number): string | undefined {
    return this.origCgroup.get(pid);
  }

  get cgroupDir(): string | null {
    return this.cgroup;
  }
}


/** Rollback by a restarted agent: the held workload runs on as before. Never throws. */
export function releaseHeld(h: HeldFreeze): void {
  if (h.cgroup) thawCgroup(h.cgroup);
  signalQuiet(h.pids, SIGCONT);
  if (h.cgroupRoot) for (const [pid, cg] of Object.entries(h.origCgroups)) writeQuiet(join(h.cgroupRoot, cg, 'cgroup.procs'), pid);
  if (!h.inPlace) removeCgroup(h.cgroup);
}

/** After commit, by a restarted agent: the held original ends. Never throws. */
export function killHeld(h: HeldFreeze): void {
  signalQuiet(h.pids, SIGKILL);
  if (h.cgroup) thawCgroup(h.cgroup);
  if (!h.inPlace) removeCgroup(h.cgroup);
  else if (h.cgroup) waitEmpty(h.cgroup);
}

/** Freezes a cgroup v2 and waits until every task in it is frozen (`what` names it in the timeout error). */
export function freezeCgroup(dir: string, what = `cgroup ${dir}`, timeoutMs = 2000): void {
  writeFileSync(join(dir, 'cgroup.freeze'), '1');
  const deadline = performance.now() + timeoutMs;
  while (!/^frozen 1$/m.test(readFileSync(join(dir, 'cgroup.events'), 'utf8'))) {
    if (performance.now() > deadline) throw new FerryError(ErrorCode.Timeout, `${what} did not complete`);
    nap(0.05);
  }
}

/** Thaws a cgroup v2. Never throws. */
export const thawCgroup = (dir: string): void => writeQuiet(join(dir, 'cgroup.freeze'), '0');

function writeQuiet(file: string, v: string): void {
  try {
    writeFileSync(file, v);
  } catch {
    // the cgroup or the task is gone already
  }
}

/** Signals each pid; one that is gone is skipped. */
export function signalQuiet(pids: readonly number[], sig: number): void {
  for (const pid of pids) {
    try {
      killPid(pid, sig);
    } catch {
      // gone
    }
  }
}

/** Waits (bounded, as removeCgroup) until killed tasks have left a cgroup: they do so asynchronously. */
function waitEmpty(dir: string): void {
  for (let i = 0; i < 200; i++) {
    try {
      if (readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim() === '') return;
    } catch {
      return; // gone
    }
    nap(2);
  }
}

function removeCgroup(dir: string | null): void {
  if (!dir) return;
  for (let i = 0; i < 200; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      nap(2); // dying tasks leave the cgroup asynchronously
    }
  }
}
