// The one time format ferry shows people and scripts: ISO 8601 in UTC. Internals may count
// epoch milliseconds (cheap to compare and subtract); they become ISO where a user sees them.
import { z } from 'zod';

export function isoTime(ms: number): string;
export function isoTime(ms: number | null): string | null;
export function isoTime(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** A time in a message or a record: ISO 8601 in UTC, as isoTime and Date.toISOString write it. */
export const IsoTime = z.iso.datetime();
