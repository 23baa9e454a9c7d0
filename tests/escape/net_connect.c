/* connect() to ADDR PORT over TCP or UDP: `net_connect tcp|udp ADDR PORT`. Under the jail, a
 * DNS port anywhere but the sidecar and a deny_networks address must fail with EACCES. */
#include <unistd.h>

#include "net_common.h"

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: net_connect tcp|udp ADDR PORT\n");
    return 2;
  }
  struct sockaddr_storage ss;
  const socklen_t len = net_parse(argv[2], argv[3], &ss);
  const int type = strcmp(argv[1], "udp") == 0 ? SOCK_DGRAM : SOCK_STREAM;
  const int fd = socket(ss.ss_family, type, 0);
  if (fd < 0) return net_report(-1, errno);
  const int rc = connect(fd, (struct sockaddr *)&ss, len);
  const int err = errno;
  if (rc == 0 && type == SOCK_DGRAM) {
    /* A UDP connect sends nothing; make the escape real by sending a datagram too. */
    if (send(fd, "q", 1, 0) < 0) return net_report(-1, errno);
  }
  close(fd);
  return net_report(rc, err);
}
