/* A chrooted process: after the restore its root is still the jail (same directory, no way out
 * through ..) and its working directory is still the one inside it. The program chroots into
 * its own directory, so the contract's files are at / for it. */
#include "conformance.h"

int main(int argc, char **argv) {
  cf_init(argc, argv);
  struct stat jail, sub;
  char p[4096];
  snprintf(p, sizeof p, "%s/sub", cf_dir);
  if (mkdir(p, 0755) != 0 || stat(cf_dir, &jail) != 0 || stat(p, &sub) != 0) cf_skip("mkdir: %s", strerror(errno));
  snprintf(p, sizeof p, "%s/sub/marker", cf_dir);
  close(open(p, O_CREAT | O_WRONLY, 0644));
  if (chroot(cf_dir) != 0) cf_skip("chroot: %s", strerror(errno));
  if (chdir("/sub") != 0) cf_fail("chdir /sub inside the jail: %s", strerror(errno));
  cf_dir[0] = 0; /* the contract's files are at the new root */
  cf_ready();
  cf_wait_restored();
  struct stat st;
  CF_CHECK(stat("/", &st) == 0 && st.st_dev == jail.st_dev && st.st_ino == jail.st_ino, "root directory: expected inode %lu (the jail), got %lu", (unsigned long)jail.st_ino, (unsigned long)st.st_ino);
  CF_CHECK(stat("/..", &st) == 0 && st.st_ino == jail.st_ino, "root directory: /.. leaves the jail (inode %lu)", (unsigned long)st.st_ino);
  CF_CHECK(stat(".", &st) == 0 && st.st_ino == sub.st_ino, "working directory: expected inode %lu (/sub), got %lu", (unsigned long)sub.st_ino, (unsigned long)st.st_ino);
  char cwd[256];
  CF_CHECK(getcwd(cwd, sizeof cwd) && strcmp(cwd, "/sub") == 0, "working directory: expected /sub, got %s", cwd);
  CF_CHECK(access("marker", R_OK) == 0 && access("/sub/marker", R_OK) == 0, "the jail's /sub/marker is not reachable: %s", strerror(errno));
  cf_pass();
}
