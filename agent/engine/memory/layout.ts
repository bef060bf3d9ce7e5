// Address-space arithmetic for building a husk: where a scratch page or a temporary parking
// spot can go without touching either the husk's or the image's mappings.
import { ErrorCode, FerryError } from '../../../shared/errors.ts';

export interface Span {
  start: bigint;
  end: bigint;
}

export const USER_LOW = 0x10000n;
export const USER_HIGH = 0x7ffffffff000n;

const merged = (spans: readonly Span[]): Span[] => {
  const s = [...spans].filter((x) => x.start < USER_HIGH).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: Span[] = [];
  for (const x of s) {
    const last = out[out.length - 1];
    if (last && x.start <= last.end) last.end = x.end > last.end ? x.end : last.end;
    else out.push({ ...x });
  }
  return out;
};

/** Free stretches between occupied spans within the user address range. */
export function gaps(occupied: readonly Span[]): Span[] {
  const out: Span[] = [];
  let cur = USER_LOW;
  for (const s of merged(occupied)) {
    if (s.start > cur) out.push({ start: cur, end: s.start });
    if (s.end > cur) cur = s.end;
  }
  if (cur < USER_HIGH) out.push({ start: cur, end: USER_HIGH });
  return out;
}

/** A free, aligned spot of `size` bytes with a 1 MiB margin to any occupied span, preferring high addresses away from the stack. */
export function findFree(occupied: readonly Span[], size: bigint): bigint {
  const margin = 0x100000n;
  const candidates = gaps(occupied).filter((g) => g.end - g.start >= size + 2n * margin);
  const g = candidates.find((c) => c.start >= 0x100000000n) ?? candidates[0];
  if (!g) throw new FerryError(ErrorCode.Internal, 'no free address range for a scratch area');
  return (g.start + margin + 0xfffn) & ~0xfffn;
}

/**
 * A free, aligned spot of `size` bytes in the middle of the largest free stretch: the place a
 * workload's later mappings (brk growing up, mmap growing down) reach last. Husks that live
 * through a live migration's pre-copy keep their scratch page there.
 */
export function findFar(occupied: readonly Span[], size: bigint): bigint {
  const g = gaps(occupied).reduce<Span | null>((best, x) => (!best || x.end - x.start > best.end - best.start ? x : best), null);
  if (!g || g.end - g.start < size + 0x200000n) throw new FerryError(ErrorCode.Internal, 'no free address range for a scratch area');
  return (g.start + (g.end - g.start - size) / 2n) & ~0xfffn;
}
