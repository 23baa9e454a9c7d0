/* Shared by the network escape programs (tests/escape/net_*.c): address parsing and the one
 * line of output each prints, "ok" or the errno's name, for tests/integration/test_jail_escape.py. */
#pragma once

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* An IPv4 or IPv6 (including ::ffff:a.b.c.d) address and port as a sockaddr; exits 2 on bad
 * input. Returns the length. */
static inline socklen_t net_parse(const char *ip, const char *port, struct sockaddr_storage *out) {
  memset(out, 0, sizeof *out);
  const unsigned long p = strtoul(port, NULL, 10);
  struct sockaddr_in *sin = (struct sockaddr_in *)out;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
  if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((unsigned short)p);
    return sizeof *sin;
  }
  if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((unsigned short)p);
    return sizeof *sin6;
  }
  fprintf(stderr, "not an address: %s\n", ip);
  exit(2);
}

/* Prints "ok" for rc >= 0, else the errno's name; the exit status is 0 either way. */
static inline int net_report(long rc, int err) {
  if (rc >= 0) {
    printf("ok\n");
  } else {
    const char *name = strerrorname_np(err);
    printf("%s\n", name ? name : "unknown");
  }
  fflush(stdout);
  return 0;
}
