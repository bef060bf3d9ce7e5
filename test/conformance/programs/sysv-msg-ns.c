/* A SysV message queue in the program's own IPC namespace: it keeps its id and its queued
 * messages, types and order. */
#include "conformance.h"
#include <sched.h>
#include <sys/ipc.h>
#include <sys/msg.h>

struct msg {
  long type;
  char text[32];
};

int main(int argc, char **argv) {
  cf_init(argc, argv);
  if (unshare(CLONE_NEWIPC) != 0) cf_skip("unshare(CLONE_NEWIPC): %s", strerror(errno));
  int id = msgget(0x3a9, IPC_CREAT | 0600);
  if (id < 0) cf_skip("msgget: %s", strerror(errno));
  struct msg a = {3, "first"}, b = {5, "second"};
  if (msgsnd(id, &a, 6, 0) != 0 || msgsnd(id, &b, 7, 0) != 0) cf_skip("msgsnd: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  CF_CHECK(msgget(0x3a9, 0) == id, "message queue key 0x3a9: id expected %d, got %d (%s)", id, msgget(0x3a9, 0), strerror(errno));
  struct msg m = {0};
  ssize_t n = msgrcv(id, &m, sizeof m.text, 0, IPC_NOWAIT);
  CF_CHECK(n == 6 && m.type == 3 && strcmp(m.text, "first") == 0, "message queue %d: first message expected type 3 \"first\", got %zd bytes type %ld (%s)", id, n, m.type, strerror(errno));
  memset(&m, 0, sizeof m);
  n = msgrcv(id, &m, sizeof m.text, 0, IPC_NOWAIT);
  CF_CHECK(n == 7 && m.type == 5 && strcmp(m.text, "second") == 0, "message queue %d: second message expected type 5 \"second\", got %zd bytes type %ld (%s)", id, n, m.type, strerror(errno));
  cf_pass();
}
