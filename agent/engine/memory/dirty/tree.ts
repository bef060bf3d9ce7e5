// Dirty tracking of a whole process tree: one tracker per process (uffd-wp where possible,
// hashing where not), processes joining (fork) and leaving (exit) between rounds, and a
// process whose memory is replaced (exec) or taken by its own userfaultfd handed to a new
// tracker, whose first scan sends it whole.
import diagnostics_channel from 'node:diagnostics_channel';
import { closeFd, pidfdOpen, sys } from '../../../ffi/syscalls.ts';
import { treeOf } from '../../preflight.ts';
import { isGone } from '../../process/procfs.ts';
import { type MethodRequest, type Opened, type TrackerPlan, defaultPlan, openTrackers } from './choose.ts';
import { HashTracker } from './hash.ts';
import { UffdLost } from './uffd.ts';
import { type DirtyRound, type DirtyTracker, type MethodChoice, type ProcessDirty, pagesOf } from './types.ts';

const chan = diagnostics_channel.channel('ferry:dirty');
const KCMP_VM = 1;

export interface TrackOptions {
  /** 'auto' (default): uffd-wp where it works, else hashing; a named method is strict for uffd-wp. */
  method?: MethodRequest;
  /** Precomputed plan (tests, or an agent that probed once). */
  plan?: TrackerPlan;
}

interface Tracked extends Opened {
  /** Pins the process's identity: a reused pid is not the process we track. */
  pidfd: number;
}

export class TreeTracker implements DirtyTracker {
  private readonly procs = new Map<number, Tracked>();
  /** Processes not tracked on their own: they share another's memory (CLONE_VM), which is tracked. */
  readonly sharing = new Map<number, number>();
  private rounds = 0;
  private stopped = false;

  private constructor(
    readonly root: number,
    readonly plan: TrackerPlan,
    private readonly request: MethodRequest,
  ) {}

  /**
   * Starts tracking every process of the tree now (writes from here on are seen). The first
   * round reports every page that holds data.
   */
  static start(root: number, opts: TrackOptions = {}): TreeTracker {
    const t = new TreeTracker(root, opts.plan ?? defaultPlan(), opts.method ?? 'auto');
    try {
      t.adopt(t.discover(), true);
    } catch (err) {
      t.stop();
      throw err;
    }
    return t;
  }

  get methods(): ReadonlyMap<number, MethodChoice> {
    return new Map([...this.procs].map(([pid, p]) => [pid, p.choice]));
  }

  async round(opts: { allowInject?: boolean } = {}): Promise<DirtyRound> {
    const t0 = performance.now();
    const allowInject = opts.allowInject ?? true;
    const exited: number[] = [];
    for (const [pid, p] of this.procs) {
      if (this.alive(pid, p)) continue;
      this.drop(pid);
      exited.push(pid);
    }
    for (const pid of this.sharing.keys()) if (isGone(pid)) this.sharing.delete(pid);
    this.adopt(this.discover(), allowInject);
    const processes: ProcessDirty[] = [];
    for (const [pid, p] of [...this.procs]) {
      const d = await this.scanOne(pid, p, allowInject);
      if (d) processes.push(d);
      else exited.push(pid);
    }
    const round: DirtyRound = {
      round: ++this.rounds,
      processes,
      exited,
      pagesScanned: processes.reduce((a, d) => a + d.pagesScanned, 0),
      pagesDirty: processes.reduce((a, d) => a + pagesOf(d.runs), 0),
      zeroPages: processes.reduce((a, d) => a + pagesOf(d.runs, true), 0),
      scanMs: performance.now() - t0,
    };
    if (chan.hasSubscribers)
      chan.publish({ kind: 'round', root: this.root, round: round.round, pagesScanned: round.pagesScanned, pagesDirty: round.pagesDirty, zeroPages: round.zeroPages, scanMs: round.scanMs, exited });
    return round;
  }

  /** One process's scan; its tracker is replaced when it can no longer go on. Null: the process is gone. */
  private async scanOne(pid: number, p: Tracked, allowInject: boolean): Promise<ProcessDirty | null> {
    try {
      return await p.tracker.scan();
    } catch (err) {
      if (!this.alive(pid, p)) {
        this.drop(pid);
        return null;
      }
      if (!(err instanceof UffdLost)) throw err;
      p.tracker.stop();
      let next: Opened;
      if (err.why === 'mm-gone') {
        // exec: a fresh mm, so a fresh tracker (with a new injection when allowed).
        next = openTrackers([pid], this.plan, { request: this.request === 'uffd-wp' ? 'auto' : this.request, allowInject }).get(pid)!;
      } else {
        next = { tracker: new HashTracker(pid, { pagemapScan: this.plan.hash.pagemapScan }), choice: { method: 'hash', reason: `${err.message}; using ${this.plan.hash.reason}` } };
      }
      if (chan.hasSubscribers) chan.publish({ kind: 'retrack', pid, why: err.why, method: next.choice.method });
      this.procs.set(pid, { ...next, pidfd: p.pidfd });
      return next.tracker.scan();
    }
  }

  /** The root's tree, plus the descendants of every tracked process (re-parented ones included). */
  private discover(): number[] {
    const out = new Set(treeOf(this.root));
    for (const pid of this.procs.keys()) if (!out.has(pid)) for (const q of treeOf(pid)) out.add(q);
    return [...out].filter((pid) => !isGone(pid));
  }

  private adopt(pids: readonly number[], allowInject: boolean): void {
    const fresh: number[] = [];
    for (const pid of pids) {
      if (this.procs.has(pid) || this.sharing.has(pid)) continue;
      const twin = [...this.procs.keys(), ...fresh].find((q) => sameMm(pid, q));
      if (twin !== undefined) this.sharing.set(pid, twin);
      else fresh.push(pid);
    }
    if (fresh.length === 0) return;
    const pidfds = new Map<number, number>();
    for (const pid of fresh) {
      try {
        pidfds.set(pid, pidfdOpen(pid));
      } catch {
        // exited already
      }
    }
    const opened = openTrackers([...pidfds.keys()], this.plan, { request: this.request, allowInject });
    for (const [pid, o] of opened) {
      this.procs.set(pid, { ...o, pidfd: pidfds.get(pid)! });
      if (chan.hasSubscribers) chan.publish({ kind: 'track', pid, method: o.choice.method, reason: o.choice.reason });
    }
  }

  private alive(pid: number, p: Tracked): boolean {
    try {
      sys('pidfd_send_signal', p.pidfd, 0, 0, 0);
    } catch {
      return false;
    }
    return !isGone(pid);
  }

  private drop(pid: number): void {
    const p = this.procs.get(pid);
    if (!p) return;
    p.tracker.stop();
    closeFd(p.pidfd);
    this.procs.delete(pid);
    for (const [q, twin] of this.sharing) if (twin === pid || q === pid) this.sharing.delete(q);
  }

  noteSent(pid: number, addr: number, data: Buffer): void {
    this.procs.get(pid)?.tracker.noteSent(addr, data);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const pid of [...this.procs.keys()]) this.drop(pid);
  }
}

function sameMm(a: number, b: number): boolean {
  try {
    return sys('kcmp', a, b, KCMP_VM, 0, 0) === 0;
  } catch {
    return false;
  }
}

/** Starts tracking a process tree: the entry point the migration path calls. */
export const trackTree = (root: number, opts: TrackOptions = {}): TreeTracker => TreeTracker.start(root, opts);
