/* A descriptor in flight (SCM_RIGHTS) on a unix socket pair: received after the restore, it is
 * still the pipe it was, with its bytes. */
#include "conformance.h"
#include <sys/socket.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int sv[2], p[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || pipe(p) != 0) cf_skip("socketpair/pipe: %s", strerror(errno));
  if (write(p[1], "in-flight", 9) != 9) cf_skip("write");
  char one = 'm', cbuf[CMSG_SPACE(sizeof(int))] = {0};
  struct iovec iov = {&one, 1};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &p[0], sizeof(int));
  if (sendmsg(sv[0], &mh, 0) != 1) cf_skip("sendmsg: %s", strerror(errno));
  close(p[0]);
  cf_ready();
  cf_wait_restored();
  char got = 0, rbuf[CMSG_SPACE(sizeof(int))] = {0};
  struct iovec riov = {&got, 1};
  struct msghdr rh = {.msg_iov = &riov, .msg_iovlen = 1, .msg_control = rbuf, .msg_controllen = sizeof rbuf};
  CF_CHECK(recvmsg(sv[1], &rh, MSG_DONTWAIT) == 1 && got == 'm', "unix socket fd %d: the message carrying the fd is gone (%s)", sv[1], strerror(errno));
  struct cmsghdr *rc = CMSG_FIRSTHDR(&rh);
  CF_CHECK(rc && rc->cmsg_type == SCM_RIGHTS, "unix socket fd %d: the message arrived without its descriptor", sv[1]);
  int fd;
  memcpy(&fd, CMSG_DATA(rc), sizeof fd);
  char b[16] = {0};
  CF_CHECK(read(fd, b, sizeof b) == 9 && memcmp(b, "in-flight", 9) == 0, "descriptor received: expected the pipe holding \"in-flight\", got \"%s\"", b);
  cf_pass();
}
