/* membarrier registrations: a registered private expedited barrier keeps working (EPERM when unregistered). */
#include "conformance.h"
#include <linux/membarrier.h>
#include <sys/syscall.h>

static int mb(int cmd) { return (int)syscall(SYS_membarrier, cmd, 0, 0); }

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int q = mb(MEMBARRIER_CMD_QUERY);
  if (q < 0 || !(q & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) cf_skip("membarrier private expedited not supported");
  if (mb(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0) cf_skip("register: %s", strerror(errno));
  int sync = (q & MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) && mb(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) == 0;
  CF_CHECK(mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0, "before: private expedited barrier expected 0, got %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  CF_CHECK(mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0, "membarrier: private expedited (registered) expected 0, got %s", strerror(errno));
  if (sync) CF_CHECK(mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) == 0, "membarrier: private expedited sync-core (registered) expected 0, got %s", strerror(errno));
  cf_pass();
}
