// The checkpoint image: one directory holding image.json (this schema) and one pages-<pid>.img
// per process with the raw page data. Addresses and 64-bit values travel as hex strings because
// JSON numbers cannot hold them. See docs/image-format.md.
import { z } from 'zod';

export const IMAGE_MAGIC = 'ferry-image';
export const IMAGE_VERSION = 1;
export const IMAGE_JSON = 'image.json';
export const pagesFileName = (pid: number): string => `pages-${pid}.img`;

const hex = z.string().regex(/^0x[0-9a-f]+$/);
export type Hex = z.infer<typeof hex>;
export const toHex = (v: bigint | number): string => `0x${BigInt.asUintN(64, BigInt(v)).toString(16)}`;
export const fromHex = (h: string): bigint => BigInt(h);

export const MachineSchema = z.object({
  kernelRelease: z.string(),
  arch: z.literal('x86_64'),
  xcr0: hex,
  xstateSize: z.number().int(),
  /** Special mappings in address order with their sizes: restore moves the husk's own ones, so they must match. */
  vdsoLayout: z.array(z.object({ name: z.string(), size: z.number().int() })),
  sealedSystemMappings: z.boolean(),
});
export type Machine = z.infer<typeof MachineSchema>;

export const PageRunSchema = z.object({
  addr: hex,
  pages: z.number().int().positive(),
  /** Byte offset of the run in the process's pages file. */
  offset: z.number().int().nonnegative(),
  crc32: z.number().int().nonnegative(),
});
export type PageRun = z.infer<typeof PageRunSchema>;

export const VmaKind = z.enum(['anon', 'file-private', 'file-shared', 'heap', 'stack', 'vdso', 'vvar', 'vvar_vclock', 'vsyscall']);
export type VmaKind = z.infer<typeof VmaKind>;

export const VmaSchema = z.object({
  start: hex,
  end: hex,
  /** As in /proc/PID/maps: "r-xp". */
  perms: z.string().length(4),
  kind: VmaKind,
  path: z.string().optional(),
  fileOffset: hex,
  /** Only pages that must travel: present anonymous pages that are not all zero, and copied-on-write pages of private file mappings. */
  runs: z.array(PageRunSchema),
});
export type Vma = z.infer<typeof VmaSchema>;

export const FdSchema = z.object({
  fd: z.number().int().nonnegative(),
  kind: z.enum(['file', 'chr', 'dir']),
  path: z.string(),
  /** open(2) flags from fdinfo (access mode, O_APPEND, O_NONBLOCK...), without O_CLOEXEC. */
  flags: z.number().int(),
  cloexec: z.boolean(),
  pos: z.number().int().nonnegative(),
  /** Lowest fd sharing the same open file description (dup), restored with dup3. */
  dupOf: z.number().int().optional(),
});
export type FdImage = z.infer<typeof FdSchema>;

export const SigActionSchema = z.object({ sig: z.number().int(), handler: hex, flags: hex, restorer: hex, mask: hex });
export type SigActionImage = z.infer<typeof SigActionSchema>;

export const ThreadSchema = z.object({
  tid: z.number().int().positive(),
  comm: z.string(),
  /** user_regs_struct, 216 bytes, base64. */
  regs: z.string(),
  /** NT_X86_XSTATE regset exactly as GETREGSET returned it, base64. */
  xstate: z.string(),
  sigmask: hex,
  rseq: z.object({ ptr: hex, size: z.number().int(), sig: z.number().int(), flags: z.number().int() }).nullable(),
  robustList: z.object({ head: hex, len: z.number().int() }),
  tidAddress: hex,
  altstack: z.object({ sp: hex, flags: z.number().int(), size: hex }),
});
export type ThreadImage = z.infer<typeof ThreadSchema>;

export const MmSchema = z.object({
  startCode: hex,
  endCode: hex,
  startData: hex,
  endData: hex,
  startBrk: hex,
  brk: hex,
  startStack: hex,
  argStart: hex,
  argEnd: hex,
  envStart: hex,
  envEnd: hex,
});
export type MmImage = z.infer<typeof MmSchema>;

export const ProcessSchema = z.object({
  pid: z.number().int().positive(),
  ppid: z.number().int().nonnegative(),
  pgid: z.number().int().nonnegative(),
  sid: z.number().int().nonnegative(),
  comm: z.string(),
  exe: z.string(),
  cwd: z.string(),
  umask: z.number().int(),
  personality: z.number().int(),
  mm: MmSchema,
  /** The saved auxv, base64, given back through PR_SET_MM_MAP. */
  auxv: z.string(),
  vmas: z.array(VmaSchema),
  fds: z.array(FdSchema),
  sigactions: z.array(SigActionSchema),
  rlimits: z.array(z.object({ resource: z.number().int(), cur: hex, max: hex })),
  /** ITIMER_REAL/VIRTUAL/PROF as {interval, value}, each [seconds, microseconds]. */
  itimers: z.array(z.object({ which: z.number().int(), interval: z.tuple([z.number(), z.number()]), value: z.tuple([z.number(), z.number()]) })),
  threads: z.array(ThreadSchema).min(1),
  pagesFile: z.string(),
  pagesBytes: z.number().int().nonnegative(),
});
export type ProcessImage = z.infer<typeof ProcessSchema>;

export const ImageSchema = z.object({
  magic: z.literal(IMAGE_MAGIC),
  version: z.literal(IMAGE_VERSION),
  createdAt: z.string(),
  machine: MachineSchema,
  root: z.number().int().positive(),
  processes: z.array(ProcessSchema).min(1),
  stats: z.object({ frozenMs: z.number(), totalMs: z.number(), pagesBytes: z.number() }),
});
export type Image = z.infer<typeof ImageSchema>;
