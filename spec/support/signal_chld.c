/*
** signal_chld.c
** Helper for spec/signal_spec.lua: a tether SIGCHLD receiver beside libuv's
** own SIGCHLD watcher, which reaps the children of uv_spawn. The host has
** its own SIGCHLD handler and runs tether attached to its loop; a task opens
** a SIGCHLD receiver, the host starts a child with uv_spawn on the same
** loop, and the child exits while the receiver is open:
**
**   - libuv still reaps the child (its exit callback runs with the status),
**   - the receiver gets the SIGCHLD,
**   - the host's handler still gets it when it was SIGCHLD's disposition,
**   - once the receiver is closed, SIGCHLD's disposition is what it was
**     just before the receiver was opened.
**
**   signal_chld after    the receiver is opened, then the child spawned
**   signal_chld before   the child is spawned (libuv's handler replaces the
**                        host's), then the receiver is opened
*/

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "embed_test.h"

static uv_loop_t loop;
static uv_async_t keepalive; /* tether's handles never keep the loop alive */
static uv_process_t child;
static lua_State *L;
static int before, spawn_rc = 1, exited, task_done, task_ok;
static int64_t exit_status;
static int term_signal, restored_on_close;
static int pipe_fds[2] = {-1, -1}; /* the child exits at EOF on its stdin */
static lua_Integer got_signum, got_count;
static struct sigaction marked; /* SIGCHLD's, before the receiver opened */
static volatile sig_atomic_t host_calls;
static char error[512];

static void host_handler (int signum) {
  (void)signum;
  host_calls++;
}

static int same_disposition (const struct sigaction *a,
                             const struct sigaction *b) {
  if ((a->sa_flags & SA_SIGINFO) != (b->sa_flags & SA_SIGINFO))
    return 0;
  return (a->sa_flags & SA_SIGINFO) ? a->sa_sigaction == b->sa_sigaction
                                    : a->sa_handler == b->sa_handler;
}

static void on_child_exit (uv_process_t *p, int64_t status, int signum) {
  exited = 1;
  exit_status = status;
  term_signal = signum;
  uv_close((uv_handle_t *)p, NULL);
  embed_load(L, "exited:set()", "=exited");
  CHECK_RC(tether_spawn(L, 0, NULL, NULL), 0);
}

static void spawn_child (void) {
  static char *args[] = {"/bin/sh", "-c", "read line; exit 7", NULL};
  uv_stdio_container_t stdio[3];
  uv_process_options_t options;
  memset(&options, 0, sizeof options);
  stdio[0].flags = UV_INHERIT_FD;
  stdio[0].data.fd = pipe_fds[0];
  stdio[1].flags = UV_IGNORE;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  options.file = args[0];
  options.args = args;
  options.exit_cb = on_child_exit;
  options.stdio = stdio;
  options.stdio_count = 3;
  spawn_rc = uv_spawn(&loop, &child, &options);
  close(pipe_fds[0]);
}

/* ready(): the task's receiver is open. */
static int lua_ready (lua_State *L_) {
  (void)L_;
  if (!before)
    spawn_child();
  close(pipe_fds[1]); /* the child reads EOF and exits */
  return 0;
}

static const char task_source[] =
    "local tether = require 'tether'\n"
    "local ready = ...\n"
    "local r <close> = tether.open_signal_receiver(tether.SIGCHLD)\n"
    "ready()\n"
    "tether.fail_after(20):run(exited.wait, exited)\n"
    "return tether.fail_after(20):run(r.receive, r)\n";

static void on_done (lua_State *L_, int ok, int n, void *ud) {
  struct sigaction now;
  (void)ud;
  task_done = 1;
  task_ok = ok;
  if (ok && n == 2) {
    got_signum = lua_tointeger(L_, 1);
    got_count = lua_tointeger(L_, 2);
  }
  else if (!ok)
    snprintf(error, sizeof error, "%s", luaL_tolstring(L_, 1, NULL));
  sigaction(SIGCHLD, NULL, &now); /* the receiver is closed */
  restored_on_close = same_disposition(&now, &marked);
  uv_close((uv_handle_t *)&keepalive, NULL);
}

int main (int argc, char **argv) {
  struct sigaction sa;
  int calls;

  before = argc > 1 && strcmp(argv[1], "before") == 0;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = host_handler;
  sigaction(SIGCHLD, &sa, NULL);
  if (pipe(pipe_fds) != 0) {
    say("FAIL: pipe()");
    return 1;
  }
  /* The child gets the read end as its stdin, and neither end otherwise. */
  fcntl(pipe_fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(pipe_fds[1], F_SETFD, FD_CLOEXEC);
  uv_loop_init(&loop);
  uv_async_init(&loop, &keepalive, NULL);
  L = embed_new_state();
  CHECK_RC(tether_attach(L, &loop), 0);
  embed_run(L, "exited = require('tether').Event()");
  if (before) {
    spawn_child();
    say("host: child spawned (libuv's SIGCHLD handler replaced the host's)");
  }
  sigaction(SIGCHLD, NULL, &marked);
  calls = host_calls;
  embed_load(L, task_source, "=receiver");
  lua_pushcfunction(L, lua_ready);
  CHECK_RC(tether_spawn(L, 1, on_done, NULL), 0);
  if (!before)
    say("host: the receiver opens, then the child is spawned");
  uv_run(&loop, UV_RUN_DEFAULT);

  CHECK_RC(spawn_rc, 0);
  CHECK(task_done, "the receiver task finished");
  if (!task_ok)
    say("task failed: %s", error);
  say("libuv reaped the child: %s, exit status %d", exited ? "yes" : "NO",
      (int)exit_status);
  CHECK(exited && exit_status == 7 && term_signal == 0,
        "the child's exit callback ran with status 7");
  say("receiver got %s, count %s",
      got_signum == SIGCHLD ? "SIGCHLD" : "nothing",
      got_count >= 1 ? ">= 1" : "0");
  CHECK(got_signum == SIGCHLD && got_count >= 1,
        "the receiver got the SIGCHLD");
  if (!before) {
    say("the host's handler got SIGCHLD too: %s",
        host_calls > calls ? "yes" : "NO");
    CHECK(host_calls > calls, "the host's handler got the SIGCHLD");
  }
  say("after the receiver closed, SIGCHLD's disposition is %s",
      restored_on_close ? "what it was before" : "NOT what it was before");
  CHECK(restored_on_close,
        "SIGCHLD's disposition is what it was before the receiver opened");

  CHECK_RC(tether_shutdown(L), 0);
  lua_close(L);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_RC(uv_loop_close(&loop), 0);
  return embed_finish();
}
