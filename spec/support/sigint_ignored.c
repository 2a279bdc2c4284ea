/*
** sigint_ignored.c
** Helper for spec/signal_spec.lua: runs a Lua script with SIGINT ignored, the way
** a C host started as a background job does. The lua5.4 interpreter cannot be
** used for this: it installs its own SIGINT handler around every chunk it runs
** (lua.c, docall), even when SIGINT was ignored when it started.
**
**   cc -o host sigint_ignored.c $(pkg-config --cflags --libs lua5.4)
**   host script.lua      (LUA_PATH_5_4 / LUA_CPATH_5_4 are honoured)
*/

#include <signal.h>
#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int main (int argc, char **argv) {
  lua_State *L;
  int status;
  if (argc != 2) {
    fprintf(stderr, "usage: %s script.lua\n", argv[0]);
    return 2;
  }
  signal(SIGINT, SIG_IGN);
  L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create a Lua state\n", argv[0]);
    return 2;
  }
  luaL_openlibs(L);
  status = luaL_dofile(L, argv[1]);
  if (status != LUA_OK)
    fprintf(stderr, "%s: %s\n", argv[0], luaL_tolstring(L, -1, NULL));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
