/* Credentials: real/effective/saved/fs uids and gids, supplementary groups, capability sets, no_new_privs. */
#include "conformance.h"
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static void caps(struct __user_cap_data_struct d[2]) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  syscall(SYS_capget, &h, d);
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  gid_t groups[] = {10, 20, 30};
  if (setgroups(3, groups) != 0 || setresgid(41, 42, 43) != 0) cf_skip("cannot change groups: %s", strerror(errno));
  prctl(PR_SET_KEEPCAPS, 1);
  if (setresuid(51, 52, 53) != 0) cf_skip("cannot change uids: %s", strerror(errno));
  struct __user_cap_data_struct d[2];
  caps(d);
  d[0].effective &= ~(1u << CAP_NET_RAW);
  d[0].permitted &= ~(1u << CAP_NET_RAW);
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  syscall(SYS_capset, &h, d);
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  struct __user_cap_data_struct want[2];
  caps(want);
  cf_ready();
  cf_wait_restored();
  uid_t r, e, s;
  gid_t gr, ge, gs;
  getresuid(&r, &e, &s);
  getresgid(&gr, &ge, &gs);
  CF_CHECK(r == 51 && e == 52 && s == 53, "uids expected 51/52/53, got %d/%d/%d", r, e, s);
  CF_CHECK(gr == 41 && ge == 42 && gs == 43, "gids expected 41/42/43, got %d/%d/%d", gr, ge, gs);
  gid_t g[8];
  int n = getgroups(8, g);
  CF_CHECK(n == 3 && g[0] == 10 && g[1] == 20 && g[2] == 30, "groups expected 10,20,30, got %d of them", n);
  struct __user_cap_data_struct got[2];
  caps(got);
  for (int i = 0; i < 2; i++)
    CF_CHECK(got[i].effective == want[i].effective && got[i].permitted == want[i].permitted && got[i].inheritable == want[i].inheritable,
             "capabilities word %d: expected eff %#x prm %#x inh %#x, got eff %#x prm %#x inh %#x", i, want[i].effective, want[i].permitted, want[i].inheritable, got[i].effective, got[i].permitted, got[i].inheritable);
  CF_CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs expected 1, got 0");
  cf_pass();
}
