// Two ranks pass a token back and forth: each adds its rank and the step; the token's value
// after N steps is a closed form, so only an unbroken run gives it. Rank r writes its progress
// to STATUS.r; rank 0 writes the result at the end.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char *status = argv[1];
  long steps = atol(argv[2]);
  unsigned long long token = 1;
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s.%d", status, rank);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  for (long i = 0; i < steps; i++) {
    int from = (rank + size - 1) % size, to = (rank + 1) % size;
    if ((i % size) == rank) {
      token = token * 6364136223846793005ULL + (unsigned long long)(i + rank);
      MPI_Send(&token, 1, MPI_UNSIGNED_LONG_LONG, to, 0, MPI_COMM_WORLD);
    } else if ((i % size) == from) {
      MPI_Recv(&token, 1, MPI_UNSIGNED_LONG_LONG, from, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
    FILE *f = fopen(tmp, "w");
    fprintf(f, "{\"rank\":%d,\"step\":%ld,\"token\":\"%llu\"}\n", rank, i + 1, token);
    fclose(f);
    rename(tmp, path);
    usleep(20000);
  }
  if (rank == 0) {
    unsigned long long want = 1;
    for (long i = 0; i < steps; i++) want = want * 6364136223846793005ULL + (unsigned long long)(i + (i % size));
    snprintf(path, sizeof path, "%s.result", status);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"token\":\"%llu\",\"want\":\"%llu\",\"ok\":%s}\n", token, want, token == want ? "true" : "false");
    fclose(f);
  }
  MPI_Finalize();
  return 0;
}
