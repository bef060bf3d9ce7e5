// The dashboard's logic without a browser: logins (single use, expiry, sessions), the cookie,
// the chart data and markup, CPU rates from heartbeat counters, and which migrations the state
// holds.
import { describe, expect, it } from 'vitest';
import { DashboardAuth, SESSION_COOKIE, sessionCookie, sessionFromCookie } from '../../coordinator/dashboard/auth.ts';
import { downtimeChart, niceMax, roundSeries } from '../../coordinator/dashboard/charts.ts';
import { CpuRates, DashboardStateBuilder, ENDED_KEPT, type DashboardSources } from '../../coordinator/dashboard/state.ts';
import { downtimeSvg, esc, roundsSvg } from '../../coordinator/dashboard/svg.ts';
import type { MigrationView } from '../../shared/migration.ts';
import type { HostView } from '../../shared/protocol.ts';

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

describe('dashboard logins', () => {
  it('a token opens one session, once', () => {
    const auth = new DashboardAuth({ sessionTtlMs: 3_600_000 });
    const { token } = auth.issueToken();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const s = auth.redeem(token);
    expect(s).not.toBeNull();
    expect(auth.session(s!.id)).toBe(s!.expiresAt);
    expect(auth.redeem(token)).toBeNull();
    expect(s!.id).not.toBe(token);
  });

  it('a token expires after its minute, and is gone even when refused', () => {
    const c = clock();
    const auth = new DashboardAuth({ sessionTtlMs: 3_600_000, now: c.now });
    const { token, expiresAt } = auth.issueToken();
    expect(expiresAt - c.t).toBe(60_000);
    c.t += 60_000;
    expect(auth.redeem(token)).toBeNull();
    c.t -= 1;
    expect(auth.redeem(token)).toBeNull();
    expect(auth.counts().tokens).toBe(0);
  });

  it('a session lasts its time, then is refused', () => {
    const c = clock();
    const auth = new DashboardAuth({ sessionTtlMs: 10_000, now: c.now });
    const s = auth.redeem(auth.issueToken().token)!;
    c.t += 9_999;
    expect(auth.session(s.id)).not.toBeNull();
    c.t += 1;
    expect(auth.session(s.id)).toBeNull();
    expect(auth.counts().sessions).toBe(0);
  });

  it('refuses made-up, malformed and missing secrets without using up the real one; a token is no session', () => {
    const auth = new DashboardAuth({ sessionTtlMs: 10_000 });
    const { token } = auth.issueToken();
    const flipped = token.slice(0, 42) + (token[42] === 'A' ? 'B' : 'A');
    for (const bad of [undefined, '', 'x', 'A'.repeat(43), token.slice(0, 42), `${token}x`, flipped]) {
      expect(auth.redeem(bad)).toBeNull();
      expect(auth.session(bad)).toBeNull();
    }
    expect(auth.session(token)).toBeNull();
    const s = auth.redeem(token);
    expect(s).not.toBeNull();
    expect(auth.redeem(s!.id)).toBeNull();
  });

  it('keeps a bounded number of unredeemed tokens (the oldest go first)', () => {
    const auth = new DashboardAuth({ sessionTtlMs: 10_000 });
    const first = auth.issueToken().token;
    for (let i = 0; i < 100; i++) auth.issueToken();
    expect(auth.counts().tokens).toBeLessThanOrEqual(64);
    expect(auth.redeem(first)).toBeNull();
  });

  it('the cookie is HttpOnly, Secure, SameSite=Strict, host-only, and is read back from a Cookie header', () => {
    const c = sessionCookie('abc', 8 * 3_600_000);
    expect(c).toBe(`${SESSION_COOKIE}=abc; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=28800`);
    expect(sessionFromCookie(`a=1; ${SESSION_COOKIE}=xyz; b=2`)).toBe('xyz');
    expect(sessionFromCookie('ferry_session=xyz')).toBeUndefined();
    expect(sessionFromCookie(undefined)).toBeUndefined();
  });
});

const at = (ms: number) => new Date(Date.UTC(2026, 0, 1) + ms).toISOString();
const phase = (name: string, start: number, dur: number | null) => ({ phase: name, attempts: 1, startedAt: at(start), durationMs: dur });
const round = (n: number, dirty: number, bw: number) => ({ round: n, pagesScanned: 10, pagesDirty: 5, pagesSent: 5, bytesOnWire: 1, compressionRatio: 1, durationMs: 100, dirtyRateBps: dirty, bandwidthBps: bw, predictedDowntimeMs: 50 });

describe('dashboard charts', () => {
  it('the downtime by phase: each phase inside freeze..resume, overlaps kept, the rest uncovered', () => {
    const phases = [phase('preflight', 0, 10), phase('precopy', 10, 500), phase('freeze', 510, 20), phase('transfer', 530, 50), phase('restore', 580, 100), phase('commit', 690, 5), phase('resume', 690, 15), phase('cleanup', 705, 40)];
    const c = downtimeChart({ phases, downtimeMs: 195 })!;
    expect(c.segments).toEqual([
      { phase: 'freeze', offsetMs: 0, durationMs: 20 },
      { phase: 'transfer', offsetMs: 20, durationMs: 50 },
      { phase: 'restore', offsetMs: 70, durationMs: 100 },
      { phase: 'commit', offsetMs: 180, durationMs: 5 },
      { phase: 'resume', offsetMs: 180, durationMs: 15 },
    ]);
    // 170..180 is covered by no phase.
    expect(c.uncoveredMs).toBe(10);
    expect(c.downtimeMs).toBe(195);
  });

  it('no downtime chart before the freeze, or without a downtime', () => {
    expect(downtimeChart({ phases: [phase('preflight', 0, 10)], downtimeMs: null })).toBeNull();
    expect(downtimeChart({ phases: [phase('freeze', 0, null)], downtimeMs: null })).toBeNull();
    expect(downtimeChart({ phases: [phase('freeze', 0, 20)], downtimeMs: 30 })!.segments).toEqual([{ phase: 'freeze', offsetMs: 0, durationMs: 20 }]);
  });

  it('one point per round in round order; a round without the needed fields is left out', () => {
    const rounds = [round(2, 10, 20), round(1, 0, 30), { round: 3, tracker: 'uffd-wp' } as never];
    expect(roundSeries({ rounds }).map((r) => [r.round, r.dirtyRateBps, r.bandwidthBps])).toEqual([
      [1, 0, 30],
      [2, 10, 20],
    ]);
  });

  it('axis maxima are 1, 2 or 5 times a power of ten', () => {
    expect([0, 0.3, 1, 7, 12, 99, 101, 4.2e6].map(niceMax)).toEqual([1, 0.5, 1, 10, 20, 100, 200, 5e6]);
  });

  it('the rounds chart has a dirty and a bandwidth bar per round, heights in proportion', () => {
    const svg = roundsSvg(roundSeries({ rounds: [round(1, 0, 40e6), round(2, 10e6, 20e6), round(3, 5e6, 40e6)] }));
    expect(svg.match(/<g class="round"/g)).toHaveLength(3);
    const heights = [...svg.matchAll(/data-series="(\w+)" data-value="([\d.]+)"[^>]*height="([\d.]+)"/g)].map((m) => [m[1], Number(m[2]), Number(m[3])] as const);
    expect(heights.map(([s, v]) => [s, v])).toEqual([['dirty', 0], ['bandwidth', 40e6], ['dirty', 10e6], ['bandwidth', 20e6], ['dirty', 5e6], ['bandwidth', 40e6]]);
    const bw = heights.filter(([s]) => s === 'bandwidth').map(([, , h]) => h);
    expect(bw[0]).toBeCloseTo(bw[1]! * 2, 0);
    expect(roundsSvg([])).toContain('no pre-copy rounds');
  });

  it('the downtime chart has a bar per phase, and escapes what it shows', () => {
    const svg = downtimeSvg({ downtimeMs: 100, segments: [{ phase: 'freeze', offsetMs: 0, durationMs: 40 }, { phase: '<b>', offsetMs: 40, durationMs: 60 }], uncoveredMs: 0 });
    expect(svg.match(/<rect [^>]*data-phase=/g)).toHaveLength(2);
    expect(svg).not.toContain('<b>');
    expect(svg).toContain('&lt;b&gt;');
    expect(svg).toContain('data-downtime-ms="100"');
    expect(esc(`"'&<>`)).toBe('&quot;&#39;&amp;&lt;&gt;');
  });
});

const host = (name: string, cpuUsec: Record<string, number>): HostView =>
  ({ name, facts: { workloads: Object.entries(cpuUsec).map(([w, u]) => ({ name: w, usage: { cpuUsec: u }, limits: {}, requests: {} })) } }) as unknown as HostView;

describe('dashboard state', () => {
  it("CPU use is the growth of each workload's counter over the time between samples; arrivals count from the next pair", () => {
    const rates = new CpuRates();
    expect(rates.sample([host('h1', { a: 1_000_000 })], 0)).toEqual([{ host: 'h1', cpusUsed: null }]);
    // Half a CPU for 2 s; b just arrived; a sample too soon repeats the last rate.
    expect(rates.sample([host('h1', { a: 2_000_000, b: 5_000_000 })], 2_000)).toEqual([{ host: 'h1', cpusUsed: 0.5 }]);
    expect(rates.sample([host('h1', { a: 9_000_000, b: 9_000_000 })], 2_500)).toEqual([{ host: 'h1', cpusUsed: 0.5 }]);
    expect(rates.sample([host('h1', { a: 3_000_000, b: 6_000_000 })], 3_000)).toEqual([{ host: 'h1', cpusUsed: 2 }]);
  });

  it('holds migrations in flight and the newest ended ones, reading an ended one from the store once', async () => {
    const view = (id: string, outcome: MigrationView['outcome']) => ({ id, outcome }) as MigrationView;
    const ids = Array.from({ length: ENDED_KEPT + 5 }, (_, i) => `m-${String(i).padStart(4, '0')}`);
    const reads = new Map<string, number>();
    let running = new Set([ids[3]!, ids.at(-1)!]);
    const src: DashboardSources = {
      coordinatorId: 'coordinator.c1',
      leading: () => true,
      hosts: () => [],
      workloads: async () => ({ workloads: [], unanswered: [], lost: [] }),
      migrationIds: async () => ids,
      migration: async (id) => {
        reads.set(id, (reads.get(id) ?? 0) + 1);
        return view(id, running.has(id) ? null : 'completed');
      },
      fleet: async () => [],
    };
    const b = new DashboardStateBuilder(src, () => Date.UTC(2026, 0, 1));
    const first = await b.migrations();
    // In flight first (newest first), then the newest ended ones, as many as kept.
    expect(first.slice(0, 2).map((v) => v.id)).toEqual([ids.at(-1), ids[3]]);
    expect(first.slice(2).map((v) => v.id)).toEqual(ids.filter((id) => !running.has(id)).reverse().slice(0, ENDED_KEPT));
    running = new Set([ids.at(-1)!]);
    const second = await b.migrations();
    expect(second[0]!.id).toBe(ids.at(-1));
    expect(second.filter((v) => v.outcome !== null)).toHaveLength(ENDED_KEPT);
    // The builder validates what it serves: partial views like these are refused, not sent.
    await expect(b.build()).rejects.toThrow();
    // Ended ones were read once; the one still running every time; the one that ended since, once more.
    expect(reads.get(ids.at(-2)!)).toBe(1);
    expect(reads.get(ids.at(-1)!)).toBe(3);
    expect(reads.get(ids[3]!)).toBe(2);
  });
});
