// What a restore needs the machine to share with the one that made the image, and the check
// that refuses a mismatch before any process is created.
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { type Machine, toHex } from '../../../shared/image-format.ts';
import { probeKernelSync, xsaveLayout } from '../probes.ts';
import { type MapEntry, parseMaps } from '../process/procfs.ts';

const SPECIALS = new Set(['[vvar]', '[vvar_vclock]', '[vdso]']);
export const vdsoLayoutOf = (maps: readonly MapEntry[]): Machine['vdsoLayout'] =>
  maps.filter((m) => SPECIALS.has(m.path)).map((m) => ({ name: m.path, size: Number(m.end - m.start) }));

/** The machine as seen from a checkpointed process: its own XSTATE regset gives XCR0 and size. */
export function machineFromProcess(xstate: Buffer, maps: readonly MapEntry[], sealed: boolean): Machine {
  return {
    kernelRelease: release(),
    arch: 'x86_64',
    xcr0: toHex(xstate.length >= 472 ? xstate.readBigUInt64LE(464) : 0n),
    xstateSize: xstate.length,
    vdsoLayout: vdsoLayoutOf(maps),
    sealedSystemMappings: sealed,
  };
}

export function localMachine(): Machine {
  const x = xsaveLayout();
  return {
    kernelRelease: release(),
    arch: 'x86_64',
    xcr0: x?.xcr0 ?? '0x0',
    xstateSize: x?.xstateSize ?? 0,
    vdsoLayout: vdsoLayoutOf(parseMaps(readFileSync('/proc/self/maps', 'utf8'))),
    sealedSystemMappings: probeKernelSync().sealedSystemMappings,
  };
}

/** Every difference that makes a restore unsafe; an empty list means go. */
export function machineMismatches(image: Machine, here: Machine): string[] {
  const out: string[] = [];
  if (image.kernelRelease !== here.kernelRelease) out.push(`kernel release ${image.kernelRelease} in the image, ${here.kernelRelease} here`);
  if (image.xcr0 !== here.xcr0) out.push(`XSAVE features (XCR0) ${image.xcr0} in the image, ${here.xcr0} here`);
  if (image.xstateSize !== here.xstateSize) out.push(`XSAVE size ${image.xstateSize} in the image, ${here.xstateSize} here`);
  const lay = (l: Machine['vdsoLayout']) => l.map((e) => `${e.name}:${e.size}`).join(' ');
  if (lay(image.vdsoLayout) !== lay(here.vdsoLayout)) out.push(`vDSO layout "${lay(image.vdsoLayout)}" in the image, "${lay(here.vdsoLayout)}" here`);
  if (here.sealedSystemMappings) out.push('system mappings are sealed here (CONFIG_MSEAL_SYSTEM_MAPPINGS): the vDSO cannot be moved');
  return out;
}

export function assertCompatible(image: Machine, here: Machine = localMachine()): void {
  const m = machineMismatches(image, here);
  if (m.length > 0) throw new FerryError(ErrorCode.Incompatible, `image does not fit this machine: ${m.join('; ')}`, { details: { mismatches: m, image, here } });
}
