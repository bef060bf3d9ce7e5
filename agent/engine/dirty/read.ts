// Reading pages of a running process that may unmap them at any moment.
import { isErrno, vmReadSpans } from '../../ffi/syscalls.ts';
import { PAGE, type Span } from './types.ts';

/**
 * Reads spans into consecutive bytes of `buf` (which must hold them all). Returns, per page, 1
 * if it arrived and 0 if it could not be read (unmapped meanwhile, or past the end of a mapped
 * file): the kernel stops at the first failing page, so the read resumes one page after it.
 * A process that exited reads as nothing.
 */
export function readPages(pid: number, spans: readonly Span[], buf: Buffer): Uint8Array {
  const total = spans.reduce((a, s) => a + (s.end - s.start) / PAGE, 0);
  const ok = new Uint8Array(total);
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
