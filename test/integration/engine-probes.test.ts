import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { probeKernel } from '../../agent/probes.ts';

describe('probeKernel', () => {
  it('measures this kernel and stays cheap', async () => {
    await probeKernel(); // warm koffi and the module graph
    const t0 = performance.now();
    const p = await probeKernel();
    const ms = performance.now() - t0;
    expect(ms).toBeLessThan(100);
    expect(p.ptrace).toBe(true);
    expect(p.xsave).not.toBeNull();
    // XCR0 must contain x87|SSE (bits 0,1) and the size must cover the legacy area + header.
    expect(BigInt(p.xsave!.xcr0) & 3n).toBe(3n);
    expect(p.xsave!.xstateSize).toBeGreaterThanOrEqual(576);
    // Cross-check: AVX in /proc/cpuinfo means the kernel enabled YMM state (bit 2).
    if (/\bavx\b/.test(readFileSync('/proc/cpuinfo', 'utf8'))) expect(BigInt(p.xsave!.xcr0) & 4n).toBe(4n);
    expect(p.timeNamespaces).toBe(true);
    expect(typeof p.uffdWpAsync).toBe('boolean');
    expect(p.clone3SetTid).toBe(true);
    const vdsoSealed = /\[vdso\]\n(?:.*\n)*?VmFlags:.*\bsl\b/.test(readFileSync('/proc/self/smaps', 'utf8'));
    expect(p.sealedSystemMappings).toBe(vdsoSealed);
  });
});
