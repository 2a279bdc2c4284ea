/*
** host.c
** A C application that embeds tether. It owns a libuv loop with a timer and
** a TCP echo server of its own, and runs tether's tasks on the same loop: a
** task group with three workers and a SIGUSR1 receiver. A worker thread
** posts work into the loop (tether_post), which starts a task
** (tether_spawn). The host tests itself, one step after the other: the
** workers finish, an echo client gets its line back, the host sends itself
** SIGUSR1, the worker thread's task finishes. Then it shuts down in the
** documented order and checks that the loop closes cleanly.
**
**   make && ./host     prints a transcript; exit status 0 when every check
**                      passed, 1 otherwise (at most a few seconds)
**
** No .lua file is needed: tether_openlibs registers the Lua facade compiled
** into libtether.a, and the application's Lua code is the string below.
*/

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>
#include <tether.h>

#define TICK_MS    5    /* the host's own timer */
#define TIMEOUT_MS 5000 /* the whole self-test, then it fails */
#define ECHO_LINE  "hello through the host's echo server\n"

/* The application's Lua side: started as a task, with the host's table. */
static const char app_source[] =
    "local tether = require 'tether'\n"
    "local host = ...\n"
    "-- Opened first: a SIGUSR1 sent from now on is kept for the reader.\n"
    "local signals <close> = tether.open_signal_receiver(tether.SIGUSR1)\n"
    "tether.task_group(function(tg)\n"
    "  tg:start_soon('signals', function()\n"
    "    local received = 0\n"
    "    local _stop <close> = setmetatable({}, {__close = function()\n"
    "      print(('app: signal task stopped after %d signal(s)')\n"
    "        :format(received))\n"
    "    end})\n"
    "    for signum, count in signals do\n"
    "      received = received + count\n"
    "      print(('app: signal %s received (%d so far)')\n"
    "        :format(tether.signal_name(signum), received))\n"
    "      host.step('signal')\n"
    "    end\n"
    "  end)\n"
    "  local squares = {}\n"
    "  tether.task_group(function(workers)\n"
    "    for i = 1, 3 do\n"
    "      workers:start_soon('worker ' .. i, function()\n"
    "        tether.sleep(0.002 * i)\n"
    "        squares[i] = i * i\n"
    "      end)\n"
    "    end\n"
    "  end)\n"
    "  print('app: 3 workers done: ' .. table.concat(squares, ' '))\n"
    "  host.step('workers')\n"
    "end)\n";

/* The task a posted callback starts, with the worker thread's result. */
static const char posted_source[] =
    "local tether = require 'tether'\n"
    "local sum = ...\n"
    "tether.sleep(0.005)\n"
    "return ('task got %d from the worker thread'):format(sum)\n";

/* The self-test's steps, in order. */
enum step { STEP_WORKERS, STEP_ECHO, STEP_SIGNAL, STEP_POSTED, STEP_DONE };

static const char *const step_names[] = {"workers", "echo", "signal",
                                         "posted",  "done", NULL};

struct host {
  uv_loop_t loop;
  lua_State *L;
  tether_t *tether; /* for the worker thread's tether_post */
  uv_thread_t loop_thread;
  uv_timer_t timer; /* the host's own repeating timer, also a watchdog */
  uv_tcp_t server;  /* echo server on 127.0.0.1, ephemeral port */
  uv_tcp_t *conn;   /* the server's side of the client's connection */
  uv_tcp_t client;  /* the self-test client */
  uv_connect_t connect;
  uv_write_t line_write;
  int client_open;
  char reply[sizeof ECHO_LINE];
  size_t reply_len;
  uv_thread_t worker;
  int worker_started;
  long worker_sum; /* written by the worker before it posts */
  int post_error;  /* tether_post's result in the worker */
  uint64_t started_ms;
  unsigned ticks;
  enum step step;
  int app_ended;
  int failed;
};

static void fail (struct host *h, const char *fmt, ...) {
  va_list ap;
  printf("host: FAILED: ");
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  h->failed = 1;
  uv_stop(&h->loop);
}

static void advance (struct host *h, enum step done);

/* {====================================================================
** The echo server and its self-test client
** ===================================================================== */

struct echo_write {
  uv_write_t req;
  uv_buf_t buf;
};

static void alloc_buffer (uv_handle_t *handle, size_t size, uv_buf_t *buf) {
  (void)handle;
  buf->base = malloc(size);
  buf->len = buf->base != NULL ? size : 0;
}

static void free_handle (uv_handle_t *handle) {
  free(handle);
}

static void close_conn (struct host *h) {
  if (h->conn != NULL) {
    uv_close((uv_handle_t *)h->conn, free_handle);
    h->conn = NULL;
  }
}

static void on_echoed (uv_write_t *req, int status) {
  struct echo_write *w = (struct echo_write *)req;
  (void)status; /* a failed echo shows up at the client */
  free(w->buf.base);
  free(w);
}

/* Server side: writes back whatever arrives; closes at end of stream. */
static void on_server_read (uv_stream_t *stream, ssize_t n,
                            const uv_buf_t *buf) {
  struct host *h = stream->data;
  struct echo_write *w;
  if (n > 0 && (w = malloc(sizeof *w)) != NULL) {
    w->buf = uv_buf_init(buf->base, (unsigned)n);
    if (uv_write(&w->req, stream, &w->buf, 1, on_echoed) == 0)
      return; /* the buffer goes with the write */
    free(w);
  }
  free(buf->base);
  if (n < 0)
    close_conn(h); /* UV_EOF: the client closed */
}

static void on_connection (uv_stream_t *server, int status) {
  struct host *h = server->data;
  int err;
  if (status < 0) {
    fail(h, "echo server: %s", uv_strerror(status));
    return;
  }
  if (h->conn != NULL || (h->conn = malloc(sizeof *h->conn)) == NULL) {
    fail(h, "echo server: unexpected second connection, or out of memory");
    return;
  }
  uv_tcp_init(&h->loop, h->conn);
  h->conn->data = h;
  if ((err = uv_accept(server, (uv_stream_t *)h->conn)) < 0 ||
      (err = uv_read_start((uv_stream_t *)h->conn, alloc_buffer,
                           on_server_read)) < 0) {
    close_conn(h);
    fail(h, "echo server: %s", uv_strerror(err));
  }
}

static int start_echo_server (struct host *h) {
  struct sockaddr_storage name;
  struct sockaddr_in addr;
  int len = sizeof name, err;
  char ip[64];
  uv_tcp_init(&h->loop, &h->server);
  h->server.data = h;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  if ((err = uv_tcp_bind(&h->server, (const struct sockaddr *)&addr, 0)) < 0 ||
      (err = uv_listen((uv_stream_t *)&h->server, 8, on_connection)) < 0 ||
      (err = uv_tcp_getsockname(&h->server, (struct sockaddr *)&name, &len)) <
          0) {
    printf("host: FAILED: echo server: %s\n", uv_strerror(err));
    return err;
  }
  uv_ip4_name((const struct sockaddr_in *)&name, ip, sizeof ip);
  printf("host: echo server listening on %s:%d\n", ip,
         ntohs(((const struct sockaddr_in *)&name)->sin_port));
  return 0;
}

static void close_client (struct host *h) {
  if (h->client_open) {
    uv_close((uv_handle_t *)&h->client, NULL);
    h->client_open = 0;
  }
}

/* Client side: collects the reply up to the newline and compares. */
static void on_client_read (uv_stream_t *stream, ssize_t n,
                            const uv_buf_t *buf) {
  struct host *h = stream->data;
  size_t room = sizeof h->reply - 1 - h->reply_len;
  if (n > 0) {
    size_t take = (size_t)n < room ? (size_t)n : room;
    memcpy(h->reply + h->reply_len, buf->base, take);
    h->reply_len += take;
    h->reply[h->reply_len] = '\0';
  }
  free(buf->base);
  if (n < 0) {
    fail(h, "echo client: %s before the whole line came back",
         uv_strerror((int)n));
    close_client(h);
    return;
  }
  if (strchr(h->reply, '\n') == NULL && h->reply_len < sizeof h->reply - 1)
    return; /* more to come */
  close_client(h);
  if (strcmp(h->reply, ECHO_LINE) != 0) {
    fail(h, "echo client: sent \"%.*s\", got back \"%s\"",
         (int)strlen(ECHO_LINE) - 1, ECHO_LINE, h->reply);
    return;
  }
  printf("host: echo ok (\"%.*s\")\n", (int)strlen(ECHO_LINE) - 1, h->reply);
  advance(h, STEP_ECHO);
}

static void on_line_sent (uv_write_t *req, int status) {
  struct host *h = req->handle->data;
  if (status < 0)
    fail(h, "echo client: write: %s", uv_strerror(status));
}

static void on_connected (uv_connect_t *req, int status) {
  struct host *h = req->handle->data;
  uv_buf_t buf = uv_buf_init((char *)ECHO_LINE, sizeof ECHO_LINE - 1);
  int err = status;
  if (err < 0 ||
      (err = uv_read_start(req->handle, alloc_buffer, on_client_read)) < 0 ||
      (err = uv_write(&h->line_write, req->handle, &buf, 1, on_line_sent)) <
          0) {
    fail(h, "echo client: %s", uv_strerror(err));
    close_client(h);
  }
}

static void start_echo_client (struct host *h) {
  struct sockaddr_storage name;
  int len = sizeof name, err;
  uv_tcp_getsockname(&h->server, (struct sockaddr *)&name, &len);
  uv_tcp_init(&h->loop, &h->client);
  h->client.data = h;
  h->client_open = 1;
  err = uv_tcp_connect(&h->connect, &h->client, (struct sockaddr *)&name,
                       on_connected);
  if (err < 0) {
    fail(h, "echo client: %s", uv_strerror(err));
    close_client(h);
  }
}

/* }==================================================================== */

/* {====================================================================
** The worker thread and the task it starts through tether_post
** ===================================================================== */

static void on_posted_done (lua_State *L, int ok, int n, void *ud) {
  struct host *h = ud;
  if (!ok) {
    fail(h, "posted task raised %s\n%s", luaL_tolstring(L, 1, NULL),
         lua_tostring(L, 2));
    lua_pop(L, 1);
    return;
  }
  if (n != 1 || !lua_isstring(L, 1)) {
    fail(h, "posted task returned %d values", n);
    return;
  }
  printf("host: posted task done: %s\n", lua_tostring(L, 1));
  advance(h, STEP_POSTED);
}

/* Runs on the loop's thread (tether_post's promise). */
static void on_posted (lua_State *L, void *ud) {
  struct host *h = ud;
  uv_thread_t self = uv_thread_self();
  int err;
  printf("host: work posted by the worker thread runs on the %s thread\n",
         uv_thread_equal(&self, &h->loop_thread) ? "loop's" : "WRONG");
  if (!uv_thread_equal(&self, &h->loop_thread)) {
    fail(h, "a posted callback ran on another thread");
    return;
  }
  if (luaL_loadbuffer(L, posted_source, sizeof posted_source - 1, "=posted") !=
      LUA_OK) {
    fail(h, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return;
  }
  lua_pushinteger(L, h->worker_sum);
  if ((err = tether_spawn(L, 1, on_posted_done, h)) < 0)
    fail(h, "tether_spawn from a posted callback: %s", uv_strerror(err));
}

static void worker_main (void *arg) {
  struct host *h = arg;
  long sum = 0, i;
  for (i = 1; i <= 1000; i++) /* the "work" */
    sum += i;
  h->worker_sum = sum; /* tether_post's lock hands it to the loop thread */
  h->post_error = tether_post(h->tether, on_posted, h);
}

static void start_worker (struct host *h) {
  int err = uv_thread_create(&h->worker, worker_main, h);
  if (err < 0) {
    fail(h, "uv_thread_create: %s", uv_strerror(err));
    return;
  }
  h->worker_started = 1;
  printf("host: worker thread started\n");
}

/* }==================================================================== */

/* {====================================================================
** The steps, the host's timer, the application task
** ===================================================================== */

/* Step 'done' finished: check the order, start the next one. */
static void advance (struct host *h, enum step done) {
  if (h->failed)
    return;
  if (done != h->step) {
    fail(h, "step '%s' finished while waiting for '%s'", step_names[done],
         step_names[h->step]);
    return;
  }
  h->step = done + 1;
  switch (h->step) {
    case STEP_ECHO:
      start_echo_client(h);
      break;
    case STEP_SIGNAL:
      printf("host: sending SIGUSR1 to itself\n");
      uv_kill(uv_os_getpid(), SIGUSR1);
      break;
    case STEP_POSTED:
      start_worker(h);
      break;
    default: /* STEP_DONE: the next tick stops the loop */
      break;
  }
}

static void on_tick (uv_timer_t *timer) {
  struct host *h = timer->data;
  h->ticks++;
  if (h->step == STEP_DONE)
    uv_stop(&h->loop);
  else if (uv_now(&h->loop) - h->started_ms > TIMEOUT_MS)
    fail(h, "timed out after %d ms waiting for step '%s'", TIMEOUT_MS,
         step_names[h->step]);
}

/* host.step(name): the Lua side reports a finished step. */
static int host_step (lua_State *L) {
  struct host *h = lua_touserdata(L, lua_upvalueindex(1));
  advance(h, (enum step)luaL_checkoption(L, 1, NULL, step_names));
  return 0;
}

static void on_app_done (lua_State *L, int ok, int n, void *ud) {
  struct host *h = ud;
  int cancelled;
  (void)n;
  h->app_ended = 1;
  if (ok) {
    fail(h, "the application task returned before the shutdown");
    return;
  }
  /* tether.is(err, tether.Cancelled) */
  luaL_loadstring(L, "local tether = require 'tether'\n"
                     "return tether.is(..., tether.Cancelled)");
  lua_pushvalue(L, 1);
  cancelled = lua_pcall(L, 1, 1, 0) == LUA_OK && lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (cancelled)
    printf("host: app task ended by the shutdown: %s\n",
           luaL_tolstring(L, 1, NULL));
  else
    fail(h, "the application task raised %s\n%s", luaL_tolstring(L, 1, NULL),
         lua_tostring(L, 2));
  lua_pop(L, 1);
}

static int start_app (struct host *h) {
  static const luaL_Reg host_funcs[] = {{"step", host_step}, {NULL, NULL}};
  int err;
  if (luaL_loadbuffer(h->L, app_source, sizeof app_source - 1, "=app") !=
      LUA_OK) {
    printf("host: FAILED: %s\n", lua_tostring(h->L, -1));
    return -1;
  }
  luaL_newlibtable(h->L, host_funcs);
  lua_pushlightuserdata(h->L, h);
  luaL_setfuncs(h->L, host_funcs, 1);
  if ((err = tether_spawn(h->L, 1, on_app_done, h)) < 0) {
    printf("host: FAILED: tether_spawn: %s\n", uv_strerror(err));
    return err;
  }
  printf("host: app task started\n");
  return 0;
}

/* }==================================================================== */

static void print_handle (uv_handle_t *handle, void *arg) {
  (void)arg;
  printf("host:   handle left open: %s\n",
         uv_handle_type_name(uv_handle_get_type(handle)));
}

int main (void) {
  static struct host host; /* zeroed */
  struct host *h = &host;
  int err;

  setvbuf(stdout, NULL, _IOLBF, 0);
  if ((err = uv_loop_init(&h->loop)) < 0) {
    printf("host: FAILED: uv_loop_init: %s\n", uv_strerror(err));
    return 1;
  }
  h->loop_thread = uv_thread_self();
  h->started_ms = uv_now(&h->loop);

  /* Lua with tether, attached to the host's loop. */
  h->L = luaL_newstate();
  if (h->L == NULL)
    return 1;
  luaL_openlibs(h->L);
  tether_openlibs(h->L);
  if ((err = tether_attach(h->L, &h->loop)) < 0) {
    printf("host: FAILED: tether_attach: %s\n", uv_strerror(err));
    return 1;
  }
  h->tether = tether_get(h->L);
  printf("host: tether %s attached to the host's loop\n", TETHER_VERSION);

  /* The host's own handles, then the application task. */
  uv_timer_init(&h->loop, &h->timer);
  h->timer.data = h;
  uv_timer_start(&h->timer, on_tick, TICK_MS, TICK_MS);
  if (start_echo_server(h) < 0 || start_app(h) < 0)
    h->failed = 1;
  else
    uv_run(&h->loop, UV_RUN_DEFAULT); /* until the last step or a failure */

  if (h->worker_started) {
    uv_thread_join(&h->worker);
    if (h->post_error < 0)
      fail(h, "tether_post: %s", uv_strerror(h->post_error));
  }
  if (h->step != STEP_DONE && !h->failed)
    fail(h, "the loop stopped early, at step '%s'", step_names[h->step]);
  if (h->ticks == 0)
    fail(h, "the host's own timer never ticked");
  else
    printf("host: the host's own timer kept ticking beside tether\n");

  /* Shutdown, in the documented order. */
  printf("host: shutting tether down\n");
  if ((err = tether_shutdown(h->L)) < 0)
    fail(h, "tether_shutdown: %s", uv_strerror(err));
  if (!h->app_ended)
    fail(h, "tether_shutdown returned before the application task ended");
  uv_close((uv_handle_t *)&h->timer, NULL);
  uv_close((uv_handle_t *)&h->server, NULL);
  close_client(h);
  close_conn(h);
  lua_close(h->L);
  uv_run(&h->loop, UV_RUN_DEFAULT); /* close callbacks, tether's included */
  if ((err = uv_loop_close(&h->loop)) == 0)
    printf("host: loop closed cleanly\n");
  else {
    fail(h, "uv_loop_close: %s", uv_err_name(err));
    uv_walk(&h->loop, print_handle, NULL);
  }
  printf("host: %s\n", h->failed ? "FAILED" : "all checks passed");
  return h->failed ? 1 : 0;
}
