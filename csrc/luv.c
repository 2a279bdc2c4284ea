/*
** luv.c
** luv in the same program as tether.run: when a script has loaded luv
** (package.loaded.luv), tether.run watches luv's loop from its own. luv's
** loop is another uv_loop_t; its backend descriptor (uv.backend_fd()) is
** readable when any of luv's handles has I/O, and uv.backend_timeout() says
** when luv's next timer is due. A uv_poll_t on the descriptor and a
** uv_timer_t for the timeout run uv.run("nowait") when luv has work. A
** uv_prepare_t runs it once more before every poll of tether's loop: tasks
** may have started luv timers or requests meanwhile, which luv only adds to
** its descriptor when its loop runs. The three handles are unreferenced, so
** open luv handles do not keep tether.run from returning.
** luv's callbacks run Lua code: they run from these libuv callbacks of
** tether's loop, between tasks, never inside tether's own C code.
*/

#include <limits.h>
#include <stdlib.h>

#include <lualib.h>

#include "internal.h"

/* The luv functions the bridge calls, in the table at c->luv_ref. */
enum { LUV_RUN = 1, LUV_BACKEND_TIMEOUT, LUV_LOOP_ALIVE, LUV_NFUNCS };

#define BRIDGE_HANDLES 3

struct luv_bridge {
  uv_poll_t poll;       /* luv's backend descriptor is readable */
  uv_timer_t timer;     /* luv's next timer is due */
  uv_prepare_t prepare; /* before every poll of tether's loop */
  struct ctx *ctx;
  int open; /* handles not yet closed */
};

static void on_timer (uv_timer_t *h);

/*
** Runs luv's loop once without blocking, then arms the timer for luv's next
** timeout (or stops it while luv's loop has nothing to do).
*/
static void run_luv (struct luv_bridge *b) {
  struct ctx *c = b->ctx;
  lua_State *L = c->from;
  lua_Integer timeout = -1;
  if (!lua_checkstack(L, 4))
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->luv_ref);
  lua_rawgeti(L, -1, LUV_RUN);
  lua_pushliteral(L, "nowait");
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    tether__report_error(L, "error in luv's loop");
    lua_pop(L, 1);
  }
  lua_rawgeti(L, -1, LUV_LOOP_ALIVE);
  if (lua_pcall(L, 0, 1, 0) == LUA_OK && lua_toboolean(L, -1)) {
    lua_rawgeti(L, -2, LUV_BACKEND_TIMEOUT);
    if (lua_pcall(L, 0, 1, 0) == LUA_OK && lua_isinteger(L, -1))
      timeout = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  if (timeout < 0) {
    uv_timer_stop(&b->timer);
    return;
  }
  /* luv's timeout counts from a clock read just now: so must ours */
  uv_update_time(c->loop);
  uv_timer_start(&b->timer, on_timer, (uint64_t)timeout, 0);
}

static void on_timer (uv_timer_t *h) {
  run_luv(h->data);
}

static void on_poll (uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  run_luv(h->data);
}

static void on_prepare (uv_prepare_t *h) {
  run_luv(h->data);
}

static void bridge_handles (struct luv_bridge *b, uv_handle_t **handles) {
  handles[0] = (uv_handle_t *)&b->poll;
  handles[1] = (uv_handle_t *)&b->timer;
  handles[2] = (uv_handle_t *)&b->prepare;
}

static void on_bridge_closed (uv_handle_t *h) {
  struct luv_bridge *b = h->data;
  if (--b->open == 0)
    free(b);
}

/*
** [-0, +0, m] At the start of tether.run: if luv is loaded, and its loop
** is not running (tether.run called from a luv callback), watches it. The
** references to luv's functions are taken before the handles, so a memory
** error leaves nothing to undo.
*/
void tether__luv_start (lua_State *L, struct ctx *c) {
  static const char *const names[] = {"run", "backend_timeout", "loop_alive"};
  uv_handle_t *handles[BRIDGE_HANDLES];
  struct luv_bridge *b;
  lua_Integer fd;
  int i, ref, base = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "luv") != LUA_TTABLE ||
      lua_getfield(L, -1, "backend_fd") != LUA_TFUNCTION ||
      lua_pcall(L, 0, 1, 0) != LUA_OK || !lua_isinteger(L, -1) ||
      (fd = lua_tointeger(L, -1)) < 0 || fd > INT_MAX) {
    lua_settop(L, base);
    return;
  }
  lua_pop(L, 1);
  /* Inside a callback of luv's loop (tether.run called from one), running
     luv's loop again would reenter libuv: no bridge then. */
  if (lua_getfield(L, -1, "loop_mode") == LUA_TFUNCTION &&
      (lua_pcall(L, 0, 1, 0) != LUA_OK || !lua_isnil(L, -1))) {
    lua_settop(L, base);
    return;
  }
  lua_pop(L, 1);
  lua_createtable(L, LUV_NFUNCS - 1, 0);
  for (i = LUV_RUN; i < LUV_NFUNCS; i++) {
    if (lua_getfield(L, -2, names[i - 1]) != LUA_TFUNCTION) {
      lua_settop(L, base);
      return;
    }
    lua_rawseti(L, -2, i);
  }
  ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, base);
  b = malloc(sizeof *b);
  if (b == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    luaL_error(L, "not enough memory");
  }
  if (uv_poll_init(c->loop, &b->poll, (int)fd) < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    free(b);
    return; /* luv's descriptor cannot be watched: no bridge */
  }
  c->luv_ref = ref;
  b->ctx = c;
  b->open = BRIDGE_HANDLES;
  uv_timer_init(c->loop, &b->timer);
  uv_prepare_init(c->loop, &b->prepare);
  bridge_handles(b, handles);
  for (i = 0; i < BRIDGE_HANDLES; i++) {
    handles[i]->data = b;
    uv_unref(handles[i]);
  }
  uv_poll_start(&b->poll, UV_READABLE, on_poll);
  uv_prepare_start(&b->prepare, on_prepare);
  c->luv = b;
}

/*
** At the end of tether.run: runs luv's loop once more, for the close
** callbacks of handles closed at the end (luv crashes at exit when one is
** still pending), and stops watching it.
*/
void tether__luv_stop (struct ctx *c) {
  uv_handle_t *handles[BRIDGE_HANDLES];
  int i;
  if (c->luv == NULL)
    return;
  run_luv(c->luv);
  bridge_handles(c->luv, handles);
  for (i = 0; i < BRIDGE_HANDLES; i++)
    uv_close(handles[i], on_bridge_closed);
  c->luv = NULL;
  luaL_unref(c->from, LUA_REGISTRYINDEX, c->luv_ref);
}
