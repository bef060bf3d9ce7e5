// The collector every comparator writes into: which fields it compared, what it could not, and
// every difference, each naming the process, the resource and the field.
import type { VerifyMismatch } from '../../../shared/verify.ts';

export interface ProcessRef {
  /** As the image (the workload) knows it. */
  pid: number;
  /** As this host sees it. */
  hostPid: number;
}

export class Check {
  readonly checked = new Map<string, Set<string>>();
  readonly notVerified = new Map<string, string>();
  readonly mismatches: VerifyMismatch[] = [];

  constructor(readonly resource: string) {}

  /** Records that `field` was compared; a difference when expected !== actual. Returns whether they matched. */
  eq(p: ProcessRef, field: string, expected: string | number | bigint | boolean, actual: string | number | bigint | boolean, kind = field): boolean {
    this.compared(kind);
    const e = show(expected);
    const a = show(actual);
    if (e === a) return true;
    this.differ(p, field, e, a);
    return false;
  }

  /**
   * Records that `field` was compared as a signal set that may only have grown: every expected bit
   * is set in actual. Pending signals are so: a timer or another process may send one between the
   * restore and this check, but none that was pending may be lost.
   */
  pendingKept(p: ProcessRef, field: string, expected: bigint, actual: bigint, kind = field): boolean {
    this.compared(kind);
    if (actual >= 0n && (expected & actual) === expected) return true;
    this.differ(p, field, `0x${expected.toString(16)} (or more)`, `0x${actual.toString(16)}`);
    return false;
  }

  differ(p: ProcessRef, field: string, expected: string, actual: string): void {
    this.mismatches.push({ pid: p.pid, hostPid: p.hostPid, resource: this.resource, field, expected, actual });
  }

  compared(kind: string): void {
    let s = this.checked.get(this.resource);
    if (!s) this.checked.set(this.resource, (s = new Set()));
    s.add(kind);
  }

  skip(what: string, why: string): void {
    this.notVerified.set(`${this.resource}: ${what}`, why);
  }
}

const show = (v: string | number | bigint | boolean): string => (typeof v === 'bigint' ? `0x${v.toString(16)}` : String(v));

/** A signal set as /proc shows it (16 hex digits) from signal numbers. */
export function sigBits(sigs: Iterable<number>): bigint {
  let b = 0n;
  for (const s of sigs) if (s >= 1 && s <= 64) b |= 1n << BigInt(s - 1);
  return b;
}

export const hexField = (v: string | undefined): bigint => (v === undefined || v === '' ? -1n : BigInt(`0x${v}`));
