/*
** embed_workers.c
** Helper for spec/embed_spec.lua: worker threads on a host's loop.
**
** A. A task calls tether.to_thread, whose worker calls back into the loop
**    with tether.worker.call; the result reaches the done callback while
**    the host runs its own loop (kept alive by a handle of its own).
** B. tether_shutdown while a worker spins: the worker is interrupted, the
**    task ends with Cancelled, and tether leaves no handle on the loop.
** C. lua_close (no tether_shutdown) while a worker spins in a loop of
**    tether.worker.call: the state closes, the thread ends, and the loop
**    closes with no handle left.
*/

#include "embed_test.h"

static int done_calls, task_ok;
static char result[256];
static uv_loop_t *loop;
static uv_async_t keep; /* the host's own handle: keeps its loop alive */

static void on_done (lua_State *L, int ok, int n, void *ud) {
  (void)ud;
  done_calls++;
  task_ok = ok;
  snprintf(result, sizeof result, "%s",
           n > 0 ? luaL_tolstring(L, 1, NULL) : "");
  if (n > 0)
    lua_pop(L, 1);
  uv_stop(loop);
}

/* host.started(): the worker is running; stops the host's loop. */
static int lua_started (lua_State *L) {
  (void)L;
  uv_stop(loop);
  return 0;
}

/* Attaches a new state to the loop and spawns the task 'code' returns. */
static lua_State *start (const char *code) {
  lua_State *L = embed_new_state();
  CHECK_RC(tether_attach(L, loop), 0);
  lua_pushcfunction(L, lua_started);
  lua_setglobal(L, "host_started");
  embed_load(L, code, "=task");
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    say("error: %s", lua_tostring(L, -1));
    exit(1);
  }
  CHECK_RC(tether_spawn(L, 0, on_done, NULL), 0);
  return L;
}

static void part_a (void) {
  lua_State *L =
      start("local tether = require 'tether'\n"
            "return function()\n"
            "  tether.worker.expose('double', function(x) return 2 * x end)\n"
            "  return tether.to_thread(function(x)\n"
            "    return require('tether').worker.call('double', x) + 1\n"
            "  end, 20)\n"
            "end\n");
  uv_run(loop, UV_RUN_DEFAULT);
  say("A: done %d, ok %d, result %s", done_calls, task_ok, result);
  CHECK(done_calls == 1 && task_ok && strcmp(result, "41") == 0,
        "the task returned the worker's result");
  CHECK_RC(tether_shutdown(L), 0);
  lua_close(L);
}

static void part_b (void) {
  lua_State *L;
  done_calls = 0;
  L = start("local tether = require 'tether'\n"
            "return function()\n"
            "  tether.worker.expose('started', host_started)\n"
            "  return tether.to_thread(function()\n"
            "    require('tether').worker.call('started')\n"
            "    while true do end\n"
            "  end)\n"
            "end\n");
  uv_run(loop, UV_RUN_DEFAULT);
  say("B: worker running");
  CHECK_RC(tether_shutdown(L), 0);
  say("B: done %d, ok %d", done_calls, task_ok);
  CHECK(done_calls == 1 && !task_ok, "the task raised");
  CHECK(strstr(result, "Cancelled") != NULL, "with Cancelled");
  lua_close(L);
}

static void part_c (void) {
  lua_State *L;
  done_calls = 0;
  L = start("local tether = require 'tether'\n"
            "return function()\n"
            "  tether.worker.expose('started', host_started)\n"
            "  tether.worker.expose('tick', function() end)\n"
            "  return tether.to_thread(function()\n"
            "    local tw = require('tether')\n"
            "    tw.worker.call('started')\n"
            "    while true do tw.worker.call('tick') end\n"
            "  end)\n"
            "end\n");
  uv_run(loop, UV_RUN_DEFAULT);
  say("C: worker running");
  lua_close(L);
  say("C: lua_close returned; done %d", done_calls);
  CHECK(done_calls == 0, "no done callback after lua_close");
}

int main (void) {
  static uv_loop_t host_loop;
  loop = &host_loop;
  CHECK_RC(uv_loop_init(loop), 0);
  CHECK_RC(uv_async_init(loop, &keep, NULL), 0);
  part_a();
  part_b();
  part_c();
  uv_close((uv_handle_t *)&keep, NULL);
  while (uv_run(loop, UV_RUN_DEFAULT) != 0)
    ;
  say("handles left: %d", embed_handles(loop));
  CHECK_RC(uv_loop_close(loop), 0);
  return embed_finish();
}
