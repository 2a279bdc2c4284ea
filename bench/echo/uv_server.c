/* The W7 floor: a TCP echo server in C on libuv, the least work an echo can be
 * on the library tether is built on. Each read callback writes what it got
 * with uv_try_write and queues the rest (copied) with uv_write.
 *
 *   uv_echo_server [PORT]     (default 0: any free port)
 *
 * Listens on 127.0.0.1, prints "PORT <n>" on stdout once it listens, and
 * serves until it is killed. */

#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
  uv_tcp_t tcp;
  char buf[65536];
} conn_t;

typedef struct {
  uv_write_t req;
  char data[];
} write_t;

static void check (int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "uv_echo_server: %s: %s\n", what, uv_strerror(rc));
    exit(1);
  }
}

static void on_alloc (uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn_t *c = (conn_t *)handle;
  *buf = uv_buf_init(c->buf, sizeof c->buf);
}

static void on_close (uv_handle_t *handle) {
  free(handle);
}

static void on_write (uv_write_t *req, int status) {
  if (status < 0 && !uv_is_closing((uv_handle_t *)req->handle))
    uv_close((uv_handle_t *)req->handle, on_close);
  free(req);
}

static void on_read (uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  if (nread < 0) {
    if (!uv_is_closing((uv_handle_t *)stream))
      uv_close((uv_handle_t *)stream, on_close);
    return;
  }
  if (nread == 0)
    return;
  uv_buf_t out = uv_buf_init(buf->base, (unsigned int)nread);
  int n = uv_try_write(stream, &out, 1);
  if (n == UV_EAGAIN)
    n = 0;
  if (n < 0) {
    uv_close((uv_handle_t *)stream, on_close);
    return;
  }
  if (n == nread)
    return;
  size_t rest = (size_t)nread - (size_t)n;
  write_t *w = malloc(sizeof *w + rest);
  if (!w) {
    uv_close((uv_handle_t *)stream, on_close);
    return;
  }
  memcpy(w->data, buf->base + n, rest);
  out = uv_buf_init(w->data, (unsigned int)rest);
  if (uv_write(&w->req, stream, &out, 1, on_write) < 0) {
    free(w);
    uv_close((uv_handle_t *)stream, on_close);
  }
}

static void on_connection (uv_stream_t *server, int status) {
  check(status, "listen");
  conn_t *c = malloc(sizeof *c);
  if (!c)
    return;
  check(uv_tcp_init(server->loop, &c->tcp), "uv_tcp_init");
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
    uv_close((uv_handle_t *)&c->tcp, on_close);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  check(uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read),
        "uv_read_start");
}

int main (int argc, char **argv) {
  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t server;
  struct sockaddr_in addr;
  check(uv_ip4_addr("127.0.0.1", argc > 1 ? atoi(argv[1]) : 0, &addr),
        "uv_ip4_addr");
  check(uv_tcp_init(loop, &server), "uv_tcp_init");
  check(uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0), "bind");
  check(uv_listen((uv_stream_t *)&server, 128, on_connection), "listen");
  struct sockaddr_in bound;
  int len = sizeof bound;
  check(uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len),
        "getsockname");
  printf("PORT %d\n", ntohs(bound.sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
