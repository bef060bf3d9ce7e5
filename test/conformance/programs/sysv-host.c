/* SysV semaphores (with a SEM_UNDO adjustment) and a message queue used in the host's IPC
 * namespace: after the restore the values and messages are there and the undo adjustment still
 * applies when the process exits. The objects are the host's, so ferry cannot carry them to
 * another host: it must carry the process's use of them or refuse. */
#include "conformance.h"
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/wait.h>

struct msg {
  long type;
  char text[16];
};

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int sem = semget(IPC_PRIVATE, 1, 0600), q = msgget(IPC_PRIVATE, 0600);
  if (sem < 0 || q < 0) cf_skip("semget/msgget: %s", strerror(errno));
  /* A child takes the semaphore with SEM_UNDO and waits: its exit must give it back. */
  int p[2];
  if (pipe(p) != 0) cf_skip("pipe");
  pid_t c = fork();
  if (c == 0) {
    struct sembuf up = {0, 5, SEM_UNDO};
    semop(sem, &up, 1);
    char x;
    read(p[0], &x, 1);
    _exit(0);
  }
  close(p[0]);
  struct msg m = {4, "queued"};
  if (msgsnd(q, &m, 7, 0) != 0) cf_skip("msgsnd: %s", strerror(errno));
  for (int i = 0; i < 1000 && semctl(sem, 0, GETVAL) != 5; i++) usleep(1000);
  if (semctl(sem, 0, GETVAL) != 5) cf_skip("the child's semop did not land");
  cf_ready();
  cf_wait_restored();
  int v = semctl(sem, 0, GETVAL);
  memset(&m, 0, sizeof m);
  ssize_t n = msgrcv(q, &m, sizeof m.text, 0, IPC_NOWAIT);
  write(p[1], "x", 1);
  waitpid(c, NULL, 0);
  int after = semctl(sem, 0, GETVAL);
  semctl(sem, 0, IPC_RMID);
  msgctl(q, IPC_RMID, NULL);
  CF_CHECK(v == 5, "semaphore set %d: value expected 5, got %d (%s)", sem, v, strerror(errno));
  CF_CHECK(n == 7 && m.type == 4 && strcmp(m.text, "queued") == 0, "message queue %d: message expected type 4 \"queued\", got %zd bytes type %ld (%s)", q, n, m.type, strerror(errno));
  CF_CHECK(after == 0, "semaphore set %d: the child's SEM_UNDO adjustment was lost (value %d after it exited, expected 0)", sem, after);
  cf_pass();
}
