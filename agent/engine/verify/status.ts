// Process and thread status against the image: signal dispositions, masks and pending signals,
// credentials, NoNewPrivs and seccomp, personality, rlimits, umask, names, ids, cwd and exe.
import { type ProcessImage, fromHex } from '../../../shared/image-format.ts';
import { Check, type ProcessRef, hexField, sigBits } from './check.ts';
import type { ProcessReading } from './reading.ts';

const RLIM_INFINITY = (1n << 64n) - 1n;

/** /proc/PID/limits rows in resource order (RLIMIT_CPU = 0 ... RLIMIT_RTTIME = 15): [soft, hard]. */
export function parseLimits(text: string): Array<[bigint, bigint]> {
  const out: Array<[bigint, bigint]> = [];
  for (const line of text.split('\n').slice(1)) {
    const m = /^Max .+?\s{2,}(\S+)\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = (s: string) => (s === 'unlimited' ? RLIM_INFINITY : BigInt(s));
    out.push([v(m[1]!), v(m[2]!)]);
  }
  return out;
}

/** The innermost id of an "NSpid:\t812\t3" line: what the process sees. */
const inner = (v: string | undefined): number => Number((v ?? '').trim().split(/\s+/).at(-1) ?? NaN);

export function compareStatus(p: ProcessImage, r: ProcessReading, parentHostPid: number | null): Check {
  const c = new Check('status');
  const ref: ProcessRef = { pid: p.pid, hostPid: r.hostPid };
  const st = r.status;
  const handler = (a: ProcessImage['sigactions'][number]) => fromHex(a.handler);
  c.eq(ref, 'SigIgn', sigBits(p.sigactions.filter((a) => handler(a) === 1n).map((a) => a.sig)), hexField(st.get('SigIgn')));
  c.eq(ref, 'SigCgt', sigBits(p.sigactions.filter((a) => handler(a) > 1n).map((a) => a.sig)), hexField(st.get('SigCgt')));
  c.pendingKept(ref, 'ShdPnd', sigBits(p.pendingShared.map((s) => s.sig)), hexField(st.get('ShdPnd')));

  const [ruid, euid, suid, fsuid] = p.creds.uids;
  const [rgid, egid, sgid, fsgid] = p.creds.gids;
  c.eq(ref, 'Uid', [ruid, euid, suid, fsuid].join(' '), (st.get('Uid') ?? '').split(/\s+/).join(' '));
  c.eq(ref, 'Gid', [rgid, egid, sgid, fsgid].join(' '), (st.get('Gid') ?? '').split(/\s+/).join(' '));
  const groups = (s: string) => s.split(/\s+/).filter(Boolean).map(Number).sort((a, b) => a - b).join(' ');
  c.eq(ref, 'Groups', groups(p.creds.groups.join(' ')), groups(st.get('Groups') ?? ''));
  for (const [k, v] of [['CapInh', p.creds.capInh], ['CapPrm', p.creds.capPrm], ['CapEff', p.creds.capEff], ['CapBnd', p.creds.capBnd], ['CapAmb', p.creds.capAmb]] as const)
    c.eq(ref, k, fromHex(v), hexField(st.get(k)));
  c.eq(ref, 'NoNewPrivs', p.creds.noNewPrivs ? '1' : '0', st.get('NoNewPrivs') ?? '?');
  // The image has no seccomp field because checkpoint refuses any filter (preflight): mode 0 is implied.
  c.eq(ref, 'Seccomp', '0', st.get('Seccomp') ?? '?');
  c.eq(ref, 'Umask', p.umask, Number.parseInt(st.get('Umask') ?? 'NaN', 8));
  c.eq(ref, 'personality', p.personality, Number.parseInt(r.personality, 16));

  const limits = parseLimits(r.limits);
  for (const l of p.rlimits) {
    const got = limits[l.resource];
    c.eq(ref, `rlimit ${l.resource} soft`, fromHex(l.cur), got?.[0] ?? -1n, 'rlimits');
    c.eq(ref, `rlimit ${l.resource} hard`, fromHex(l.max), got?.[1] ?? -1n, 'rlimits');
  }

  c.eq(ref, 'pid', p.pid, inner(st.get('NSpid')), 'ids');
  c.eq(ref, 'sid', p.sid, inner(st.get('NSsid')), 'ids');
  c.eq(ref, 'pgid', p.pgid, inner(st.get('NSpgid')), 'ids');
  if (parentHostPid !== null) c.eq(ref, 'ppid', parentHostPid, Number(st.get('PPid')), 'ids');
  c.eq(ref, 'cwd', p.cwd, r.cwd);
  c.eq(ref, 'root', p.root ?? '/', r.root);
  c.eq(ref, 'exe', p.exe, r.exe);

  // Threads: the same tids, each with its name, blocked mask and pending signals.
  const byTid = new Map(r.tasks.map((t) => [inner(t.status.get('NSpid')), t]));
  c.eq(ref, 'threads', p.threads.map((t) => t.tid).sort((a, b) => a - b).join(' '), [...byTid.keys()].sort((a, b) => a - b).join(' '));
  for (const t of p.threads) {
    const got = byTid.get(t.tid);
    if (!got) continue;
    c.eq(ref, `thread ${t.tid} comm`, t.comm, got.comm, 'comm');
    if (t.sched && got.sched) {
      c.eq(ref, `thread ${t.tid} nice`, t.sched.nice, got.sched.nice, 'sched');
      c.eq(ref, `thread ${t.tid} policy`, t.sched.policy, got.sched.policy, 'sched');
      c.eq(ref, `thread ${t.tid} rt_priority`, t.sched.rtPriority, got.sched.rtPriority, 'sched');
    }
    c.eq(ref, `thread ${t.tid} SigBlk`, fromHex(t.sigmask), hexField(got.status.get('SigBlk')), 'SigBlk');
    c.pendingKept(ref, `thread ${t.tid} SigPnd`, sigBits(t.pending.map((s) => s.sig)), hexField(got.status.get('SigPnd')), 'SigPnd');
  }

  c.skip('pdeathsig', '/proc does not show it (PR_GET_PDEATHSIG needs an injected call)');
  c.skip('signal handler addresses, flags and masks', '/proc shows only which signals are caught or ignored');
  c.skip('registers, FPU state, rseq, robust list, tid address, altstack', '/proc does not show them');
  c.skip('POSIX timers and itimers', 'not compared yet');
  c.skip('child-subreaper, THP-disable, dumpable, membarrier', 'the image does not record them yet');
  return c;
}
