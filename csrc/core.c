/*
** core.c
** luaopen_tether_core: the per-state context, and the module table, which
** each file fills with its own functions and classes (see tether_open_fn).
*/

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char ctx_key = 'c'; /* registry key of the context */

/* The context of 'L''s state, or NULL before the module was opened. */
struct ctx *tether__ctx (lua_State *L) {
  struct ctx *c;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ctx_key);
  c = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return c;
}

/* {====================================================================
** Userdata classes
** ===================================================================== */

/*
** [-0, +1, m] creates (or, when the module is opened again, finds) the
** metatable of class 'cls' and remembers it by registry index and by
** address (the registry keeps it alive, so no other object can take the
** address).
*/
static void new_class (lua_State *L, struct ctx *c, enum tether_class cls,
                       const char *name) {
  luaL_newmetatable(L, name);
  if (c->class_refs[cls] == 0) {
    lua_pushvalue(L, -1);
    c->class_refs[cls] = luaL_ref(L, LUA_REGISTRYINDEX);
    c->class_mts[cls] = lua_topointer(L, -1);
  }
}

/*
** The userdata at 'idx' if it belongs to class 'cls', else NULL. Unlike
** luaL_testudata, no lookup by name, not even one in the registry: the
** metatable's address is compared with the class's.
*/
void *tether__test_class (lua_State *L, int idx, struct ctx *c,
                          enum tether_class cls) {
  void *p = lua_touserdata(L, idx);
  const void *mt;
  if (p == NULL || !lua_getmetatable(L, idx))
    return NULL;
  mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  return mt == c->class_mts[cls] ? p : NULL;
}

/* The userdata at 'idx' if it belongs to class 'cls'; otherwise raises an
   error naming 'fname' and saying how to call a method. */
void *tether__check_self (lua_State *L, int idx, struct ctx *c,
                          enum tether_class cls, const char *fname) {
  void *p = tether__test_class(L, idx, c, cls);
  if (p == NULL) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->class_refs[cls]);
    lua_getfield(L, -1, "__name");
    tether__fname_error(L, fname,
                        "expected a %s as self (call it with a colon: "
                        "obj:method(...)), got %s",
                        lua_tostring(L, -1), luaL_typename(L, idx));
  }
  return p;
}

/* [-0, +0, m] Stack: ctx, module. Adds 'funcs' to the module. */
void tether__add_functions (lua_State *L, const luaL_Reg *funcs) {
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
}

/* [-0, +1, m] pushes the ctx and the 'nup' values at 'first' (upvalues). */
static void push_upvalues (lua_State *L, int ctx, int first, int nup) {
  int i;
  lua_pushvalue(L, ctx);
  for (i = 0; i < nup; i++)
    lua_pushvalue(L, first + i);
}

/*
** [-nup, +0, m] Stack: ctx, module, then 'nup' values. Creates the class
** 'def' (see struct class_def); its methods and metamethods get the ctx and
** those values as upvalues.
*/
void tether__add_class (lua_State *L, struct ctx *c,
                        const struct class_def *def, int nup) {
  int first = lua_gettop(L) - nup + 1, ctx = first - 2;
  new_class(L, c, def->cls, def->name);
  push_upvalues(L, ctx, first, nup);
  luaL_setfuncs(L, def->metamethods, nup + 1);
  lua_newtable(L);
  push_upvalues(L, ctx, first, nup);
  luaL_setfuncs(L, def->methods, nup + 1);
  if (def->index != NULL) {
    lua_pushvalue(L, ctx);
    lua_insert(L, -2);
    lua_pushcclosure(L, def->index, 2);
  }
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1 + nup);
}

/* [-0, +1, m] pushes the methods table of class 'cls' (so that the facade
   can add methods written in Lua). */
void tether__push_methods (lua_State *L, struct ctx *c, enum tether_class cls) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->class_refs[cls]);
  if (lua_getfield(L, -1, "__index") == LUA_TFUNCTION) {
    lua_getupvalue(L, -1, 2);
    lua_remove(L, -2);
  }
  lua_remove(L, -2);
}

/* Sets the metatable of class 'cls' on the value on top. */
void tether__set_metatable (lua_State *L, struct ctx *c,
                            enum tether_class cls) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->class_refs[cls]);
  lua_setmetatable(L, -2);
}

/* }==================================================================== */

/*
** The context is collected with its state. If that happens while a loop is
** open (os.exit(code, true) inside a task closes the state from within
** tether.run), the loop cannot be run any more: restore the signal
** dispositions, which are process-wide, and free the task records; the
** threads belong to the state and go with it.
*/
static int ctx__gc (lua_State *L) {
  struct ctx *c = lua_touserdata(L, 1);
  if (c->loop != NULL) {
    tether__streams_stop(c);
    tether__listeners_stop(c);
    tether__udps_stop(c);
    tether__processes_stop(c);
    tether__watchers_stop(c);
    tether__signals_stop(c);
    uv_mutex_lock(&c->posts_lock);
    c->posts_closed = 1;
    tether__close_hub(c); /* an attached host runs its loop to free it */
    uv_mutex_unlock(&c->posts_lock);
  }
  tether__workers_close(c);
  tether__drop_posts(c);
  uv_mutex_destroy(&c->posts_lock);
  tether__free_records(c);
  heap_free(&c->deadlines);
  free(c->scratch);
  return 0;
}

/* Finds or creates the state's context; leaves it on the stack. */
static struct ctx *open_ctx (lua_State *L) {
  struct ctx *c;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ctx_key);
  if (!lua_isnil(L, -1))
    return lua_touserdata(L, -1);
  lua_pop(L, 1);
  c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  c->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  queue_init(&c->ready);
  queue_init(&c->batch);
  queue_init(&c->free_records);
  tether__waitq_init_as(&c->blocked_waiters, "wait_all_tasks_blocked");
  queue_init(&c->conns);
  queue_init(&c->listeners);
  queue_init(&c->udps);
  queue_init(&c->children);
  queue_init(&c->watchers);
  heap_init(&c->deadlines);
  heap_node_init(&c->watchdog);
  c->watchdog.kind = DEADLINE_WATCHDOG;
  if (uv_mutex_init(&c->posts_lock) != 0)
    luaL_error(L, "tether: cannot create a mutex");
  c->next_id = 1; /* task ids are unique for the life of the state */
  c->facade_ref = LUA_NOREF;
  c->stage_top = 1;
  tether__scope_init(&c->root, HUGE_VAL, 0);
  luaL_newmetatable(L, TETHER_CTX_MT);
  lua_pushcfunction(L, ctx__gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_newtable(L);
  c->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  c->traces_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  c->threads_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  c->stage_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ctx_key);
  return c;
}

TETHER_API int luaopen_tether_core (lua_State *L) {
  static const tether_open_fn openers[] = {
      tether__open_errors,     tether__open_loop,      tether__open_task,
      tether__open_scope,      tether__open_group,     tether__open_signal,
      tether__open_park,       tether__open_event,     tether__open_stream,
      tether__open_bytestream, tether__open_listener,  tether__open_tcp,
      tether__open_unix,       tether__open_stdio,     tether__open_udp,
      tether__open_process,    tether__open_fsreq,     tether__open_file,
      tether__open_fs,         tether__open_wholefile, tether__open_fsdir,
      tether__open_fswatch,    tether__open_clock,     tether__open_tasktree,
      tether__open_where,      tether__open_uncaught,  tether__open_coroutine,
      tether__open_to_thread};
  struct ctx *c;
  size_t i;
  luaL_checkversion(L);
  c = open_ctx(L);
  lua_createtable(L, 0, 64);
  for (i = 0; i < sizeof openers / sizeof openers[0]; i++)
    openers[i](L, c);
  lua_pushliteral(L, TETHER_VERSION);
  lua_setfield(L, -2, "_VERSION");
  c->opened = 1;
  return 1;
}
