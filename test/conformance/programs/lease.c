/* A file lease (F_SETLEASE) stays on its description: F_GETLEASE reports it after the restore. */
#include "conformance.h"

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char path[4096];
  snprintf(path, sizeof path, "%s/leased", cf_dir);
  int c = open(path, O_RDWR | O_CREAT, 0644);
  if (c < 0) cf_skip("create: %s", strerror(errno));
  close(c);
  int rd = open(path, O_RDONLY);
  if (fcntl(rd, F_SETLEASE, F_RDLCK) != 0) cf_skip("F_SETLEASE F_RDLCK: %s", strerror(errno));
  char path2[4096];
  snprintf(path2, sizeof path2, "%s/leased-w", cf_dir);
  int wr = open(path2, O_RDWR | O_CREAT, 0644);
  if (fcntl(wr, F_SETLEASE, F_WRLCK) != 0) cf_skip("F_SETLEASE F_WRLCK: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  int got = fcntl(rd, F_GETLEASE);
  CF_CHECK(got == F_RDLCK, "lease on fd %d: expected F_RDLCK (%d), got %d", rd, F_RDLCK, got);
  got = fcntl(wr, F_GETLEASE);
  CF_CHECK(got == F_WRLCK, "lease on fd %d: expected F_WRLCK (%d), got %d", wr, F_WRLCK, got);
  cf_pass();
}
