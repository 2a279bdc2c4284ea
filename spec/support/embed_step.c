/*
** embed_step.c
** Helper for spec/embed_spec.lua: a host that does not run libuv itself. It
** owns a uv_loop_t only because tether_attach needs one, never calls uv_run,
** and drives tether with poll(2) on tether_backend_fd, waiting at most
** tether_backend_timeout between tether_step calls. A task sleeps 3 times
** (30 ms each) and finishes; the host must not spin while it sleeps.
**
**   embed_step                 the host has no handle of its own on the loop
**   embed_step host-handle     the host also keeps a uv_async_t of its own
*/

#define _POSIX_C_SOURCE 200809L

#include <poll.h>

#include "embed_test.h"

#define SLEEPS    3
#define SLEEP_MS  30
#define MAX_POLLS 200 /* a host that spins makes thousands */

static int finished, task_ok;
static char result[128];

static void on_done (lua_State *L, int ok, int n, void *ud) {
  (void)ud;
  finished = 1;
  task_ok = ok;
  snprintf(result, sizeof result, "%s",
           n > 0 ? luaL_tolstring(L, 1, NULL) : "");
  if (n > 0)
    lua_pop(L, 1);
}

/* say(text) from the task. */
static int lua_say (lua_State *L) {
  say("%s", luaL_checkstring(L, 1));
  return 0;
}

static const char task_source[] =
    "local tether = require 'tether'\n"
    "local say, n, seconds = ...\n"
    "for i = 1, n do\n"
    "  tether.sleep(seconds)\n"
    "  say(('task: slept %d of %d'):format(i, n))\n"
    "end\n"
    "return 'done'\n";

int main (int argc, char **argv) {
  uv_loop_t loop;
  uv_async_t own;
  lua_State *L = embed_new_state();
  int host_handle = argc > 1 && strcmp(argv[1], "host-handle") == 0;
  int polls = 0, waits = 0, fd, timeout, rc;
  uint64_t start, elapsed_ms;

  uv_loop_init(&loop);
  if (host_handle)
    uv_async_init(&loop, &own, NULL);
  CHECK_RC(tether_attach(L, &loop), 0);
  fd = tether_backend_fd(L);
  CHECK(fd >= 0, "tether_backend_fd gives a descriptor");
  say("host: no uv_run; poll(2) on tether_backend_fd%s",
      host_handle ? " (the host has a handle of its own on the loop)" : "");

  embed_load(L, task_source, "=sleeper");
  lua_pushcfunction(L, lua_say);
  lua_pushinteger(L, SLEEPS);
  lua_pushnumber(L, SLEEP_MS / 1000.0);
  CHECK_RC(tether_spawn(L, 3, on_done, NULL), 0);

  start = uv_hrtime();
  while (!finished && polls < MAX_POLLS) {
    struct pollfd p;
    timeout = tether_backend_timeout(L);
    CHECK(timeout >= -1, "tether_backend_timeout gives a timeout");
    if (timeout < 0 || timeout > 1000)
      timeout = 1000; /* never block long in a test */
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    if (timeout > 0)
      waits++;
    poll(&p, 1, timeout);
    polls++;
    rc = tether_step(L);
    CHECK(rc >= 0, "tether_step succeeds");
  }
  elapsed_ms = (uv_hrtime() - start) / 1000000;

  say("host: task %s: %s",
      finished ? (task_ok ? "returned" : "raised") : "did NOT finish", result);
  CHECK(finished && task_ok && strcmp(result, "done") == 0,
        "the task ran to its end");
  CHECK(polls < MAX_POLLS, "the host did not spin");
  CHECK(waits >= 1, "the host waited in poll while the task slept");
  CHECK(elapsed_ms >= SLEEPS * SLEEP_MS, "the sleeps took their time");
  say("host: %s (%d polls)", polls < MAX_POLLS ? "no busy loop" : "BUSY LOOP",
      polls);

  CHECK_RC(tether_shutdown(L), 0);
  lua_close(L);
  if (host_handle) {
    uv_close((uv_handle_t *)&own, NULL);
    uv_run(&loop, UV_RUN_NOWAIT); /* its close callback */
  }
  CHECK(embed_handles(&loop) == 0, "no handle left");
  rc = uv_loop_close(&loop);
  say("host: uv_loop_close: %d", rc);
  CHECK_RC(rc, 0);
  return embed_finish();
}
