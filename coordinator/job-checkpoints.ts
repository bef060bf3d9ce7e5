// Jobs whose workloads span hosts (docs/hpc.md). Membership is each workload's placement policy
// (`--job J`). A job checkpoint is one cut: every member frozen before any is dumped, every
// member's snapshot staged before the job's manifest names them (the commit point), and only
// then is any made current or ended; a failure before the commit point thaws every member and
// publishes nothing. Each member's checkpoint is also an operation of its own (status, history).
import { randomBytes } from 'node:crypto';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import type { PlacementPolicy } from '../shared/fleet.ts';
import { type JobCheckpointReply, type JobCheckpointRequest, type JobImagesManifest, type JobMemberStep, type JobRestoreReply, type JobRestoreRequest, memberImages } from '../shared/job-group.ts';
import type { CheckpointReply, RestoreReply } from '../shared/job-image.ts';
import type { WorkloadInfo, WorkloadListing } from '../shared/workload.ts';
import type { AgentClient } from './agents.ts';
import type { CheckpointDirectory } from './checkpoints.ts';
import type { ClusterView } from './cluster.ts';
import type { RecordBucket } from './fleet/bucket.ts';
import { Cut } from './job-cut.ts';
import type { WorkloadDirectory } from './workloads.ts';

type StepName = JobMemberStep['step'];

export class JobCheckpoints {
  constructor(
    private readonly policies: RecordBucket<typeof PlacementPolicy>,
    private readonly workloads: WorkloadDirectory,
    private readonly checkpoints: CheckpointDirectory,
    private readonly agents: AgentClient,
    private readonly cluster: ClusterView,
  ) {}

  /** The job's workloads, by name. */
  async members(job: string): Promise<string[]> {
    return (await this.policies.all()).filter((r) => r.value.job === job).map((r) => r.key).sort();
  }

  /** The listing with each workload's job. */
  async annotate(listing: WorkloadListing): Promise<WorkloadListing> {
    const jobs = new Map((await this.policies.all()).filter((r) => r.value.job).map((r) => [r.key, r.value.job!]));
    return { ...listing, workloads: listing.workloads.map((w) => (jobs.has(w.name) ? { ...w, job: jobs.get(w.name)! } : w)) };
  }

  async checkpoint(req: JobCheckpointRequest): Promise<JobCheckpointReply> {
    const t0 = performance.now();
    const running = await this.#runningMembers(req.job);
    const names = running.map((w) => w.name);
    const addressOf = new Map(running.map((w) => [w.name, w.address]));
    const token = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
    const cut = new Cut(names.length);
    const seqs = new Map<string, { seq: number; host: string; address: string | null }>();
    let firstFrozen = 0;
    const step = async (host: string, name: string, s: StepName) => {
      const base = { name, token };
      const body: JobMemberStep = s === 'freeze' ? { step: s, ...base, images: memberImages(req.images, name), leaveRunning: req.leaveRunning } : { step: s, ...base };
      return this.agents.call(host, 'job.member', body);
    };
    const member = (name: string) => async (host: string): Promise<CheckpointReply> => {
      let held = false;
      try {
        await cut.through(`${name} on ${host}: freeze`, async () => {
          await step(host, name, 'freeze');
          held = true;
          firstFrozen ||= performance.now();
        });
        await cut.through(`${name} on ${host}: dump`, async () => {
          const r = await step(host, name, 'dump');
          seqs.set(name, { seq: r.seq!, host, address: addressOf.get(name) ?? null });
        });
        // The commit point: the first member (by name) writes the manifest once every one is staged.
        await cut.through(`job.json in ${req.images}`, async () => {
          if (name !== names[0]) return;
          await this.agents.call(host, 'job.manifest-write', { images: req.images, manifest: this.#manifest(req, names, seqs) });
        });
      } catch (err) {
        if (held) await step(host, name, 'abort').catch(() => undefined);
        throw err;
      }
      // Past the commit point: the cut stands whatever happens to this member now.
      const r = await step(host, name, 'commit');
      return r.reply!;
    };
    const results = await Promise.allSettled(names.map((name) => this.checkpoints.checkpoint({ name, images: memberImages(req.images, name), leaveRunning: req.leaveRunning }, member(name))));
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ name: names[i]!, err: FerryError.from(r.reason) }] : []));
    if (failed.length > 0) {
      const first = cut.firstFailure ?? failed[0]!.err;
      const committed = seqs.size === names.length && cut.passed(3);
      throw new FerryError(first.code, `job ${req.job}: ${committed ? 'checkpointed, but' : 'not checkpointed (every member runs on as before):'} ${failed.map((f) => `${f.name}: ${f.err.message}`).join('; ')}`, {
        details: { job: req.job, failed: failed.map((f) => f.name), committed },
        cause: first,
      });
    }
    const members = results.map((r) => (r as PromiseFulfilledResult<CheckpointReply>).value);
    return { job: req.job, images: req.images, members, barrierMs: performance.now() - (firstFrozen || t0), totalMs: performance.now() - t0 };
  }

  async restore(req: JobRestoreRequest): Promise<JobRestoreReply> {
    const t0 = performance.now();
    const alive = this.cluster.hosts().filter((h) => h.alive && !h.cordoned);
    const reader = req.hosts?.[0] ?? alive[0]?.name;
    if (!reader) throw new FerryError(ErrorCode.Unavailable, 'no live, uncordoned host to read the job checkpoint');
    const manifest = await this.agents.call(reader, 'job.manifest-read', { images: req.images });
    if (manifest.job !== req.job) throw new FerryError(ErrorCode.InvalidRequest, `${req.images} holds a checkpoint of job ${manifest.job}, not of ${req.job}`, { details: { images: req.images, job: manifest.job } });
    const members = [...manifest.members].sort((a, b) => a.workload.localeCompare(b.workload));
    const { workloads } = await this.workloads.list();
    const running = members.flatMap((m) => workloads.filter((w) => w.name === m.workload && w.state !== 'exited').map((w) => `${w.name} (${w.state} on ${w.host})`));
    if (running.length > 0) throw new FerryError(ErrorCode.InvalidRequest, `job ${req.job}: ${running.join(', ')} runs already: restoring the job would run it twice (\`ferry stop\` it first)`, { details: { job: req.job } });
    const results = await Promise.allSettled(
      members.map(async (m, i) => {
        const host = req.hosts ? req.hosts[i % req.hosts.length] : undefined;
        const prev = (await this.policies.get(m.workload))?.value;
        await this.policies.put(m.workload, { group: prev?.group ?? null, spread: prev?.spread ?? false, pinned: prev?.pinned ?? false, job: req.job });
        return this.checkpoints.restore({ name: m.workload, images: memberImages(req.images, m.workload), ...(host ? { host } : {}) }, m.seq);
      }),
    );
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ name: members[i]!.workload, err: FerryError.from(r.reason) }] : []));
    if (failed.length > 0) {
      // All or none: the members that came back are ended again (their images stay).
      const back = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      await Promise.allSettled(back.map((r) => this.agents.call(r.host, 'stop', { name: r.workload })));
      throw new FerryError(failed[0]!.err.code, `job ${req.job} not restored: ${failed.map((f) => `${f.name}: ${f.err.message}`).join('; ')}${back.length ? ` (${back.map((r) => r.workload).join(', ')} stopped again)` : ''}`, {
        details: { job: req.job, failed: failed.map((f) => f.name) },
        cause: failed[0]!.err,
      });
    }
    return { job: req.job, images: req.images, takenAt: manifest.takenAt, members: results.map((r) => (r as PromiseFulfilledResult<RestoreReply>).value), totalMs: performance.now() - t0 };
  }

  /** Every member, running (not migrating, frozen or checkpointed): a cut needs them all. */
  async #runningMembers(job: string): Promise<WorkloadInfo[]> {
    const names = await this.members(job);
    if (names.length === 0) throw new FerryError(ErrorCode.NotFound, `no workload belongs to job ${job} (\`ferry run --job ${job}\`)`, { details: { job } });
    const listing = await this.workloads.list();
    if (listing.unanswered.length > 0) throw new FerryError(ErrorCode.Unavailable, `job ${job}: ${listing.unanswered.map((u) => u.host).join(', ')} did not answer: its members there cannot be checked`);
    const found = names.map((n) => ({ n, w: listing.workloads.find((x) => x.name === n && x.state !== 'exited') }));
    const notRunning = found.flatMap(({ n, w }) => (w?.state === 'running' ? [] : [`${n} is ${w ? `${w.state} on ${w.host}` : 'not running anywhere'}`]));
    if (notRunning.length > 0) throw new FerryError(ErrorCode.InvalidRequest, `job ${job}: ${notRunning.join('; ')}: every member must run for one consistent checkpoint`, { details: { job } });
    return found.map(({ w }) => w!);
  }

  #manifest(req: JobCheckpointRequest, names: string[], seqs: Map<string, { seq: number; host: string; address: string | null }>): JobImagesManifest {
    return {
      job: req.job,
      takenAt: new Date().toISOString(),
      leftRunning: req.leaveRunning,
      members: names.map((n) => ({ workload: n, ...seqs.get(n)! })),
    };
  }
}
