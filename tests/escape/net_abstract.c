/* connect() to the abstract unix socket "\0NAME" (unix(7)): `net_abstract NAME`. The jail's
 * default policy denies abstract names (EPERM from the supervisor; Landlock's scope as well). */
#include <stddef.h>
#include <sys/un.h>
#include <unistd.h>

#include "net_common.h"

int main(int argc, char **argv) {
  if (argc != 2 || strlen(argv[1]) >= sizeof(((struct sockaddr_un *)0)->sun_path) - 1) {
    fprintf(stderr, "usage: net_abstract NAME\n");
    return 2;
  }
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  memcpy(sun.sun_path + 1, argv[1], strlen(argv[1]));
  const socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(argv[1]));
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return net_report(-1, errno);
  const int rc = connect(fd, (struct sockaddr *)&sun, len);
  const int err = errno;
  close(fd);
  return net_report(rc, err);
}
