/*
** embed_close.c
** Helper for spec/embed_spec.lua: ending a host's Lua state with tasks still
** suspended, on one host loop.
**
** A. tether_shutdown: tasks sleeping, blocked in a stream receive and blocked
**    forever with a shielded cleanup are cancelled; the cleanup runs to its
**    end (it sleeps) before tether_shutdown returns; every done callback
**    gets Cancelled; tether leaves no handle on the host's loop.
** B. lua_close without tether_shutdown: tasks sleeping, blocked in a stream
**    receive, in a signal receiver's receive, in an Event wait, in a group's
**    exit, inside a shielded cleanup during unwinding, plus one spawned but
**    never started and one pending tether_post. No done callback and no post
**    runs, SIGUSR1's disposition is the host's handler again, and running the
**    host's loop afterwards leaves no handle, so uv_loop_close returns 0.
*/

#define _POSIX_C_SOURCE 200809L

#include <signal.h>

#include "embed_test.h"

#define MAX_TASKS 8

struct part {
  const char *name;
  uv_loop_t *loop;
  int blocked, want_blocked; /* tasks that reached their wait */
  int done_calls;
  int ok[MAX_TASKS], cancelled[MAX_TASKS], finished[MAX_TASKS];
  char error[MAX_TASKS][256];
};

static struct part *current;
static volatile sig_atomic_t host_handler_calls;
static int posts_run;

static void host_handler (int signum) {
  (void)signum;
  host_handler_calls++;
}

/* host.blocked(what): the task is about to wait; stops the loop once every
   task of the part got there. */
static int lua_blocked (lua_State *L) {
  struct part *p = current;
  say("%s: task blocked: %s", p->name, luaL_checkstring(L, 1));
  if (++p->blocked == p->want_blocked)
    uv_stop(p->loop);
  return 0;
}

/* host.note(text): a transcript line from Lua. */
static int lua_note (lua_State *L) {
  say("%s: %s", current->name, luaL_checkstring(L, 1));
  return 0;
}

/* Whether the value at 'idx' is a tether.Cancelled (tether.is). */
static int is_cancelled (lua_State *L, int idx) {
  int yes;
  idx = lua_absindex(L, idx);
  embed_load(L,
             "local tether = require 'tether'\n"
             "return tether.is(..., tether.Cancelled)",
             "=is_cancelled");
  lua_pushvalue(L, idx);
  yes = lua_pcall(L, 1, 1, 0) == LUA_OK && lua_toboolean(L, -1);
  lua_pop(L, 1);
  return yes;
}

static void on_done (lua_State *L, int ok, int n, void *ud) {
  int i = (int)(intptr_t)ud;
  struct part *p = current;
  (void)n;
  p->done_calls++;
  p->finished[i] = 1;
  p->ok[i] = ok;
  if (!ok) {
    p->cancelled[i] = is_cancelled(L, 1);
    snprintf(p->error[i], sizeof p->error[i], "%s", luaL_tolstring(L, 1, NULL));
    lua_pop(L, 1);
  }
}

static void never_posted (lua_State *L, void *ud) {
  (void)L;
  (void)ud;
  posts_run++;
}

static void on_watchdog (uv_timer_t *timer) {
  say("FAIL: %s: timed out; %d of %d tasks got to their wait", current->name,
      current->blocked, current->want_blocked);
  embed_failures++;
  uv_stop(timer->loop);
}

/* Starts 'code' as task number 'i' with the host table as its argument. */
static void spawn (lua_State *L, int i, const char *code, const char *name) {
  embed_load(L, code, name);
  lua_getglobal(L, "host");
  CHECK_RC(tether_spawn(L, 1, on_done, (void *)(intptr_t)i), 0);
}

static lua_State *new_host_state (uv_loop_t *loop) {
  static const luaL_Reg host_funcs[] = {
      {"blocked", lua_blocked}, {"note", lua_note}, {NULL, NULL}};
  lua_State *L = embed_new_state();
  CHECK_RC(tether_attach(L, loop), 0);
  luaL_newlib(L, host_funcs);
  lua_setglobal(L, "host");
  CHECK(embed_run(L, "tether = require 'tether'"), "require 'tether'");
  return L;
}

static const char sleeper[] = "local host = ...\n"
                              "host.blocked('sleeping')\n"
                              "tether.sleep(100)\n";

static const char stream_receiver[] =
    "local host = ...\n"
    "local send, receive = tether.create_memory_object_stream()\n"
    "keep_send = send -- never closed, never collected\n"
    "host.blocked('in a stream receive')\n"
    "receive:receive()\n";

static const char shielded_cleanup_after_shutdown[] =
    "local host = ...\n"
    "local _cleanup <close> = setmetatable({}, {__close = function()\n"
    "  tether.CancelScope{shield = true}:run(function()\n"
    "    host.note('cleanup started (shielded, sleeps 20 ms)')\n"
    "    tether.sleep(0.02)\n"
    "    host.note('cleanup finished')\n"
    "  end)\n"
    "end})\n"
    "host.blocked('waiting forever, with a shielded cleanup')\n"
    "tether.sleep_forever()\n";

static const char signal_receiver[] =
    "local host = ...\n"
    "local signals <close> = tether.open_signal_receiver(tether.SIGUSR1)\n"
    "host.blocked('in a SIGUSR1 receiver')\n"
    "signals:receive()\n";

static const char event_waiter[] = "local host = ...\n"
                                   "local event = tether.Event()\n"
                                   "host.blocked('in an Event wait')\n"
                                   "event:wait()\n";

static const char group_parent[] =
    "local host = ...\n"
    "tether.task_group(function(tg)\n"
    "  tg:start_soon(function()\n"
    "    host.blocked('in a group child (the parent waits in the exit)')\n"
    "    tether.sleep_forever()\n"
    "  end)\n"
    "end)\n";

static const char inside_shielded_cleanup[] =
    "local host = ...\n"
    "local scope = tether.CancelScope()\n"
    "scope:run(function()\n"
    "  local _cleanup <close> = setmetatable({}, {__close = function()\n"
    "    tether.CancelScope{shield = true}:run(function()\n"
    "      host.blocked('inside a shielded cleanup, while unwinding')\n"
    "      tether.sleep(100)\n"
    "    end)\n"
    "  end})\n"
    "  scope:cancel()\n"
    "  tether.checkpoint()\n"
    "end)\n";

/* A: tether_shutdown cancels the tasks and lets their cleanup finish. */
static void part_shutdown (uv_loop_t *loop) {
  static struct part p;
  lua_State *L;
  int i;
  p.name = "A";
  p.loop = loop;
  p.want_blocked = 3;
  current = &p;
  L = new_host_state(loop);
  spawn(L, 0, sleeper, "=sleeper");
  spawn(L, 1, stream_receiver, "=stream_receiver");
  spawn(L, 2, shielded_cleanup_after_shutdown, "=shielded_cleanup");
  uv_run(loop, UV_RUN_DEFAULT); /* until the 3 tasks wait */
  say("A: tether_shutdown");
  CHECK_RC(tether_shutdown(L), 0);
  say("A: tether_shutdown returned");
  for (i = 0; i < 3; i++) {
    say("A: task %d: %s", i + 1,
        !p.finished[i]   ? "did NOT finish"
        : p.ok[i]        ? "returned"
        : p.cancelled[i] ? "raised Cancelled"
                         : p.error[i]);
    CHECK(p.finished[i] && !p.ok[i] && p.cancelled[i],
          "the task ended with Cancelled");
  }
  CHECK(embed_handles(loop) == 1, "tether left no handle on the host's loop");
  CHECK_RC(tether_post(tether_get(L), never_posted, NULL), UV_EINVAL);
  lua_close(L);
}

/* B: lua_close with every kind of suspended task. */
static void part_close (uv_loop_t *loop, uv_timer_t *watchdog) {
  static struct part p;
  struct sigaction sa, now;
  lua_State *L;
  tether_t *t;
  int tasks;
  p.name = "B";
  p.loop = loop;
  p.want_blocked = 6;
  current = &p;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = host_handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);

  L = new_host_state(loop);
  spawn(L, 0, sleeper, "=sleeper");
  spawn(L, 1, stream_receiver, "=stream_receiver");
  spawn(L, 2, signal_receiver, "=signal_receiver");
  spawn(L, 3, event_waiter, "=event_waiter");
  spawn(L, 4, group_parent, "=group_parent");
  spawn(L, 5, inside_shielded_cleanup, "=inside_cleanup");
  uv_run(loop, UV_RUN_DEFAULT); /* until the 6 tasks wait */

  spawn(L, 6, sleeper, "=never_started");
  t = tether_get(L);
  CHECK_RC(tether_post(t, never_posted, NULL), 0);
  embed_run(L,
            "local stats = require('tether.core').debug_stats()\n"
            "host.note(('%d tasks suspended or ready'):format(stats.tasks))\n"
            "tasks = stats.tasks");
  lua_getglobal(L, "tasks");
  tasks = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  CHECK(tasks == 8, "8 tasks (the group has a child) before lua_close");

  say("B: lua_close without tether_shutdown");
  lua_close(L);
  CHECK(p.done_calls == 0, "no done callback ran during lua_close");
  CHECK(posts_run == 0, "the pending post did not run");
  sigaction(SIGUSR1, NULL, &now);
  CHECK(now.sa_handler == host_handler,
        "SIGUSR1's disposition is the host's handler again");
  raise(SIGUSR1);
  CHECK(host_handler_calls == 1, "a SIGUSR1 reaches the host's handler");
  say("B: SIGUSR1 %s the host's handler after lua_close",
      host_handler_calls == 1 ? "reaches" : "does NOT reach");

  uv_close((uv_handle_t *)watchdog, NULL);
  uv_run(loop, UV_RUN_DEFAULT); /* tether's close callbacks */
  say("B: host loop ran until no handle was left (%d left)",
      embed_handles(loop));
  CHECK(embed_handles(loop) == 0, "no handle left");
  CHECK(p.done_calls == 0 && posts_run == 0,
        "nothing of the closed state ran on the loop");
}

int main (void) {
  uv_loop_t loop;
  uv_timer_t watchdog;
  int rc;
  uv_loop_init(&loop);
  uv_timer_init(&loop, &watchdog); /* also keeps the loop alive */
  uv_timer_start(&watchdog, on_watchdog, 10000, 0);
  part_shutdown(&loop);
  part_close(&loop, &watchdog);
  rc = uv_loop_close(&loop);
  say("uv_loop_close: %d", rc);
  CHECK_RC(rc, 0);
  return embed_finish();
}
