// Starts processes that are not children of the Node process: libuv waits on its own children
// and would swallow their ptrace stops, and a restored tree must outlive the agent or CLI.
import { spawnSync } from 'node:child_process';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';

export interface DetachedOptions {
  /** File that receives stdout and stderr; /dev/null when absent. */
  log?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Start it in a new session (setsid) so terminal signals to the caller never reach it. */
  newSession?: boolean;
}

/** Runs argv in the background of a throwaway shell that exits at once; returns the pid. */
export function spawnDetached(argv: readonly string[], opts: DetachedOptions = {}): number {
  const out = opts.log ?? '/dev/null';
  // The background job is not a process-group leader, so setsid execs in place and $! stays right.
  // Descriptors the agent inherited from its own parent must not leak into the workload or husk.
  const closeInherited = 'for f in /proc/$$/fd/*; do n=${f##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null; fi; done; ';
  // The log path travels as $1, not in the environment, so that the workload's environment is exactly what it was given.
  // A shell's background job starts with SIGINT and SIGQUIT ignored; env (which execs) puts them back to default.
  const script = `${closeInherited}log=$1; shift; ${opts.newSession === false ? '' : 'setsid '}env --default-signal=INT,QUIT "$@" </dev/null >>"$log" 2>&1 & echo $!`;
  // --norc and a stdin that is no socket: bash sources ~/.bashrc when its stdin is a socket (libuv's
  // pipes are socketpairs) and SHLVL is below 2, as for a daemon; a slow rc (pyenv init: 0.7 s)
  // then lands in every freeze and restore.
  const r = spawnSync('/bin/bash', ['--norc', '--noprofile', '-c', script, 'ferry-spawn', out, ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    encoding: 'utf8',
  });
  const pid = Number.parseInt(r.stdout.trim(), 10);
  if (r.status !== 0 || !Number.isInteger(pid) || pid <= 0)
    throw new FerryError(ErrorCode.Internal, `could not start ${argv[0]}: ${r.stderr || r.error?.message || 'no pid'}`, { details: { argv } });
  return pid;
}
