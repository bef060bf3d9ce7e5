// What the dashboard's charts draw, from a migration's view: the downtime as a timeline of the
// phases that ran while the workload was stopped, and each pre-copy round's dirty rate and
// bandwidth. Pure functions, bundled into the page (page/app.ts) and unit tested.
import { z } from 'zod';
import { RoundStatsWire, type MigrationView } from '../../shared/migration.ts';

/** The phases that can run between freeze and resume (the workload's downtime), in order. */
export const DOWNTIME_PHASES = ['freeze', 'transfer', 'restore', 'commit', 'resume'] as const;

export interface PhaseSegment {
  phase: string;
  /** From the freeze, ms. */
  offsetMs: number;
  durationMs: number;
}

export interface DowntimeChart {
  downtimeMs: number;
  /** The part of each phase that fell inside the downtime; phases may overlap (commit and resume run side by side). */
  segments: PhaseSegment[];
  /** Downtime covered by no phase (the coordinator's own steps between them). */
  uncoveredMs: number;
}

const ms = (iso: string | null): number | null => (iso === null ? null : Date.parse(iso));

/** The downtime by phase; null while the migration has no downtime yet (or never stopped the workload). */
export function downtimeChart(v: Pick<MigrationView, 'phases' | 'downtimeMs'>): DowntimeChart | null {
  const freeze = v.phases.find((p) => p.phase === 'freeze');
  const start = ms(freeze?.startedAt ?? null);
  if (v.downtimeMs === null || start === null) return null;
  const end = start + v.downtimeMs;
  const segments: PhaseSegment[] = [];
  for (const name of DOWNTIME_PHASES) {
    const p = v.phases.find((x) => x.phase === name);
    const from = ms(p?.startedAt ?? null);
    if (!p || from === null || p.durationMs === null) continue;
    const a = Math.max(from, start);
    const b = Math.min(from + p.durationMs, end);
    if (b >= a) segments.push({ phase: name, offsetMs: a - start, durationMs: b - a });
  }
  return { downtimeMs: v.downtimeMs, segments, uncoveredMs: uncovered(segments, v.downtimeMs) };
}

/** Length of [0, total] that no segment covers. */
function uncovered(segments: PhaseSegment[], total: number): number {
  let covered = 0;
  let reach = 0;
  for (const s of [...segments].sort((a, b) => a.offsetMs - b.offsetMs)) {
    const a = Math.max(s.offsetMs, reach);
    const b = s.offsetMs + s.durationMs;
    if (b > a) covered += b - a;
    reach = Math.max(reach, b);
  }
  return Math.max(0, total - covered);
}

/** The fields of a round the chart needs; a round missing them (another version's record) is left out, not guessed. */
const ChartRound = z.object(
  RoundStatsWire.pick({ round: true, dirtyRateBps: true, bandwidthBps: true, pagesSent: true, durationMs: true, predictedDowntimeMs: true, throttled: true }).shape,
);
export type ChartRound = z.infer<typeof ChartRound>;

/** One point per pre-copy round, in round order. */
export function roundSeries(v: Pick<MigrationView, 'rounds'>): ChartRound[] {
  return v.rounds
    .map((r) => ChartRound.safeParse(r))
    .filter((r) => r.success)
    .map((r) => r.data)
    .sort((a, b) => a.round - b.round);
}

/** A round number's axis maximum: the largest rate, rounded up to 1, 2 or 5 times a power of ten. */
export function niceMax(value: number): number {
  if (!(value > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * p).find((n) => n >= value)!;
}
