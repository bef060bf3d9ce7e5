/* A FIFO opened O_RDWR (its own reader and writer) keeps the bytes queued in it. */
#include "conformance.h"

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char path[4096];
  snprintf(path, sizeof path, "%s/fifo", cf_dir);
  if (mkfifo(path, 0600) != 0) cf_skip("mkfifo: %s", strerror(errno));
  int fd = open(path, O_RDWR | O_NONBLOCK);
  if (fd < 0) cf_skip("open O_RDWR: %s", strerror(errno));
  if (write(fd, "queued-bytes", 12) != 12) cf_skip("write");
  int fl = fcntl(fd, F_GETFL);
  cf_ready();
  cf_wait_restored();
  CF_CHECK(fcntl(fd, F_GETFL) == fl, "fifo fd %d: F_GETFL expected 0%o, got 0%o", fd, fl, fcntl(fd, F_GETFL));
  char b[32] = {0};
  ssize_t n = read(fd, b, sizeof b);
  CF_CHECK(n == 12 && memcmp(b, "queued-bytes", 12) == 0, "fifo fd %d: expected 12 queued bytes 'queued-bytes', got %zd '%s'", fd, n, n > 0 ? b : "");
  CF_CHECK(write(fd, "x", 1) == 1 && read(fd, b, 1) == 1 && b[0] == 'x', "fifo fd %d: no longer its own reader and writer", fd);
  cf_pass();
}
