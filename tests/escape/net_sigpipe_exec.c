/* A send that fails after its caller is gone must not raise SIGPIPE in whoever has the caller's
 * thread id by then (tests/integration/test_jail_escape.py).
 *
 * The main thread blocks in a supervised sendto (a blocking TCP socket whose peer never reads:
 * the supervisor's worker performs it and waits). A second thread execs this program again:
 * execve from a non-leader thread kills the other threads and takes the leader's thread id
 * (de_thread), so the new image has the blocked caller's id. It then shuts the inherited
 * socket down for writing, which makes the worker's send fail with EPIPE, and prints
 * "no sigpipe" or "sigpipe" after a while. Usage: net_sigpipe_exec   (no arguments) */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "net_common.h"

static volatile sig_atomic_t got_sigpipe = 0;
static void on_sigpipe(int sig) {
  (void)sig;
  got_sigpipe = 1;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int sock = -1;
static char self[64];

static void *exec_later(void *arg) {
  (void)arg;
  sleep_ms(300); /* the main thread is blocked in the supervised sendto by then */
  char fd_text[16];
  snprintf(fd_text, sizeof fd_text, "%d", sock);
  char *argv[] = {self, "after-exec", fd_text, NULL};
  execv("/proc/self/exe", argv);
  perror("execv");
  _exit(3);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "after-exec") == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sigaction(SIGPIPE, &sa, NULL);
    if (shutdown(atoi(argv[2]), SHUT_WR) != 0) { /* the worker's pending send: EPIPE */
      perror("shutdown");
      return 2;
    }
    sleep_ms(500);
    printf("%s\n", got_sigpipe ? "sigpipe" : "no sigpipe");
    return 0;
  }
  snprintf(self, sizeof self, "%s", argv[0]);
  /* Not CLOEXEC either: closing it at the exec would reset the connection it has queued. */
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(listener, (struct sockaddr *)&addr, len) != 0 || listen(listener, 1) != 0 ||
      getsockname(listener, (struct sockaddr *)&addr, &len) != 0) {
    perror("listener");
    return 2;
  }
  sock = socket(AF_INET, SOCK_STREAM, 0); /* no CLOEXEC: the new image gets it */
  if (connect(sock, (struct sockaddr *)&addr, len) != 0) {
    perror("connect");
    return 2;
  }
  /* Fill the send buffer (nobody reads the other end), then block in a supervised sendto. */
  static char buf[65536];
  fcntl(sock, F_SETFL, O_NONBLOCK);
  while (send(sock, buf, sizeof buf, 0) > 0) {
  }
  fcntl(sock, F_SETFL, 0);
  pthread_t t;
  if (pthread_create(&t, NULL, exec_later, NULL) != 0) return 2;
  sendto(sock, buf, sizeof buf, 0, (struct sockaddr *)&addr, len); /* never returns: de_thread */
  printf("sendto returned\n");
  return 2;
}
