// HPC jobs (docs/hpc.md) in one lab of four hosts, the test playing Slurm: `ferry launch` runs a
// job that counts to a target under a random nonce it drew at its start; the scheduler's signal
// checkpoints it into a directory every host shares and the step exits with the requeue code;
// launched again on the other host it resumes (same nonce, the count carries on) and the step
// ends with the job's own exit status. Incremental checkpoints restore every page exactly. Jobs
// that span hosts: a TCP pair and an MPICH program are checkpointed at one cut and restored on two
// other hosts. Then an image goes through export and import.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckpointReply, WorkloadOperation } from '../../shared/job-image.ts';
import type { JobCheckpointReply, JobImagesManifest, JobRestoreReply } from '../../shared/job-group.ts';
import type { MigrationView } from '../../shared/migration.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { REPO, ferry, ferryJson } from './helpers/cli.ts';
import { freshLab, labEnv } from './helpers/lab.ts';
import type { LabStatus } from '../../deploy/lab/lab.ts';

const env = labEnv('ithpc');
const HOLD = 40;
const TARGET = 80;
const JOB_EXIT = 7;

// Counts to TARGET, about 30 a second, waiting at HOLD for the test's go (a file beside its
// status); the nonce is drawn once: a restart would draw another.
const JOB = `import json, os, random, sys, time
status, target = sys.argv[1], int(sys.argv[2])
nonce = random.getrandbits(62)
count = 0
acc = 0
while count < target:
    while count == ${HOLD} and not os.path.exists(status + '.go'):
        time.sleep(0.03)
    count += 1
    acc = (acc * 31 + count) % 2305843009213693951
    with open(status + '.tmp', 'w') as f:
        f.write(json.dumps({'nonce': nonce, 'count': count, 'acc': acc}))
    os.rename(status + '.tmp', status)
    time.sleep(0.03)
sys.exit(${JOB_EXIT})
`;

// Holds MiB of pages, each stamped with the last tick that wrote it (4 pages a tick, spread
// over the whole buffer); asked to (a file beside its status), it checks every page against
// what its count says it must hold, and reports the pages that do not.
const MEMJOB = `import json, os, random, sys, time
status, n = sys.argv[1], int(sys.argv[2]) * 256
PAGE = 4096
buf = bytearray(n * PAGE)
nonce = random.getrandbits(62)
def stamp(p, v):
    buf[p*PAGE:p*PAGE+16] = v.to_bytes(8, 'little') + p.to_bytes(8, 'little')
def touched(c):
    return [(c * 7919 + k * 104729) % n for k in range(4)]
for p in range(n):
    stamp(p, 1)
count = 0
while True:
    count += 1
    for p in touched(count):
        stamp(p, count + 1)
    st = {'nonce': nonce, 'count': count}
    if os.path.exists(status + '.verify'):
        want = {}
        for c in range(1, count + 1):
            for p in touched(c):
                want[p] = c + 1
        st['bad'] = sum(1 for p in range(n) if buf[p*PAGE:p*PAGE+16] != want.get(p, 1).to_bytes(8, 'little') + p.to_bytes(8, 'little'))
    with open(status + '.tmp', 'w') as f:
        f.write(json.dumps(st))
    os.rename(status + '.tmp', status)
    time.sleep(0.02)
`;

// Two members of one job pass a counter back and forth over TCP; each checks that every number
// it receives is the one after the last it sent (no message lost, none twice) and fails loudly
// otherwise.
const PAIR = `import json, os, socket, struct, sys, time
role, status, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def write(**kw):
    with open(status + '.tmp', 'w') as f:
        f.write(json.dumps(kw))
    os.rename(status + '.tmp', status)
if role == 'server':
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(('0.0.0.0', port))
    ls.listen(1)
    s, _ = ls.accept()
else:
    while True:
        try:
            s = socket.create_connection((sys.argv[4], port), timeout=5)
            break
        except OSError:
            time.sleep(0.1)
    s.settimeout(None)
def recv8():
    b = b''
    while len(b) < 8:
        c = s.recv(8 - len(b))
        if not c:
            write(role=role, last=last, error='peer closed the connection')
            sys.exit(3)
        b += c
    return struct.unpack('<Q', b)[0]
last = 0
if role == 'client':
    last = 1
    s.sendall(struct.pack('<Q', last))
while True:
    n = recv8()
    if n != last + 1:
        write(role=role, last=last, error='got %d after %d' % (n, last))
        sys.exit(3)
    last = n + 1
    write(role=role, last=last)
    time.sleep(0.01)
    s.sendall(struct.pack('<Q', last))
`;

interface PairStatus {
  role: string;
  last: number;
  error?: string;
}

interface JobStatus {
  nonce: number;
  count: number;
  acc: number;
}

const expectedAcc = (n: number): number => {
  let acc = 0n;
  for (let i = 1n; i <= BigInt(n); i++) acc = (acc * 31n + i) % 2305843009213693951n;
  return Number(acc);
};

let dir: string;
let lab: LabStatus;
const readJob = (file: string): JobStatus | null => {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as JobStatus;
  } catch {
    return null;
  }
};

async function until<T>(what: string, get: () => T | null | undefined | false | Promise<T | null | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}

/** `ferry launch` as a batch script's step: a child we can signal, its exit code and output. */
function launch(args: string[]): { child: ChildProcess; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, [path.join(REPO, 'bin/ferry.js'), 'launch', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return { child, done: new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr }))) };
}

const ps = () => ferryJson<WorkloadInfo[]>(['ps'], env);
const operations = async (name: string) => (await ferryJson<(MigrationView | WorkloadOperation)[]>(['history'], env)).filter((e): e is WorkloadOperation => 'kind' in e && e.workload === name);

describe('HPC jobs: launch, checkpoint on the signal, requeue, resume on another host', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'ferry-hpc-'));
    writeFileSync(path.join(dir, 'job.py'), JOB);
    writeFileSync(path.join(dir, 'memjob.py'), MEMJOB);
    writeFileSync(path.join(dir, 'pair.py'), PAIR);
    lab = await freshLab(env, 4);
  });
  afterAll(async () => {
    await ferry(['lab', 'down'], env);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a job survives the signal, exits with the requeue code, resumes on h2 and ends with its own exit status', async () => {
    const images = path.join(dir, 'job1-images');
    const st = path.join(dir, 'job1.status');
    const cmd = ['python3', path.join(dir, 'job.py'), st, String(TARGET)];
    const first = launch(['--name', 'job1', '--images', images, '--host', 'h1', '--interval', '1s', '--json', '--', ...cmd]);
    const started = await until('the job counts', () => readJob(st));
    // A periodic checkpoint lands while the job runs on.
    await until('a periodic checkpoint', () => existsSync(path.join(images, 'current')));
    expect((await ps()).filter((w) => w.name === 'job1').map((w) => [w.host, w.state])).toEqual([['h1', 'running']]);

    first.child.kill('SIGUSR1');
    const r1 = await first.done;
    expect(r1.code, r1.stderr).toBe(85);
    expect(JSON.parse(r1.stdout)).toMatchObject({ workload: 'job1', outcome: 'checkpointed', host: 'h1', exitCode: 85 });
    const atCheckpoint = readJob(st)!;
    expect(atCheckpoint.nonce).toBe(started.nonce);
    expect(atCheckpoint.count).toBeLessThanOrEqual(HOLD);
    // Nowhere running; the record says where it is.
    const listed = (await ps()).filter((w) => w.name === 'job1');
    expect(listed.map((w) => [w.host, w.state, w.images])).toEqual([['h1', 'checkpointed', images]]);
    const ops = await operations('job1');
    expect(ops.filter((o) => o.kind === 'checkpoint' && o.state === 'completed' && o.leftRunning).length).toBeGreaterThan(0);
    expect(ops[0]).toMatchObject({ kind: 'checkpoint', host: 'h1', state: 'completed', leftRunning: false });

    // Requeued onto the other host: restored from the checkpoint, not started afresh.
    const second = launch(['--name', 'job1', '--images', images, '--host', 'h2', '--json', '--', ...cmd]);
    await until('job1 runs on h2', async () => (await ps()).some((w) => w.name === 'job1' && w.host === 'h2' && w.state === 'running'));
    // A restore while it runs is refused, before anything is touched: one copy only. (It waits at HOLD until told to go on.)
    const twice = await ferry(['restore', 'job1', '--images', images, '--host', 'h1', '--json'], env);
    expect(twice.code).toBe(2);
    expect(JSON.parse(twice.stdout).error).toMatchObject({ code: 'FERRY_INVALID_REQUEST' });
    expect(JSON.parse(twice.stdout).error.message).toMatch(/job1.*running on h2/);
    expect((await ps()).filter((w) => w.name === 'job1' && w.state === 'running').map((w) => w.host)).toEqual(['h2']);

    writeFileSync(`${st}.go`, '');
    const r2 = await second.done;
    expect(r2.code, r2.stderr).toBe(JOB_EXIT);
    expect(JSON.parse(r2.stdout)).toMatchObject({ outcome: 'exited', host: 'h2', exitStatus: JOB_EXIT, exitCode: JOB_EXIT });
    const end = readJob(st)!;
    // Only continuity gives this: the nonce drawn on h1 before the signal, and the count carried on to the target.
    expect(end).toEqual({ nonce: started.nonce, count: TARGET, acc: expectedAcc(TARGET) });
    expect(r2.stderr).toMatch(/"event":"launch.restored"/);
    // A finished job leaves no checkpoint to resume from, and runs nowhere.
    expect(readdirSync(images).filter((e) => e.startsWith('ckpt-') || e === 'current')).toEqual([]);
    expect((await ps()).filter((w) => w.name === 'job1' && w.state !== 'exited')).toEqual([]);
    expect((await operations('job1'))[0]).toMatchObject({ kind: 'restore', host: 'h2', state: 'completed' });
  });

  it('checkpoints after the first write only the pages written since, survive a crashed write, and restore every page exactly', async () => {
    const st = path.join(dir, 'mem.status');
    const images = path.join(dir, 'mem-images');
    const MIB = 32;
    await ferry(['run', '--host', 'h1', '--name', 'mem1', '--', 'python3', path.join(dir, 'memjob.py'), st, String(MIB)], env);
    const started = await until('mem1 counts', () => readJob(st));
    const checkpoint = async (leaveRunning: boolean) => {
      const r = await ferry(['checkpoint', 'mem1', '--images', images, ...(leaveRunning ? ['--leave-running'] : []), '--json'], env);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      return JSON.parse(r.stdout) as CheckpointReply;
    };
    const advanced = (past: number) => until(`mem1 counts past ${past}`, () => (readJob(st)?.count ?? 0) > past + 20);
    const full = await checkpoint(true);
    expect(full).toMatchObject({ incremental: false, leftRunning: true });
    expect(full.bytesWritten).toBeGreaterThanOrEqual(MIB << 20);
    const store = readdirSync(images).filter((e) => e.startsWith('store-'));
    expect(store).toHaveLength(1);

    // A checkpoint that crashed halfway left pages in the store that no image refers to.
    const storeFile = readdirSync(path.join(images, store[0]!)).find((f) => f.endsWith('.img'))!;
    appendFileSync(path.join(images, store[0]!, storeFile), Buffer.alloc(8192, 0xee));
    expect((await ferryJson<{ checksums: string }>(['image', 'inspect', images], env)).checksums).toBe('ok');

    await advanced(readJob(st)!.count);
    const incr = await checkpoint(true);
    expect(incr).toMatchObject({ incremental: true, seq: full.seq + 1 });
    // 4 pages a tick: a few hundred KiB against the whole 32 MiB.
    expect(incr.bytesWritten).toBeLessThan(full.bytesWritten / 8);
    expect(readdirSync(images).sort()).toEqual([`ckpt-${String(incr.seq).padStart(6, '0')}`, 'current', store[0]]);

    await advanced(readJob(st)!.count);
    const last = await checkpoint(false);
    expect(last).toMatchObject({ incremental: true, leftRunning: false });
    const atEnd = readJob(st)!;
    const back = await ferry(['restore', 'mem1', '--images', images, '--host', 'h2', '--json'], env);
    expect(back.code, back.stdout).toBe(0);
    writeFileSync(`${st}.verify`, '');
    const checked = await until('mem1 checks its pages on h2', () => {
      const s = readJob(st) as (JobStatus & { bad?: number }) | null;
      return s && s.bad !== undefined ? s : null;
    });
    // Same run (its nonce), carried on from the checkpoint, and not one page different from what its own count says.
    expect(checked.nonce).toBe(started.nonce);
    expect(checked.count).toBeGreaterThan(atEnd.count);
    expect(checked.bad).toBe(0);
    expect((await ps()).filter((w) => w.name === 'mem1' && w.state === 'running').map((w) => w.host)).toEqual(['h2']);
    await ferry(['stop', 'mem1'], env);
  });

  it('a job on two hosts checkpoints at one cut and comes back on two others, its TCP connection between them intact', async () => {
    const images = path.join(dir, 'pair-images');
    const [sa, sb] = [path.join(dir, 'pa.status'), path.join(dir, 'pb.status')];
    const pair = (f: string) => JSON.parse(readFileSync(f, 'utf8')) as PairStatus;
    const status = (f: string): PairStatus | null => {
      try {
        return pair(f);
      } catch {
        return null;
      }
    };
    const pa = await ferryJson<WorkloadInfo>(['run', '--host', 'h1', '--name', 'pa', '--job', 'pp', '--', 'python3', path.join(dir, 'pair.py'), 'server', sa, '7100'], env);
    await ferryJson<WorkloadInfo>(['run', '--host', 'h2', '--name', 'pb', '--job', 'pp', '--', 'python3', path.join(dir, 'pair.py'), 'client', sb, '7100', pa.address!], env);
    // Both sides moving, and each past `n` exchanges from where it was, with no error.
    const exchanged = (past: { a: number; b: number }, what: string) =>
      until(what, () => {
        const [a, b] = [status(sa), status(sb)];
        if (a?.error || b?.error) throw new Error(`the pair failed: ${a?.error ?? ''} ${b?.error ?? ''}`);
        return a && b && a.last > past.a + 20 && b.last > past.b + 20 ? { a: a.last, b: b.last } : null;
      });
    let at = await exchanged({ a: 0, b: 0 }, 'the pair exchanges');
    expect((await ps()).filter((w) => w.job === 'pp').map((w) => [w.name, w.host]).sort()).toEqual([['pa', 'h1'], ['pb', 'h2']]);

    // A cut that lets the job run on, then one that ends it.
    const kept = await ferryJson<JobCheckpointReply>(['checkpoint', '--job', 'pp', '--images', images, '--leave-running'], env);
    expect(kept.members.map((m) => [m.workload, m.leftRunning]).sort()).toEqual([['pa', true], ['pb', true]]);
    at = await exchanged(at, 'the pair goes on after a --leave-running cut');
    const cut = await ferryJson<JobCheckpointReply>(['checkpoint', '--job', 'pp', '--images', images], env);
    expect(cut.members.map((m) => m.workload).sort()).toEqual(['pa', 'pb']);
    const manifest = JSON.parse(readFileSync(path.join(images, 'job.json'), 'utf8')) as JobImagesManifest;
    expect(manifest.members.map((m) => [m.workload, m.seq]).sort()).toEqual(cut.members.map((m) => [m.workload, m.seq]).sort());
    expect((await ps()).filter((w) => w.job === 'pp').map((w) => [w.name, w.state]).sort()).toEqual([['pa', 'checkpointed'], ['pb', 'checkpointed']]);
    const stopped = { a: pair(sa).last, b: pair(sb).last };

    const back = await ferryJson<JobRestoreReply>(['restore', '--job', 'pp', '--images', images, '--hosts', 'h3,h4'], env);
    expect(back.members.map((m) => [m.workload, m.host]).sort()).toEqual([['pa', 'h3'], ['pb', 'h4']]);
    // The same connection carries on: a reconnect would start the count again, a lost or doubled message fails a side.
    at = await exchanged(stopped, 'the pair exchanges again on h3 and h4');
    expect(Math.abs(at.a - at.b)).toBeLessThan(200);
    expect((await ps()).filter((w) => w.job === 'pp' && w.state === 'running').map((w) => [w.name, w.host]).sort()).toEqual([['pa', 'h3'], ['pb', 'h4']]);

    // And the whole job moves live.
    const moved = await ferry(['migrate', '--job', 'pp', '--to', 'h1,h2', '--json'], env);
    expect(moved.code, moved.stderr).toBe(0);
    expect((JSON.parse(moved.stdout) as { migrations: MigrationView[] }).migrations.map((m) => [m.workload, m.to, m.outcome])).toEqual([
      ['pa', 'h1', 'completed'],
      ['pb', 'h2', 'completed'],
    ]);
    await exchanged(at, 'the pair exchanges after the job moved');
    await ferry(['stop', 'pa'], env);
    await ferry(['stop', 'pb'], env);
  });

  it('an MPI program (Debian MPICH) with ranks on two hosts is checkpointed at one cut, restarted on two others, and ends with the right result', async () => {
    // Each rank runs under its hydra proxy, started as a member of job mpi on its host;
    // mpiexec (the launcher, with -launcher manual: it prints the proxies' command lines) runs
    // outside the job, in the lab's client namespace, and keeps its connections to the proxies.
    const ring = path.join(dir, 'mpi-ring');
    execFileSync('mpicc', ['-O2', '-o', ring, path.join(REPO, 'test/integration/clients/mpi-ring.c')]);
    const ns = lab.clientNamespace;
    const clientIp = /inet (\d+\.\d+\.\d+\.\d+)/.exec(execFileSync('ip', ['netns', 'exec', ns, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' }))![1]!;
    const st = path.join(dir, 'mpi');
    const STEPS = 600;
    // The lab's hosts share one kernel (one boot id): UCX would take two ranks for one node and use shared memory. TCP only.
    const mpiexec = spawn('ip', ['netns', 'exec', ns, 'env', 'UCX_TLS=tcp,self', 'mpiexec', '-launcher', 'manual', '-localhost', clientIp, '-hosts', 'r0,r1', '-n', '2', ring, st, String(STEPS)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    mpiexec.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    mpiexec.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => mpiexec.on('close', resolve));
    try {
      const launches = await until('mpiexec prints the proxies to start', () => (out.includes('HYDRA_LAUNCH_END') ? out.split('\n').filter((l) => l.startsWith('HYDRA_LAUNCH: ')).map((l) => l.slice('HYDRA_LAUNCH: '.length).trim().split(/\s+/)) : null));
      expect(launches).toHaveLength(2);
      for (const [i, cmd] of launches.entries()) await ferryJson<WorkloadInfo>(['run', '--host', `h${i + 1}`, '--name', `rank${i}`, '--job', 'mpi', '--cwd', dir, '--', ...cmd], env);
      const step = (r: number) => {
        try {
          return (JSON.parse(readFileSync(`${st}.${r}`, 'utf8')) as { step: number }).step;
        } catch {
          return 0;
        }
      };
      await until('both ranks pass the token', () => step(0) > 50 && step(1) > 50);
      const cut = await ferryJson<JobCheckpointReply>(['checkpoint', '--job', 'mpi', '--images', path.join(dir, 'mpi-images')], env);
      expect(cut.members.map((m) => m.workload).sort()).toEqual(['rank0', 'rank1']);
      const at = step(0);
      expect(at).toBeLessThan(STEPS);
      const back = await ferryJson<JobRestoreReply>(['restore', '--job', 'mpi', '--images', path.join(dir, 'mpi-images'), '--hosts', 'h3,h4'], env);
      expect(back.members.map((m) => [m.workload, m.host]).sort()).toEqual([['rank0', 'h3'], ['rank1', 'h4']]);
      await until('the ranks go on on h3 and h4', () => step(0) > at + 20);
      // The result only an unbroken run of every step gives, and mpiexec's own success.
      const code = await Promise.race([exited, sleep(120_000).then(() => 'timeout' as const)]);
      expect(code, out).toBe(0);
      expect(JSON.parse(readFileSync(`${st}.result`, 'utf8'))).toMatchObject({ ok: true });
    } finally {
      if (mpiexec.exitCode === null) mpiexec.kill('SIGKILL');
      for (const r of ['rank0', 'rank1']) await ferry(['stop', r], env);
    }
  });

  it('a job checkpoint is refused, with nothing frozen, while a member is not running', async () => {
    const st = path.join(dir, 'lone.status');
    writeFileSync(`${st}.go`, '');
    await ferry(['run', '--host', 'h1', '--name', 'lone', '--job', 'half', '--', 'python3', path.join(dir, 'job.py'), st, '1000000'], env);
    await ferry(['run', '--host', 'h2', '--name', 'gone', '--job', 'half', '--', 'true'], env);
    const before = await until('lone counts', () => readJob(st));
    const refused = await ferry(['checkpoint', '--job', 'half', '--images', path.join(dir, 'half-images'), '--json'], env);
    expect(refused.code).toBe(2);
    expect(JSON.parse(refused.stdout).error.message).toMatch(/gone is (exited|not running)/);
    await until('lone counts on', () => (readJob(st)?.count ?? 0) > before.count + 5);
    expect(existsSync(path.join(dir, 'half-images', 'job.json'))).toBe(false);
    await ferry(['stop', 'lone'], env);
  });

  it('an image goes through export and import, is refused when corrupted, and restores from the imported copy', async () => {
    const st = path.join(dir, 'exp.status');
    writeFileSync(`${st}.go`, ''); // no hold: it counts on
    await ferry(['run', '--host', 'h1', '--name', 'exp1', '--', 'python3', path.join(dir, 'job.py'), st, '1000000'], env);
    const before = await until('exp1 counts', () => readJob(st));
    const images = path.join(dir, 'exp-images');
    const ck = await ferry(['checkpoint', 'exp1', '--images', images, '--json'], env);
    expect(ck.code, ck.stderr).toBe(0);
    const file = path.join(dir, 'exp1.tar.zst');
    const ex = await ferryJson<{ files: number; archiveBytes: number; imageBytes: number }>(['image', 'export', images, file], env);
    expect(ex.archiveBytes).toBeLessThan(ex.imageBytes);
    const seen = await ferryJson<{ workload: { workload: string }; archive: { files: number }; checksums: string }>(['image', 'inspect', file], env);
    expect(seen).toMatchObject({ workload: { workload: 'exp1' }, archive: { files: ex.files }, checksums: 'ok' });

    // One flipped byte anywhere in the archive: refused, nothing imported.
    const bad = path.join(dir, 'bad.tar.zst');
    copyFileSync(file, bad);
    const bytes = readFileSync(bad);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    writeFileSync(bad, bytes);
    const refused = await ferry(['image', 'import', bad, path.join(dir, 'bad-images'), '--json'], env);
    expect(refused.code).not.toBe(0);
    expect(JSON.parse(refused.stdout).error.code).toBe('FERRY_BAD_IMAGE');
    expect(readdirSync(path.join(dir, 'bad-images')).filter((e) => !e.startsWith('.'))).toEqual([]);

    const copy = path.join(dir, 'exp-imported');
    await ferryJson(['image', 'import', file, copy], env);
    const back = await ferry(['restore', 'exp1', '--images', copy, '--host', 'h2', '--json'], env);
    expect(back.code, back.stdout).toBe(0);
    const after = await until('exp1 counts on after the restore', () => {
      const s = readJob(st);
      return s && s.count > before.count + 5 ? s : null;
    });
    expect(after.nonce).toBe(before.nonce);
    expect(after.acc).toBe(expectedAcc(after.count));
    await ferry(['stop', 'exp1'], env);
  });
});
