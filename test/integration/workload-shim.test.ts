// How a workload starts (agent/workload-shim.ts), with real processes on a busy machine: a
// program that does not exist is refused every time, never taken for a started workload (under
// load, the shell's own exec and a failed exec's exit both read an empty cmdline for a moment);
// one that exists is found once it has exec'd, with its own arguments.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startInShim } from '../../agent/workload-shim.ts';
import { ErrorCode } from '../../shared/errors.ts';

const hogs: ChildProcess[] = [];
/** Workloads this file started, with the cmdline each had: ended at the end if still theirs. */
const started: { pid: number; cmdline: string }[] = [];
const start = (command: string[]) => startInShim({ name: 'shimtest', command, joinFiles: [], netns: null, log: '/dev/null', env: { PATH: '/usr/bin:/bin' } });

// Both CPUs busy, as in a loaded CI run: the windows the shim must not fall into grow.
beforeAll(() => {
  for (let i = 0; i < 2; i++) hogs.push(spawn('/bin/sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
});
afterAll(() => {
  for (const h of hogs) h.kill('SIGKILL');
  for (const { pid, cmdline } of started) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8') === cmdline) process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

describe('starting a workload in its shim, both CPUs busy', () => {
  it('refuses a program that does not exist, 60 times out of 60', async () => {
    const outcomes: string[] = [];
    for (let i = 0; i < 60; i++) {
      try {
        const r = await start(['/no/such/program']);
        outcomes.push(`started as pid ${r.rootPid}`);
      } catch (err) {
        const e = err as { code?: string; message: string };
        outcomes.push(e.code === ErrorCode.InvalidRequest && e.message.includes('"/no/such/program"') ? 'refused' : `${e.code}: ${e.message}`);
      }
    }
    expect(outcomes.filter((o) => o !== 'refused')).toEqual([]);
  });

  it('finds a program that exists once it has exec\'d, with its own arguments', async () => {
    for (const command of [['/bin/sleep', '30'], ['/bin/sh', '-c', 'sleep 30']]) {
      for (let i = 0; i < 5; i++) {
        const r = await start(command);
        const cmdline = readFileSync(`/proc/${r.rootPid}/cmdline`, 'utf8');
        started.push({ pid: r.rootPid, cmdline });
        expect(cmdline).toBe(`${command.join('\0')}\0`);
      }
    }
  });
});
