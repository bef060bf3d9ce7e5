/* A Linux AIO context (io_setup): its ring stays usable, a read submitted after the restore
 * completes with the file's bytes. */
#include "conformance.h"
#include <linux/aio_abi.h>
#include <sys/syscall.h>

/* Reads 8 bytes of fd at 0 through the context; 1 when they are `want`. */
static int aio_read8(aio_context_t ctx, int fd, const char *want) {
  char buf[8] = {0};
  struct iocb cb = {.aio_lio_opcode = IOCB_CMD_PREAD, .aio_fildes = (unsigned)fd, .aio_buf = (unsigned long)buf, .aio_nbytes = 8, .aio_data = 77};
  struct iocb *list[1] = {&cb};
  if (syscall(SYS_io_submit, ctx, 1, list) != 1) return 0;
  struct io_event ev;
  struct timespec ts = {5, 0};
  if (syscall(SYS_io_getevents, ctx, 1, 1, &ev, &ts) != 1) return 0;
  return ev.data == 77 && ev.res == 8 && memcmp(buf, want, 8) == 0;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char p[4096];
  snprintf(p, sizeof p, "%s/data", cf_dir);
  int fd = open(p, O_RDWR | O_CREAT, 0644);
  if (fd < 0 || write(fd, "aio-data", 8) != 8) cf_skip("data file: %s", strerror(errno));
  aio_context_t ctx = 0;
  if (syscall(SYS_io_setup, 4, &ctx) != 0) cf_skip("io_setup: %s", strerror(errno));
  if (!aio_read8(ctx, fd, "aio-data")) cf_skip("aio read before the checkpoint failed: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  CF_CHECK(*(unsigned *)(ctx + 4) == 4 || *(unsigned *)(ctx + 8) == 0xa10a10a1, "aio ring at %#lx: not an aio ring any more", (unsigned long)ctx);
  errno = 0;
  CF_CHECK(aio_read8(ctx, fd, "aio-data"), "aio context %#lx: a read after the restore did not complete (%s)", (unsigned long)ctx, strerror(errno));
  CF_CHECK(syscall(SYS_io_destroy, ctx) == 0, "aio context %#lx: io_destroy: %s", (unsigned long)ctx, strerror(errno));
  cf_pass();
}
