// The only module that loads libc through koffi. Every prototype is declared here once so the
// rest of the agent sees plain functions; struct layouts live next to their users as byte
// offsets because the kernel ABI is fixed and Buffers are cheaper than koffi struct objects.
import koffi from 'koffi';

const lib = koffi.load('libc.so.6');

// glibc's variadic syscall() and ptrace() are declared with fixed integer/pointer arguments:
// on x86-64 the variadic calling convention only differs for floating-point arguments.
// A `void *` accepts a Buffer, a Number or a BigInt, which lets one prototype carry both
// addresses in another process and pointers into our own buffers.
export const libc = {
  syscall: lib.func('long syscall(long nr, void *a1, void *a2, void *a3, void *a4, void *a5, void *a6)'),
  ptrace: lib.func('long ptrace(long req, long pid, void *addr, void *data)'),
  waitpid: lib.func('int waitpid(int pid, _Out_ int *status, int options)'),
  open: lib.func('int open(const char *path, int flags, int mode)'),
  close: lib.func('int close(int fd)'),
  read: lib.func('long read(int fd, void *buf, unsigned long n)'),
  write: lib.func('long write(int fd, void *buf, unsigned long n)'),
  pread: lib.func('long pread64(int fd, void *buf, unsigned long n, long off)'),
  pwrite: lib.func('long pwrite64(int fd, void *buf, unsigned long n, long off)'),
  ioctl: lib.func('int ioctl(int fd, unsigned long req, void *arg)'),
  kill: lib.func('int kill(int pid, int sig)'),
  processVmReadv: lib.func('long process_vm_readv(int pid, void *local, unsigned long liovcnt, void *remote, unsigned long riovcnt, unsigned long flags)'),
  inetPton: lib.func('int inet_pton(int af, const char *src, _Out_ uint8_t *dst)'),
  inetNtop: lib.func('const char *inet_ntop(int af, const uint8_t *src, _Out_ char *dst, uint32_t size)'),
  processVmWritev: lib.func('long process_vm_writev(int pid, void *local, unsigned long liovcnt, void *remote, unsigned long riovcnt, unsigned long flags)'),
} as const;

export const getErrno = (): number => koffi.errno();
export const setErrno = (v: number): void => {
  koffi.errno(v);
};

/** Raw address of a Buffer's first byte (includes byteOffset), for structs that hold pointers. */
export const addressOf = (b: Buffer | Uint8Array): bigint => koffi.address(b);

/** koffi returns long results as Number when they fit, else BigInt; callers want one type. */
export const asLong = (v: unknown): bigint => BigInt.asIntN(64, BigInt(v as number | bigint));

export const SYS = {
  read: 0,
  write: 1,
  open: 2,
  close: 3,
  poll: 7,
  lseek: 8,
  mmap: 9,
  mprotect: 10,
  munmap: 11,
  brk: 12,
  rt_sigaction: 13,
  rt_sigprocmask: 14,
  rt_sigqueueinfo: 129,
  ioctl: 16,
  pread64: 17,
  madvise: 28,
  pause: 34,
  epoll_ctl: 233,
  getitimer: 36,
  setitimer: 38,
  dup2: 33,
  getpid: 39,
  socket: 41,
  connect: 42,
  sendto: 44,
  shutdown: 48,
  bind: 49,
  listen: 50,
  getsockname: 51,
  getpeername: 52,
  setsockopt: 54,
  getsockopt: 55,
  unlinkat: 263,
  accept4: 288,
  recvfrom: 45,
  socketpair: 53,
  kill: 62,
  fcntl: 72,
  flock: 73,
  fchown: 93,
  fchmod: 91,
  ftruncate: 77,
  chdir: 80,
  umask: 95,
  getrlimit: 97,
  prctl: 157,
  arch_prctl: 158,
  sigaltstack: 131,
  personality: 135,
  setpgid: 109,
  getpgid: 121,
  setresuid: 117,
  setresgid: 119,
  setfsuid: 122,
  setfsgid: 123,
  setgroups: 116,
  capset: 126,
  setsid: 112,
  gettid: 186,
  tkill: 200,
  set_tid_address: 218,
  exit_group: 231,
  tgkill: 234,
  clock_gettime: 228,
  uname: 63,
  sethostname: 170,
  setdomainname: 171,
  timer_create: 222,
  timer_settime: 223,
  timer_gettime: 224,
  set_robust_list: 273,
  tee: 276,
  timerfd_create: 283,
  timerfd_settime: 286,
  signalfd4: 289,
  eventfd2: 290,
  epoll_create1: 291,
  rt_tgsigqueueinfo: 297,
  get_robust_list: 274,
  mremap: 25,
  wait4: 61,
  rt_sigtimedwait: 128,
  pipe2: 293,
  dup3: 292,
  prlimit64: 302,
  setns: 308,
  kcmp: 312,
  memfd_create: 319,
  membarrier: 324,
  userfaultfd: 323,
  rseq: 334,
  pidfd_send_signal: 424,
  pidfd_open: 434,
  clone3: 435,
  close_range: 436,
  pidfd_getfd: 438,
} as const;
