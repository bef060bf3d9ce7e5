// Memory contents. Two checks, each where it costs least:
// - landing: every page a live migration streams is read back from the husk right after it was
//   written and compared with the bytes that arrived (which the frame's XXH3, computed on the
//   source as it read them, already vouched for): during pre-copy outside the downtime, the
//   final delta inside it. A page that landed wrong fails the migration at once.
// - image runs: pages that travelled in the image (a cold restore, or what pre-copy did not
//   carry) are read back through /proc/PID/mem (which reads PROT_NONE pages too) and their CRC32
//   compared with the run's in the image.
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import type { ProcessImage } from '../../../shared/image-format.ts';
import { fromHex } from '../../../shared/image-format.ts';
import { faultArmed } from '../../../shared/fault.ts';
import { O, closeFd, openFile, pread, pwrite, vmWrite } from '../../ffi/syscalls.ts';
import { readPages } from '../memory/dirty/read.ts';
import { PagesReader } from '../memory/memory.ts';
import { PAGE, type Span } from '../memory/dirty/types.ts';
import { Check, type ProcessRef } from './check.ts';

export interface LandingFigures {
  pages: number;
  ms: number;
}

/** FERRY_FAULT=agent:restore:corrupt-byte: one byte of one restored page is flipped, once per agent. */
let corruptOnce = faultArmed('agent:restore:corrupt-byte');
export function takeCorruptByte(): boolean {
  const armed = corruptOnce;
  corruptOnce = false;
  return armed;
}

export function flipByte(hostPid: number, addr: bigint): void {
  // /proc/PID/mem writes through read-only protections as a debugger would.
  const fd = openFile(`/proc/${hostPid}/mem`, O.RDWR | O.CLOEXEC);
  try {
    const b = Buffer.alloc(1);
    pread(fd, b, Number(addr));
    b[0] = b[0]! ^ 0xff;
    pwrite(fd, b, Number(addr));
  } finally {
    closeFd(fd);
  }
}

/** Checks pages as they land in a husk; keeps figures per round so the last one (the final delta) can be told apart. */
export class LandingCheck {
  #buf = Buffer.alloc(0);
  #round: LandingFigures = { pages: 0, ms: 0 };
  readonly rounds: LandingFigures[] = [];

  /** Called right after `data` was written at `addr` of `hostPid` (the process `pid` of the tree). */
  check(ref: ProcessRef, addr: number, data: Buffer): void {
    this.checkRuns(ref, [{ start: addr, end: addr + data.length }], data);
  }

  /** check() for several runs written at once (`data` holds them back to back): one read for all. */
  checkRuns(ref: ProcessRef, runs: readonly Span[], data: Buffer): void {
    const t = performance.now();
    if (takeCorruptByte()) vmWrite(ref.hostPid, BigInt(runs[0]!.start), Buffer.from([data[0]! ^ 0xff]));
    if (this.#buf.length < data.length) this.#buf = Buffer.alloc(data.length);
    const view = this.#buf.subarray(0, data.length);
    const ok = readPages(ref.hostPid, runs, view);
    // Almost always every page landed as sent: one comparison of the whole batch says so.
    if (view.equals(data) && ok.every((b) => b === 1)) {
      this.#round.pages += ok.length;
      this.#round.ms += performance.now() - t;
      return;
    }
    const addrOf = pageAddresses(runs);
    let pages = 0;
    for (let i = 0; i < ok.length; i++) {
      // A page that could not be written could not be read either: the tolerant sink counted it as skipped.
      if (!ok[i]) continue;
      const o = i * PAGE;
      if (view.compare(data, o, o + PAGE, o, o + PAGE) !== 0) {
        const at = addrOf(i);
        const diff = firstDiff(data.subarray(o, o + PAGE), view.subarray(o, o + PAGE));
        throw mismatchError({ ...ref, resource: 'memory', field: `page 0x${at.toString(16)} byte ${diff}`, expected: `0x${data[o + diff]!.toString(16)} (crc32 ${crc32(data.subarray(o, o + PAGE)).toString(16)})`, actual: `0x${view[o + diff]!.toString(16)} (crc32 ${crc32(view.subarray(o, o + PAGE)).toString(16)})` });
      }
      pages++;
    }
    this.#round.pages += pages;
    this.#round.ms += performance.now() - t;
  }

  /** Closes the current round's figures. */
  endRound(): void {
    this.rounds.push(this.#round);
    this.#round = { pages: 0, ms: 0 };
  }
}

/** The address of the i-th page of runs laid back to back. */
function pageAddresses(runs: readonly Span[]): (i: number) => number {
  if (runs.length === 1) return (i) => runs[0]!.start + i * PAGE;
  const starts: number[] = [];
  for (const r of runs) for (let a = r.start; a < r.end; a += PAGE) starts.push(a);
  return (i) => starts[i]!;
}

function firstDiff(a: Buffer, b: Buffer): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return 0;
}

export function mismatchError(m: { pid: number; hostPid: number; resource: string; field: string; expected: string; actual: string }, more = 0): FerryError {
  return new FerryError(
    ErrorCode.VerifyMismatch,
    `verification failed: pid ${m.pid} (host pid ${m.hostPid}) ${m.resource} ${m.field}: expected ${m.expected}, found ${m.actual}${more > 0 ? ` (and ${more} more difference${more === 1 ? '' : 's'})` : ''}`,
    { details: { ...m } },
  );
}

/**
 * Bytes the kernel rewrites on its own once a thread is back: its rseq area (cpu_id_start,
 * cpu_id, node_id, mm_cid follow the CPU the restored thread runs on).
 */
export function kernelOwned(p: ProcessImage): Array<{ start: bigint; end: bigint }> {
  return p.threads.flatMap((t) => (t.rseq ? [{ start: fromHex(t.rseq.ptr), end: fromHex(t.rseq.ptr) + BigInt(t.rseq.size) }] : []));
}

/** Whether two copies of a run differ outside the kernel-owned spans. */
export function differsOutside(want: Buffer, got: Buffer, base: bigint, owned: ReadonlyArray<{ start: bigint; end: bigint }>): boolean {
  for (let i = 0; i < want.length; i++) {
    if (want[i] === got[i]) continue;
    const a = base + BigInt(i);
    if (!owned.some((o) => a >= o.start && a < o.end)) return true;
  }
  return false;
}

/**
 * Pages that travelled in the image, read back from the restored process, against the image's
 * CRC32 per run; a run whose CRC differs is compared byte by byte with the pages file, leaving
 * out what the kernel owns (kernelOwned).
 */
export function compareImageRuns(p: ProcessImage, ref: ProcessRef, dir: string | null): { check: Check; pages: number } {
  const c = new Check('memory');
  const runs = p.vmas.filter((v) => !v.precopied).flatMap((v) => v.runs);
  if (runs.length === 0) return { check: c, pages: 0 };
  c.compared('image pages (crc32)');
  const fd = openFile(`/proc/${ref.hostPid}/mem`, O.RDONLY | O.CLOEXEC);
  const owned = kernelOwned(p);
  let pages = 0;
  let buf = Buffer.alloc(0);
  try {
    for (const r of runs) {
      const len = r.pages * PAGE;
      if (buf.length < len) buf = Buffer.alloc(len);
      const view = buf.subarray(0, len);
      let got = 0;
      try {
        got = pread(fd, view, Number(fromHex(r.addr)));
      } catch {
        got = 0;
      }
      const sum = got === len ? crc32(view) : -1;
      if (sum !== r.crc32 && got === len && dir !== null && owned.length > 0) {
        const reader = new PagesReader(join(dir, p.pagesFile));
        try {
          if (!differsOutside(reader.read(r), view, fromHex(r.addr), owned)) {
            pages += r.pages;
            continue;
          }
        } finally {
          reader.close();
        }
      }
      if (sum !== r.crc32) c.differ(ref, `pages 0x${fromHex(r.addr).toString(16)}+${r.pages}`, `crc32 ${r.crc32.toString(16)}`, got === len ? `crc32 ${sum.toString(16)}` : `unreadable (${got} of ${len} bytes)`);
      pages += r.pages;
    }
  } finally {
    closeFd(fd);
  }
  return { check: c, pages };
}
