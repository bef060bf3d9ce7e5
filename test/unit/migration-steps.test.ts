// The agent's migration steps by role, driven without an engine: once-per-key execution, fencing
// after a rollback, role checks, and the paths of each role that need no frozen process (a step
// that finds its in-memory session lost, a rollback with nothing built, a discard joined).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { StepBase } from '../../shared/migration.ts';
import { MigrationRecords } from '../../agent/migration/records.ts';
import { StepRunner } from '../../agent/migration/step-runner.ts';
import { MigrationSteps } from '../../agent/migration/steps.ts';
import type { Workloads } from '../../agent/workloads.ts';
import type { Checkpoint } from '../../agent/engine/checkpoint.ts';
import type { SourceEngine } from '../../agent/migration/source-steps.ts';
import type { TreeBuilder } from '../../agent/migration/destination-steps.ts';
import type { DestinationSession } from '../../agent/migration/destination-session.ts';
import type { DataStreamSettings } from '../../agent/migration/stream-settings.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const stateDir = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'ferry-steps-'));
  dirs.push(d);
  return d;
};

const step = (key: string, over: Partial<StepBase> = {}): StepBase => ({ migrationId: 'm-abc12345-0001', idempotencyKey: key, attempt: 1, workload: 'w1', peer: 'h2', ...over });

describe('StepRunner', () => {
  const runner = () => new StepRunner('h1', new MigrationRecords(stateDir()));

  it('runs a step once per key: a replay returns the recorded result without running it', async () => {
    const r = runner();
    let runs = 0;
    const first = await r.once(step('k1'), 'source', () => ({ n: ++runs }));
    const again = await r.once(step('k1'), 'source', () => ({ n: ++runs }));
    expect(first).toEqual({ n: 1 });
    expect(again).toEqual({ n: 1 });
    expect(runs).toBe(1);
    expect(r.records.get('m-abc12345-0001')?.done.k1).toEqual({ n: 1 });
  });

  it('a duplicate request while the step runs joins it', async () => {
    const r = runner();
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((res) => (release = res));
    const a = r.once(step('k1'), 'source', async () => {
      runs++;
      await gate;
      return 7;
    });
    const b = r.once(step('k1'), 'source', () => ++runs);
    release();
    expect(await Promise.all([a, b])).toEqual([7, 7]);
    expect(runs).toBe(1);
  });

  it('a failed step is not recorded: its retry runs again', async () => {
    const r = runner();
    await expect(r.once(step('k1'), 'source', () => Promise.reject(new FerryError(ErrorCode.Unavailable, 'boom')))).rejects.toThrow('boom');
    expect(await r.once(step('k1'), 'source', () => 'ok')).toBe('ok');
  });

  it('keeps what the step put on record meanwhile, and what the step itself changed', async () => {
    const r = runner();
    await r.once(step('k1'), 'source', (m) => {
      r.records.save({ ...m, netns: '/run/netns/w1' });
      m.precopy = true;
      return null;
    });
    const m = r.records.get('m-abc12345-0001')!;
    expect(m.netns).toBe('/run/netns/w1');
    expect(m.precopy).toBe(true);
  });

  it("a record carrying the other role's fields is not read back (set aside): one shape per role", () => {
    const r = runner();
    const m = r.record(step('x'), 'source');
    r.records.save({ ...m, heldTree: { pids: [1], cgroup: '/x' } });
    expect(r.records.get('m-abc12345-0001')).toBeNull();
  });

  it('refuses a step in the other role, and every step once fenced (rollbacks may repeat)', async () => {
    const r = runner();
    await r.once(step('k1'), 'source', () => null);
    await expect(r.once(step('k2'), 'destination', () => null)).rejects.toThrow(/h1 is the source of m-abc12345-0001, not its destination/);
    const m = r.record(step('x'), 'source', true);
    r.records.save({ ...m, fenced: true });
    await expect(r.once(step('k3'), 'source', () => null)).rejects.toThrow(/was rolled back on h1: step refused/);
    expect(r.record(step('x'), 'source', true).fenced).toBe(true);
  });
});

describe('MigrationSteps by role, without an engine', () => {
  // Only what the paths below touch: no workload runs, none is frozen.
  const workloads = {
    setState: () => undefined,
    runsHere: () => false,
    cgroupOf: () => ({ remove: () => undefined }),
  } as unknown as Workloads;
  const steps = () => new MigrationSteps('h1', '127.0.0.1', workloads, stateDir());

  it('source: a later step after an agent restart finds its session lost and says roll back', async () => {
    const s = steps();
    await expect(s.source.send(step('send'))).rejects.toMatchObject({ code: ErrorCode.Unavailable, message: expect.stringMatching(/frozen state of m-abc12345-0001 was lost \(agent restarted\): roll back/) });
    await expect(s.source.precopy({ ...step('round-2'), round: 2, throttle: false })).rejects.toThrow(/pre-copy session of m-abc12345-0001 was lost/);
  });

  it('source: thaw fences the migration; thaw repeats; every later step is refused', async () => {
    const s = steps();
    expect(s.source.thaw(step('t'))).toEqual({ done: true });
    expect(s.source.thaw(step('t'))).toEqual({ done: true });
    expect(s.records.get('m-abc12345-0001')?.fenced).toBe(true);
    await expect(s.source.freeze(step('freeze'))).rejects.toThrow(/was rolled back on h1: step refused/);
  });

  it('destination: a discard with nothing built fences; a second joins the first; restore is refused after it', async () => {
    const s = steps();
    const [a, b] = [s.destination.discard(step('d')), s.destination.discard(step('d'))];
    expect(a).toBe(b);
    expect(await a).toEqual({ done: true });
    expect(s.records.get('m-abc12345-0001')).toMatchObject({ role: 'destination', fenced: true });
    await expect(s.destination.restore(step('restore'))).rejects.toThrow(/was rolled back on h1: step refused/);
  });

  it('destination: without an identity it refuses to receive, naming the host', async () => {
    const s = steps();
    await expect(s.destination.receive(step('receive'))).rejects.toThrow(/h1/);
  });
});

/** A frozen tree as the source's steps see it: what they asked of it is counted. */
function fakeCheckpoint(opts: { collectFails?: boolean } = {}) {
  const calls = { collect: 0, release: 0, kill: 0, holdOnAgentDeath: 0 };
  const c = {
    tree: {
      tasks: new Map([[4242, {}], [4243, {}]]),
      pids: [4242],
      heldFreeze: () => ({ pids: [4242], cgroup: null, origCgroups: {}, cgroupRoot: null }),
      holdOnAgentDeath: () => void calls.holdOnAgentDeath++,
    },
    collect: () => {
      calls.collect++;
      if (opts.collectFails) throw new FerryError(ErrorCode.Unsupported, 'pid 4242: fd 7: a socket the engine cannot carry');
      return [];
    },
    release: () => void calls.release++,
    kill: () => void calls.kill++,
  };
  return { checkpoint: c as unknown as Checkpoint, calls };
}

describe('the source steps against a fake engine', () => {
  function source(opts: { collectFails?: boolean } = {}) {
    const frozen: ReturnType<typeof fakeCheckpoint>[] = [];
    const states: string[] = [];
    const forgotten: string[] = [];
    const checked: number[] = [];
    const engine: SourceEngine = {
      // As the engine sees it: once this agent holds the tree, the tree is traced.
      preflight: (root) => {
        checked.push(root);
        if (frozen.length > 0) throw new FerryError(ErrorCode.Unsupported, `pid ${root} process: ptraced is not supported (already traced by pid 99)`);
        return { pids: [4242] };
      },
      begin: () => {
        const f = fakeCheckpoint(opts);
        frozen.push(f);
        return f.checkpoint;
      },
    };
    const workloads = {
      get: () => ({ state: 'running', rootPid: 4242, cgroup: null, memoryBytes: 1 << 20, limits: {}, requests: {} }),
      netnsOf: () => null,
      spec: () => ({ command: ['sleep', '1000'], limits: {}, requests: {} }),
      setState: (_n: string, st: string) => void states.push(st),
      forget: (n: string) => void forgotten.push(n),
      letGo: () => undefined,
    } as unknown as Workloads;
    const identity = { credentials: {}, port: 0, encrypt: false } as unknown as DataStreamSettings;
    const steps = new MigrationSteps('h1', '127.0.0.1', workloads, stateDir(), undefined, 'auto', identity, { sourceEngine: engine });
    return { steps, frozen, states, forgotten, checked };
  }

  it('preflight is recorded: asked again after the freeze (a takeover from an older record), it answers as before', async () => {
    const h = source();
    const first = await h.steps.source.preflight(step('preflight'));
    expect(first).toMatchObject({ workloadBytes: 1 << 20, processes: 1 });
    await h.steps.source.freeze(step('freeze'));
    expect(await h.steps.source.preflight(step('preflight'))).toEqual(first);
    expect(h.checked).toEqual([4242]);
  });

  it('a preflight that refused is not recorded: asked again, it checks again', async () => {
    const h = source();
    await h.steps.source.freeze(step('freeze'));
    await expect(h.steps.source.preflight(step('preflight'))).rejects.toThrow(/already traced/);
    await expect(h.steps.source.preflight(step('preflight'))).rejects.toThrow(/already traced/);
    expect(h.checked).toEqual([4242, 4242]);
  });

  it('freeze holds the tree (on record first), and a replay returns the result without freezing again', async () => {
    const h = source();
    expect(await h.steps.source.freeze(step('freeze'))).toEqual({ tasks: 2 });
    expect(await h.steps.source.freeze(step('freeze'))).toEqual({ tasks: 2 });
    expect(h.frozen).toHaveLength(1);
    expect(h.frozen[0]!.calls).toMatchObject({ collect: 1, holdOnAgentDeath: 1, release: 0 });
    expect(h.states).toEqual(['frozen']);
    expect(h.steps.records.get('m-abc12345-0001')).toMatchObject({ held: { pids: [4242] }, workloadCommand: ['sleep', '1000'] });
  });

  it('thaw after a freeze lets the same tree go on running, once, and fences the migration', async () => {
    const h = source();
    await h.steps.source.freeze(step('freeze'));
    h.steps.source.thaw(step('thaw'));
    h.steps.source.thaw(step('thaw'));
    expect(h.frozen[0]!.calls).toMatchObject({ release: 1, kill: 0 });
    expect(h.states).toEqual(['frozen', 'running']);
    await expect(h.steps.source.cleanup(step('cleanup'))).rejects.toThrow(/was rolled back on h1: step refused/);
    expect(h.frozen[0]!.calls.kill).toBe(0);
  });

  it('cleanup after the commit ends the frozen original and forgets the workload here', async () => {
    const h = source();
    await h.steps.source.freeze(step('freeze'));
    await h.steps.source.cleanup(step('cleanup'));
    expect(h.frozen[0]!.calls).toMatchObject({ kill: 1, release: 0 });
    expect(h.forgotten).toEqual(['w1']);
  });

  it('a freeze whose state cannot be collected lets the tree go and fails; its retry freezes afresh', async () => {
    const h = source({ collectFails: true });
    await expect(h.steps.source.freeze(step('freeze'))).rejects.toThrow(/fd 7: a socket the engine cannot carry/);
    expect(h.frozen[0]!.calls).toMatchObject({ collect: 1, release: 1, holdOnAgentDeath: 0 });
    expect(h.states).toEqual([]);
    await expect(h.steps.source.freeze(step('freeze'))).rejects.toThrow(/cannot carry/);
    expect(h.frozen).toHaveLength(2);
  });

  it('stop-and-copy: a send with no endpoint is refused, and the frozen tree is still there for the thaw', async () => {
    const h = source();
    await h.steps.source.freeze(step('freeze'));
    await expect(h.steps.source.send(step('send'))).rejects.toMatchObject({ code: ErrorCode.InvalidRequest, message: expect.stringMatching(/no data stream to send on/) });
    h.steps.source.thaw(step('thaw'));
    expect(h.frozen[0]!.calls.release).toBe(1);
  });
});

describe('the destination steps against a fake tree builder', () => {
  function destination() {
    const aborted: number[] = [];
    const builds: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const hold = (sess: DestinationSession) => {
      const husk = { pid: 5151, abort: () => void aborted.push(5151) };
      sess.held = { husks: new Map([[77, husk]]), image: { processes: [{ pid: 77 }] }, net: null } as unknown as DestinationSession['held'];
      return 5151;
    };
    const builder: TreeBuilder = {
      build: async (_id, sess) => hold(sess),
      buildVerified: async (id, sess) => {
        builds.push(id);
        await gate;
        return { pid: hold(sess) };
      },
    };
    const workloads = { runsHere: () => false, cgroupOf: () => ({ remove: () => undefined }) } as unknown as Workloads;
    const steps = new MigrationSteps('h2', '127.0.0.1', workloads, stateDir(), undefined, 'auto', null, { treeBuilder: builder });
    return { steps, aborted, builds, release };
  }

  it('restore builds once; a duplicate joins it and a replay returns the recorded pid', async () => {
    const h = destination();
    const a = h.steps.destination.restore(step('restore'));
    const b = h.steps.destination.restore(step('restore'));
    h.release();
    expect(await a).toEqual({ pid: 5151 });
    expect(await b).toEqual({ pid: 5151 });
    expect(await h.steps.destination.restore(step('restore'))).toEqual({ pid: 5151 });
    expect(h.builds).toHaveLength(1);
  });

  it('a discard while the tree is being built waits for the build, then tears the tree down', async () => {
    const h = destination();
    const restoring = h.steps.destination.restore(step('restore'));
    restoring.catch(() => undefined);
    const discarding = h.steps.destination.discard(step('discard'));
    await new Promise((r) => setImmediate(r));
    expect(h.aborted).toEqual([]);
    h.release();
    expect(await discarding).toEqual({ done: true });
    expect(h.aborted).toEqual([5151]);
    expect(h.steps.records.get('m-abc12345-0001')?.fenced).toBe(true);
    await expect(h.steps.destination.resume(step('resume'))).rejects.toThrow(/was rolled back on h2: step refused/);
  });
});
