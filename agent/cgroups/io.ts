// Small file helpers shared by the v1 and v2 mappings: every limit file is one line of text.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { IoLimit } from '../../shared/resources.ts';

/** Values at or above this read back from v1 as "no limit" (the kernel prints PAGE_COUNTER_MAX in bytes). */
export const V1_UNLIMITED = 2 ** 62;

export function readText(dir: string, file: string): string | null {
  try {
    return readFileSync(path.join(dir, file), 'utf8').trim();
  } catch {
    return null;
  }
}

export function readNumber(dir: string, file: string): number | undefined {
  const t = readText(dir, file);
  if (t === null || t === 'max') return undefined;
  const n = Number(t.split(/\s+/)[0]);
  return Number.isFinite(n) ? n : undefined;
}

/** "key value" lines (cpu.stat, memory.stat, memory.events). */
export function readKeyed(dir: string, file: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of (readText(dir, file) ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && Number.isFinite(Number(v))) out.set(k, Number(v));
  }
  return out;
}

/**
 * Writes one limit file. A missing file means the host's kernel lacks that knob (e.g. swap
 * accounting off); an error names the limit, the file and what the kernel said.
 */
export function writeLimit(dir: string, file: string, value: string | number, limit: string): void {
  const f = path.join(dir, file);
  if (!existsSync(f)) throw new FerryError(ErrorCode.Unsupported, `this host cannot enforce ${limit}: ${f} does not exist (controller or accounting missing)`, { details: { limit, file: f } });
  try {
    writeFileSync(f, String(value));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new FerryError(ErrorCode.InvalidRequest, `cannot set ${limit} (${f} <- "${value}"): ${e.code ?? e.message}`, { details: { limit, file: f, value: String(value), errno: e.code } });
  }
}

/** The devices to write: those wanted, and those limited now but no longer wanted (set back to no limit). */
export function ioTargets(wanted: readonly IoLimit[] | undefined, current: readonly IoLimit[]): IoLimit[] {
  const out = new Map((wanted ?? []).map((d) => [d.device, d]));
  for (const old of current) if (!out.has(old.device)) out.set(old.device, { device: old.device });
  return [...out.values()];
}
