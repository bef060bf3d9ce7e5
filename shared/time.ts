// The one time format ferry shows people and scripts: ISO 8601 in UTC. Internals may count
// epoch milliseconds (cheap to compare and subtract); they become ISO where a user sees them.

export function isoTime(ms: number): string;
export function isoTime(ms: number | null): string | null;
export function isoTime(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
