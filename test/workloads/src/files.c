/* files: file I/O state that must survive a restore.
 *  - data.bin: 1024 fixed 64-byte slots rewritten with pwrite at computed
 *    offsets; an in-memory table holds each slot's generation.
 *  - log.bin: 32-byte records appended through an O_APPEND fd; a separate
 *    O_RDONLY fd reads them back incrementally (its offset is the reader's
 *    position and must survive).
 *  - seq.bin: 32-byte records written with lseek+write on an O_WRONLY|O_CLOEXEC
 *    fd; before every write lseek(fd,0,SEEK_CUR) must equal the expected offset.
 * Every second all files are re-read and verified, fds are checked to still
 * name the files at their paths (same inode), and fd flags (O_APPEND,
 * FD_CLOEXEC, access mode) must be unchanged. Files are truncated and restarted
 * when they reach 4 MiB. */
#include "wl_common.h"
#include <libgen.h>
#include <sys/stat.h>

#define SLOTS 1024
#define SLOT_SIZE 64
#define REC 32
#define WRAP_BYTES (4u << 20)

struct rec {
  uint64_t magic;
  uint64_t a; /* slot or sequence */
  uint64_t b; /* generation or epoch */
  uint64_t check;
};

#define MAGIC_SLOT 0x534c4f54534c4f54ULL
#define MAGIC_LOG 0x4c4f474c4f474c4fULL
#define MAGIC_SEQ 0x5345515345515345ULL

static struct rec mk(uint64_t magic, uint64_t a, uint64_t b) {
  struct rec r = {magic, a, b, wl_mix64(magic ^ a ^ (b << 32) ^ b)};
  return r;
}

static int rec_eq(const struct rec *x, const struct rec *y) { return memcmp(x, y, sizeof *x) == 0; }

static char p_data[4200], p_log[4200], p_seq[4200];

static void same_file(int fd, const char *path, const char *what) {
  struct stat a, b;
  if (fstat(fd, &a) != 0 || stat(path, &b) != 0) {
    wl_fail("%s: stat failed: %s", what, strerror(errno));
    return;
  }
  if (a.st_ino != b.st_ino || a.st_dev != b.st_dev)
    wl_fail("%s: fd %d no longer refers to %s (inode %llu vs %llu)", what, fd, path, (unsigned long long)a.st_ino,
            (unsigned long long)b.st_ino);
}

int main(int argc, char **argv) {
  wl_init("files", argc, argv);
  char dirbuf[4200];
  snprintf(dirbuf, sizeof dirbuf, "%s", wl_path);
  const char *dir = dirname(dirbuf);
  snprintf(p_data, sizeof p_data, "%s/data.bin", dir);
  snprintf(p_log, sizeof p_log, "%s/log.bin", dir);
  snprintf(p_seq, sizeof p_seq, "%s/seq.bin", dir);
  int fd_data = open(p_data, O_RDWR | O_CREAT | O_TRUNC, 0644);
  int fd_log = open(p_log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  int fd_logr = open(p_log, O_RDONLY);
  int fd_seq = open(p_seq, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_data < 0 || fd_log < 0 || fd_logr < 0 || fd_seq < 0) return 1;

  if (ftruncate(fd_data, SLOTS * SLOT_SIZE) != 0) return 1;
  static uint64_t gens[SLOTS];
  for (uint64_t s = 0; s < SLOTS; s++) {
    struct rec r = mk(MAGIC_SLOT, s, 0);
    if (pwrite(fd_data, &r, sizeof r, (off_t)(s * SLOT_SIZE)) != (ssize_t)sizeof r) wl_fail("initial pwrite failed");
  }
  uint64_t log_seq = 0, log_read = 0, log_base = 0, log_epoch = 0;
  uint64_t seq_n = 0, seq_base = 0, seq_epoch = 0;
  off_t seq_off = 0;
  uint64_t slot_writes = 0, full_checks = 0, seed = 99;
  double last_full = wl_mono(), last_status = 0;

  for (uint64_t round = 0;; round++) {
    for (int k = 0; k < 16; k++) {
      /* pwrite at a computed offset */
      uint64_t s = wl_xorshift(&seed) % SLOTS;
      gens[s]++;
      struct rec r = mk(MAGIC_SLOT, s, gens[s]);
      if (pwrite(fd_data, &r, sizeof r, (off_t)(s * SLOT_SIZE)) != (ssize_t)sizeof r)
        wl_fail("pwrite data.bin slot %llu failed: %s", (unsigned long long)s, strerror(errno));
      slot_writes++;
      /* O_APPEND */
      r = mk(MAGIC_LOG, log_seq, log_epoch);
      if (write(fd_log, &r, REC) != REC) wl_fail("append to log.bin failed: %s", strerror(errno));
      log_seq++;
      off_t lo = lseek(fd_log, 0, SEEK_CUR);
      if (lo != (off_t)((log_seq - log_base) * REC))
        wl_fail("log.bin O_APPEND fd offset is %lld after append, expected %llu", (long long)lo,
                (unsigned long long)((log_seq - log_base) * REC));
      /* lseek + write */
      off_t cur = lseek(fd_seq, 0, SEEK_CUR);
      if (cur != seq_off)
        wl_fail("seq.bin fd offset is %lld, expected %lld", (long long)cur, (long long)seq_off);
      if (lseek(fd_seq, seq_off, SEEK_SET) != seq_off) wl_fail("lseek seq.bin failed");
      r = mk(MAGIC_SEQ, seq_n, seq_epoch);
      if (write(fd_seq, &r, REC) != REC) wl_fail("write seq.bin failed: %s", strerror(errno));
      seq_n++;
      seq_off += REC;
    }
    /* incremental reader of log.bin through its own fd */
    {
      off_t ro = lseek(fd_logr, 0, SEEK_CUR);
      if (ro != (off_t)((log_read - log_base) * REC))
        wl_fail("log.bin reader fd offset is %lld, expected %llu", (long long)ro,
                (unsigned long long)((log_read - log_base) * REC));
      struct rec buf[64];
      ssize_t n;
      while ((n = read(fd_logr, buf, sizeof buf)) > 0) {
        if (n % REC) {
          wl_fail("log.bin reader got a partial record (%zd bytes)", n);
          break;
        }
        for (ssize_t i = 0; i < n / REC; i++) {
          struct rec want = mk(MAGIC_LOG, log_read, log_epoch);
          if (!rec_eq(&buf[i], &want))
            wl_fail("log.bin record %llu is wrong (read back through the reader fd)", (unsigned long long)log_read);
          log_read++;
        }
      }
    }
    double now = wl_mono();
    if (now - last_full > 1.0) {
      last_full = now;
      full_checks++;
      static struct rec slots[SLOTS * SLOT_SIZE / REC];
      if (pread(fd_data, slots, sizeof slots, 0) != (ssize_t)sizeof slots) wl_fail("pread data.bin failed");
      for (uint64_t s = 0; s < SLOTS; s++) {
        struct rec want = mk(MAGIC_SLOT, s, gens[s]);
        if (!rec_eq(&slots[s * (SLOT_SIZE / REC)], &want)) {
          wl_fail("data.bin slot %llu does not hold generation %llu", (unsigned long long)s,
                  (unsigned long long)gens[s]);
          break;
        }
      }
      int fd = open(p_seq, O_RDONLY);
      struct stat st;
      if (fd < 0 || fstat(fd, &st) != 0) wl_fail("cannot open seq.bin");
      else {
        if (st.st_size != seq_off)
          wl_fail("seq.bin size %lld, expected %lld", (long long)st.st_size, (long long)seq_off);
        struct rec buf[256];
        uint64_t i = seq_base;
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0 && wl_ok())
          for (ssize_t j = 0; j < n / REC; j++, i++) {
            struct rec want = mk(MAGIC_SEQ, i, seq_epoch);
            if (!rec_eq(&buf[j], &want)) {
              wl_fail("seq.bin record %llu (offset %llu) is wrong", (unsigned long long)(i - seq_base),
                      (unsigned long long)((i - seq_base) * REC));
              break;
            }
          }
        close(fd);
      }
      if (stat(p_log, &st) != 0 || st.st_size != (off_t)((log_seq - log_base) * REC))
        wl_fail("log.bin size %lld, expected %llu", (long long)st.st_size,
                (unsigned long long)((log_seq - log_base) * REC));
      same_file(fd_data, p_data, "data.bin");
      same_file(fd_log, p_log, "log.bin (append fd)");
      same_file(fd_logr, p_log, "log.bin (reader fd)");
      same_file(fd_seq, p_seq, "seq.bin");
      int fl = fcntl(fd_log, F_GETFL);
      if (!(fl & O_APPEND) || (fl & O_ACCMODE) != O_WRONLY) wl_fail("log.bin fd lost O_APPEND/O_WRONLY (flags 0x%x)", fl);
      fl = fcntl(fd_seq, F_GETFL);
      if ((fl & O_APPEND) || (fl & O_ACCMODE) != O_WRONLY) wl_fail("seq.bin fd flags changed (0x%x)", fl);
      if ((fcntl(fd_data, F_GETFL) & O_ACCMODE) != O_RDWR) wl_fail("data.bin fd is no longer O_RDWR");
      if ((fcntl(fd_logr, F_GETFL) & O_ACCMODE) != O_RDONLY) wl_fail("log.bin reader fd is no longer O_RDONLY");
      if (!(fcntl(fd_seq, F_GETFD) & FD_CLOEXEC)) wl_fail("seq.bin fd lost FD_CLOEXEC");
      if (fcntl(fd_log, F_GETFD) & FD_CLOEXEC) wl_fail("log.bin fd gained FD_CLOEXEC");
      /* wrap */
      if (seq_off >= (off_t)WRAP_BYTES) {
        if (ftruncate(fd_seq, 0) != 0 || lseek(fd_seq, 0, SEEK_SET) != 0) wl_fail("truncate seq.bin failed");
        seq_off = 0;
        seq_base = seq_n;
        seq_epoch++;
      }
      if ((log_seq - log_base) * REC >= WRAP_BYTES && log_read == log_seq) {
        if (ftruncate(fd_log, 0) != 0 || lseek(fd_logr, 0, SEEK_SET) != 0) wl_fail("truncate log.bin failed");
        log_base = log_seq;
        log_epoch++;
      }
    }
    if (now - last_status > 0.05) {
      last_status = now;
      wl_status(slot_writes,
                "\"pids\":[%d],\"slot_writes\":%llu,\"log_appended\":%llu,\"log_read\":%llu,\"seq_written\":%llu,"
                "\"seq_offset\":%lld,\"full_checks\":%llu,\"fds\":{\"data\":%d,\"log\":%d,\"log_reader\":%d,\"seq\":%d}",
                (int)getpid(), (unsigned long long)slot_writes, (unsigned long long)log_seq,
                (unsigned long long)log_read, (unsigned long long)seq_n, (long long)seq_off,
                (unsigned long long)full_checks, fd_data, fd_log, fd_logr, fd_seq);
    }
    wl_sleep_ms(20);
  }
}
