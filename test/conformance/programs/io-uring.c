/* An io_uring instance: its rings stay mapped and usable, a NOP submitted after the restore
 * completes. */
#include "conformance.h"
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static int ring;
static struct io_uring_params prm;
static unsigned char *sq, *cq;
static struct io_uring_sqe *sqes;

#define U32(base, off) ((volatile unsigned *)((base) + (off)))

/* Submits one NOP with this user_data and waits for its completion: 1 when it came. */
static int nop(unsigned long long tag) {
  unsigned tail = *U32(sq, prm.sq_off.tail), mask = *U32(sq, prm.sq_off.ring_mask);
  unsigned i = tail & mask;
  memset(&sqes[i], 0, sizeof sqes[i]);
  sqes[i].opcode = IORING_OP_NOP;
  sqes[i].user_data = tag;
  U32(sq, prm.sq_off.array)[i] = i;
  __atomic_store_n(U32(sq, prm.sq_off.tail), tail + 1, __ATOMIC_RELEASE);
  if (syscall(SYS_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) != 1) return 0;
  unsigned head = *U32(cq, prm.cq_off.head), cmask = *U32(cq, prm.cq_off.ring_mask);
  if (head == __atomic_load_n(U32(cq, prm.cq_off.tail), __ATOMIC_ACQUIRE)) return 0;
  struct io_uring_cqe *c = (struct io_uring_cqe *)(cq + prm.cq_off.cqes) + (head & cmask);
  int ok = c->user_data == tag && c->res == 0;
  __atomic_store_n(U32(cq, prm.cq_off.head), head + 1, __ATOMIC_RELEASE);
  return ok;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  ring = (int)syscall(SYS_io_uring_setup, 4, &prm);
  if (ring < 0) cf_skip("io_uring_setup: %s", strerror(errno));
  sq = mmap(NULL, prm.sq_off.array + prm.sq_entries * 4, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
  cq = mmap(NULL, prm.cq_off.cqes + prm.cq_entries * sizeof(struct io_uring_cqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_CQ_RING);
  sqes = mmap(NULL, prm.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
  if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) cf_skip("mmap the rings: %s", strerror(errno));
  if (!nop(1)) cf_skip("a NOP before the checkpoint did not complete: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  errno = 0;
  CF_CHECK(nop(2), "io_uring fd %d: a NOP after the restore did not complete (%s)", ring, strerror(errno));
  cf_pass();
}
