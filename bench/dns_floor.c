/* The floor of the DNS benchmark: the least CPU a UDP server on this machine spends per query.
 *
 *   dns_floor ADDRESS PORT              answer each query at once (the cache-hit floor)
 *   dns_floor ADDRESS PORT UPSTREAM     relay each query to UPSTREAM:53 and its answer back
 *                                       (the cache-miss floor of a forwarder)
 *
 * Not a DNS server: a measuring rod. No parsing beyond the 12-byte header, no cache, no checks,
 * no allocation. Without UPSTREAM it answers every datagram with the datagram itself, QR set (a
 * response with the question and no records; dnsperf counts it as answered): one blocking
 * recvmmsg() that sleeps until a query is queued and takes up to 64, then one sendmmsg(). With
 * UPSTREAM it waits in poll() on the client and the upstream socket and moves batches between
 * them, giving each relayed query an ID of its own (a table indexed by that ID holds the client's
 * address and ID). dnsd, dnsmasq and unbound do at least this kernel work per query; what a real
 * server spends above this figure is its own. Ends on SIGTERM (the default action).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kBatch = 64, kMaxDatagram = 1232, kHeader = 12 };

static unsigned char buf[kBatch][kMaxDatagram];
static struct sockaddr_in peer[kBatch];
static struct iovec iov[kBatch];
static struct mmsghdr msg[kBatch];

/* A relayed query's client, by the ID it was given upstream. IDs are handed out in turn; the
 * bench keeps at most 800 queries outstanding, far fewer than 65536. */
static struct {
  struct sockaddr_in client;
  uint16_t id;
} pending[65536];

static int receive(int fd, int flags) {
  for (int i = 0; i < kBatch; ++i) {
    iov[i] = (struct iovec){.iov_base = buf[i], .iov_len = kMaxDatagram};
    msg[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &peer[i], .msg_namelen = sizeof peer[i],
                                          .msg_iov = &iov[i], .msg_iovlen = 1}};
  }
  const int n = recvmmsg(fd, msg, kBatch, flags, NULL);
  if (n < 0 && errno != EINTR && errno != EAGAIN) {
    perror("dns_floor: recvmmsg");
    exit(1);
  }
  return n < 0 ? 0 : n;
}

static void send_all(int fd, int n) {
  if (n > 0 && sendmmsg(fd, msg, (unsigned)n, 0) < 0 && errno != EINTR && errno != EAGAIN) {
    perror("dns_floor: sendmmsg");
    exit(1);
  }
}

static int udp_socket(const struct sockaddr_in* bind_to) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || (bind_to && bind(fd, (const struct sockaddr*)bind_to, sizeof *bind_to) != 0)) {
    perror("dns_floor: socket/bind");
    exit(1);
  }
  return fd;
}

static uint16_t get16(const unsigned char* p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void put16(unsigned char* p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

static void echo(int fd) {
  for (;;) {
    const int n = receive(fd, MSG_WAITFORONE);
    int out = 0;
    for (int i = 0; i < n; ++i) {
      if (msg[i].msg_len < kHeader) continue;  // not a DNS header: no reply
      buf[i][2] |= 0x80;                       // QR: a response
      iov[i].iov_len = msg[i].msg_len;
      msg[out++] = msg[i];
    }
    send_all(fd, out);
  }
}

static void relay(int client_fd, const struct sockaddr_in* upstream) {
  const int up_fd = udp_socket(NULL);
  uint16_t next_id = 0;
  struct pollfd fds[2] = {{.fd = client_fd, .events = POLLIN}, {.fd = up_fd, .events = POLLIN}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      perror("dns_floor: poll");
      exit(1);
    }
    if (fds[0].revents & POLLIN) {  // queries: to the upstream under an ID of ours
      const int n = receive(client_fd, MSG_DONTWAIT);
      int out = 0;
      for (int i = 0; i < n; ++i) {
        if (msg[i].msg_len < kHeader) continue;
        const uint16_t id = next_id++;
        pending[id].client = peer[i];
        pending[id].id = get16(buf[i]);
        put16(buf[i], id);
        peer[i] = *upstream;
        iov[i].iov_len = msg[i].msg_len;
        msg[out++] = msg[i];
      }
      send_all(up_fd, out);
    }
    if (fds[1].revents & POLLIN) {  // answers: back to their clients under the client's ID
      const int n = receive(up_fd, MSG_DONTWAIT);
      int out = 0;
      for (int i = 0; i < n; ++i) {
        if (msg[i].msg_len < kHeader) continue;
        const uint16_t id = get16(buf[i]);
        peer[i] = pending[id].client;
        put16(buf[i], pending[id].id);
        iov[i].iov_len = msg[i].msg_len;
        msg[out++] = msg[i];
      }
      send_all(client_fd, out);
    }
  }
}

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: dns_floor ADDRESS PORT [UPSTREAM]\n");
    return 2;
  }
  struct sockaddr_in self = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  struct sockaddr_in upstream = {.sin_family = AF_INET, .sin_port = htons(53)};
  if (inet_pton(AF_INET, argv[1], &self.sin_addr) != 1 ||
      (argc == 4 && inet_pton(AF_INET, argv[3], &upstream.sin_addr) != 1)) {
    fprintf(stderr, "dns_floor: not an IPv4 address\n");
    return 2;
  }
  const int fd = udp_socket(&self);
  if (argc == 3) echo(fd);
  relay(fd, &upstream);
}
