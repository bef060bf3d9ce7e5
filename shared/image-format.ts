// The checkpoint image: one directory holding image.json (this schema) and one pages-<pid>.img
// per process with the raw page data. Addresses and 64-bit values travel as hex strings because
// JSON numbers cannot hold them. See docs/image-format.md.
import { z } from 'zod';

export const IMAGE_MAGIC = 'ferry-image';
export const IMAGE_VERSION = 1;
export const IMAGE_JSON = 'image.json';
export const pagesFileName = (pid: number): string => `pages-${pid}.img`;
/** An append-only pages store beside a workload's snapshots (incremental checkpoints, shared/job-image.ts). */
export const storeName = (gen: number): string => `store-${String(gen).padStart(6, '0')}`;
export const STORE_RE = /^store-(\d{6})$/;
/**
 * A process's pages file: its own in the image directory, or its file in a sibling pages store.
 * Read from untrusted images: nothing else may be named (no other path can be read into a process).
 */
export const PagesFile = z.string().regex(/^(?:\.\.\/store-\d{6}\/)?pages-\d{1,10}\.img$/, 'pages-PID.img, or ../store-NNNNNN/pages-PID.img');
/** The pages file lives in a store that later checkpoints append to (it may be longer than this image needs). */
export const inStore = (pagesFile: string): boolean => pagesFile.startsWith('../');

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

export const VmaKind = z.enum(['anon', 'file-private', 'file-shared', 'shm', 'heap', 'stack', 'vdso', 'vvar', 'vvar_vclock', 'vsyscall']);
export type VmaKind = z.infer<typeof VmaKind>;

export const VmaSchema = z.object({
  start: hex,
  end: hex,
  /** As in /proc/PID/maps: "r-xp". */
  perms: z.string().length(4),
  kind: VmaKind,
  path: z.string().optional(),
  fileOffset: hex,
  /** For kind shm (shared anonymous memory or a memfd), and file mappings of a deleted file: index into Image.shared. */
  shared: z.number().int().optional(),
  /** madvise state the kernel shows in smaps VmFlags and restore re-applies: dc (DONTFORK), wf (WIPEONFORK), hg (HUGEPAGE), nh (NOHUGEPAGE), dd (DONTDUMP). */
  advice: z.array(z.enum(['dc', 'wf', 'hg', 'nh', 'dd'])).optional(),
  /** MAP_GROWSDOWN (smaps gd): the mapping extends downwards on a fault below it. */
  growsDown: z.boolean().optional(),
  /** File mappings: the file was open for writing (smaps mw), so the mapping may be made writable later. */
  mayWrite: z.boolean().optional(),
  /**
   * The mapping is the parent's, inherited at fork: restore forks this process from its built
   * parent and keeps it. Pages still shared copy-on-write with the parent are not in runs;
   * `zero` lists pages this process lacks where the parent has one.
   */
  inherit: z.object({ zero: z.array(z.object({ addr: hex, pages: z.number().int().positive() })) }).optional(),
  /** Guard regions (MADV_GUARD_INSTALL) inside the mapping: pages that fault on any access. */
  guards: z.array(z.object({ addr: hex, pages: z.number().int().positive() })).optional(),
  /** shmem inode, to find the same object in other processes. */
  inode: z.number().int().optional(),
  /** Only pages that must travel: present anonymous pages that are not all zero, and copied-on-write pages of private file mappings. */
  runs: z.array(PageRunSchema),
  /** Live migration: the content already reached the destination through pre-copy rounds (runs stay empty). */
  precopied: z.boolean().optional(),
});
export type Vma = z.infer<typeof VmaSchema>;

export const FdSchema = z.object({
  fd: z.number().int().nonnegative(),
  kind: z.enum(['file', 'chr', 'dir', 'pipe', 'fifo', 'memfd', 'unix', 'inet', 'eventfd', 'timerfd', 'signalfd', 'epoll', 'pidfd']),
  path: z.string(),
  /** open(2) flags from fdinfo (access mode, O_APPEND, O_NONBLOCK...), without O_CLOEXEC. */
  flags: z.number().int(),
  cloexec: z.boolean(),
  pos: z.number().int().nonnegative(),
  /** Lowest fd sharing the same open file description (dup), restored with dup3. */
  dupOf: z.number().int().optional(),
  /** Index into Image.shared when the open file description is a pipe end or shared with another process of the tree. */
  shared: z.number().int().optional(),
  /** A file deleted while open: index into Image.shared of the entry carrying its content, reopened through it. */
  content: z.number().int().optional(),
  /** Which end of a shared pipe (0 read, 1 write) or socketpair (0 first, 1 second). */
  end: z.number().int().optional(),
  eventfd: z.object({ count: hex, semaphore: z.boolean() }).optional(),
  /** Remaining time and interval as [seconds, nanoseconds]; unread expirations (ticks) come back as one expiration at once. */
  timerfd: z.object({ clockid: z.number().int(), value: z.tuple([z.number(), z.number()]), interval: z.tuple([z.number(), z.number()]), ticks: z.number().int() }).optional(),
  signalfd: z.object({ mask: hex }).optional(),
  /** The process a pidfd names (a process of the tree; its pid as the workload sees it). */
  pidfd: z.object({ pid: z.number().int().positive() }).optional(),
  /**
   * Locks held through this description: POSIX record locks (owned by the process), OFD locks,
   * flock() locks and leases (owned by the description). Ranges are inclusive; end null = to EOF.
   */
  locks: z.array(z.object({ kind: z.enum(['posix', 'ofd', 'flock', 'lease']), write: z.boolean(), start: z.number().nonnegative(), end: z.number().nonnegative().nullable() })).optional(),
  /**
   * Every registration: the fd number it was made through (its key with the file), events,
   * data; `via`: the fd that holds the registered file now, when that number was closed or reused.
   */
  epoll: z.array(z.object({ tfd: z.number().int(), events: z.number(), data: hex, via: z.number().int().optional() })).optional(),
});
export type FdImage = z.infer<typeof FdSchema>;

export const SigActionSchema = z.object({ sig: z.number().int(), handler: hex, flags: hex, restorer: hex, mask: hex });
export type SigActionImage = z.infer<typeof SigActionSchema>;

/** A queued signal: its number and the raw 128-byte siginfo (base64). */
export const PendingSignalSchema = z.object({ sig: z.number().int(), siginfo: z.string() });

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
  /** Signals pending for this thread only. */
  pending: z.array(PendingSignalSchema),
  /**
   * Its scheduling (agent/engine/process/scheduling.ts): nice value, policy (SCHED_OTHER 0,
   * FIFO 1, RR 2, BATCH 3, IDLE 5) and real-time priority. Absent in older images: nice 0, SCHED_OTHER.
   */
  sched: z.object({ nice: z.number().int().min(-20).max(19), policy: z.union([z.literal(0), z.literal(1), z.literal(2), z.literal(3), z.literal(5)]), rtPriority: z.number().int().min(0).max(99) }).optional(),
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

/** An IPv4 or IPv6 socket address. */
export const InetAddrSchema = z.object({ ip: z.string(), port: z.number().int().min(0).max(65535) });
export type InetAddr = z.infer<typeof InetAddrSchema>;

/** Ordinary socket options that repair mode does not carry; absent = the kernel's default. */
export const SocketOptsSchema = z.object({
  reuseaddr: z.boolean(),
  reuseport: z.boolean(),
  keepalive: z.boolean(),
  /** TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (TCP only). */
  keepidle: z.number().int().optional(),
  keepintvl: z.number().int().optional(),
  keepcnt: z.number().int().optional(),
  nodelay: z.boolean().optional(),
  /** IPV6_V6ONLY (IPv6 only). */
  v6only: z.boolean().optional(),
  /** SO_LINGER as [onoff, seconds] when on. */
  linger: z.tuple([z.number().int(), z.number().int()]).optional(),
  /** SO_RCVBUF/SO_SNDBUF as the kernel reports them (twice what was asked), carried when the workload set them. */
  rcvbuf: z.number().int().optional(),
  sndbuf: z.number().int().optional(),
});
export type SocketOpts = z.infer<typeof SocketOptsSchema>;

/**
 * A TCP connection as TCP_REPAIR shows it. Sequence numbers are u32. `sendQueue` holds every byte
 * not yet acknowledged by the peer, the last `unsent` of them never sent; `recvQueue` what the
 * workload has not read yet. A FIN the socket sent (fin-wait1/2) is not in the queues.
 */
export const TcpRepairSchema = z.object({
  /** Sequence number of the first byte of sendQueue (snd_una) and of recvQueue (the first unread byte). */
  sendSeq: z.number().int().nonnegative(),
  recvSeq: z.number().int().nonnegative(),
  sendQueue: z.string(),
  unsent: z.number().int().nonnegative(),
  recvQueue: z.string(),
  /** A FIN this side queued (fin-wait1/2): not at all, already sent, or still to send after the unsent bytes. */
  fin: z.enum(['none', 'sent', 'unsent']),
  /** The MSS clamp, window scaling (null when not negotiated), SACK and timestamps as negotiated. */
  mss: z.number().int().positive(),
  wscale: z.object({ snd: z.number().int(), rcv: z.number().int() }).nullable(),
  sack: z.boolean(),
  timestamps: z.boolean(),
  /** TCP_TIMESTAMP: the socket's timestamp clock (u32) at the dump. */
  timestamp: z.number().int().nonnegative(),
  /** TCP_REPAIR_WINDOW. */
  window: z.object({ sndWl1: z.number().int(), sndWnd: z.number().int(), maxWindow: z.number().int(), rcvWnd: z.number().int(), rcvWup: z.number().int() }),
});
export type TcpRepair = z.infer<typeof TcpRepairSchema>;

/** Options of a raw IP socket: IP_HDRINCL (v4), IPV6_CHECKSUM (v6), the ICMP/ICMPv6 type filter (hex). */
export const RawOptsSchema = z.object({
  hdrincl: z.boolean().optional(),
  checksum: z.number().int().optional(),
  icmpFilter: z.string().regex(/^[0-9a-f]*$/).optional(),
});
export type RawOpts = z.infer<typeof RawOptsSchema>;

export const InetStateSchema = z.enum(['closed', 'bound', 'listen', 'established', 'fin-wait1', 'fin-wait2', 'connected']);
export type InetState = z.infer<typeof InetStateSchema>;

/** A TCP or UDP socket over IPv4 or IPv6. */
export const InetSocketSchema = z.object({
  kind: z.literal('inet'),
  family: z.union([z.literal(2), z.literal(10)]),
  /** 1 stream (TCP), 2 datagram (UDP), 3 raw. */
  type: z.union([z.literal(1), z.literal(2), z.literal(3)]),
  protocol: z.number().int(),
  /** File status flags (O_NONBLOCK...). */
  flags: z.number().int(),
  /** TCP: closed (never connected), listen, established, fin-wait1/2. UDP: closed, bound, connected. */
  state: InetStateSchema,
  local: InetAddrSchema.nullable(),
  remote: InetAddrSchema.nullable(),
  /** listen(2) backlog of a listening socket. */
  backlog: z.number().int().nonnegative(),
  opts: SocketOptsSchema,
  tcp: TcpRepairSchema.optional(),
  /** UDP: shutdown(2) already done (1 SHUT_RD, 2 SHUT_WR, 3 both). */
  shutdown: z.number().int().optional(),
  raw: RawOptsSchema.optional(),
});
export type InetSocketImage = z.infer<typeof InetSocketSchema>;

/**
 * Open file descriptions that live in more than one place: pipes (both ends, with the bytes
 * buffered in them) and files inherited across fork (one shared offset). Restore creates them
 * once in the root before any child exists, so every process inherits the same description.
 */
export const SharedSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('pipe'), inode: z.number().int(), capacity: z.number().int(), readFlags: z.number().int(), writeFlags: z.number().int(), data: z.string() }),
  /** `content`: a deleted file, reopened through the shared entry that carries its content. */
  z.object({ kind: z.literal('file'), path: z.string(), flags: z.number().int(), pos: z.number().int(), content: z.number().int().optional() }),
  /** A named pipe: reopened by path (read end first, non-blocking), then the bytes in flight written back. */
  z.object({
    kind: z.literal('fifo'),
    path: z.string(),
    inode: z.number().int(),
    readFlags: z.number().int(),
    writeFlags: z.number().int(),
    data: z.string(),
    /** One O_RDWR description of the FIFO (its own reader and writer), reopened so; its flags. */
    rdwr: z.number().int().optional(),
  }),
  /**
   * A connected pair of AF_UNIX sockets; data[i] is what end i had queued to read (SOCK_STREAM),
   * messages[i] the datagrams (SOCK_DGRAM, SOCK_SEQPACKET), base64 each. inodes[1] = 0: a
   * stream whose peer closed; only end 0 is held, end 1 is closed once its bytes are written.
   */
  z.object({
    kind: z.literal('socketpair'),
    type: z.number().int(),
    inodes: z.tuple([z.number(), z.number()]),
    flags: z.tuple([z.number(), z.number()]),
    data: z.tuple([z.string(), z.string()]),
    messages: z.tuple([z.array(z.string()), z.array(z.string())]).optional(),
  }),
  InetSocketSchema,
  /**
   * A unix socket that is not one end of a pair inside the tree: unconnected, bound (`name`: a
   * path, "@name" for the abstract namespace, "" for none) or listening (with its backlog).
   */
  z.object({
    kind: z.literal('unix-socket'),
    type: z.number().int(),
    flags: z.number().int(),
    name: z.string(),
    listening: z.boolean(),
    backlog: z.number().int().nonnegative(),
    /** The socket file's owner and mode (a path name), given back after the bind. */
    file: z.object({ uid: z.number().int(), gid: z.number().int(), mode: z.number().int() }).optional(),
  }),
  /**
   * Shared memory: a memfd, or MAP_SHARED|MAP_ANONYMOUS memory (anon). Its
   * content lives in `file`; run addresses are offsets into the object.
   */
  z.object({
    kind: z.literal('memfd'),
    name: z.string(),
    /** MAP_SHARED|MAP_ANONYMOUS memory (the kernel's /dev/zero object), not a memfd. */
    anon: z.boolean().optional(),
    inode: z.number().int(),
    size: z.number().int(),
    flags: z.number().int(),
    pos: z.number().int(),
    /** Its content beside image.json; a name only (no other path may be read into the workload). */
    file: z.string().regex(/^shm-\d{1,6}\.img$/),
    bytes: z.number().int(),
    runs: z.array(PageRunSchema),
    /** F_GET_SEALS; absent or 1 (F_SEAL_SEAL alone) = created without MFD_ALLOW_SEALING. */
    seals: z.number().int().optional(),
    /** Not a memfd: the content of a file deleted while open or mapped, made again as an unnamed file (O_TMPFILE) beside its old path. */
    deleted: z.object({ path: z.string(), mode: z.number().int(), uid: z.number().int(), gid: z.number().int() }).optional(),
  }),
]);
export type SharedImage = z.infer<typeof SharedSchema>;

export const ProcessSchema = z.object({
  /** Ids (pid, ppid, pgid, sid, tids) are as the workload sees them: inside its pid namespace for a container. */
  pid: z.number().int().positive(),
  /** The pid on the checkpointing host, for reference. */
  hostPid: z.number().int().positive(),
  ppid: z.number().int().nonnegative(),
  pgid: z.number().int().nonnegative(),
  sid: z.number().int().nonnegative(),
  comm: z.string(),
  exe: z.string(),
  cwd: z.string(),
  /** Root directory (chroot) as the host sees it; absent when it is the host's root. */
  root: z.string().optional(),
  umask: z.number().int(),
  personality: z.number().int(),
  /** Credentials as /proc/PID/status shows them: [real, effective, saved, fs] ids, groups, capability sets (hex). */
  creds: z.object({
    uids: z.array(z.number().int()).length(4),
    gids: z.array(z.number().int()).length(4),
    groups: z.array(z.number().int()),
    capInh: hex,
    capPrm: hex,
    capEff: hex,
    capBnd: hex,
    capAmb: hex,
    noNewPrivs: z.boolean(),
  }),
  /** cgroup v2 path (relative to the cgroup2 mount) the process was in; restore moves it back there if it exists. */
  cgroup: z.string(),
  /** Signals pending for the whole process. */
  pendingShared: z.array(PendingSignalSchema),
  /** PR_SET_PDEATHSIG signal, 0 for none. */
  pdeathsig: z.number().int(),
  /** prctl state beyond pdeathsig: PR_GET_CHILD_SUBREAPER, PR_GET_THP_DISABLE, PR_GET_DUMPABLE. */
  prctl: z.object({ subreaper: z.boolean(), thpDisable: z.boolean(), dumpable: z.number().int() }).optional(),
  /** membarrier registrations found by probing (private expedited, its sync-core and rseq variants). */
  membarrier: z.array(z.enum(['private-expedited', 'private-expedited-sync-core', 'private-expedited-rseq'])).optional(),
  /** Exited children not yet waited for: restored as zombies with the same pid and wait status. */
  zombies: z.array(z.object({ pid: z.number().int().positive(), status: z.number().int() })).optional(),
  mm: MmSchema,
  /** The saved auxv, base64, given back through PR_SET_MM_MAP. */
  auxv: z.string(),
  vmas: z.array(VmaSchema),
  fds: z.array(FdSchema),
  sigactions: z.array(SigActionSchema),
  rlimits: z.array(z.object({ resource: z.number().int(), cur: hex, max: hex })),
  /** POSIX timers with their ids (recreated through PR_TIMER_CREATE_RESTORE_IDS); times as [seconds, nanoseconds]. */
  posixTimers: z.array(
    z.object({
      id: z.number().int(),
      clockid: z.number().int(),
      signal: z.number().int(),
      /** SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD_ID 4 */
      notify: z.number().int(),
      tid: z.number().int(),
      value: hex,
      interval: z.tuple([z.number(), z.number()]),
      remaining: z.tuple([z.number(), z.number()]),
    }),
  ),
  /** ITIMER_REAL/VIRTUAL/PROF as {interval, value}, each [seconds, microseconds]. */
  itimers: z.array(z.object({ which: z.number().int(), interval: z.tuple([z.number(), z.number()]), value: z.tuple([z.number(), z.number()]) })),
  threads: z.array(ThreadSchema).min(1),
  pagesFile: PagesFile,
  pagesBytes: z.number().int().nonnegative(),
});
export type ProcessImage = z.infer<typeof ProcessSchema>;

export const ImageSchema = z.object({
  magic: z.literal(IMAGE_MAGIC),
  version: z.literal(IMAGE_VERSION),
  createdAt: z.string(),
  machine: MachineSchema,
  root: z.number().int().positive(),
  /**
   * Present when the tree is a container: its root is pid 1 of its own pid namespace. Restore
   * creates fresh pid, mount (with its own /proc), ipc, uts and time namespaces; the time
   * namespace's offsets make CLOCK_MONOTONIC/BOOTTIME continue from the values saved here.
   */
  container: z
    .object({
      hostname: z.string(),
      domainname: z.string(),
      /** The container's clocks at the checkpoint, nanoseconds as decimal strings. */
      monotonicNs: z.string(),
      boottimeNs: z.string(),
    })
    .optional(),
  /**
   * The tree ran in a network namespace of its own (not the checkpointing agent's): restore
   * needs a target namespace (see agent/net for rebuilding one from its dumped configuration).
   */
  ownNetns: z.boolean().optional(),
  /** Parents before children (breadth first from the root). */
  processes: z.array(ProcessSchema).min(1),
  shared: z.array(SharedSchema),
  stats: z.object({ frozenMs: z.number(), totalMs: z.number(), pagesBytes: z.number() }),
});
export type Image = z.infer<typeof ImageSchema>;
