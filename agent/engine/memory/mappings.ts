// Restore of a process's address space into its husk: the husk emptied, the special mappings
// moved, the image's mappings made (cold) or reshaped from a pre-copy layout (warm), pages
// written, protections and madvise state put back, and the mm fields set. The pages themselves
// are read and written by memory.ts, the layouts planned by relayout.ts.
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { type ProcessImage, type Vma, fromHex, toHex } from '../../../shared/image-format.ts';
import { SYS } from '../../ffi/libc.ts';
import { getRseq, injectAt } from '../../ffi/ptrace.ts';
import { vmWrite } from '../../ffi/syscalls.ts';
import { type HuskProcess, MAP, OFF_ARGS, OFF_AUXV, PROT, chan, errOf } from '../process/husk-core.ts';
import { readMaps } from '../process/procfs.ts';
import { findFree, gaps } from './layout.ts';
import { PagesReader } from './memory.ts';
import { type MapSpec, planRelayout } from './relayout.ts';

export const SPECIAL_KINDS = new Set(['vdso', 'vvar', 'vvar_vclock', 'vsyscall']);
export const MOVABLE = new Set(['[vvar]', '[vvar_vclock]', '[vdso]']);

/** Mappings a live migration writes pages into: mapped writable until the final step. */
export const PRIVATE_KINDS = new Set(['anon', 'heap', 'stack', 'file-private']);

/** A warm husk's protection for a mapping: its own, plus write where pages may still arrive. */
export const warmProt = (v: { kind: string; perms: string }): number => protOf(v.perms) | (PRIVATE_KINDS.has(v.kind) ? PROT.W : 0);

/** A mapping as a pre-copy layout carries it. */
export type LayoutLike = Pick<Vma, 'start' | 'end' | 'perms' | 'kind' | 'path' | 'fileOffset'>;

/** What mapOne needs of a mapping. */
export type MappingSpec = Pick<Vma, 'start' | 'end' | 'perms' | 'kind' | 'path' | 'fileOffset' | 'shared' | 'growsDown' | 'mayWrite'>;

const mapSpec = (v: LayoutLike): MapSpec => ({ start: fromHex(v.start), end: fromHex(v.end), perms: v.perms, kind: v.kind, ...(v.path !== undefined ? { path: v.path } : {}), fileOffset: fromHex(v.fileOffset) });

export const protOf = (perms: string): number => (perms[0] === 'r' ? PROT.R : 0) | (perms[1] === 'w' ? PROT.W : 0) | (perms[2] === 'x' ? PROT.X : 0);

/**
 * Empties the husk: its own rseq, fds and mappings go (except mappings the image says it
 * inherits from its parent); the vDSO/vvar move to the image's addresses.
 */
export function clear(h: HuskProcess, vmas: readonly Pick<Vma, 'start' | 'end' | 'kind' | 'inherit'>[]): void {
  const pid = h.pid;
  const inherited = vmas.filter((v) => v.inherit).map((v) => ({ start: fromHex(v.start), end: fromHex(v.end) }));
  if (inherited.length > 0 && !h.inheritsMemory)
    throw new FerryError(ErrorCode.BadImage, `pid ${pid}: the image shares memory with its parent; only a restore that forks it from its built parent (restore()) can rebuild it`, { details: { pid } });
  const rs = getRseq(pid);
  if (rs.ptr !== 0n) h.inj(pid, 'rseq', [rs.ptr, rs.size, 1, rs.sig]);
  h.inj(pid, 'close_range', [0, h.parkBase > 0 ? h.parkBase - 1 : 0xffffffff, 0]);
  const own = readMaps(pid).filter((m) => MOVABLE.has(m.path) || m.path === '[vsyscall]' || m.start === h.scratch);
  const keep = [...own, ...inherited];
  for (const g of gaps(keep)) h.inj(pid, 'munmap', [g.start, g.end - g.start]);
  placeSpecials(h, vmas);
}

/**
 * Moves the husk's [vvar]/[vvar_vclock]/[vdso] to where the image has them (through a parking
 * spot, so a move never lands on one that has not moved yet). The image's other mappings must
 * not be in the way. Nothing moves when they are in place already.
 */
export function placeSpecials(h: HuskProcess, vmas: readonly Pick<Vma, 'start' | 'end' | 'kind'>[]): void {
  const pid = h.pid;
  const maps = readMaps(pid);
  const mine = maps.filter((m) => MOVABLE.has(m.path));
  const theirs = vmas.filter((v) => v.kind === 'vdso' || v.kind === 'vvar' || v.kind === 'vvar_vclock');
  const sig = (l: { name: string; size: bigint }[]) => l.map((x) => `${x.name}:${x.size}`).join(' ');
  if (sig(mine.map((m) => ({ name: m.path, size: m.end - m.start }))) !== sig(theirs.map((v) => ({ name: `[${v.kind}]`, size: fromHex(v.end) - fromHex(v.start) }))))
    throw new FerryError(ErrorCode.Incompatible, 'vDSO layout of this machine differs from the image', { details: { pid } });
  if (mine.every((m, i) => m.start === fromHex(theirs[i]!.start))) return;
  const lo = mine.reduce((a, m) => (m.start < a ? m.start : a), mine[0]?.start ?? 0n);
  const hi = mine.reduce((a, m) => (m.end > a ? m.end : a), 0n);
  const occupied = [...vmas.map((v) => ({ start: fromHex(v.start), end: fromHex(v.end) })), ...maps];
  const park = findFree(occupied, hi - lo);
  for (const m of mine) h.inj(pid, 'mremap', [m.start, m.end - m.start, m.end - m.start, 3, park + (m.start - lo)]);
  mine.forEach((m, i) => {
    const t = theirs[i]!;
    h.inj(pid, 'mremap', [park + (m.start - lo), m.end - m.start, m.end - m.start, 3, fromHex(t.start)]);
  });
}

/** Recreates the image's mappings, writable where content still has to be written. */
export function mapAll(h: HuskProcess, vmas: readonly Vma[]): void {
  for (const v of vmas) {
    if (SPECIAL_KINDS.has(v.kind)) continue;
    const prot = protOf(v.perms) | (v.runs.length > 0 ? PROT.W : 0);
    if (v.inherit) keepInherited(h, v, prot);
    else mapOne(h, v, prot);
  }
}

/** An inherited mapping stays (pages shared with the parent stay shared); pages the process did not have are dropped. */
function keepInherited(h: HuskProcess, v: Vma, prot: number): void {
  const start = fromHex(v.start);
  h.inj(h.pid, 'mprotect', [start, fromHex(v.end) - start, prot]);
  for (const z of v.inherit?.zero ?? []) h.inj(h.pid, 'madvise', [fromHex(z.addr), BigInt(z.pages) * 4096n, 4]); // MADV_DONTNEED
}

/** One mapping, with protection `prot`; shared memory maps the parked shared object it names. */
export function mapOne(h: HuskProcess, v: MappingSpec, prot: number): void {
  const start = fromHex(v.start);
  const len = fromHex(v.end) - start;
  if (v.kind === 'shm') {
    const slot = v.shared === undefined ? undefined : h.parked[v.shared];
    if (!slot) throw new FerryError(ErrorCode.BadImage, `shared mapping ${v.start} of pid ${h.pid} has no shared object in the image`);
    h.inj(h.pid, 'mmap', [start, len, protOf(v.perms), MAP.SHARED | MAP.FIXED, slot.r, fromHex(v.fileOffset)]);
  } else if ((v.kind === 'file-private' || v.kind === 'file-shared') && v.shared !== undefined) {
    // A deleted file: mapped from the parked unnamed file that carries its content.
    const slot = h.parked[v.shared];
    if (!slot) throw new FerryError(ErrorCode.BadImage, `mapping ${v.start} of pid ${h.pid} (deleted file) has no content in the image`);
    h.inj(h.pid, 'mmap', [start, len, prot, (v.kind === 'file-shared' ? MAP.SHARED : MAP.PRIVATE) | MAP.FIXED, slot.r, fromHex(v.fileOffset)]);
  } else if (v.kind === 'file-private' || v.kind === 'file-shared') {
    const shared = v.kind === 'file-shared';
    // A shared mapping of a file open for writing may be made writable later: open it the same way.
    const fd = h.inj(h.pid, 'open', [h.putStr(v.path ?? ''), shared && (v.perms[1] === 'w' || v.mayWrite) ? 2 : 0, 0]);
    try {
      h.inj(h.pid, 'mmap', [start, len, prot, (shared ? MAP.SHARED : MAP.PRIVATE) | MAP.FIXED, fd, fromHex(v.fileOffset)]);
    } finally {
      h.inj(h.pid, 'close', [fd]);
    }
  } else {
    const flags = MAP.PRIVATE | MAP.ANON | MAP.FIXED | (v.kind === 'stack' || v.growsDown ? MAP.GROWSDOWN : 0);
    h.inj(h.pid, 'mmap', [start, len, prot, flags, -1, 0]);
  }
}

/**
 * Warm restore: reshapes the husk from the layout it has (`current`) to `next`, keeping the
 * content of every range whose backing stays (relayout.ts); special mappings move along.
 * Shared memory is left to the final step.
 */
export function relayout(h: HuskProcess, current: readonly LayoutLike[], next: readonly LayoutLike[]): void {
  const sc = h.scratchSpan;
  const hit = next.find((v) => fromHex(v.start) < sc.end && sc.start < fromHex(v.end));
  if (hit) throw new FerryError(ErrorCode.Unsupported, `pid ${h.pid}: the workload mapped ${hit.start}-${hit.end} over the husk's scratch area`, { details: { pid: h.pid } });
  const plan = planRelayout(current.map(mapSpec), next.map(mapSpec));
  for (const u of plan.unmap) unmapRange(h, u.start, u.end);
  placeSpecials(h, next);
  for (const m of plan.map) mapOne(h, { ...m, start: toHex(m.start), end: toHex(m.end), fileOffset: toHex(m.fileOffset), kind: m.kind as Vma['kind'] }, warmProt(m));
  for (const p of plan.protect) protectRange(h, p.start, p.end, warmProt({ kind: next.find((v) => fromHex(v.start) <= p.start && p.start < fromHex(v.end))?.kind ?? 'anon', perms: p.perms }));
}

export function unmapRange(h: HuskProcess, start: bigint, end: bigint): void {
  h.inj(h.pid, 'munmap', [start, end - start]);
}

export function protectRange(h: HuskProcess, start: bigint, end: bigint, prot: number): void {
  h.inj(h.pid, 'mprotect', [start, end - start, prot]);
}

/** One range of memory straight into the husk (pre-copy rounds write here before the freeze ends). */
export function writeRange(h: HuskProcess, addr: bigint, data: Buffer): void {
  vmWrite(h.pid, addr, data);
}

export function writePages(h: HuskProcess, vmas: readonly Vma[], reader: PagesReader): void {
  for (const v of vmas) for (const run of v.runs) reader.writeInto(h.pid, run);
}

/** Puts back the protections that mapAll widened for writing. */
export function protectAll(h: HuskProcess, vmas: readonly Vma[]): void {
  for (const v of vmas) {
    if (SPECIAL_KINDS.has(v.kind) || v.runs.length === 0 || v.perms[1] === 'w') continue;
    const start = fromHex(v.start);
    h.inj(h.pid, 'mprotect', [start, fromHex(v.end) - start, protOf(v.perms)]);
  }
}

/** madvise flags that live on the mapping (fork and THP behaviour, core dumps), and guard regions. */
export function adviseAll(h: HuskProcess, vmas: readonly Vma[]): void {
  const code = { dc: 10, wf: 18, hg: 14, nh: 15, dd: 16 } as const; // DONTFORK WIPEONFORK HUGEPAGE NOHUGEPAGE DONTDUMP
  for (const v of vmas) {
    for (const g of v.guards ?? []) h.inj(h.pid, 'madvise', [fromHex(g.addr), BigInt(g.pages) * 4096n, 102]); // MADV_GUARD_INSTALL
    for (const a of v.advice ?? []) {
      const start = fromHex(v.start);
      // Best effort: e.g. HUGEPAGE is refused where THP is compiled out; the data is intact either way.
      const r = injectAt(h.pid, h.scratch, SYS.madvise, [start, fromHex(v.end) - start, code[a]]);
      if (r < 0n && chan.hasSubscribers) chan.publish({ kind: 'madvise-failed', pid: h.pid, addr: v.start, advice: a, errno: Number(-r) });
    }
  }
}

/** mm fields (code/data/brk/stack/args/env, auxv, exe) in one PR_SET_MM_MAP. */
export function setMm(h: HuskProcess, p: ProcessImage): void {
  const auxv = Buffer.from(p.auxv, 'base64');
  const auxvAddr = h.put(OFF_AUXV, auxv);
  const mm = p.mm;
  const vals = [mm.startCode, mm.endCode, mm.startData, mm.endData, mm.startBrk, mm.brk, mm.startStack, mm.argStart, mm.argEnd, mm.envStart, mm.envEnd];
  const build = (exeFd: number) => {
    const b = Buffer.alloc(104);
    vals.forEach((v, i) => b.writeBigUInt64LE(fromHex(v), i * 8));
    b.writeBigUInt64LE(auxvAddr, 88);
    b.writeUInt32LE(auxv.length, 96);
    b.writeInt32LE(exeFd, 100);
    return h.put(OFF_ARGS, b);
  };
  let exeFd = -1;
  try {
    exeFd = Number(h.inj(h.pid, 'open', [h.putStr(p.exe), 0, 0]));
  } catch {
    // exe gone or unreadable: keep the husk's exe link
  }
  try {
    const r = injectAt(h.pid, h.scratch, SYS.prctl, [35, 14, build(exeFd), 104, 0]);
    if (r < 0n && exeFd >= 0) {
      if (chan.hasSubscribers) chan.publish({ kind: 'exe-not-set', pid: h.pid, errno: Number(-r) });
      h.inj(h.pid, 'prctl', [35, 14, build(-1), 104, 0]);
    } else if (r < 0n) throw errOf('injected prctl(PR_SET_MM_MAP)', r, { pid: h.pid })!;
  } finally {
    if (exeFd >= 0) h.inj(h.pid, 'close', [exeFd]);
  }
}
