/*
** embed_misuse.c
** Helper for spec/embed_spec.lua: the embedding API misused. Every call
** returns a negative libuv-style code (or Lua raises an error naming the
** function), leaves the Lua stack balanced, and never crashes. Also the
** normal outcomes a host relies on: results and errors with traceback in the
** done callback, spawning from a done callback, a posted callback that
** raises, attaching again after tether_shutdown and after tether.run.
**
**   embed_misuse                      all of the above
**   embed_misuse shutdown-in-post     tether_shutdown called inside a posted
**   embed_misuse shutdown-in-task     callback, or inside a task (a C function
**                                     the task calls), that is inside uv_run,
**                                     which is not reentrant: it must refuse
**                                     with a code and work afterwards outside
*/

#define _POSIX_C_SOURCE 200809L

#include <unistd.h>

#include "embed_test.h"

static uv_loop_t loop, other_loop;
static int done_calls, posts_run;

/* Runs the loop until *flag is set (at most 5 s of the host's own timer). */
static void on_timeout (uv_timer_t *timer) {
  say("FAIL: timed out");
  embed_failures++;
  uv_stop(timer->loop);
}

static void wait_until (int *flag) {
  uv_timer_t timer;
  uv_timer_init(&loop, &timer);
  uv_timer_start(&timer, on_timeout, 5000, 0);
  while (!*flag && uv_is_active((uv_handle_t *)&timer))
    uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

static void code (const char *what, int rc) {
  say("%s: %d (%s)", what, rc, rc < 0 ? uv_err_name(rc) : "ok");
}

static void count_done (lua_State *L, int ok, int n, void *ud) {
  (void)L;
  (void)ok;
  (void)n;
  ++*(int *)ud;
  done_calls++;
}

static void count_post (lua_State *L, void *ud) {
  (void)L;
  ++*(int *)ud;
  posts_run++;
}

static void raising_post (lua_State *L, void *ud) {
  (void)ud;
  posts_run++;
  luaL_error(L, "a posted callback raised this on purpose");
}

/* Before tether_openlibs, and before tether_attach. */
static void not_attached (void) {
  lua_State *L = luaL_newstate();
  int top, flag = 0;
  luaL_openlibs(L);
  say("-- not attached");
  CHECK(tether_get(L) == NULL, "tether_get: NULL before the module opened");
  top = lua_gettop(L);
  embed_load(L, "return 1", "=fn");
  code("tether_spawn before tether_openlibs", tether_spawn(L, 0, NULL, NULL));
  CHECK(lua_gettop(L) == top, "the function was popped");
  CHECK_RC(tether_step(L), UV_EINVAL);
  CHECK_RC(tether_backend_fd(L), UV_EINVAL);
  CHECK_RC(tether_backend_timeout(L), UV_EINVAL);
  CHECK_RC(tether_shutdown(L), UV_EINVAL);

  tether_openlibs(L);
  CHECK(embed_run(L, "tether = require 'tether'"), "require 'tether'");
  CHECK(tether_get(L) == NULL, "tether_get: NULL before tether_attach");
  embed_load(L, "return 1", "=fn");
  lua_pushinteger(L, 1);
  lua_pushinteger(L, 2);
  code("tether_spawn before tether_attach",
       tether_spawn(L, 2, count_done, &flag));
  CHECK(lua_gettop(L) == top, "the function and its 2 arguments were popped");
  code("tether_attach(L, NULL)", tether_attach(L, NULL));
  CHECK_RC(tether_attach(L, NULL), UV_EINVAL);
  CHECK(tether_get(L) == NULL, "still not attached");
  CHECK_RC(tether_post(NULL, count_post, NULL), UV_EINVAL);
  say("tether_post(NULL, ...): %s",
      tether_post(NULL, count_post, NULL) == UV_EINVAL ? "EINVAL" : "?");
  lua_close(L);
  CHECK(flag == 0, "no done callback ran");
}

/* Results, errors and tracebacks reach the done callback. */
struct outcome {
  int calls, ok, n;
  char first[128], second[128];
  int has_traceback;
};

static void record (lua_State *L, int ok, int n, void *ud) {
  struct outcome *o = ud;
  o->calls++;
  o->ok = ok;
  o->n = n;
  snprintf(o->first, sizeof o->first, "%s",
           n >= 1 ? luaL_tolstring(L, 1, NULL) : "");
  if (n >= 1)
    lua_pop(L, 1);
  snprintf(o->second, sizeof o->second, "%s",
           n >= 2 ? luaL_tolstring(L, 2, NULL) : "");
  if (n >= 2)
    lua_pop(L, 1);
  o->has_traceback = !ok && n == 2 && lua_type(L, 2) == LUA_TSTRING &&
                     strstr(lua_tostring(L, 2), "stack traceback") != NULL &&
                     strstr(lua_tostring(L, 2), "failing") != NULL;
}

static struct outcome chained;

/* A done callback may start another task. */
static void spawn_again (lua_State *L, int ok, int n, void *ud) {
  (void)ok;
  (void)n;
  (void)ud;
  embed_load(L, "return 'second task'", "=second");
  CHECK_RC(tether_spawn(L, 0, record, &chained), 0);
}

static void attached (void) {
  lua_State *L = embed_new_state();
  struct outcome results = {0}, failure = {0};
  tether_t *t;
  int top, rc, posted = 0, late = 0, first = 0;
  say("-- attached");
  CHECK_RC(tether_attach(L, &loop), 0);
  rc = tether_attach(L, &loop);
  code("tether_attach again, same loop", rc);
  CHECK_RC(rc, UV_EBUSY);
  rc = tether_attach(L, &other_loop);
  code("tether_attach again, another loop", rc);
  CHECK_RC(rc, UV_EBUSY);
  t = tether_get(L);
  CHECK(t != NULL, "tether_get after tether_attach");

  /* tether.run refuses, outside and inside a task. */
  CHECK(embed_run(L, "tether = require 'tether'\n"
                     "local ok, err = pcall(tether.run, function() end)\n"
                     "assert(not ok and err:match('^tether%.run: '), err)\n"
                     "print('tether.run while attached: ' .. err)"),
        "tether.run raises a tether.run: error while attached");
  embed_load(L,
             "local ok, err = pcall(tether.run, function() end)\n"
             "assert(not ok and err:match('^tether%.run: '), err)\n"
             "return 'raised'",
             "=run_in_task");
  CHECK_RC(tether_spawn(L, 0, record, &results), 0);
  wait_until(&results.calls);
  CHECK(results.ok && strcmp(results.first, "raised") == 0,
        "tether.run raises inside a task too");

  /* Not a function. */
  top = lua_gettop(L);
  lua_pushinteger(L, 42);
  rc = tether_spawn(L, 0, count_done, &first);
  code("tether_spawn(a number)", rc);
  CHECK_RC(rc, UV_EINVAL);
  lua_newtable(L);
  lua_pushstring(L, "arg");
  lua_pushstring(L, "arg");
  CHECK_RC(tether_spawn(L, 2, count_done, &first), UV_EINVAL);
  CHECK(lua_gettop(L) == top, "the non-function and its arguments were popped");

  /* Results, an error with its traceback, a task started by a done
     callback. */
  memset(&results, 0, sizeof results);
  embed_load(L, "tether.sleep(0.001) return 1, 'two', 3", "=results");
  CHECK_RC(tether_spawn(L, 0, record, &results), 0);
  embed_load(L,
             "local function failing() tether.sleep(0.001) error('boom', 0) "
             "end\n"
             "failing()",
             "=failing");
  CHECK_RC(tether_spawn(L, 0, record, &failure), 0);
  embed_load(L, "return 'first task'", "=first");
  CHECK_RC(tether_spawn(L, 0, spawn_again, NULL), 0);
  wait_until(&failure.calls);
  wait_until(&results.calls);
  wait_until(&chained.calls);
  say("task results: ok=%d n=%d first=%s", results.ok, results.n,
      results.first);
  CHECK(results.ok && results.n == 3 && strcmp(results.first, "1") == 0,
        "the done callback got the 3 results");
  say("task error: ok=%d n=%d error=%s traceback=%s", failure.ok, failure.n,
      failure.first, failure.has_traceback ? "yes" : "no");
  CHECK(!failure.ok && failure.n == 2 && strcmp(failure.first, "boom") == 0,
        "the done callback got the error value");
  CHECK(failure.has_traceback, "and a traceback naming the failing function");
  CHECK(chained.calls == 1 && chained.ok &&
            strcmp(chained.first, "second task") == 0,
        "a done callback started another task");

  /* Posting: bad arguments, a callback that raises, FIFO. */
  CHECK_RC(tether_post(t, NULL, NULL), UV_EINVAL);
  CHECK_RC(tether_post(t, raising_post, NULL), 0);
  CHECK_RC(tether_post(t, count_post, &posted), 0);
  wait_until(&posted);
  say("a posted callback raised; the next one still ran: %s",
      posted == 1 ? "yes" : "no");
  CHECK(posted == 1, "the post after a raising one ran");

  /* Shutdown, then everything is refused. */
  CHECK_RC(tether_shutdown(L), 0);
  rc = tether_post(t, count_post, &late);
  code("tether_post after tether_shutdown", rc);
  CHECK_RC(rc, UV_ESHUTDOWN);
  CHECK(tether_get(L) == NULL, "tether_get: NULL after tether_shutdown");
  CHECK_RC(tether_post(tether_get(L), count_post, &late), UV_EINVAL);
  embed_load(L, "return 1", "=late");
  rc = tether_spawn(L, 0, count_done, &late);
  code("tether_spawn after tether_shutdown", rc);
  CHECK(rc == UV_EINVAL || rc == UV_ESHUTDOWN,
        "tether_spawn after tether_shutdown: UV_EINVAL or UV_ESHUTDOWN");
  rc = tether_shutdown(L);
  code("tether_shutdown again", rc);
  CHECK_RC(rc, UV_EINVAL);
  CHECK_RC(tether_step(L), UV_EINVAL);
  CHECK(lua_gettop(L) == top, "the stack is balanced");
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(late == 0, "nothing posted or spawned after the shutdown ran");

  /* Attached again after the shutdown: works like the first time. */
  memset(&results, 0, sizeof results);
  rc = tether_attach(L, &loop);
  code("tether_attach after tether_shutdown", rc);
  CHECK_RC(rc, 0);
  embed_load(L, "tether.sleep(0.001) return 'again'", "=again");
  CHECK_RC(tether_spawn(L, 0, record, &results), 0);
  wait_until(&results.calls);
  CHECK(results.ok && strcmp(results.first, "again") == 0,
        "a task runs after attaching again");
  CHECK_RC(tether_shutdown(L), 0);
  lua_close(L);
  CHECK(first == 0, "no done callback of a refused spawn ran");
}

/* host.attach(): tether_attach from inside tether.run. */
static int lua_attach (lua_State *L) {
  lua_pushinteger(L, tether_attach(L, &loop));
  return 1;
}

static void after_run (void) {
  lua_State *L = embed_new_state();
  struct outcome results = {0};
  int rc;
  say("-- tether.run, then attach");
  lua_pushcfunction(L, lua_attach);
  lua_setglobal(L, "attach");
  CHECK(embed_run(L, "tether = require 'tether'\n"
                     "rc = tether.run(function() return attach() end)"),
        "tether.run");
  lua_getglobal(L, "rc");
  rc = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  code("tether_attach inside tether.run", rc);
  CHECK_RC(rc, UV_EBUSY);
  rc = tether_attach(L, &loop);
  code("tether_attach after tether.run returned", rc);
  CHECK_RC(rc, 0);
  embed_load(L, "tether.sleep(0.001) return 'after run'", "=after_run");
  CHECK_RC(tether_spawn(L, 0, record, &results), 0);
  wait_until(&results.calls);
  CHECK(results.ok && strcmp(results.first, "after run") == 0,
        "a task runs when attached after tether.run");
  CHECK_RC(tether_shutdown(L), 0);
  lua_close(L);
}

static int blocked;

static int lua_set_blocked (lua_State *L) {
  (void)L;
  blocked = 1;
  return 0;
}

/* A host that never loads the facade: tasks use tether.core directly. */
static void core_only (void) {
  lua_State *L = embed_new_state();
  struct outcome results = {0};
  say("-- tether.core only, never require 'tether'");
  CHECK_RC(tether_attach(L, &loop), 0);
  embed_load(L,
             "local blocked = ...\n"
             "blocked()\n"
             "require('tether.core').sleep_forever()",
             "=core_only");
  lua_pushcfunction(L, lua_set_blocked);
  CHECK_RC(tether_spawn(L, 1, record, &results), 0);
  wait_until(&blocked);
  CHECK_RC(tether_shutdown(L), 0);
  say("cancelled by the shutdown: done called %d time(s), ok=%d, error: %s",
      results.calls, results.ok, results.first);
  CHECK(results.calls == 1 && !results.ok, "the task ended with an error");
  lua_close(L);
}

/* tether_shutdown from inside tether's own callbacks (inside uv_run). */
static int inside_rc = 1;

/* tether_shutdown never returned: it waits for the very task that called it
   (its loop runs this timer, but nothing can end that wait). */
static void on_stuck (uv_timer_t *timer) {
  (void)timer;
  say("FAIL: tether_shutdown did not return within 2 s (it waits for the task "
      "that called it)");
  _exit(1);
}

static void shutdown_in_post (lua_State *L, void *ud) {
  (void)ud;
  inside_rc = tether_shutdown(L);
  uv_stop(&loop);
}

static int lua_shutdown_now (lua_State *L) {
  inside_rc = tether_shutdown(L);
  uv_stop(&loop);
  return 0;
}

static void shutdown_inside (int in_task) {
  lua_State *L = embed_new_state();
  struct outcome sleeper = {0}, caller = {0};
  static uv_timer_t timer;  /* handles outlive the function: they close */
  static uv_async_t wakeup; /* in main's uv_run; a host's own async handle */
  say("-- tether_shutdown inside %s", in_task ? "a task" : "a posted callback");
  CHECK_RC(tether_attach(L, &loop), 0);
  uv_async_init(&loop, &wakeup, NULL);
  CHECK(embed_run(L, "tether = require 'tether'"), "require 'tether'");
  uv_timer_init(&loop, &timer); /* keeps the loop alive; a watchdog */
  uv_timer_start(&timer, on_stuck, 2000, 0);
  embed_load(L, "tether.sleep(10)", "=sleeper");
  CHECK_RC(tether_spawn(L, 0, record, &sleeper), 0);
  if (in_task) {
    lua_pushcfunction(L, lua_shutdown_now);
    lua_setglobal(L, "shutdown_now");
    embed_load(L, "tether.sleep(0.001) shutdown_now()", "=caller");
    CHECK_RC(tether_spawn(L, 0, record, &caller), 0);
  }
  else
    CHECK_RC(tether_post(tether_get(L), shutdown_in_post, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  code(in_task ? "tether_shutdown inside a task"
               : "tether_shutdown inside a posted callback",
       inside_rc);
  CHECK(inside_rc < 0, "tether_shutdown refused inside uv_run");
  if (inside_rc < 0)
    CHECK_RC(tether_shutdown(L), 0); /* refused inside: works outside */
  CHECK(sleeper.calls == 1 && !sleeper.ok, "the sleeping task was cancelled");
  uv_close((uv_handle_t *)&timer, NULL);
  uv_close((uv_handle_t *)&wakeup, NULL);
  lua_close(L);
}

int main (int argc, char **argv) {
  uv_loop_init(&loop);
  uv_loop_init(&other_loop);
  if (argc > 1) {
    if (strcmp(argv[1], "shutdown-in-post") == 0)
      shutdown_inside(0);
    else if (strcmp(argv[1], "shutdown-in-task") == 0)
      shutdown_inside(1);
    else {
      say("usage: %s [shutdown-in-post | shutdown-in-task]", argv[0]);
      return 2;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(embed_handles(&loop) == 0, "no handle left on the loop");
    CHECK_RC(uv_loop_close(&loop), 0);
    CHECK_RC(uv_loop_close(&other_loop), 0);
    say("loops closed");
    return embed_finish();
  }
  not_attached();
  attached();
  after_run();
  core_only();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(embed_handles(&loop) == 0, "no handle left on the loop");
  CHECK_RC(uv_loop_close(&loop), 0);
  CHECK_RC(uv_loop_close(&other_loop), 0);
  say("loops closed");
  return embed_finish();
}
