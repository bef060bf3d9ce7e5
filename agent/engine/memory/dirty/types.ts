// What a dirty-page tracker reports. Addresses are numbers (user addresses stay below 2^47, far
// inside a double's 2^53): the per-round hot loops avoid BigInt.

export const PAGE = 4096;

/** How the pages a process wrote are found. */
export type TrackMethod = 'uffd-wp' | 'hash';

/** Pages [addr, addr + pages*PAGE) to send: their current content (`data`), or zeros (`zero`, costs only the address). */
export interface DirtyRun {
  addr: number;
  pages: number;
  zero: boolean;
}

export interface Span {
  start: number;
  end: number;
}

/** A mapping the tracker follows; non-present pages of a file-backed one hold file data, not zeros. */
export interface TrackedRange extends Span {
  file: boolean;
}

/** One process's pages to send this round, sorted by address and non-overlapping. */
export interface ProcessDirty {
  pid: number;
  method: TrackMethod;
  /** The tracked (writable private) mappings at this round's scan. */
  ranges: TrackedRange[];
  runs: DirtyRun[];
  /** Pages the scan examined: every tracked page for uffd-wp, every present page hashed for hashing. */
  pagesScanned: number;
}

export interface DirtyRound {
  /** 1-based; round 1 reports every page that holds data (and zero runs for the rest). */
  round: number;
  processes: ProcessDirty[];
  /** Processes that exited since the previous round (the receiver may drop them). */
  exited: number[];
  /** Scanned with the workload frozen: the last delta of a migration. */
  frozen?: boolean;
  pagesScanned: number;
  /** Data pages plus zero pages reported. */
  pagesDirty: number;
  zeroPages: number;
  scanMs: number;
}

/** How a process is tracked and why that method (the reasons the better ones were refused). */
export interface MethodChoice {
  method: TrackMethod;
  reason: string;
}

/**
 * Dirty-page tracking of a process tree, round by round. The guarantee: once the tree is stopped,
 * a receiver that applied every round's runs in order holds, for every tracked range of the last
 * round, exactly the process's memory.
 */
export interface DirtyTracker {
  readonly root: number;
  /** Method per tracked pid, with the reason it was chosen. */
  readonly methods: ReadonlyMap<number, MethodChoice>;
  /** Scans every process of the tree; the caller sends the runs before the next round. */
  round(opts?: { allowInject?: boolean }): Promise<DirtyRound>;
  /** The sender tells what it actually sent (content trackers key their state on it). */
  noteSent(pid: number, addr: number, data: Buffer): void;
  /** Releases everything; the processes run at full speed again. */
  stop(): void;
}

/** One process's tracker; the tree tracker drives one per process. */
export interface ProcessTracker {
  readonly pid: number;
  readonly method: TrackMethod;
  scan(): Promise<ProcessDirty>;
  noteSent(addr: number, data: Buffer): void;
  stop(): void;
}

export const pagesOf = (runs: readonly DirtyRun[], zero?: boolean): number =>
  runs.reduce((a, r) => a + (zero === undefined || r.zero === zero ? r.pages : 0), 0);
