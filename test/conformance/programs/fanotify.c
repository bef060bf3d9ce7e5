/* A fanotify watch keeps watching: opening the watched file after the restore is reported. */
#include "conformance.h"
#include <sys/fanotify.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char f[4096];
  snprintf(f, sizeof f, "%s/watched", cf_dir);
  close(open(f, O_CREAT | O_WRONLY, 0644));
  int fan = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY);
  if (fan < 0) cf_skip("fanotify_init: %s", strerror(errno));
  if (fanotify_mark(fan, FAN_MARK_ADD, FAN_OPEN, AT_FDCWD, f) != 0) cf_skip("fanotify_mark: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  close(open(f, O_RDONLY));
  char buf[4096] __attribute__((aligned(8)));
  ssize_t n = read(fan, buf, sizeof buf);
  CF_CHECK(n >= (ssize_t)sizeof(struct fanotify_event_metadata), "fanotify fd %d: no event for opening the watched file (%s)", fan, strerror(errno));
  struct fanotify_event_metadata *e = (struct fanotify_event_metadata *)buf;
  CF_CHECK((e->mask & FAN_OPEN) && e->pid == getpid(), "fanotify fd %d: event mask 0x%llx pid %d, expected FAN_OPEN by %d", fan, (unsigned long long)e->mask, e->pid, (int)getpid());
  if (e->fd >= 0) close(e->fd);
  cf_pass();
}
