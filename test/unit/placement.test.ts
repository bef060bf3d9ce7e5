import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { planDrain } from '../../coordinator/fleet/plan-drain.ts';
import { IMBALANCE_PCT, planRebalance } from '../../coordinator/fleet/plan-rebalance.ts';
import {
  applyMoves,
  cpuRequestMilli,
  memoryCapacity,
  memoryWeight,
  place,
  type PlacementHost,
  type PlacementWorkload,
} from '../../coordinator/fleet/placement.ts';
import type { HostFacts } from '../../shared/facts.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

interface HostSpec {
  memGiB?: number;
  availGiB?: number;
  cpus?: number;
  alive?: boolean;
  cordoned?: boolean;
  noStream?: boolean;
  release?: string;
}
const host = (name: string, o: HostSpec = {}): PlacementHost => {
  const facts: HostFacts = {
    name,
    hostname: name,
    address: '10.0.0.1',
    kernel: { release: o.release ?? '6.18.44', version: '#1', arch: 'x86_64' },
    cpu: { model: 'x', count: o.cpus ?? 4, xsave: { xcr0: '0xe7', xstateSize: 2432 } },
    memory: { totalBytes: (o.memGiB ?? 16) * GiB, availableBytes: (o.availGiB ?? o.memGiB ?? 16) * GiB },
    features: { uffdWpAsync: true, pagemapScan: true, softDirty: false, clone3SetTid: true, sealedSystemMappings: false, timeNamespaces: true, cgroup2Freezer: true, ptrace: true },
    agent: { version: '0', pid: 1, startedAt: '2025-01-01T00:00:00.000Z' },
    dataStream: o.noStream ? null : { port: 7410, encrypt: true },
  };
  return { name, alive: o.alive ?? true, cordoned: o.cordoned ?? false, facts };
};

interface WlSpec {
  reqMiB?: number;
  usedMiB?: number;
  cpu?: number;
  cpuUsed?: number;
  group?: string;
  spread?: boolean;
  pinned?: boolean;
}
const wl = (name: string, on: string, o: WlSpec = {}): PlacementWorkload => ({
  name,
  host: on,
  requests: { ...(o.reqMiB ? { memoryBytes: o.reqMiB * MiB } : {}), ...(o.cpu ? { cpus: o.cpu } : {}) },
  limits: {},
  usage: {},
  memoryBytes: (o.usedMiB ?? 64) * MiB,
  ...(o.group ? { group: o.group } : {}),
  ...(o.spread ? { spread: true } : {}),
  ...(o.pinned ? { pinned: true } : {}),
  ...(o.cpuUsed !== undefined ? { cpuUsed: o.cpuUsed } : {}),
});

/** Independent of the ledger: per host sums of memory weights and CPU requests, and group clashes. */
function books(hosts: readonly PlacementHost[], workloads: readonly PlacementWorkload[]) {
  const out = new Map(hosts.map((h) => [h.name, { mem: 0, cpu: 0, groups: new Map<string, PlacementWorkload[]>() }]));
  for (const w of workloads) {
    const b = out.get(w.host);
    if (!b) continue;
    b.mem += memoryWeight(w);
    b.cpu += cpuRequestMilli(w);
    if (w.group) b.groups.set(w.group, [...(b.groups.get(w.group) ?? []), w]);
  }
  return out;
}
const overcommitted = (hosts: readonly PlacementHost[], workloads: readonly PlacementWorkload[], only: Set<string>) => {
  const b = books(hosts, workloads);
  return hosts.filter((h) => only.has(h.name) && (b.get(h.name)!.mem > memoryCapacity(h.facts) || b.get(h.name)!.cpu > h.facts.cpu.count * 1000)).map((h) => h.name);
};
const spreadClashes = (hosts: readonly PlacementHost[], workloads: readonly PlacementWorkload[], except?: string) =>
  [...books(hosts, workloads)].flatMap(([h, b]) => (h === except ? [] : [...b.groups.values()].filter((ws) => ws.length > 1 && ws.some((w) => w.spread)).map((ws) => `${h}: ${ws.map((w) => w.name).join(',')}`)));

// A random fleet whose initial state fits every host and honours spread: workloads that would not are left out.
const oneIn = (n: number) => fc.integer({ min: 1, max: n }).map((x) => x === 1);
const fleetArb = fc
  .record({
    hosts: fc.array(fc.record({ memGiB: fc.integer({ min: 3, max: 24 }), cpus: fc.integer({ min: 1, max: 16 }), cordoned: oneIn(6), alive: oneIn(8).map((b) => !b) }), { minLength: 2, maxLength: 8 }),
    workloads: fc.array(
      fc.record({
        // Half of them on h0: the drained host, and a loaded one for rebalance.
        on: fc.oneof(fc.constant(0), fc.nat()),
        reqMiB: fc.option(fc.integer({ min: 1, max: 2500 }), { nil: undefined }),
        usedMiB: fc.integer({ min: 1, max: 1200 }),
        cpu: fc.option(fc.constantFrom(0.25, 0.5, 1, 2), { nil: undefined }),
        cpuUsed: fc.option(fc.double({ min: 0, max: 4, noNaN: true }), { nil: undefined }),
        group: fc.option(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), { nil: undefined }),
        spread: oneIn(3),
        pinned: oneIn(8),
      }),
      { maxLength: 60, size: 'max' },
    ),
  })
  .map(({ hosts: hs, workloads: ws }) => {
    const hosts = hs.map((h, i) => host(`h${i}`, { memGiB: h.memGiB, cpus: h.cpus, cordoned: h.cordoned && i > 0, alive: h.alive || i === 0 }));
    const workloads: PlacementWorkload[] = [];
    ws.forEach((s, i) => {
      const w = wl(`w${i}`, hosts[s.on % hosts.length]!.name, { ...s, ...(s.cpuUsed !== undefined ? { cpuUsed: s.cpuUsed } : {}) });
      const next = [...workloads, w];
      if (!overcommitted(hosts, next, new Set([w.host])).length && !spreadClashes(hosts, next).length) workloads.push(w);
    });
    // Available memory as the host would report it: total less what its workloads use.
    const used = new Map<string, number>();
    for (const w of workloads) used.set(w.host, (used.get(w.host) ?? 0) + w.memoryBytes);
    for (const h of hosts) h.facts.memory.availableBytes = Math.max(0, h.facts.memory.totalBytes - (used.get(h.name) ?? 0));
    return { hosts, workloads };
  });

describe('place', () => {
  it('chooses the host with the most memory free against requests, and says why', () => {
    const hosts = [host('h1'), host('h2'), host('h3', { memGiB: 32 })];
    const ws = [wl('a', 'h1', { reqMiB: 8192 }), wl('b', 'h2', { reqMiB: 1024 })];
    const p = place(wl('new', '', { reqMiB: 1024 }), hosts, ws);
    expect(p).toMatchObject({ host: 'h3' });
    expect('reason' in p && p.reason).toMatch(/^h3: \d+% of its memory free against requests after the move, CPU \d+% loaded, 0 workload\(s\)$/);
  });

  it('breaks a tie in memory by CPU load, then by the number of workloads, then by name', () => {
    const hosts = [host('h1'), host('h2'), host('h3')];
    expect(place(wl('n', ''), hosts, [wl('a', 'h1', { cpuUsed: 2 }), wl('b', 'h2'), wl('c', 'h2')])).toMatchObject({ host: 'h3' });
    expect(place(wl('n', ''), hosts, [wl('a', 'h1', { cpuUsed: 2 }), wl('b', 'h2'), wl('c', 'h3'), wl('d', 'h3')])).toMatchObject({ host: 'h2' });
    expect(place(wl('n', ''), hosts, [])).toMatchObject({ host: 'h1' });
  });

  it('names each refused host with the resource and the numbers', () => {
    const src = host('src');
    const hosts = [
      src,
      host('cord', { cordoned: true }),
      host('lost', { alive: false }),
      host('old', { release: '6.1.0' }),
      host('nostream', { noStream: true }),
      host('full', { memGiB: 8 }),
      host('busy', { cpus: 2 }),
      host('tight', { availGiB: 1 }),
      host('grp'),
    ];
    const ws = [wl('hog', 'full', { reqMiB: 6 * 1024 }), wl('cpu', 'busy', { cpu: 1.5 }), wl('web-1', 'grp', { group: 'web', spread: true })];
    const p = place({ ...wl('web-2', 'src', { reqMiB: 2048, usedMiB: 1500, cpu: 1, group: 'web', spread: true }) }, hosts, ws);
    expect('refused' in p).toBe(true);
    const why = Object.fromEntries(('refused' in p ? p.refused : []).map((r) => [r.host, r.reason]));
    expect(why).toEqual({
      src: 'src is where it runs',
      cord: 'cord is cordoned',
      lost: 'lost is lost',
      old: 'old is incompatible: kernel release 6.18.44 on src vs 6.1.0 on old',
      nostream: 'nostream has no data stream (no TLS identity) and takes no part in migrations',
      full: 'full has 1.2 GiB of memory free against its requests (6.0 GiB of 7.2 GiB reserved)',
      busy: 'busy has 0.5 CPUs free against its requests (1.5 of 2 requested)',
      tight: 'tight has 1.0 GiB of memory available, about 1.7 GiB is needed',
      grp: 'grp already runs "web-1" of group web (spread)',
    });
    // The nearest misses (resources) come first.
    expect(('refused' in p ? p.refused : []).map((r) => r.kind).slice(0, 4)).toEqual(['memory', 'cpu', 'available', 'spread']);
  });

  it('places a new workload (no source) on a host without a data stream, a migration never', () => {
    const hosts = [host('src'), host('h2', { noStream: true })];
    expect(place(wl('n', ''), hosts, [], { exclude: ['src'] })).toMatchObject({ host: 'h2' });
    expect(place(wl('n', 'src'), hosts, [])).toMatchObject({ refused: [{ host: 'h2', kind: 'no-data-stream' }, { host: 'src', kind: 'excluded' }] });
  });

  it('counts measured memory for a workload without a request, and the larger of the two otherwise', () => {
    expect(memoryWeight(wl('a', 'h', { usedMiB: 300 }))).toBe(300 * MiB);
    expect(memoryWeight(wl('a', 'h', { usedMiB: 300, reqMiB: 1024 }))).toBe(1024 * MiB);
    expect(memoryWeight(wl('a', 'h', { usedMiB: 3000, reqMiB: 1024 }))).toBe(3000 * MiB);
  });
});

describe('planDrain', () => {
  it('moves every workload off the host, largest first, each move counting against its destination', () => {
    // h2 (14.4 GiB for requests) would be freest for both 6 GiB workloads; after the first it is not.
    const hosts = [host('h1'), host('h2'), host('h3', { memGiB: 12 })];
    const ws = [wl('small', 'h1', { reqMiB: 1024 }), wl('big1', 'h1', { reqMiB: 6 * 1024 }), wl('big2', 'h1', { reqMiB: 6 * 1024 }), wl('x', 'h3', { reqMiB: 1024 })];
    const plan = planDrain('h1', hosts, ws, { parallel: 1 });
    expect(plan.stays).toEqual([]);
    expect(plan.moves.map((m) => `${m.workload}->${m.to}`)).toEqual(['big1->h2', 'big2->h3', 'small->h2']);
    expect(plan.moves[0]).toMatchObject({ from: 'h1', memoryBytes: 64 * MiB });
  });

  it('orders the moves so that migrations running at once go to different hosts', () => {
    const hosts = [host('h1'), host('h2', { memGiB: 64 }), host('h3')];
    const ws = [wl('a', 'h1', { reqMiB: 4096 }), wl('b', 'h1', { reqMiB: 4000 }), wl('c', 'h1', { reqMiB: 3000 }), wl('d', 'h1', { reqMiB: 100 })];
    const plan = planDrain('h1', hosts, ws, { parallel: 2 });
    const to = plan.moves.map((m) => m.to);
    for (let i = 1; i < to.length; i++) if (to.slice(i).some((t) => t !== to[i - 1])) expect(to[i]).not.toBe(to[i - 1]);
  });

  it('leaves a pinned workload, and one that fits nowhere, naming the resource and each host', () => {
    const hosts = [host('h1'), host('h2', { memGiB: 8 }), host('h3', { cordoned: true }), host('h4', { alive: false })];
    const ws = [wl('pin', 'h1', { pinned: true }), wl('big', 'h1', { reqMiB: 10 * 1024, cpu: 0.5 }), wl('x', 'h2', { reqMiB: 6 * 1024 })];
    const plan = planDrain('h1', hosts, ws);
    expect(plan.moves).toEqual([]);
    expect(plan.stays).toEqual([
      {
        workload: 'big',
        host: 'h1',
        reason: 'no host can take "big" (10.0 GiB of memory and 0.5 CPUs): h2 has 1.2 GiB of memory free against its requests (6.0 GiB of 7.2 GiB reserved); h3 is cordoned; h4 is lost; h1 is where it runs',
        refused: expect.any(Array),
      },
      { workload: 'pin', host: 'h1', reason: 'pinned' },
    ]);
  });

  it('leaves a spread workload whose group is on every other host, saying so', () => {
    const hosts = [host('h1'), host('h2'), host('h3')];
    const ws = [wl('web-1', 'h1', { group: 'web', spread: true }), wl('web-2', 'h2', { group: 'web', spread: true }), wl('web-3', 'h3', { group: 'web' }), wl('db', 'h1', { group: 'web' })];
    const plan = planDrain('h1', hosts, ws);
    // db is of the group without spread itself, but web-2 on h2 asks for spread; web-3 does not.
    // db goes first (same size, name first), so h3 then runs db and web-3.
    expect(plan.moves.map((m) => `${m.workload}->${m.to}`)).toEqual(['db->h3']);
    expect(plan.stays).toMatchObject([
      { workload: 'web-1', reason: 'no host can take "web-1" (64 MiB of memory, spread from group web): h2 already runs "web-2" of group web (spread); h3 already runs "db" of group web (spread); h1 is where it runs' },
    ]);
  });

  it('refuses to plan a drain of an unknown host', () => {
    expect(() => planDrain('nope', [host('h1')], [])).toThrow(expect.objectContaining({ code: 'FERRY_NOT_FOUND', message: 'no host "nope" to drain (known: h1)' }));
  });

  it('never overcommits a host, honours spread and accounts for every workload (property)', () => {
    fc.assert(
      fc.property(fleetArb, ({ hosts, workloads }) => {
        const plan = planDrain('h0', hosts, workloads);
        const mine = workloads.filter((w) => w.host === 'h0').map((w) => w.name);
        expect([...plan.moves.map((m) => m.workload), ...plan.stays.map((s) => s.workload)].sort()).toEqual(mine.sort());
        for (const s of plan.stays) if (workloads.find((w) => w.name === s.workload)!.pinned) expect(s.reason).toBe('pinned');
        const ok = new Set(hosts.filter((h) => h.alive && !h.cordoned && h.name !== 'h0').map((h) => h.name));
        for (const m of plan.moves) expect(ok.has(m.to), `${m.workload} went to ${m.to}`).toBe(true);
        const after = applyMoves(hosts, workloads, plan.moves);
        expect(overcommitted(after.hosts, after.workloads, new Set(hosts.map((h) => h.name)))).toEqual([]);
        expect(spreadClashes(after.hosts, after.workloads, 'h0')).toEqual([]);
        for (const h of after.hosts) if (plan.moves.some((m) => m.to === h.name)) expect(h.facts.memory.availableBytes).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
  });
});

describe('planRebalance', () => {
  it('moves workloads off a loaded host, and a second plan after the moves is empty', () => {
    const hosts = [host('h1'), host('h2'), host('h3')];
    const ws = Array.from({ length: 8 }, (_, i) => wl(`w${i}`, 'h1', { reqMiB: 1536 }));
    const plan = planRebalance(hosts, ws);
    expect(plan.moves.length).toBeGreaterThan(0);
    expect(plan.moves.every((m) => m.from === 'h1')).toBe(true);
    expect(plan.imbalance.before).toBeGreaterThan(IMBALANCE_PCT);
    expect(plan.imbalance.after).toBeLessThan(plan.imbalance.before);
    expect(plan.after.find((h) => h.host === 'h1')!.loadPct).toBeLessThan(plan.before.find((h) => h.host === 'h1')!.loadPct);
    expect(plan.moves[0]!.reason).toMatch(/^h1 load 83\.3% → \d+(\.\d)?%, h\d 0% → \d+(\.\d)?%$/);
    const after = applyMoves(hosts, ws, plan.moves);
    expect(planRebalance(after.hosts, after.workloads).moves).toEqual([]);
  });

  it('balances CPU too, and leaves pinned workloads and a fleet within the threshold alone', () => {
    const hosts = [host('h1'), host('h2')];
    const busy = [wl('a', 'h1', { cpuUsed: 1.5 }), wl('b', 'h1', { cpuUsed: 1.5 })];
    expect(planRebalance(hosts, busy).moves).toHaveLength(1);
    expect(planRebalance(hosts, busy.map((w) => ({ ...w, pinned: true }))).moves).toEqual([]);
    expect(planRebalance(hosts, [wl('a', 'h1', { cpuUsed: 0.5 })]).moves).toEqual([]);
    // Cordoned, lost and incompatible hosts take nothing; only the incompatible one counts in the imbalance.
    const others = [host('h1'), host('h2', { cordoned: true }), host('h3', { alive: false }), host('h4', { release: '6.1.0' }), host('h5', { noStream: true })];
    const plan = planRebalance(others, busy);
    expect(plan).toMatchObject({ moves: [], imbalance: { before: 75, after: 75 } });
    expect(plan.before.map((h) => h.host)).toEqual(['h1', 'h4']);
  });

  it('respects maxMoves', () => {
    const hosts = [host('h1'), host('h2'), host('h3')];
    const ws = Array.from({ length: 8 }, (_, i) => wl(`w${i}`, 'h1', { reqMiB: 1536 }));
    expect(planRebalance(hosts, ws, { maxMoves: 1 }).moves).toHaveLength(1);
    expect(planRebalance(hosts, ws, { maxMoves: 0 }).moves).toEqual([]);
  });

  it('applying a plan and planning again moves nothing; it never overcommits, moves pinned or breaks spread (property)', () => {
    fc.assert(
      fc.property(fleetArb, ({ hosts, workloads }) => {
        const plan = planRebalance(hosts, workloads);
        const byName = new Map(workloads.map((w) => [w.name, w]));
        expect(new Set(plan.moves.map((m) => m.workload)).size).toBe(plan.moves.length);
        for (const m of plan.moves) {
          expect(byName.get(m.workload)!.pinned).toBeFalsy();
          expect(m.from).toBe(byName.get(m.workload)!.host);
          expect(m.from).not.toBe(m.to);
        }
        expect(plan.imbalance.after).toBeLessThanOrEqual(plan.imbalance.before);
        const after = applyMoves(hosts, workloads, plan.moves);
        expect(overcommitted(after.hosts, after.workloads, new Set(plan.moves.map((m) => m.to)))).toEqual([]);
        expect(spreadClashes(after.hosts, after.workloads)).toEqual([]);
        const again = planRebalance(after.hosts, after.workloads);
        expect(again.moves).toEqual([]);
        expect(again.imbalance.before).toBe(plan.imbalance.after);
      }),
      { numRuns: 300 },
    );
  });
});

describe('a fleet of 500 hosts with 10 workloads each', () => {
  // Uneven on purpose: every tenth host carries four times the memory and twice the CPU.
  const hosts = Array.from({ length: 500 }, (_, i) => host(`h${String(i).padStart(3, '0')}`, { memGiB: 64, cpus: 16, cordoned: i === 499, alive: i !== 498 }));
  const workloads = hosts.flatMap((h, i) =>
    Array.from({ length: 10 }, (_, j) =>
      wl(`w${i}-${j}`, h.name, { reqMiB: (i % 10 === 0 ? 4 : 1) * (512 + 256 * (j % 4)), usedMiB: 256 + 64 * j, cpuUsed: (i % 10 === 0 ? 0.6 : 0.3) + 0.05 * j, group: j === 0 ? `s${Math.floor(i / 2)}` : `g${j}`, spread: j === 0 }),
    ),
  );

  it('plans a drain and a rebalance that are valid', () => {
    let t = performance.now();
    const drain = planDrain('h000', hosts, workloads);
    const drainMs = performance.now() - t;
    expect(drain.stays).toEqual([]);
    expect(drain.moves).toHaveLength(10);
    let after = applyMoves(hosts, workloads, drain.moves);
    expect(overcommitted(after.hosts, after.workloads, new Set(hosts.map((h) => h.name)))).toEqual([]);
    expect(spreadClashes(after.hosts, after.workloads, 'h000')).toEqual([]);

    t = performance.now();
    const rebalance = planRebalance(hosts, workloads);
    const rebalanceMs = performance.now() - t;
    expect(rebalance.moves.length).toBeGreaterThan(0);
    expect(rebalance.imbalance.after).toBeLessThan(rebalance.imbalance.before);
    after = applyMoves(hosts, workloads, rebalance.moves);
    expect(overcommitted(after.hosts, after.workloads, new Set(rebalance.moves.map((m) => m.to)))).toEqual([]);
    expect(spreadClashes(after.hosts, after.workloads)).toEqual([]);
    t = performance.now();
    const again = planRebalance(after.hosts, after.workloads);
    const againMs = performance.now() - t;
    expect(again.moves).toEqual([]);

    t = performance.now();
    const placed = place(wl('new', '', { reqMiB: 1024 }), hosts, workloads);
    const placeMs = performance.now() - t;
    expect(placed).toMatchObject({ host: expect.stringMatching(/^h\d+$/) });
    console.log(
      `500 hosts × 10 workloads: drain plan ${drainMs.toFixed(1)} ms (${drain.moves.length} moves), rebalance plan ${rebalanceMs.toFixed(1)} ms (${rebalance.moves.length} moves, imbalance ${rebalance.imbalance.before} → ${rebalance.imbalance.after} pp), second rebalance ${againMs.toFixed(1)} ms, place ${placeMs.toFixed(1)} ms`,
    );
  });
});
