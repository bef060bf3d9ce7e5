// Deliberate damage to a restored tree, for tests that show verification catching it
// (FERRY_FAULT, shared/fault.ts). Runs after the tree is built and before it is held, while the
// husks are still traced.
import { faultArmed } from '../../../shared/fault.ts';
import { type Image, fromHex } from '../../../shared/image-format.ts';
import type { Husk } from '../process/husk.ts';
import { flipByte, takeCorruptByte } from './memory.ts';

const SIGUSR2 = 12;

export function corruptIfArmed(img: Image, husks: ReadonlyMap<number, Husk>): void {
  const root = img.processes[0]!;
  if (faultArmed('agent:restore:corrupt-flag')) {
    const ignored = root.sigactions.some((a) => a.sig === SIGUSR2 && fromHex(a.handler) === 1n);
    husks.get(root.pid)!.setDisposition(SIGUSR2, ignored ? 0n : 1n);
  }
  // Memory that travelled in the image (a live migration's landed pages took the hook already).
  for (const p of img.processes) {
    const run = p.vmas.find((v) => !v.precopied && v.runs.length > 0)?.runs[0];
    if (!run) continue;
    if (takeCorruptByte()) flipByte(husks.get(p.pid)!.pid, fromHex(run.addr) + 100n);
    return;
  }
}
