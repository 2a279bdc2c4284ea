/*
** uncaught.c
** The main task's error when nothing catches it. tether.run re-raises the
** main task's error unchanged, but when run was called where no pcall or
** xpcall is above it (the main chunk of 'lua5.4 prog.lua', say), the error
** goes to the interpreter, which prints the stack of the main thread: the
** task's own frames, down to the line that raised, would be lost. There,
** and only there, run raises the error's text followed by the traceback the
** task recorded when it raised.
*/

#include <string.h>

#include "internal.h"

/*
** [-0, +1, m] pushes the traceback the task recorded for the error at the
** top of 'L', or nil when it recorded none for that error (Cancelled, or
** an error re-raised from elsewhere).
*/
void tether__push_main_traceback (lua_State *L, struct task *t) {
  struct ctx *c = TASK_CTX(t);
  int err = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->traces_ref);
  lua_rawgeti(L, -1, TRACE_ERROR(t->slot));
  if (t->traced && lua_rawequal(L, err, -1))
    lua_rawgeti(L, -2, TRACE_TEXT(t->slot));
  else
    lua_pushnil(L);
  lua_replace(L, -3);
  lua_pop(L, 1);
}

/* Whether an error raised by the running C function of 'L' would reach
   the host: 'L' is the main thread and no pcall/xpcall frame is above. */
static int unprotected (lua_State *L, struct ctx *c) {
  lua_Debug ar;
  int level;
  if (L != c->L)
    return 0;
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    lua_CFunction f;
    lua_getinfo(L, "f", &ar);
    f = lua_tocfunction(L, -1);
    lua_pop(L, 1);
    if (f != NULL && (f == c->pcall || f == c->xpcall))
      return 0;
  }
  return 1;
}

/*
** Raises the main task's error at 2 (its recorded traceback, or nil, at 3):
** unchanged, unless nothing would catch it (see above) and a traceback was
** recorded. An ErrorGroup's text already shows where each error was raised.
*/
int tether__raise_main_error (lua_State *L, struct ctx *c) {
  const char *tb = lua_tostring(L, 3);
  lua_settop(L, 3);
  if (tb == NULL || tether__is_error(L, 2, c, ERROR_GROUP) ||
      !unprotected(L, c))
    return (lua_settop(L, 2), lua_error(L));
  if (strncmp(tb, "stack traceback:", 16) == 0)
    tb += 16;
  luaL_tolstring(L, 2, NULL);
  lua_pushfstring(L,
                  "\nstack traceback of the main task (where the error was "
                  "raised):%s",
                  tb);
  lua_concat(L, 2);
  return lua_error(L);
}

/* Remembers the base library's pcall and xpcall, to recognise their frames
   above tether.run. */
void tether__open_uncaught (lua_State *L, struct ctx *c) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_GNAME) == LUA_TTABLE) {
    lua_getfield(L, -1, "pcall");
    c->pcall = lua_tocfunction(L, -1);
    lua_getfield(L, -2, "xpcall");
    c->xpcall = lua_tocfunction(L, -1);
    lua_pop(L, 2);
  }
  lua_pop(L, 2);
}
