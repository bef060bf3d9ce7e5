/* SysV semaphores in the program's own IPC namespace: the set keeps its id, values and mode. */
#include "conformance.h"
#include <sched.h>
#include <sys/ipc.h>
#include <sys/sem.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  if (unshare(CLONE_NEWIPC) != 0) cf_skip("unshare(CLONE_NEWIPC): %s", strerror(errno));
  int id = semget(0x5eaf, 3, IPC_CREAT | 0640);
  if (id < 0) cf_skip("semget: %s", strerror(errno));
  unsigned short set[3] = {7, 0, 42}, got[3] = {0};
  if (semctl(id, 0, SETALL, set) != 0) cf_skip("SETALL: %s", strerror(errno));
  struct sembuf op = {.sem_num = 1, .sem_op = 2, .sem_flg = 0};
  semop(id, &op, 1);
  set[1] = 2;
  cf_ready();
  cf_wait_restored();
  CF_CHECK(semget(0x5eaf, 0, 0) == id, "semaphore set key 0x5eaf: id expected %d, got %d (%s)", id, semget(0x5eaf, 0, 0), strerror(errno));
  CF_CHECK(semctl(id, 0, GETALL, got) == 0, "semaphore set %d: GETALL: %s", id, strerror(errno));
  for (int i = 0; i < 3; i++) CF_CHECK(got[i] == set[i], "semaphore set %d: semaphore %d expected %u, got %u", id, i, set[i], got[i]);
  struct semid_ds ds;
  CF_CHECK(semctl(id, 0, IPC_STAT, &ds) == 0 && (ds.sem_perm.mode & 0777) == 0640 && ds.sem_nsems == 3, "semaphore set %d: mode/nsems changed", id);
  cf_pass();
}
