/* A bound unix socket's file keeps its owner and mode: the process, which dropped root after
 * binding, can still connect to its own listener. */
#include "conformance.h"
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s/sock", cf_dir);
  if (strlen(cf_dir) + 6 > sizeof a.sun_path) cf_skip("directory name too long for a unix socket");
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  unlink(a.sun_path);
  if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 4) != 0) cf_skip("bind: %s", strerror(errno));
  if (getuid() != 0) cf_skip("needs root to change owners");
  if (chown(a.sun_path, 65534, 65534) != 0 || chmod(a.sun_path, 0600) != 0) cf_skip("chown: %s", strerror(errno));
  if (chmod(cf_dir, 0777) != 0) cf_skip("chmod dir: %s", strerror(errno));
  if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) cf_skip("setresuid: %s", strerror(errno));
  struct stat before;
  if (stat(a.sun_path, &before) != 0) cf_skip("stat");
  cf_ready();
  cf_wait_restored();
  struct stat st;
  CF_CHECK(stat(a.sun_path, &st) == 0, "unix socket file %s: %s", a.sun_path, strerror(errno));
  CF_CHECK(st.st_uid == before.st_uid && st.st_gid == before.st_gid, "unix socket file %s: owner expected %d:%d, got %d:%d", a.sun_path, (int)before.st_uid, (int)before.st_gid, (int)st.st_uid, (int)st.st_gid);
  CF_CHECK(st.st_mode == before.st_mode, "unix socket file %s: mode expected 0%o, got 0%o", a.sun_path, before.st_mode, st.st_mode);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  CF_CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0, "connect to own unix socket %s: %s", a.sun_path, strerror(errno));
  cf_pass();
}
