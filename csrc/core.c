/*
** core.c
** luaopen_tether_core: the per-state context, the module table, the
** metatables, and the error classes the Lua facade registers.
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
void tether__new_class (lua_State *L, struct ctx *c, enum tether_class cls,
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

/* Sets the metatable of class 'cls' on the value on top. */
void tether__set_metatable (lua_State *L, struct ctx *c,
                            enum tether_class cls) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->class_refs[cls]);
  lua_setmetatable(L, -2);
}

/* }==================================================================== */

/* {====================================================================
** Error classes (defined in lua/tether/errors.lua)
** ===================================================================== */

/* [-0, +1, -] pushes the class table 'name', or nil if not registered. */
static void push_class (lua_State *L, struct ctx *c, const char *name) {
  if (c == NULL || c->classes_ref == LUA_NOREF) {
    lua_pushnil(L);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->classes_ref);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

/* Whether the value at 'idx' is an instance of error class 'name'. */
int tether__is_class (lua_State *L, int idx, const char *name) {
  int is;
  idx = lua_absindex(L, idx);
  if (!lua_getmetatable(L, idx))
    return 0;
  push_class(L, tether__ctx(L), name);
  is = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return is;
}

/* Gives the table at 'idx' the class 'name' as metatable. */
void tether__set_error_class (lua_State *L, int idx, const char *name) {
  idx = lua_absindex(L, idx);
  push_class(L, tether__ctx(L), name);
  if (lua_isnil(L, -1))
    luaL_error(L, "tether: error classes are not registered; load the "
                  "library with require \"tether\", not \"tether.core\"");
  lua_setmetatable(L, idx);
}

/* [-1, +1, m] replaces the message on top with an error of class 'name'. */
void tether__new_error (lua_State *L, const char *name) {
  lua_createtable(L, 0, 1);
  lua_insert(L, -2);
  lua_setfield(L, -2, "message");
  tether__set_error_class(L, -1, name);
}

/* core.set_error_classes{Cancelled = C, ErrorGroup = E, ...} */
static int core_set_error_classes (lua_State *L) {
  struct ctx *c = lua_touserdata(L, lua_upvalueindex(1));
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_unref(L, LUA_REGISTRYINDEX, c->classes_ref);
  lua_settop(L, 1);
  c->classes_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* }==================================================================== */

static int core_current_time (lua_State *L) {
  lua_pushnumber(L, tether__now());
  return 1;
}

/* The context is collected with its state: free what C owns. */
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
    tether__signals_stop(c);
    uv_mutex_lock(&c->posts_lock);
    c->posts_closed = 1;
    tether__close_hub(c); /* an attached host runs its loop to free it */
    uv_mutex_unlock(&c->posts_lock);
  }
  tether__drop_posts(c);
  uv_mutex_destroy(&c->posts_lock);
  tether__free_records(c);
  heap_free(&c->deadlines);
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
  queue_init(&c->blocked_waiters);
  heap_init(&c->deadlines);
  heap_node_init(&c->watchdog);
  c->watchdog.kind = DEADLINE_WATCHDOG;
  if (uv_mutex_init(&c->posts_lock) != 0)
    luaL_error(L, "tether: cannot create a mutex");
  c->next_id = 1; /* task ids are unique for the life of the state */
  c->classes_ref = LUA_NOREF;
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
  static const luaL_Reg funcs[] = {
      {"run", tether__run},
      {"current_time", core_current_time},
      {"sleep", core_sleep},
      {"sleep_until", core_sleep_until},
      {"sleep_forever", core_sleep_forever},
      {"checkpoint", core_checkpoint},
      {"checkpoint_if_cancelled", core_checkpoint_if_cancelled},
      {"cancel_shielded_checkpoint", core_cancel_shielded_checkpoint},
      {"checkpoint_as", core_checkpoint_as},
      {"checkpoint_if_cancelled_as", core_checkpoint_if_cancelled_as},
      {"cancel_shielded_checkpoint_as", core_cancel_shielded_checkpoint_as},
      {"current_task", core_current_task},
      {"get_running_tasks", core_get_running_tasks},
      {"wait_all_tasks_blocked", core_wait_all_tasks_blocked},
      {"task_group", core_task_group},
      {"CancelScope", core_CancelScope},
      {"move_on_after", core_move_on_after},
      {"move_on_at", core_move_on_at},
      {"fail_after", core_fail_after},
      {"fail_at", core_fail_at},
      {"current_effective_deadline", core_current_effective_deadline},
      {"set_error_classes", core_set_error_classes},
      {"debug_stats", tether__debug_stats},
      {"set_watchdog", tether__set_watchdog},
      {NULL, NULL}};
  luaL_checkversion(L);
  open_ctx(L);
  tether__open_scope(L);
  tether__open_group(L);
  luaL_newlibtable(L, funcs);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  tether__open_signal(L);
  tether__open_park(L);
  tether__open_event(L);
  tether__open_stream(L);
  lua_pushliteral(L, TETHER_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
