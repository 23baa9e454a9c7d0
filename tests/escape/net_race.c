/* The time-of-check race against the supervisor: `net_race tcp|udp SIDECAR FOREIGN PORT COUNT`.
 * Two threads keep rewriting one shared sockaddr between SIDECAR and FOREIGN while the main
 * thread connects (tcp) or sends a datagram with sendto (udp) to it COUNT times. A supervisor
 * that read the caller's memory twice, or let the kernel re-read it (seccomp_unotify(2),
 * CONTINUE), would sooner or later reach FOREIGN. Prints "ok=N denied=M other=K" (other: any
 * errno but EACCES, e.g. ECONNREFUSED). */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "net_common.h"

static struct sockaddr_in shared;  /* the target: rewritten while in use */
static struct in_addr addrs[2];
static atomic_int stop;

static void *flip(void *arg) {
  const int first = (int)(long)arg;
  for (unsigned i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); ++i) {
    /* One aligned 4-byte store: the reader sees either address, never a mix. */
    __atomic_store_n(&shared.sin_addr.s_addr, addrs[(i + (unsigned)first) & 1].s_addr,
                     __ATOMIC_RELAXED);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: net_race tcp|udp SIDECAR FOREIGN PORT COUNT\n");
    return 2;
  }
  const int tcp = strcmp(argv[1], "tcp") == 0;
  if (inet_pton(AF_INET, argv[2], &addrs[0]) != 1 || inet_pton(AF_INET, argv[3], &addrs[1]) != 1) {
    fprintf(stderr, "IPv4 addresses expected\n");
    return 2;
  }
  shared.sin_family = AF_INET;
  shared.sin_port = htons((unsigned short)strtoul(argv[4], NULL, 10));
  shared.sin_addr = addrs[0];
  const long count = strtol(argv[5], NULL, 10);

  pthread_t flippers[2];
  for (long i = 0; i < 2; ++i) {
    if (pthread_create(&flippers[i], NULL, flip, (void *)i) != 0) return 3;
  }
  long ok = 0, denied = 0, other = 0;
  const int udp = socket(AF_INET, SOCK_DGRAM, 0);
  for (long i = 0; i < count; ++i) {
    int rc, err;
    if (tcp) {
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      rc = connect(fd, (struct sockaddr *)&shared, sizeof shared);
      err = errno;
      close(fd);
    } else {
      rc = (int)sendto(udp, "race", 4, 0, (struct sockaddr *)&shared, sizeof shared);
      err = errno;
    }
    if (rc >= 0) {
      ++ok;
    } else if (err == EACCES) {
      ++denied;
    } else {
      ++other;
    }
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; ++i) pthread_join(flippers[i], NULL);
  printf("ok=%ld denied=%ld other=%ld\n", ok, denied, other);
  return 0;
}
