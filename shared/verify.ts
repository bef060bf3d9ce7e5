// What verification before the commit point found: the restored tree compared with its image,
// resource by resource (agent/engine/verify/). Travels in the restore step's reply and the
// migration's record, so `ferry status` and the report can show it.
import { z } from 'zod';

/** One field of one process that differs from the image. */
export const VerifyMismatch = z.strictObject({
  /** pid as the workload sees it (the image's), and as the verifying host sees it. */
  pid: z.number().int(),
  hostPid: z.number().int(),
  /** status, mappings, fds, memory. */
  resource: z.string(),
  /** What was compared, e.g. "SigIgn", "fd 3 flags", "mapping 0x7f..-0x7f.. perms", "page 0x55..". */
  field: z.string(),
  expected: z.string(),
  actual: z.string(),
});
export type VerifyMismatch = z.infer<typeof VerifyMismatch>;

export const VerifyReport = z.strictObject({
  /** Processes compared. */
  processes: z.number().int().nonnegative(),
  /** Fields compared, per resource ("status: SigIgn, SigCgt, ..."). */
  checked: z.record(z.string(), z.array(z.string())),
  /** What the image records but this verification cannot see (or the image lacks), with why. */
  notVerified: z.array(z.strictObject({ what: z.string(), why: z.string() })),
  /** Pages compared after they were written: during pre-copy (as they landed) and inside the downtime. */
  pagesChecked: z.strictObject({ precopy: z.number().int().nonnegative(), downtime: z.number().int().nonnegative() }),
  /** Time verification took outside the downtime (landing checks during pre-copy) and inside it. */
  outsideMs: z.number().nonnegative(),
  insideMs: z.number().nonnegative(),
  /** Inside the downtime, per resource. */
  msByResource: z.record(z.string(), z.number().nonnegative()),
  mismatches: z.array(VerifyMismatch),
});
export type VerifyReport = z.infer<typeof VerifyReport>;
