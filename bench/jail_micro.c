/* Per-syscall cost, bare or under the jail: the same binary runs both ways.
 *
 *   jail_micro getppid N     N getppid() calls; prints ns per call
 *   jail_micro connect N     N loopback TCP connects (socket, connect, close) to a listener
 *                            this process runs on 127.0.0.1; prints each connect's µs, sorted
 *   jail_micro connect_nb N  the same with non-blocking sockets, as event loops connect
 *                            (Python asyncio, Go, curl): connect() then poll() for completion
 *
 * getppid has no argument rule: under the jail it measures the filter's walk for an ordinary
 * syscall. connect is sent to the supervisor (SECCOMP_RET_USER_NOTIF), which connects a duplicate
 * of the socket itself: the round trip through it is what the connect figure shows. Only the
 * connect() call is timed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static void* acceptor(void* arg) {
  const int lfd = *(int*)arg;
  for (;;) {
    const int c = accept(lfd, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return NULL;
    }
    close(c);
  }
}

static int bench_getppid(long n) {
  /* The raw syscall: glibc does not cache getppid, but be explicit. */
  for (long i = 0; i < 1000; ++i) syscall(SYS_getppid);
  const double t0 = now_ns();
  for (long i = 0; i < n; ++i) syscall(SYS_getppid);
  const double t1 = now_ns();
  printf("%.1f\n", (t1 - t0) / (double)n);
  return 0;
}

static int bench_connect(long n, int nonblocking) {
  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) { perror("socket"); return 1; }
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(lfd, (struct sockaddr*)&a, sizeof a) != 0 || listen(lfd, 4096) != 0 ||
      getsockname(lfd, (struct sockaddr*)&a, &len) != 0) {
    perror("listener");
    return 1;
  }
  pthread_t th;
  if (pthread_create(&th, NULL, acceptor, (void*)&lfd) != 0) { perror("pthread_create"); return 1; }
  double* us = calloc((size_t)n, sizeof *us);
  if (us == NULL) return 1;
  for (long i = 0; i < n; ++i) {
    const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (s < 0) { perror("socket"); return 1; }
    const double t0 = now_ns();
    int rc = connect(s, (struct sockaddr*)&a, sizeof a);
    if (rc != 0 && nonblocking && errno == EINPROGRESS) {
      struct pollfd p = {s, POLLOUT, 0};
      int err = 0;
      socklen_t elen = sizeof err;
      rc = (poll(&p, 1, 5000) == 1 && getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 &&
            err == 0) ? 0 : -1;
    }
    const double t1 = now_ns();
    if (rc != 0) { perror("connect"); return 1; }
    close(s);
    us[i] = (t1 - t0) / 1e3;
  }
  qsort(us, (size_t)n, sizeof *us, cmp_double);
  for (long i = 0; i < n; ++i) printf("%.2f\n", us[i]);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: jail_micro getppid|connect|connect_nb N\n");
    return 2;
  }
  const long n = strtol(argv[2], NULL, 10);
  if (n <= 0) { fprintf(stderr, "jail_micro: N must be positive\n"); return 2; }
  if (strcmp(argv[1], "getppid") == 0) return bench_getppid(n);
  if (strcmp(argv[1], "connect") == 0) return bench_connect(n, 0);
  if (strcmp(argv[1], "connect_nb") == 0) return bench_connect(n, 1);
  fprintf(stderr, "jail_micro: unknown benchmark %s\n", argv[1]);
  return 2;
}
