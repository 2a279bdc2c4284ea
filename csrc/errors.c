/*
** errors.c
** tether's error classes, owned by the core: created when the module is
** opened, recognised by the address of their table (no lookup by name), and
** exported as tether.core.Cancelled, ... The Lua facade only decorates them
** (ErrorGroup's __tostring, tether.is).
**
** An error is a table {message = ..., where = "file:line"} whose metatable
** is its class; a class is {__name = "tether.Name", __index = itself,
** __tostring, new}. 'where' is the user's line that raised it (where.c).
*/

#include <stdarg.h>

#include "internal.h"

static const char *const error_names[NERRORS] = {
    [ERROR_CANCELLED] = "Cancelled",
    [ERROR_INTERRUPTED] = "Interrupted",
    [ERROR_TIMEOUT] = "TimeoutError",
    [ERROR_GROUP] = "ErrorGroup",
    [ERROR_WOULD_BLOCK] = "WouldBlock",
    [ERROR_END_OF_STREAM] = "EndOfStream",
    [ERROR_CLOSED] = "ClosedResourceError",
    [ERROR_BROKEN] = "BrokenResourceError",
    [ERROR_BUSY] = "BusyResourceError",
    [ERROR_LIMIT] = "LimitExceeded",
    [ERROR_INCOMPLETE] = "IncompleteRead",
    [ERROR_OS] = "OSError",
    [ERROR_PROCESS] = "ProcessError",
    [ERROR_WORKER] = "WorkerError",
};

/* Whether the value at 'idx' is an error of class 'cls'. */
int tether__is_error (lua_State *L, int idx, const struct ctx *c,
                      enum error_class cls) {
  const void *mt;
  if (!lua_getmetatable(L, idx))
    return 0;
  mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  return mt == c->error_mts[cls];
}

/* Sets the error's 'where': the user's file:line that raised it. */
static void set_where (lua_State *L, int idx, const struct ctx *c) {
  if (tether__push_where(L, c, L, 0))
    lua_setfield(L, idx, "where");
}

/* Gives the table at 'idx' the class 'cls' as metatable, and its 'where'. */
void tether__set_error_class (lua_State *L, int idx, const struct ctx *c,
                              enum error_class cls) {
  idx = lua_absindex(L, idx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->error_refs[cls]);
  lua_setmetatable(L, idx);
  set_where(L, idx, c);
}

/* [-1, +1, m] replaces the message on top with an error of class 'cls'. */
void tether__new_error (lua_State *L, const struct ctx *c,
                        enum error_class cls) {
  lua_createtable(L, 0, 1);
  lua_insert(L, -2);
  lua_setfield(L, -2, "message");
  tether__set_error_class(L, -1, c, cls);
}

/* [-0, +1, m] pushes "fname: <fmt...>", formatted like lua_pushfstring. */
static void push_message (lua_State *L, const char *fname, const char *fmt,
                          va_list ap) {
  lua_pushstring(L, fname);
  lua_pushliteral(L, ": ");
  lua_pushvfstring(L, fmt, ap);
  lua_concat(L, 3);
}

/* Raises "fname: <fmt...>" as a plain string: misuse, not a tether error. */
int tether__fname_error (lua_State *L, const char *fname, const char *fmt,
                         ...) {
  va_list ap;
  va_start(ap, fmt);
  push_message(L, fname, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

/*
** [-0, +(0|1), m] " at file:line" of the Lua function calling the running C
** function, or "": for an error raised where coroutine.wrap puts its own
** caller's position in front of the message.
*/
const char *tether__caller_position (lua_State *L) {
  lua_Debug ar;
  if (!lua_getstack(L, 1, &ar) || !lua_getinfo(L, "Sl", &ar) ||
      ar.currentline <= 0)
    return "";
  return lua_pushfstring(L, " at %s:%d", ar.short_src, ar.currentline);
}

/* Raises an error of class 'cls' with the message "fname: <fmt...>". */
int tether__raise (lua_State *L, const struct ctx *c, enum error_class cls,
                   const char *fname, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_message(L, fname, fmt, ap);
  va_end(ap);
  tether__new_error(L, c, cls);
  return lua_error(L);
}

/* Raises the error a waker chose for a task (see tether__waitq_raise). */
int tether__raise_wake_error (lua_State *L, const struct ctx *c,
                              const struct wake_error *e) {
  lua_pushstring(L, e->message);
  tether__new_error(L, c, e->cls);
  return lua_error(L);
}

/* OSError:__tostring() -> "tether.OSError: op target: CODE: message" */
static int os_error__tostring (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushliteral(L, "tether.OSError: ");
  lua_getfield(L, 1, "op");
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
  if (lua_getfield(L, 1, "target") != LUA_TNIL) {
    lua_pushliteral(L, " ");
    lua_insert(L, -2);
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
  }
  else
    lua_pop(L, 1);
  lua_pushliteral(L, ": ");
  lua_getfield(L, 1, "code");
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
  lua_pushliteral(L, ": ");
  lua_getfield(L, 1, "message");
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
  lua_concat(L, lua_gettop(L) - 1);
  return 1;
}

/* error:__tostring() -> "tether.Name: message" */
static int error__tostring (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (luaL_getmetafield(L, 1, "__name") != LUA_TSTRING)
    lua_pushliteral(L, "tether error");
  lua_pushliteral(L, ": ");
  lua_getfield(L, 1, "message");
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
  lua_concat(L, 3);
  return 1;
}

/* Class.new(message) -> an error of that class (upvalue 1) */
static int error_new (lua_State *L) {
  lua_settop(L, 1);
  lua_createtable(L, 0, 1);
  lua_insert(L, 1);
  lua_setfield(L, 1, "message");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, 1);
  set_where(L, 1, tether__ctx(L));
  return 1;
}

/* [-0, +1, m] creates the table of error class 'cls'. */
static void new_error_class (lua_State *L, enum error_class cls) {
  lua_createtable(L, 0, 4);
  lua_pushfstring(L, "tether.%s", error_names[cls]);
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, cls == ERROR_OS ? os_error__tostring : error__tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, error_new, 1);
  lua_setfield(L, -2, "new");
}

/* Adds the error classes to the module; opening the module again in the same
   state finds the classes made the first time. */
void tether__open_errors (lua_State *L, struct ctx *c) {
  int cls;
  for (cls = 0; cls < NERRORS; cls++) {
    if (c->error_refs[cls] == 0) {
      new_error_class(L, (enum error_class)cls);
      c->error_mts[cls] = lua_topointer(L, -1);
      lua_pushvalue(L, -1);
      c->error_refs[cls] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    else
      lua_rawgeti(L, LUA_REGISTRYINDEX, c->error_refs[cls]);
    lua_setfield(L, -2, error_names[cls]);
  }
}
