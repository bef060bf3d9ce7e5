// Can a workload checkpointed on one host run on another? Decided from the two hosts' facts
// before anything is frozen. The engine checks the image against its machine again on restore.
import { ErrorCode, FerryError } from '../shared/errors.ts';
import type { HostFacts } from '../shared/facts.ts';

/** Problems that forbid the move, each naming the fact and both values; empty when compatible. */
export function incompatibilities(src: HostFacts, dst: HostFacts): string[] {
  const out: string[] = [];
  // The vDSO and vvar are moved to their old addresses and must have the same code and size.
  if (src.kernel.release !== dst.kernel.release) out.push(`kernel release ${src.kernel.release} on ${src.name} vs ${dst.kernel.release} on ${dst.name}`);
  if (src.kernel.arch !== dst.kernel.arch) out.push(`architecture ${src.kernel.arch} vs ${dst.kernel.arch}`);
  const sx = src.cpu.xsave;
  const dx = dst.cpu.xsave;
  if (!sx || !dx) out.push(`XSAVE state unknown on ${!sx ? src.name : dst.name}`);
  else {
    // Every feature enabled on the source must be enabled on the destination, with the same layout size.
    if ((BigInt(sx.xcr0) & ~BigInt(dx.xcr0)) !== 0n) out.push(`XCR0 ${sx.xcr0} on ${src.name} has features that ${dx.xcr0} on ${dst.name} lacks`);
    if (sx.xstateSize !== dx.xstateSize) out.push(`xstate size ${sx.xstateSize} vs ${dx.xstateSize} bytes`);
  }
  if (!dst.features.clone3SetTid) out.push(`${dst.name} cannot choose PIDs (no clone3 set_tid)`);
  if (dst.features.sealedSystemMappings) out.push(`${dst.name} seals its vDSO (CONFIG_MSEAL_SYSTEM_MAPPINGS), which restore must move`);
  if (!dst.features.ptrace) out.push(`${dst.name} does not permit ptrace`);
  return out;
}

export function assertCompatible(src: HostFacts, dst: HostFacts): void {
  const problems = incompatibilities(src, dst);
  if (problems.length) throw new FerryError(ErrorCode.Incompatible, `${dst.name} cannot run what ${src.name} runs: ${problems.join('; ')}`, { details: { problems } });
}

/** Both agents must be able to open an authenticated data stream (an identity each) before anything is frozen. */
export function assertDataStreams(src: HostFacts, dst: HostFacts): void {
  const missing = [src, dst].filter((h) => !h.dataStream).map((h) => h.name);
  if (missing.length)
    throw new FerryError(ErrorCode.BadConfig, `${missing.join(' and ')} ${missing.length > 1 ? 'have' : 'has'} no TLS identity (tls in the agent config): no data stream, no migration`, {
      details: { hosts: missing },
    });
}

/** Memory the destination must have free: the workload plus a margin for page tables and the agent. */
export function memoryNeeded(workloadBytes: number): number {
  return Math.ceil(workloadBytes * 1.1) + 64 * 1024 * 1024;
}
