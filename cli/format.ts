// Small renderers shared by the human outputs.
import type { VerifyReport } from '../shared/verify.ts';

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 100 || u === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}

export const yesNo = (b: boolean) => (b ? 'yes' : 'no');

/** Verification before the commit point, in a few lines (restore --verify, migrate, status). */
export function describeVerification(v: VerifyReport): string {
  const r1 = (n: number) => Math.round(n * 10) / 10;
  const lines = [
    `verified ${v.processes} process(es) against the image: ${v.mismatches.length === 0 ? 'identical' : `${v.mismatches.length} difference(s)`}; ${r1(v.insideMs)} ms inside the downtime, ${r1(v.outsideMs)} ms outside; pages checked ${v.pagesChecked.precopy} during pre-copy, ${v.pagesChecked.downtime} inside the downtime`,
    ...Object.entries(v.checked).map(([res, fields]) => `  ${res}: ${fields.join(', ')}`),
    `  not verified: ${v.notVerified.map((n) => n.what).join('; ')}`,
  ];
  return lines.join('\n');
}
