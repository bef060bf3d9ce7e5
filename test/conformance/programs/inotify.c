/* An inotify watch keeps watching: a file created after the restore is reported. */
#include "conformance.h"
#include <sys/inotify.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char d[4096];
  snprintf(d, sizeof d, "%s/watched", cf_dir);
  if (mkdir(d, 0755) != 0) cf_skip("mkdir");
  int in = inotify_init1(IN_NONBLOCK);
  int wd = inotify_add_watch(in, d, IN_CREATE);
  if (in < 0 || wd < 0) cf_skip("inotify: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  char f[4200];
  snprintf(f, sizeof f, "%s/new", d);
  close(open(f, O_CREAT | O_WRONLY, 0644));
  char buf[4096] __attribute__((aligned(8)));
  ssize_t n = read(in, buf, sizeof buf);
  CF_CHECK(n > 0, "inotify fd %d: no event for a file created in the watched directory (%s)", in, strerror(errno));
  struct inotify_event *e = (struct inotify_event *)buf;
  CF_CHECK(e->wd == wd && (e->mask & IN_CREATE) && strcmp(e->name, "new") == 0, "inotify fd %d: event wd %d mask 0x%x name %s, expected wd %d IN_CREATE new", in, e->wd, e->mask, e->name, wd);
  cf_pass();
}
