/* sendto() with a destination, without connect(): `net_sendto udp ADDR PORT` sends a datagram;
 * `net_sendto fastopen ADDR PORT` is TCP Fast Open (sendto with MSG_FASTOPEN on an unconnected
 * TCP socket connects and sends in one call). Both must fail with EACCES toward a foreign
 * resolver under the jail. */
#include <unistd.h>

#include "net_common.h"

#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: net_sendto udp|fastopen ADDR PORT\n");
    return 2;
  }
  struct sockaddr_storage ss;
  const socklen_t len = net_parse(argv[2], argv[3], &ss);
  const int fastopen = strcmp(argv[1], "fastopen") == 0;
  const int fd = socket(ss.ss_family, fastopen ? SOCK_STREAM : SOCK_DGRAM, 0);
  if (fd < 0) return net_report(-1, errno);
  static const char query[] = "escape";
  const ssize_t rc = sendto(fd, query, sizeof query - 1, fastopen ? MSG_FASTOPEN : 0,
                            (struct sockaddr *)&ss, len);
  const int err = errno;
  close(fd);
  return net_report(rc, err);
}
