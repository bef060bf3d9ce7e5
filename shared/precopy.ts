// What the source agent tells the destination during a live migration, besides pages: the
// tree's layout (processes, their mappings, the container's clocks and names, the network
// namespace's configuration), so the destination can build the husks and fill them while the
// workload still runs (warm restore). Sent over the migration's data stream as a `layout` frame
// whose payload is this JSON, before the pages of the round it describes. See docs/precopy.md.
import { z } from 'zod';
import { ProcessSchema, VmaSchema } from './image-format.ts';
import { NetnsConfig } from './netns.ts';

/** A mapping as /proc/PID/maps shows it (kind as the image names it). */
export const LayoutVma = z.strictObject(VmaSchema.pick({ start: true, end: true, perms: true, kind: true, path: true, fileOffset: true }).shape);
export type LayoutVma = z.infer<typeof LayoutVma>;

/** A process: its ids as the image has them (hostPid: the source's pid, which the page stream names), its mappings. */
export const LayoutProcess = z.strictObject({ ...ProcessSchema.pick({ pid: true, hostPid: true, ppid: true, sid: true }).shape, vmas: z.array(LayoutVma) });
export type LayoutProcess = z.infer<typeof LayoutProcess>;

export const PrecopyLayout = z.strictObject({
  /** The round whose pages follow. */
  round: z.number().int().positive(),
  /** Parents before children; the first is the root. */
  processes: z.array(LayoutProcess).min(1),
  /** The container's names and clocks when it was read (clocks in ns, decimal strings); null for a plain tree. */
  container: z.strictObject({ hostname: z.string(), domainname: z.string(), monotonicNs: z.string(), boottimeNs: z.string() }).nullable(),
  /** The workload's own network namespace, sent once (round 1); null: it shares its host's. */
  netns: NetnsConfig.nullable().optional(),
});
export type PrecopyLayout = z.infer<typeof PrecopyLayout>;
