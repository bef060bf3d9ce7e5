// Pure parts of the engine: address-space arithmetic, syscall restart rules, /proc parsing,
// machine comparison and the image schema.
import { describe, expect, it } from 'vitest';
import { machineMismatches } from '../../agent/engine/image/compat.ts';
import { protOf, resumeRegs } from '../../agent/engine/process/husk.ts';
import { findFree, gaps } from '../../agent/engine/memory/layout.ts';
import { parseMaps } from '../../agent/engine/process/procfs.ts';
import { Regs } from '../../agent/ffi/ptrace.ts';
import { ImageSchema, type Machine, fromHex, toHex } from '../../shared/image-format.ts';

describe('layout', () => {
  it('gaps are the complement of the occupied spans within user space', () => {
    const g = gaps([
      { start: 0x400000n, end: 0x500000n },
      { start: 0x450000n, end: 0x600000n },
      { start: 0x7fff00000000n, end: 0x7fff00100000n },
    ]);
    expect(g[0]).toEqual({ start: 0x10000n, end: 0x400000n });
    expect(g[1]).toEqual({ start: 0x600000n, end: 0x7fff00000000n });
    expect(g[2]).toEqual({ start: 0x7fff00100000n, end: 0x7ffffffff000n });
  });

  it('findFree keeps a margin, aligns, and never overlaps', () => {
    const occ = [
      { start: 0x100000000n, end: 0x100200000n },
      { start: 0x100300000n, end: 0x7ffffffff000n },
    ];
    const a = findFree(occ, 0x10000n);
    expect(a % 0x1000n).toBe(0n);
    for (const o of occ) expect(a + 0x10000n <= o.start || a >= o.end).toBe(true);
  });
});

describe('resumeRegs', () => {
  const regs = (rax: bigint, orig: bigint, rip: bigint) => {
    const r = new Regs();
    r.set('rax', rax);
    r.set('orig_rax', orig);
    r.set('rip', rip);
    return r;
  };
  it('restarts -ERESTARTSYS/-ERESTARTNOINTR/-ERESTARTNOHAND by re-running the syscall instruction', () => {
    for (const code of [-512n, -513n, -514n]) {
      const r = resumeRegs(regs(code, 202n, 0x1002n));
      expect(r.get('rip')).toBe(0x1000n);
      expect(r.get('rax')).toBe(202n);
      expect(r.getSigned('orig_rax')).toBe(-1n);
    }
  });
  it('turns -ERESTART_RESTARTBLOCK into -EINTR and leaves other results alone', () => {
    expect(resumeRegs(regs(-516n, 35n, 0x2000n)).getSigned('rax')).toBe(-4n);
    expect(resumeRegs(regs(-516n, 35n, 0x2000n)).get('rip')).toBe(0x2000n);
    const ok = resumeRegs(regs(5n, 0n, 0x3000n));
    expect(ok.get('rax')).toBe(5n);
    expect(ok.get('rip')).toBe(0x3000n);
  });
});

describe('procfs parsing', () => {
  it('parses maps lines with and without paths, including spaces and deleted files', () => {
    const m = parseMaps(
      [
        '55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]',
        '7f1c2c000000-7f1c2c021000 rw-s 00000000 00:01 1234                       /memfd:ferry shm (deleted)',
        '7ffd6a3f0000-7ffd6a3f4000 r--p 00000000 00:00 0 ',
      ].join('\n'),
    );
    expect(m).toHaveLength(3);
    expect(m[0]).toMatchObject({ start: 0x55d0c0a00000n, perms: 'rw-p', path: '[heap]' });
    expect(m[1]).toMatchObject({ inode: 1234, path: '/memfd:ferry shm (deleted)' });
    expect(m[2]!.path).toBe('');
    expect(protOf('r-xp')).toBe(5);
    expect(protOf('rw-s')).toBe(3);
  });
});

describe('machine comparison', () => {
  const base: Machine = { kernelRelease: '6.18.1', arch: 'x86_64', xcr0: '0xe7', xstateSize: 2432, vdsoLayout: [{ name: '[vdso]', size: 8192 }], sealedSystemMappings: false };
  it('names every difference', () => {
    expect(machineMismatches(base, base)).toEqual([]);
    const here = { ...base, kernelRelease: '6.19.0', xcr0: '0x7', xstateSize: 832, vdsoLayout: [{ name: '[vdso]', size: 4096 }], sealedSystemMappings: true };
    const m = machineMismatches(base, here).join('\n');
    for (const word of ['kernel release', 'XCR0', 'XSAVE size', 'vDSO layout', 'sealed']) expect(m).toContain(word);
  });
});

describe('image schema', () => {
  it('hex helpers round-trip 64-bit values', () => {
    expect(toHex(-1n)).toBe('0xffffffffffffffff');
    expect(fromHex(toHex(0x7ffd6a3f0000n))).toBe(0x7ffd6a3f0000n);
  });
  it('rejects a wrong version and a malformed address', () => {
    const img = { magic: 'ferry-image', version: 2, createdAt: '', machine: {}, root: 1, processes: [], shared: [], stats: {} };
    expect(ImageSchema.safeParse(img).success).toBe(false);
  });
});
