// Reading pages of a running process that may unmap them at any moment.
import { isErrno, pread, vmReadSpans } from '../../../ffi/syscalls.ts';
import { PAGE, type Span } from './types.ts';

/**
 * Reads spans into consecutive bytes of `buf` (which must hold them all). Returns, per page, 1
 * if it arrived and 0 if it could not be read (unmapped meanwhile, or past the end of a mapped
 * file): the kernel stops at the first failing page, so the read resumes one page after it.
 * A process that exited reads as nothing.
 *
 * `mem`: the process's /proc/PID/mem, read instead of process_vm_readv. process_vm_readv pins
 * what it reads, and a read-only pin of a page a process shares copy-on-write with its parent or
 * child gives the reader a private copy of it: a tree of several processes read that way would
 * grow, and its sharing could not be carried. /proc/PID/mem takes no pin (one call per span).
 */
export function readPages(pid: number, spans: readonly Span[], buf: Buffer, mem?: number): Uint8Array {
  const total = spans.reduce((a, s) => a + (s.end - s.start) / PAGE, 0);
  const ok = new Uint8Array(total);
  if (mem !== undefined && mem >= 0) return readMem(mem, spans, buf, ok);
  let spanIdx = 0;
  let at = spans[0]?.start ?? 0; // next remote address to read
  let page = 0; // index of that page in buf
  while (page < total) {
    const rest = [{ addr: at, len: spans[spanIdx]!.end - at }, ...spans.slice(spanIdx + 1).map((s) => ({ addr: s.start, len: s.end - s.start }))];
    let got: number;
    try {
      got = Math.floor(vmReadSpans(pid, rest, buf.subarray(page * PAGE)) / PAGE);
    } catch (err) {
      if (isErrno(err, 'ESRCH')) return ok; // the process is gone: nothing more to read
      throw err;
    }
    ok.fill(1, page, page + got);
    // Advance past what arrived plus the one page that failed (if any).
    let skip = Math.min(got + 1, total - page);
    page += skip;
    while (skip > 0) {
      const left = (spans[spanIdx]!.end - at) / PAGE;
      if (skip < left) {
        at += skip * PAGE;
        skip = 0;
      } else {
        skip -= left;
        spanIdx++;
        at = spans[spanIdx]?.start ?? 0;
      }
    }
  }
  return ok;
}

/** readPages through /proc/PID/mem: a short or failed read marks its first missing page and goes on after it. */
function readMem(mem: number, spans: readonly Span[], buf: Buffer, ok: Uint8Array): Uint8Array {
  let page = 0;
  for (const s of spans) {
    for (let at = s.start; at < s.end; ) {
      const want = s.end - at;
      let got = 0;
      try {
        const n = pread(mem, buf.subarray(page * PAGE, page * PAGE + want), at);
        if (n === 0) return ok; // the process's memory is gone (it exited or exec'd)
        got = Math.floor(n / PAGE);
      } catch (err) {
        // EIO: the first page is not mapped (any more).
        if (!isErrno(err, 'EIO')) throw err;
      }
      ok.fill(1, page, page + got);
      const skip = Math.min(got + 1, want / PAGE);
      page += skip;
      at += skip * PAGE;
    }
  }
  return ok;
}
