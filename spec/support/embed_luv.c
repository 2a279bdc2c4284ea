/*
** embed_luv.c
** Helper for spec/embed_spec.lua: tether and luv (Debian's lua-luv-dev) on
** one loop that the host owns. The host gives its loop to luv (luv_set_loop
** before luaopen_luv) and to tether (tether_attach), exposes spawn(fn, ...)
** (tether_spawn) to Lua and runs a script that mixes both:
** - a luv repeating timer feeds a tether memory stream (luv callbacks are not
**   tasks: they may set Events and send_nowait, never block);
** - a tether task awaits luv operations (a luv timer and luv's fs_stat) by
**   waiting on an Event that the luv callback sets, with a <close> that
**   closes the luv handle if the task is cancelled;
** - luv's own uv.run() drives the loop, tether's tasks included; a luv
**   handle keeps the loop alive until the task ends (tether's never do).
**
**   cc embed_luv.c libtether.a $(pkg-config --cflags --libs lua5.4-luv libuv)
*/

#define _POSIX_C_SOURCE 200809L

#include <luv/luv.h>

#include "embed_test.h"

static int done_calls, done_ok;
static char done_result[256];

static void on_done (lua_State *L, int ok, int n, void *ud) {
  (void)ud;
  done_calls++;
  done_ok = ok;
  snprintf(done_result, sizeof done_result, "%s",
           n > 0 ? luaL_tolstring(L, 1, NULL) : "");
  if (n > 0)
    lua_pop(L, 1);
  if (!ok)
    say("task error traceback: %s", lua_tostring(L, 2));
}

/* spawn(fn, ...): starts fn(...) as a tether task. */
static int lua_spawn (lua_State *L) {
  int rc;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  rc = tether_spawn(L, lua_gettop(L) - 1, on_done, NULL);
  if (rc < 0)
    return luaL_error(L, "spawn: %s", uv_strerror(rc));
  return 0;
}

static const char script[] =
    "local uv = require 'luv'\n"
    "local tether = require 'tether'\n"
    "\n"
    "-- A luv operation awaited from a task: the callback sets an Event.\n"
    "local function luv_sleep(ms)\n"
    "  local done = tether.Event()\n"
    "  local timer <close> = setmetatable({handle = uv.new_timer()}, {\n"
    "    __close = function(t) t.handle:close() end})\n"
    "  timer.handle:start(ms, 0, function() done:set() end)\n"
    "  done:wait()\n"
    "end\n"
    "\n"
    "local function luv_stat(path)\n"
    "  local done, stat, err = tether.Event()\n"
    "  assert(uv.fs_stat(path, function(e, s) err, stat = e, s; done:set() "
    "end))\n"
    "  done:wait()\n"
    "  return stat, err\n"
    "end\n"
    "\n"
    "-- A luv timer feeds a tether stream, then closes it.\n"
    "local send, receive = tether.create_memory_object_stream(math.huge)\n"
    "local ticker, ticks = uv.new_timer(), 0\n"
    "ticker:start(2, 2, function()\n"
    "  ticks = ticks + 1\n"
    "  send:send_nowait(ticks)\n"
    "  if ticks == 3 then ticker:close(); send:close() end\n"
    "end)\n"
    "\n"
    "-- tether's handles never keep the loop alive: a luv handle does, until\n"
    "-- the task ends.\n"
    "local keepalive = uv.new_async(function() end)\n"
    "\n"
    "spawn(function(label)\n"
    "  local _alive <close> = setmetatable({}, {\n"
    "    __close = function() keepalive:close() end})\n"
    "  for n in receive do print(label .. ': luv timer tick ' .. n) end\n"
    "  print(label .. ': stream closed by the luv callback')\n"
    "  luv_sleep(5)\n"
    "  print(label .. ': awaited a luv timer')\n"
    "  local stat = luv_stat('.')\n"
    "  print(label .. ': awaited luv fs_stat: ' .. stat.type)\n"
    "  tether.task_group(function(tg)\n"
    "    for i = 1, 2 do\n"
    "      tg:start_soon(function() luv_sleep(i) end)\n"
    "    end\n"
    "  end)\n"
    "  print(label .. ': two child tasks awaited luv timers')\n"
    "  tether.move_on_after(0.005):run(luv_sleep, 10000)\n"
    "  print(label .. ': a cancelled luv wait closed its timer')\n"
    "  return 'task done'\n"
    "end, 'task')\n"
    "\n"
    "print('script: uv.run() starts')\n"
    "uv.run()\n"
    "print('script: uv.run() returned')\n";

int main (void) {
  uv_loop_t loop;
  lua_State *L;
  int rc;

  uv_loop_init(&loop);
  L = luaL_newstate();
  luaL_openlibs(L);
  luv_set_loop(L, &loop); /* before luaopen_luv */
  luaL_requiref(L, "luv", luaopen_luv, 0);
  lua_pop(L, 1);
  tether_openlibs(L);
  CHECK_RC(tether_attach(L, &loop), 0);
  lua_pushcfunction(L, lua_spawn);
  lua_setglobal(L, "spawn");
  CHECK(luv_loop(L) == &loop, "luv uses the host's loop");

  CHECK(embed_run(L, script), "the script ran");
  say("host: done callback: %d call(s), %s: %s", done_calls,
      done_ok ? "ok" : "error", done_result);
  CHECK(done_calls == 1 && done_ok && strcmp(done_result, "task done") == 0,
        "the task finished while luv's uv.run() drove the loop");

  CHECK_RC(tether_shutdown(L), 0);
  lua_close(L);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(embed_handles(&loop) == 0, "no handle left");
  rc = uv_loop_close(&loop);
  say("host: uv_loop_close: %d", rc);
  CHECK_RC(rc, 0);
  return embed_finish();
}
