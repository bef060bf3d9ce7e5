import { describe, expect, it } from 'vitest';
import { assertCompatible, assertDataStreams, incompatibilities, memoryNeeded } from '../../coordinator/compatibility.ts';
import { ErrorCode } from '../../shared/errors.ts';
import type { HostFacts } from '../../shared/facts.ts';

const host = (name: string, patch: Partial<{ release: string; xcr0: string; size: number; sealed: boolean; setTid: boolean; noIdentity: boolean }> = {}): HostFacts => ({
  name,
  hostname: name,
  address: '10.0.0.1',
  kernel: { release: patch.release ?? '6.18.44', version: '#1', arch: 'x86_64' },
  cpu: { model: 'x', count: 2, xsave: { xcr0: patch.xcr0 ?? '0xe7', xstateSize: patch.size ?? 2432 } },
  memory: { totalBytes: 8e9, availableBytes: 4e9 },
  features: {
    uffdWpAsync: true,
    pagemapScan: true,
    softDirty: false,
    clone3SetTid: patch.setTid ?? true,
    sealedSystemMappings: patch.sealed ?? false,
    timeNamespaces: true,
    cgroup2Freezer: true,
    ptrace: true,
  },
  agent: { version: '0', pid: 1, startedAt: 'x' },
  dataStream: patch.noIdentity ? null : { port: 7410, encrypt: true },
});

describe('destination compatibility', () => {
  it('refuses a migration when either agent has no identity for the data stream, naming it', () => {
    expect(() => assertDataStreams(host('a'), host('b'))).not.toThrow();
    expect(() => assertDataStreams(host('a'), host('b', { noIdentity: true }))).toThrow(
      expect.objectContaining({ code: ErrorCode.BadConfig, message: expect.stringMatching(/^b has no TLS identity/) }),
    );
    expect(() => assertDataStreams(host('a', { noIdentity: true }), host('b', { noIdentity: true }))).toThrow(/a and b have no TLS identity/);
  });

  it('accepts identical hosts, and a destination with more XSAVE features', () => {
    expect(incompatibilities(host('a'), host('b'))).toEqual([]);
    expect(incompatibilities(host('a', { xcr0: '0x7' }), host('b', { xcr0: '0xe7', size: 2432 }))).toEqual([]);
  });

  it('names every reason a destination cannot run the workload', () => {
    const problems = incompatibilities(host('a'), host('b', { release: '6.1.0', xcr0: '0x7', size: 832, sealed: true, setTid: false }));
    expect(problems.join('\n')).toMatch(/kernel release 6\.18\.44 on a vs 6\.1\.0 on b/);
    expect(problems.join('\n')).toMatch(/XCR0 0xe7 on a has features that 0x7 on b lacks/);
    expect(problems.join('\n')).toMatch(/xstate size 2432 vs 832/);
    expect(problems.join('\n')).toMatch(/seals its vDSO/);
    expect(problems.join('\n')).toMatch(/cannot choose PIDs/);
    expect(() => assertCompatible(host('a'), host('b', { sealed: true }))).toThrow(expect.objectContaining({ code: ErrorCode.Incompatible }));
  });

  it('asks for the workload plus a margin', () => {
    expect(memoryNeeded(0)).toBe(64 * 1024 * 1024);
    expect(memoryNeeded(1e9)).toBeGreaterThan(1.1e9);
  });
});
