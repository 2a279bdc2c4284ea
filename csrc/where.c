/*
** where.c
** Where the user's code is: the innermost frame of a thread that is neither
** C nor tether's own Lua facade, as "file:line". Errors carry it (err.where)
** and the task tree shows it for each blocked task.
*/

#include <string.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

/*
** [-0, +(0|1), m] pushes "file:line" of the innermost frame of 'co' from
** 'level' on that runs the user's Lua code, and returns 1; returns 0 (and
** pushes nothing) when there is none.
*/
int tether__push_where (lua_State *L, const struct ctx *c, lua_State *co,
                        int level) {
  lua_Debug ar;
  size_t len = c->facade != NULL ? strlen(c->facade) : 0;
  for (; lua_getstack(co, level, &ar); level++) {
    lua_getinfo(co, "Sl", &ar);
    if (ar.currentline <= 0 ||
        (len > 0 && strncmp(ar.source, c->facade, len) == 0))
      continue;
    lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
    return 1;
  }
  return 0;
}

/* tether.core.set_facade_prefix(prefix): the facade's sources start with
   'prefix' (its directory, "@./lua/tether/" say); their frames are skipped. */
static int where_set_facade_prefix (lua_State *L) {
  struct ctx *c = CTX(L);
  luaL_checkstring(L, 1);
  lua_settop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, c->facade_ref);
  c->facade = lua_tostring(L, 1); /* anchored by the reference */
  c->facade_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

void tether__open_where (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {
      {"set_facade_prefix", where_set_facade_prefix}, {NULL, NULL}};
  (void)c;
  tether__add_functions(L, funcs);
}
