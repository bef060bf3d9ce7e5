// Network sysctls of a namespace (/proc/sys/net shows the namespace of whoever reads it, so the
// reading runs inside it): the ones that differ from a fresh namespace's are worth carrying.
import { run, runIn } from './exec.ts';

const TREES = ['ipv4', 'ipv6', 'core', 'unix', 'netfilter'];
// Derived from other state the rebuild sets anyway (the link's MTU).
const DERIVED = /^ipv6\/conf\/[^/]+\/mtu$/;
/** A shell command that prints every network sysctl as path:value (run inside the namespace). */
export const SYSCTL_READ = `cd /proc/sys/net && grep -r . ${TREES.join(' ')} 2>/dev/null; true`;
const READ = SYSCTL_READ;

function parse(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

let fresh: Promise<Map<string, string>> | null = null;
/** A fresh namespace's values, read once per agent. */
const freshValues = (): Promise<Map<string, string>> => (fresh ??= run('unshare', ['--net', 'sh', '-c', READ]).then(parse));

/** Where a fresh namespace keeps the value a new interface gets: conf/default, and for neighbour tables (no default outside the first namespace) loopback's. */
const defaultKey = (key: string): string => key.replace(/^(ipv[46])\/conf\/[^/]+\//, '$1/conf/default/').replace(/^(ipv[46])\/neigh\/[^/]+\//, '$1/neigh/lo/');

export async function dumpSysctls(nsPath: string): Promise<Record<string, string>> {
  return sysctlsChanged(await runIn(nsPath, 'sh', ['-c', READ]));
}

/** Of the values SYSCTL_READ printed, those that differ from a fresh namespace's. */
export async function sysctlsChanged(printed: string): Promise<Record<string, string>> {
  const [now, base] = [parse(printed), await freshValues()];
  const out: Record<string, string> = {};
  for (const [k, v] of now) {
    if (DERIVED.test(k)) continue;
    const d = base.get(k) ?? base.get(defaultKey(k));
    if (d !== v) out[k] = v;
  }
  return out;
}

/** Writes the values inside the namespace; returns the keys the kernel refused (read-only ones, say). */
export async function applySysctls(nsPath: string, values: Record<string, string>): Promise<string[]> {
  const args = Object.entries(values).flat();
  if (args.length === 0) return [];
  const script = 'while [ $# -gt 1 ]; do printf "%s\\n" "$2" 2>/dev/null > "/proc/sys/net/$1" || echo "$1"; shift 2; done';
  const out = await runIn(nsPath, 'sh', ['-c', script, 'sysctl', ...args]);
  return out.split('\n').filter(Boolean);
}
