// The destination's post-copy (docs/postcopy.md): the workload runs, and every page it lacks is
// registered with a userfaultfd the agent holds (engine/memory/postcopy-husk.ts). A fault asks
// the source for its page on the faults channel, which nothing else uses, so a demand page never
// queues behind the background push that fills everything else over the migration's stream.
// Whatever arrives first is put in place with UFFDIO_COPY (which also wakes the threads waiting
// on it); what the workload threw away meanwhile (madvise, munmap) is never filled with the
// source's stale copy (postcopy-pages.ts).
//
// Losing the source or the link before the last page leaves a workload that cannot go on: it is
// killed at once (its cgroup), not left hanging on a fault. So that the agent's own death cannot
// turn missing pages into zeros (the kernel fills a registration nobody holds any more with
// zeros), a keeper process holds a copy of every userfaultfd and kills the workload if the agent
// dies first.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { PostcopyFigures } from '../../shared/migration.ts';
import { PAGE, type Span } from '../engine/memory/dirty/types.ts';
import { SyscallError, closeFd, pollReadable, readFd } from '../ffi/syscalls.ts';
import { type FillResult, UFFD_MSG_BYTES, parseUffdMessage, uffdCopy, uffdWake, uffdZero } from '../ffi/uffd.ts';
import type { PageSink } from '../transfer/page-sinks.ts';
import { PageReceiver } from '../transfer/page-receiver.ts';
import type { DataConnection } from '../transfer/stream.ts';
import { MissingPages } from './postcopy-pages.ts';
import { readBackup } from './postcopy-backup.ts';

/** One restored process's registration: its uffd, whose pages (by the source's pid) it waits for. */
export interface PostcopyTarget {
  fd: number;
  /** The source host's pid of the process the pages come from (a forked child's is its parent's). */
  sourcePid: number;
  pages: MissingPages;
}

export interface PostcopyDestinationOptions {
  targets: PostcopyTarget[];
  migrationId: string;
  /** Per source pid, the pages outstanding at the resume, sorted (how a backup on shared storage is laid out). */
  origin: ReadonlyMap<number, readonly Span[]>;
  /** The workload's cgroup directory here: killed whole when post-copy cannot finish. */
  cgroupDir: string;
}

/** The migration's stream (the background push arrives there, the figures go back on it) and its faults channel. */
export interface PostcopyChannels {
  push: DataConnection;
  faults: DataConnection;
}

const EAGAIN = 11;

/** How many pages a fault asks for: the one it needs and what follows it (the source sends what it holds of them). */
const FAULT_PAGES = 16;
/** How long a poll of the uffds waits before it looks for new ones (forked children). */
const POLL_MS = 100;

export class PostcopyDestination {
  readonly #targets: PostcopyTarget[];
  /** uffd -> the keeper process holding a copy of it. */
  readonly #keepers = new Map<number, number>();
  /** Source page (`pid:addr`) -> when its fault asked for it. */
  readonly #asked = new Map<string, number>();
  readonly #latencies: number[] = [];
  readonly #msg = Buffer.alloc(UFFD_MSG_BYTES * 64);
  #stopped = false;
  #pushEnded = false;
  #t0 = performance.now();
  #lastPageAt = 0;
  readonly #f = { demandFaults: 0, zeroFaults: 0, pagesPushed: 0, pagesFetched: 0, pagesDropped: 0, pagesFromBackup: 0 };
  /** Where the source wrote what post-copy still had to carry (--postcopy-backup), or null. */
  #backup: string | null = null;
  /** Taking the rest from the backup: the channels' failures no longer matter. */
  #recovering = false;
  readonly #pagesOutstanding: number;
  #resolve!: (f: PostcopyFigures) => void;
  #reject!: (e: Error) => void;
  /** Settles once every page arrived (the figures), or when post-copy failed (the workload was killed). */
  readonly done: Promise<PostcopyFigures>;

  constructor(private readonly o: PostcopyDestinationOptions) {
    this.#targets = [...o.targets];
    this.#pagesOutstanding = o.targets.reduce((a, t) => a + t.pages.size, 0);
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.done.catch(() => undefined);
    for (const t of this.#targets) this.#keep(t.fd);
  }

  #ch: PostcopyChannels | null = null;

  get #c(): PostcopyChannels {
    if (!this.#ch) throw new FerryError(ErrorCode.Internal, 'post-copy has not started');
    return this.#ch;
  }

  /** Starts serving faults and taking the push (the workload may run from now on). */
  start(ch: PostcopyChannels, backup: string | null = null): void {
    this.#ch = ch;
    this.#backup = backup;
    this.#t0 = performance.now();
    // The source pushes only from now on: during the switchover the CPU and the link are the restore's.
    ch.faults.send({ t: 'postcopy-resumed' }).catch((err: unknown) => this.#lose(err));
    void this.#pollLoop().catch((err: unknown) => this.#lose(err));
    void this.#faultReplies().catch((err: unknown) => this.#lose(err));
    void this.#takePush().catch((err: unknown) => this.#lose(err));
  }

  get remaining(): number {
    return this.#targets.reduce((a, t) => a + t.pages.size, 0);
  }

  /** A process holding a copy of `fd` that kills the workload if this agent dies before post-copy ends. */
  #keep(fd: number): void {
    // $1: this agent's pid, $2: the workload's cgroup.kill (arguments, never parsed as script).
    const script = 'while kill -0 "$1" 2>/dev/null; do sleep 0.05 3<&-; done; echo 1 > "$2"';
    const child = spawn('sh', ['-c', script, 'ferry-postcopy-keeper', String(process.pid), path.join(this.o.cgroupDir, 'cgroup.kill')], { stdio: ['ignore', 'ignore', 'ignore', fd], detached: true });
    child.on('error', () => undefined);
    child.unref();
    if (child.pid) this.#keepers.set(fd, child.pid);
  }

  /** A process that is gone (exited, or exec'd another program): nothing of it waits for a page any more. */
  #drop(t: PostcopyTarget): void {
    const i = this.#targets.indexOf(t);
    if (i < 0) return;
    this.#targets.splice(i, 1);
    this.#f.pagesDropped += t.pages.size;
    for (const src of t.pages.sources()) t.pages.delete(t.pages.currentOf(src)!);
    const keeper = this.#keepers.get(t.fd);
    this.#keepers.delete(t.fd);
    if (keeper !== undefined) killQuietly(keeper);
    try {
      closeFd(t.fd);
    } catch {
      // closed already
    }
    this.#checkDone();
  }

  async #pollLoop(): Promise<void> {
    while (!this.#stopped) {
      const ready = await pollReadable(
        this.#targets.map((t) => t.fd),
        POLL_MS,
      );
      if (this.#stopped) return;
      for (const fd of ready) {
        const t = this.#targets.find((x) => x.fd === fd);
        if (t) this.#drain(t);
      }
    }
  }

  /** Reads every message waiting on a target's uffd (events first change the sets, then faults are answered). */
  #drain(t: PostcopyTarget): void {
    for (;;) {
      let n: number;
      try {
        n = readFd(t.fd, this.#msg);
      } catch (err) {
        if (err instanceof SyscallError && err.errno === EAGAIN) return;
        throw err;
      }
      if (n <= 0) return;
      for (let off = 0; off + UFFD_MSG_BYTES <= n; off += UFFD_MSG_BYTES) this.#onMessage(t, this.#msg, off);
    }
  }

  #onMessage(t: PostcopyTarget, b: Buffer, off: number): void {
    const m = parseUffdMessage(b, off);
    switch (m.event) {
      case 'fault':
        return this.#fault(t, Math.floor(m.address / PAGE) * PAGE);
      case 'fork': {
        const child: PostcopyTarget = { fd: m.fd, sourcePid: t.sourcePid, pages: t.pages.clone() };
        this.#targets.push(child);
        this.#keep(child.fd);
        return;
      }
      case 'remap':
        t.pages.remap(m.from, m.to, m.len);
        // A thread waiting on a page that moved faults again where it is now.
        return this.#wake(t, m.from, m.from + m.len);
      case 'remove':
      case 'unmap': {
        const before = t.pages.size;
        t.pages.removeRange(m.start, m.end);
        this.#f.pagesDropped += before - t.pages.size;
        // A thread waiting on a page thrown away faults again, and finds it reads as zeros (or is gone).
        this.#wake(t, m.start, m.end);
        return this.#checkDone();
      }
      default:
        throw new FerryError(ErrorCode.Internal, `post-copy: unexpected userfaultfd event 0x${m.code.toString(16)}`);
    }
  }

  #wake(t: PostcopyTarget, start: number, end: number): void {
    try {
      uffdWake(t.fd, start, end - start);
    } catch {
      // nothing registered there any more: nobody waits on it
    }
  }

  #fault(t: PostcopyTarget, page: number): void {
    const src = t.pages.sourceOf(page);
    if (src === undefined) {
      // Never held at the source (or it arrived meanwhile: then only the waiters need waking).
      const r = this.#fill(t, () => uffdZero(t.fd, page, PAGE));
      if (r === 'exists') uffdWake(t.fd, page, PAGE);
      else if (r === 'filled') this.#f.zeroFaults++;
      return;
    }
    this.#f.demandFaults++;
    const key = `${t.sourcePid}:${src}`;
    if (this.#asked.has(key)) return;
    this.#asked.set(key, performance.now());
    this.#c.faults.send({ t: 'fault', pid: t.sourcePid, addr: src.toString(16), pages: FAULT_PAGES }).catch((err: unknown) => this.#lose(err));
  }

  /** Fills once; EAGAIN (the workload's mappings changing) reads that target's events first, then again. */
  #fill(t: PostcopyTarget, op: () => FillResult): FillResult {
    for (let i = 0; i < 100; i++) {
      const r = op();
      if (r !== 'again') return r;
      this.#drain(t);
    }
    throw new FerryError(ErrorCode.Internal, 'post-copy: the workload kept changing its mappings under a page fill');
  }

  /**
   * The source's page at `src` into one process, if it still waits for it; a process that is
   * gone drops out. Returns what the fill did ('none': it did not wait for that page).
   */
  #copyInto(t: PostcopyTarget, src: number, data: Buffer): FillResult | 'none' {
    const cur = t.pages.currentOf(src);
    if (cur === undefined) return 'none';
    const r = this.#fill(t, () => uffdCopy(t.fd, cur, data));
    if (r === 'dead') this.#drop(t);
    // Re-read: the events drained by a retry may have dropped or moved it.
    else t.pages.delete(t.pages.currentOf(src) ?? cur);
    if (r === 'filled') this.#lastPageAt = performance.now();
    return r;
  }

  /** The source's page at (sourcePid, src) into every process still waiting for it. */
  #deliver(sourcePid: number, src: number, data: Buffer, how: 'pushed' | 'fetched'): void {
    for (const t of [...this.#targets]) {
      if (t.sourcePid !== sourcePid || this.#copyInto(t, src, data) !== 'filled') continue;
      if (how === 'pushed') this.#f.pagesPushed++;
      else this.#f.pagesFetched++;
    }
    const key = `${sourcePid}:${src}`;
    const at = this.#asked.get(key);
    if (at !== undefined) {
      this.#asked.delete(key);
      this.#latencies.push(performance.now() - at);
    }
  }

  async #faultReplies(): Promise<void> {
    const conn = this.#c.faults;
    for (;;) {
      const f = await conn.next();
      if (this.#stopped) return;
      if (!f) throw new FerryError(ErrorCode.Unavailable, 'post-copy: the source closed the faults channel');
      if (f.header.t === 'error') throw new FerryError(ErrorCode.Unavailable, `post-copy: the source failed: ${f.header.message}`);
      if (f.header.t !== 'fault-pages') throw new FerryError(ErrorCode.BadMessage, `post-copy faults channel: unexpected "${f.header.t}"`);
      const { pid, pages } = f.header;
      const addr = parseInt(f.header.addr, 16);
      if (f.payload.length !== pages * PAGE) throw new FerryError(ErrorCode.BadMessage, `post-copy: ${f.payload.length} bytes for ${pages} pages`);
      for (let i = 0; i < pages; i++) this.#deliver(pid, addr + i * PAGE, f.payload.subarray(i * PAGE, (i + 1) * PAGE), 'fetched');
      this.#checkDone();
    }
  }

  async #takePush(): Promise<void> {
    const sink: PageSink = {
      write: (pid, addr, data) => {
        for (let off = 0; off < data.length; off += PAGE) this.#deliver(pid, addr + off, data.subarray(off, off + PAGE), 'pushed');
      },
      zero: (pid, addr, n) => {
        for (let i = 0; i < n; i++) {
          const src = addr + i * PAGE;
          for (const t of [...this.#targets]) {
            const cur = t.sourcePid === pid ? t.pages.currentOf(src) : undefined;
            if (cur === undefined) continue;
            if (this.#fill(t, () => uffdZero(t.fd, cur, PAGE)) === 'dead') {
              this.#drop(t);
              continue;
            }
            t.pages.delete(t.pages.currentOf(src) ?? cur);
            this.#f.pagesPushed++;
          }
        }
      },
    };
    const receiver = new PageReceiver(this.#c.push, sink);
    while (await receiver.receiveRound()) this.#checkDone();
    this.#pushEnded = true;
    // Pages the push left to a fault that is still on its way, or a forked child's: asked for now.
    for (const t of this.#targets)
      for (const src of t.pages.sources()) {
        const key = `${t.sourcePid}:${src}`;
        if (this.#asked.has(key)) continue;
        this.#asked.set(key, performance.now());
        await this.#c.faults.send({ t: 'fault', pid: t.sourcePid, addr: src.toString(16), pages: 1 });
      }
    this.#checkDone();
  }

  #checkDone(): void {
    if (this.#stopped || !this.#pushEnded || this.remaining > 0) return;
    const figures = this.#figures();
    this.#stop();
    this.#c.push.send({ t: 'postcopy-done', figures }).then(
      () => this.#resolve(figures),
      () => this.#resolve(figures),
    );
  }

  #figures(): PostcopyFigures {
    const l = [...this.#latencies].sort((a, b) => a - b);
    const at = (q: number) => Math.round(l[Math.min(l.length - 1, Math.floor(q * l.length))]! * 1000) / 1000;
    return {
      pagesOutstanding: this.#pagesOutstanding,
      ...this.#f,
      faultLatencyMs: l.length > 0 ? { median: at(0.5), p99: at(0.99), max: at(1) } : null,
      bytesPushed: this.#f.pagesPushed * PAGE,
      bytesFetched: this.#f.pagesFetched * PAGE,
      lastPageMs: Math.round(Math.max(0, (this.#lastPageAt || performance.now()) - this.#t0) * 10) / 10,
    };
  }

  /** Every registration ends (the keepers first, then the agent's own uffds): the workload runs on its own. */
  #stop(): void {
    this.#stopped = true;
    for (const pid of this.#keepers.values()) killQuietly(pid);
    this.#keepers.clear();
    for (const t of this.#targets) {
      try {
        closeFd(t.fd);
      } catch {
        // closed already
      }
    }
  }

  /**
   * The source or the link is gone: with a backup on shared storage, every page still missing is
   * taken from there (checked against its manifest first); else the workload cannot go on.
   */
  #lose(err: unknown): void {
    if (this.#stopped || this.#recovering) return;
    if (this.#backup) {
      this.#recovering = true;
      this.#ch?.push.destroy();
      this.#ch?.faults.destroy();
      try {
        this.#fromBackup(this.#backup);
      } catch (e) {
        this.#recovering = false;
        this.#backup = null;
        this.#kill(new FerryError(ErrorCode.Unavailable, `${FerryError.from(err).message}; its backup on shared storage failed too: ${FerryError.from(e).message}`));
        return;
      }
      const figures = this.#figures();
      this.#stop();
      this.#resolve(figures);
      return;
    }
    this.#kill(err);
  }

  #fromBackup(dir: string): void {
    const readers = new Map<number, (addr: number) => Buffer | undefined>();
    for (const t of [...this.#targets]) {
      if (t.pages.size === 0) continue;
      let read = readers.get(t.sourcePid);
      if (!read) readers.set(t.sourcePid, (read = readBackup(dir, this.o.migrationId, t.sourcePid, this.o.origin.get(t.sourcePid) ?? [])));
      for (const src of t.pages.sources()) {
        const data = read(src);
        if (!data) throw new FerryError(ErrorCode.BadImage, `post-copy backup: page ${src.toString(16)} of process ${t.sourcePid} is not in it`);
        const r = this.#copyInto(t, src, data);
        if (r === 'dead') break;
        if (r === 'filled') this.#f.pagesFromBackup++;
      }
    }
    this.#asked.clear();
  }

  /** Post-copy cannot finish: the workload is killed before it can use a page it does not have. */
  #kill(err: unknown): void {
    if (this.#stopped) return;
    try {
      writeFileSync(path.join(this.o.cgroupDir, 'cgroup.kill'), '1');
    } catch {
      // no cgroup.kill (the keepers' and the uffds' end below still leaves no thread waiting on a page forever)
    }
    this.#stop();
    this.#ch?.push.destroy();
    this.#ch?.faults.destroy();
    const e = FerryError.from(err);
    this.#reject(new FerryError(ErrorCode.Unavailable, `post-copy lost its source after the workload resumed here (${e.message}): the workload was killed, it cannot run without the ${this.remaining} pages its source held`, { cause: err }));
  }

  /** Rollback before the resume: the registrations and keepers go (the tree dies with the discard). */
  discard(): void {
    this.#stop();
    this.#ch?.push.destroy();
    this.#ch?.faults.destroy();
    this.#reject(new FerryError(ErrorCode.Cancelled, 'post-copy discarded (rolled back before the resume)'));
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}
