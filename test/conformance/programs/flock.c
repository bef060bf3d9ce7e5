/* A flock() lock stays held by its open file description. */
#include "conformance.h"
#include <sys/file.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char path[4096];
  snprintf(path, sizeof path, "%s/locked", cf_dir);
  int ex = open(path, O_RDWR | O_CREAT, 0644);
  char path2[4096];
  snprintf(path2, sizeof path2, "%s/shared", cf_dir);
  int sh = open(path2, O_RDWR | O_CREAT, 0644);
  if (ex < 0 || sh < 0) cf_skip("open: %s", strerror(errno));
  if (flock(ex, LOCK_EX) != 0 || flock(sh, LOCK_SH) != 0) cf_skip("flock: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  int o = open(path, O_RDWR);
  CF_CHECK(flock(o, LOCK_SH | LOCK_NB) == -1 && errno == EWOULDBLOCK, "flock LOCK_EX: another description could lock the file");
  int o2 = open(path2, O_RDWR);
  CF_CHECK(flock(o2, LOCK_SH | LOCK_NB) == 0, "flock LOCK_SH: a second shared lock was refused: %s", strerror(errno));
  CF_CHECK(flock(o2, LOCK_UN) == 0, "unlock");
  CF_CHECK(flock(o2, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK, "flock LOCK_SH: another description could lock it exclusively");
  cf_pass();
}
