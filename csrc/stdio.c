/*
** stdio.c
** Streams over descriptors the program already has: tether.wrap_fd, and
** tether.stdin/stdout/stderr over descriptors 0-2 (which stay open when
** their streams close: the streams work on duplicates, and the descriptors'
** blocking flags come back when they close).
*/

#define _DEFAULT_SOURCE /* F_DUPFD_CLOEXEC */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

static void check_loop (lua_State *L, struct ctx *c, const char *fname) {
  if (c->loop == NULL)
    tether__fname_error(L, fname,
                        "called outside tether.run; make streams inside a "
                        "task");
}

/* Raises why 'fd' could not become a stream. */
static int raise_wrap (lua_State *L, struct ctx *c, int err, const char *fname,
                       int fd) {
  if (err == UV_EBADF)
    return tether__fname_error(L, fname,
                               "descriptor %d is not an open pipe, socket, "
                               "terminal or regular file",
                               fd);
  return tether__raise_uv(L, c, err, fname, "open");
}

/* [-0, +1, m] a stream over a duplicate of 'fd' (whose flags are restored
   when the stream closes). */
static void push_duplicate (lua_State *L, struct ctx *c, int fd,
                            const char *fname) {
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3), err;
  if (dup < 0)
    raise_wrap(L, c, uv_translate_sys_error(errno), fname, fd);
  if (tether__fd_stream(L, c, dup, fd, &err) == NULL) {
    close(dup);
    raise_wrap(L, c, err, fname, fd);
  }
}

/* tether.wrap_fd(fd[, opts]) -> a stream over a pipe, socket, terminal or
   regular file descriptor, which it takes over (opts.dup: a duplicate) */
static int core_wrap_fd (lua_State *L) {
  const char *fname = "tether.wrap_fd";
  struct ctx *c = CTX(L);
  lua_Integer fd = lua_tointeger(L, 1);
  int dup = 0, err;
  if (!lua_isinteger(L, 1) || fd < 0 || fd > INT_MAX)
    return tether__fname_error(L, fname,
                               "fd must be a descriptor (an integer >= 0), "
                               "got %s",
                               luaL_tolstring(L, 1, NULL));
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING ||
          strcmp(lua_tostring(L, -1), "dup") != 0)
        return tether__fname_error(L, fname, "unknown option %s (dup)",
                                   luaL_tolstring(L, -1, NULL));
    }
    lua_getfield(L, 2, "dup");
    dup = lua_toboolean(L, -1);
  }
  check_loop(L, c, fname);
  if (dup) {
    push_duplicate(L, c, (int)fd, fname);
    return 1;
  }
  if (tether__fd_stream(L, c, (int)fd, -1, &err) == NULL)
    return raise_wrap(L, c, err, fname, (int)fd);
  return 1;
}

/* The standard stream 'which' (0, 1, 2): the same one while it is open. */
static int standard_stream (lua_State *L, int which, const char *fname) {
  struct ctx *c = CTX(L);
  check_loop(L, c, fname);
  if (c->stdio_refs[which] > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->stdio_refs[which]);
    if (tether__stream_open(lua_touserdata(L, -1)))
      return 1;
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, c->stdio_refs[which]);
    c->stdio_refs[which] = 0;
  }
  push_duplicate(L, c, which, fname);
  lua_pushvalue(L, -1);
  c->stdio_refs[which] = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* tether.stdin(), tether.stdout(), tether.stderr() */
static int core_stdin (lua_State *L) {
  return standard_stream(L, 0, "tether.stdin");
}

static int core_stdout (lua_State *L) {
  return standard_stream(L, 1, "tether.stdout");
}

static int core_stderr (lua_State *L) {
  return standard_stream(L, 2, "tether.stderr");
}

void tether__open_stdio (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {{"wrap_fd", core_wrap_fd},
                                   {"stdin", core_stdin},
                                   {"stdout", core_stdout},
                                   {"stderr", core_stderr},
                                   {NULL, NULL}};
  (void)c;
  tether__add_functions(L, funcs);
}
