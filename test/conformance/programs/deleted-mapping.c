/* A file mapped shared and private, then deleted (fd closed): both mappings keep their content;
 * the shared one still writes through to the file's pages. */
#include "conformance.h"
#include <sys/mman.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char path[4096];
  snprintf(path, sizeof path, "%s/mapped", cf_dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ftruncate(fd, 8192) != 0) cf_skip("open: %s", strerror(errno));
  char *sh = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  char *pr = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, fd, 0);
  if (sh == MAP_FAILED || pr == MAP_FAILED) cf_skip("mmap: %s", strerror(errno));
  strcpy(sh, "shared-page-0");
  strcpy(sh + 4096, "shared-page-1");
  close(fd);
  unlink(path);
  cf_ready();
  cf_wait_restored();
  CF_CHECK(strcmp(sh, "shared-page-0") == 0 && strcmp(sh + 4096, "shared-page-1") == 0, "deleted shared mapping: content lost");
  CF_CHECK(strcmp(pr, "shared-page-0") == 0, "deleted private mapping: content '%.16s'", pr);
  strcpy(sh, "after");
  CF_CHECK(strcmp(pr, "after") == 0, "deleted file mappings: the private mapping does not see the shared one's write (not the same file)");
  cf_pass();
}
