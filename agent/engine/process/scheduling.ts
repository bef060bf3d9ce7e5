// A thread's scheduling: its nice value and policy. Read from /proc at checkpoint (no injected
// call), and set on the restored thread by the agent itself (root may set any thread's), so a
// restored workload runs at the priority it had, not at whatever its husk inherited from the
// agent (which may run at a raised priority of its own).
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import type { ThreadImage } from '../../../shared/image-format.ts';
import { sys } from '../../ffi/syscalls.ts';
import { readStat } from './procfs.ts';

export type ThreadSched = NonNullable<ThreadImage['sched']>;

const PRIO_PROCESS = 0;
const SCHED_DEADLINE = 6;
/** What a thread of an image without scheduling had: the default. */
const DEFAULT_SCHED: ThreadSched = { nice: 0, policy: 0, rtPriority: 0 };

/** From /proc/TID/stat: nice (field 19), rt_priority (40), policy (41). */
export function collectSched(pid: number, tid: number): ThreadSched {
  const { f } = readStat(tid);
  const nice = Number(f(19));
  const rtPriority = Number(f(40));
  const policy = Number(f(41));
  if (policy === SCHED_DEADLINE) {
    throw new FerryError(ErrorCode.Unsupported, `pid ${pid} thread ${tid}: SCHED_DEADLINE scheduling is not supported (its runtime, deadline and period are not carried)`, {
      retryable: false,
      details: { pid, where: `thread ${tid}`, kind: 'scheduling policy', policy },
    });
  }
  if (![0, 1, 2, 3, 5].includes(policy) || !Number.isInteger(nice) || !Number.isInteger(rtPriority)) {
    throw new FerryError(ErrorCode.Unsupported, `pid ${pid} thread ${tid}: scheduling policy ${policy} is not supported`, { retryable: false, details: { pid, where: `thread ${tid}`, kind: 'scheduling policy', policy } });
  }
  return { nice, policy: policy as ThreadSched['policy'], rtPriority };
}

/** Sets a restored thread's policy, then its nice value (kept for a real-time thread should it go back to SCHED_OTHER). */
export function restoreSched(hostTid: number, sched: ThreadSched | undefined): void {
  const s = sched ?? DEFAULT_SCHED;
  const param = Buffer.alloc(4);
  param.writeInt32LE(s.rtPriority, 0);
  sys('sched_setscheduler', hostTid, s.policy, param);
  sys('setpriority', PRIO_PROCESS, hostTid, s.nice);
}

/** What the running thread has now, for verification. */
export function schedOf(tid: number): ThreadSched {
  const { f } = readStat(tid);
  return { nice: Number(f(19)), policy: Number(f(41)) as ThreadSched['policy'], rtPriority: Number(f(40)) };
}
