/* The W7 echo client: N connections to 127.0.0.1:PORT, each doing ping-pong
 * (send a message of S bytes, wait until all S bytes came back and match,
 * repeat), driven by one epoll loop.
 *
 *   echo_client -p PORT [-c CONNS] [-s SIZE] [-d SECONDS [-w WARMUP]] [-n COUNT]
 *
 * -d: run for WARMUP seconds (default 0.2), then count the round trips that
 *     complete during the next SECONDS (default 1).
 * -n: each connection does COUNT round trips, then the run ends (no warm-up;
 *     the whole run is timed). Used to give a server a fixed amount of work.
 *
 * Prints one line:
 *   roundtrips=<total> seconds=<measured> rps=<round trips per second> conns=N size=S
 * Any failure (connect, a short or wrong echo, the server closing) prints a
 * message on stderr and exits with status 1. */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int fd;
  size_t sent;     /* bytes of the current message written */
  size_t received; /* bytes of its echo read */
  long done;       /* round trips completed */
  int want_out;    /* EPOLLOUT registered */
  char *rbuf;
} conn_t;

static size_t msg_size = 1024;
static char *message;
static int epfd;

static void die (const char *what) {
  fprintf(stderr, "echo_client: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void fail (const char *what) {
  fprintf(stderr, "echo_client: %s\n", what);
  exit(1);
}

static double now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void watch (conn_t *c, int out) {
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0u),
                           .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
    die("epoll_ctl");
  c->want_out = out;
}

/* Writes what is left of the current message; waits for EPOLLOUT if the
 * socket's buffer is full. */
static void send_more (conn_t *c) {
  while (c->sent < msg_size) {
    ssize_t n = write(c->fd, message + c->sent, msg_size - c->sent);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        break;
      die("write");
    }
    c->sent += (size_t)n;
  }
  int out = c->sent < msg_size;
  if (out != c->want_out)
    watch(c, out);
}

/* Reads what arrived; returns 1 when the whole echo is in (and checked). */
static int receive (conn_t *c) {
  for (;;) {
    ssize_t n = read(c->fd, c->rbuf + c->received, msg_size - c->received);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        return 0;
      die("read");
    }
    if (n == 0)
      fail("the server closed a connection");
    c->received += (size_t)n;
    if (c->received > c->sent)
      fail("the server sent more than it was sent");
    if (c->received == msg_size) {
      if (memcmp(c->rbuf, message, msg_size) != 0)
        fail("the echo differs from the message");
      return 1;
    }
    if (c->received == c->sent)
      return 0;
  }
}

static int connect_to (int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0)
    die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((unsigned short)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 &&
      errno != EINPROGRESS)
    die("connect");
  return fd;
}

static void usage (void) {
  fprintf(stderr, "usage: echo_client -p PORT [-c CONNS] [-s SIZE] [-d SECONDS "
                  "[-w WARMUP]] "
                  "[-n COUNT]\n");
  exit(2);
}

int main (int argc, char **argv) {
  int port = 0, nconns = 10, opt;
  long count = 0;
  double duration = 1.0, warmup = 0.2;
  while ((opt = getopt(argc, argv, "p:c:s:d:w:n:")) != -1) {
    switch (opt) {
      case 'p':
        port = atoi(optarg);
        break;
      case 'c':
        nconns = atoi(optarg);
        break;
      case 's':
        msg_size = (size_t)atol(optarg);
        break;
      case 'd':
        duration = atof(optarg);
        break;
      case 'w':
        warmup = atof(optarg);
        break;
      case 'n':
        count = atol(optarg);
        break;
      default:
        usage();
    }
  }
  if (port <= 0 || port > 65535 || nconns <= 0 || msg_size == 0 ||
      duration <= 0 || warmup < 0 || count < 0 || optind != argc)
    usage();

  message = malloc(msg_size);
  conn_t *conns = calloc((size_t)nconns, sizeof *conns);
  struct epoll_event *events = calloc((size_t)nconns, sizeof *events);
  if (!message || !conns || !events)
    fail("out of memory");
  for (size_t i = 0; i < msg_size; i++)
    message[i] = (char)('a' + i % 26);

  epfd = epoll_create1(0);
  if (epfd < 0)
    die("epoll_create1");
  for (int i = 0; i < nconns; i++) {
    conn_t *c = &conns[i];
    c->fd = connect_to(port);
    c->rbuf = malloc(msg_size);
    if (!c->rbuf)
      fail("out of memory");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
      die("epoll_ctl");
    c->want_out = 1; /* the first EPOLLOUT says the connection is up */
  }

  double start = now();
  double measure_from = count ? start : start + warmup;
  double end = count ? 0 : measure_from + duration;
  long measured = 0, total = 0;
  int active = nconns, measuring = count != 0;
  while (active > 0) {
    int n = epoll_wait(epfd, events, nconns, 10000);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      die("epoll_wait");
    }
    if (n == 0)
      fail("no progress for 10 s (is the server alive?)");
    double t = now();
    if (!count) {
      if (!measuring && t >= measure_from) {
        measuring = 1;
        measure_from = t;
      }
      if (t >= end)
        break;
    }
    for (int i = 0; i < n; i++) {
      conn_t *c = events[i].data.ptr;
      if (c->fd < 0)
        continue;
      if (events[i].events & (EPOLLERR | EPOLLHUP)) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        errno = err;
        die("connection");
      }
      if ((events[i].events & EPOLLIN) && receive(c)) {
        c->done++;
        total++;
        if (measuring)
          measured++;
        c->sent = c->received = 0;
        if (count && c->done == count) {
          close(c->fd);
          c->fd = -1;
          active--;
          continue;
        }
      }
      if (c->sent < msg_size)
        send_more(c);
    }
  }
  double seconds = now() - measure_from;
  if (count)
    measured = total;
  for (int i = 0; i < nconns; i++)
    if (conns[i].fd >= 0)
      close(conns[i].fd);
  printf("roundtrips=%ld seconds=%.6f rps=%.1f conns=%d size=%zu\n", measured,
         seconds, (double)measured / seconds, nconns, msg_size);
  return 0;
}
