/*
** unix.c
** UNIX sockets: connecting a stream to a socket file, and listening on one
** (the Listener and accept are listener.c's; serving is the facade's).
**
** A connect waits on a wait queue of its own request; a cancelled connect
** closes its socket and abandons the request, which its callback (libuv
** always calls it, here with UV_ECANCELED) frees. Listening replaces a
** stale socket file (one nobody listens on any more: a connection to it is
** refused) and records the identity of the file it bound, so that closing
** removes that file and no other.
*/

#define _DEFAULT_SOURCE

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

/* The socket file's path at 'idx': a non-empty string without NUL bytes
   that fits in sun_path. */
static const char *check_path (lua_State *L, int idx, const char *fname) {
  struct sockaddr_un sun;
  size_t len = 0;
  const char *path = NULL;
  if (lua_type(L, idx) == LUA_TSTRING)
    path = lua_tolstring(L, idx, &len);
  if (len == 0)
    tether__fname_error(L, fname, "path must be a non-empty string, got %s",
                        path != NULL ? "\"\"" : luaL_typename(L, idx));
  if (strlen(path) != len)
    tether__fname_error(L, fname, "path must not contain NUL bytes");
  if (len >= sizeof sun.sun_path)
    tether__fname_error(L, fname,
                        "path is %d bytes long; a socket path must be shorter "
                        "than %d bytes (use a shorter or relative path)",
                        (int)len, (int)sizeof sun.sun_path);
  return path;
}

/* {====================================================================
** Connecting
** ===================================================================== */

static int core_unix_connect (lua_State *L);

/* Started while cancelled: a checkpoint, then it starts over if a shield
   came up meanwhile. */
static int connect_cancelled_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, 1, k, connect_cancelled_k);
  (void)status;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return core_unix_connect(L);
}

/*
** core.unix_connect(path) -> a connected Stream (kind "unix"). Raises
** OSError (op "connect"). Cancelling it closes the socket.
*/
static int core_unix_connect (lua_State *L) {
  const char *fname = "tether.connect_unix";
  struct ctx *c = CTX(L);
  const char *path = check_path(L, 1, fname);
  uv_connect_t *req;
  struct task *t;
  lua_settop(L, 1);
  t = tether__check_task(L, c, fname);
  if (t->scope->effective)
    return tether__reschedule(L, t, 0, connect_cancelled_k);
  req = tether__connect_request(L, c, "unix", fname);
  uv_pipe_connect(
      req, (uv_pipe_t *)tether__stream_handle(lua_touserdata(L, -2)), path,
      tether__on_connect); /* its errors come to the callback */
  return tether__connect_wait(L, t, 0);
}

/* }==================================================================== */

/* {====================================================================
** Listening
** ===================================================================== */

/* Whether 'path' is a socket file nobody listens on: a connection to it is
   refused. (A UNIX connect does not block: it succeeds, is refused, or
   finds the backlog full.) */
static int is_stale_socket (const char *path) {
  struct sockaddr_un sun;
  struct stat st;
  int fd, refused;
  if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
    return 0;
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  memcpy(sun.sun_path, path, strlen(path) + 1);
  refused = connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0 &&
            errno == ECONNREFUSED;
  close(fd);
  return refused;
}

/* A socket bound to 'path' (replacing a stale socket file), or a libuv
   error. It binds by itself, not with uv_pipe_bind, because libuv would
   remove the file at uv_close even if another one replaced it meanwhile. */
static int bind_path (const char *path) {
  struct sockaddr_un sun;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), err;
  if (fd < 0)
    return uv_translate_sys_error(errno);
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  memcpy(sun.sun_path, path, strlen(path) + 1);
  if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == 0)
    return fd;
  if (errno == EADDRINUSE && is_stale_socket(path) && unlink(path) == 0 &&
      bind(fd, (struct sockaddr *)&sun, sizeof sun) == 0)
    return fd;
  err = uv_translate_sys_error(errno);
  close(fd);
  return err;
}

/*
** core.unix_listen(path, backlog, mode) -> a Listener on the socket file
** 'path' (its permissions set to 'mode' unless it is nil). Raises OSError
** (op "listen") and leaves nothing open and no file behind.
*/
static int core_unix_listen (lua_State *L) {
  const char *fname = "tether.listen_unix";
  struct ctx *c = CTX(L);
  const char *path = check_path(L, 1, fname);
  lua_Integer backlog = luaL_optinteger(L, 2, 511);
  lua_Integer mode = luaL_optinteger(L, 3, -1);
  struct listener *l;
  struct stat st;
  uv_stream_t *sock;
  int err, fd;
  if (backlog < 1 || backlog > INT_MAX)
    return tether__fname_error(L, fname, "backlog must be a positive integer");
  if (mode > 07777)
    return tether__fname_error(L, fname,
                               "mode must be an integer in 0..4095 (such as "
                               "tonumber(\"600\", 8))");
  if (c->loop == NULL)
    return tether__fname_error(L, fname,
                               "called outside tether.run; listen inside a "
                               "task");
  lua_settop(L, 1);
  l = tether__new_listener(L, c, "unix");
  sock = tether__listener_socket(l, &err);
  fd = sock == NULL ? err : bind_path(path);
  err = fd < 0 ? fd : 0;
  if (err == 0) { /* the file is ours from here on: closing removes it */
    if (lstat(path, &st) == 0)
      tether__listener_bound_file(l, path, &st);
    err = uv_pipe_open((uv_pipe_t *)sock, fd);
    if (err < 0)
      close(fd);
  }
  if (err == 0 && mode >= 0 && chmod(path, (mode_t)mode) != 0)
    err = uv_translate_sys_error(errno);
  if (err == 0)
    err = tether__listener_listen(sock, (int)backlog);
  return tether__listener_open(L, l, 0, err, fname);
}

/* }==================================================================== */

void tether__open_unix (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {{"unix_connect", core_unix_connect},
                                   {"unix_listen", core_unix_listen},
                                   {NULL, NULL}};
  (void)c;
  tether__add_functions(L, funcs);
}
