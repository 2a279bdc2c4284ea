/*
** listener.c
** Listeners of TCP and UNIX sockets: one or more listening sockets of one
** kind, accept, and the Lua class. tcp.c and unix.c make them (bind and
** listen); this file accepts and closes.
**
** libuv holds one accepted connection per listening socket until
** uv_accept: on_connection only counts it and wakes the acceptor, which
** makes the Stream in its own continuation, so a cancelled accept leaves
** the connection queued. A UNIX listener removes its socket file when it
** closes, if the file is still the one it bound.
*/

#define _DEFAULT_SOURCE

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

/* One listening socket; freed by its close callback. */
struct lsock {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  struct listener *owner; /* NULL once the listener closed */
  int pending;            /* connections libuv holds for uv_accept */
  int error;              /* a failed accept, for the next accept() */
};

struct listener {
  struct ctx *ctx;
  struct queue node; /* ctx->listeners while open */
  struct waitq acceptor;
  const char *kind; /* "tcp" or "unix": of the sockets and their streams */
  struct lsock *socks[LISTEN_MAX];
  int nsocks;
  int port;
  int closed;
  /* A UNIX listener's socket file ("" for none) and its identity. */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  dev_t dev;
  ino_t ino;
};

static void free_lsock (uv_handle_t *h) {
  free(h->data);
}

/* Removes the socket file, unless another one replaced it meanwhile. */
static void remove_socket_file (struct listener *l) {
  struct stat st;
  if (l->path[0] != '\0' && lstat(l->path, &st) == 0 && st.st_dev == l->dev &&
      st.st_ino == l->ino)
    unlink(l->path);
  l->path[0] = '\0';
}

static void close_listener (struct listener *l) {
  static const struct wake_error closed_while_accepting = {
      ERROR_CLOSED, "listener:accept: the listener was closed while a task "
                    "was accepting"};
  struct task *t;
  int i;
  if (l->closed)
    return;
  l->closed = 1;
  queue_remove(&l->node);
  while ((t = tether__waitq_first(&l->acceptor)) != NULL)
    tether__waitq_raise(t, &closed_while_accepting);
  for (i = 0; i < l->nsocks; i++) {
    l->socks[i]->owner = NULL;
    uv_close(&l->socks[i]->h.handle, free_lsock);
  }
  l->nsocks = 0;
  remove_socket_file(l);
}

/* At the end of tether.run (or of an attached state, or of the Lua state):
   every listener still open closes. */
void tether__listeners_stop (struct ctx *c) {
  while (!queue_empty(&c->listeners))
    close_listener(
        queue_data(queue_head(&c->listeners), struct listener, node));
}

/*
** [-0, +1, m] a new listener of 'kind' ("tcp" or "unix"), without sockets;
** give it sockets with tether__listener_socket, then open it with
** tether__listener_open.
*/
struct listener *tether__new_listener (lua_State *L, struct ctx *c,
                                       const char *kind) {
  struct listener *l = lua_newuserdatauv(L, sizeof *l, 0);
  memset(l, 0, sizeof *l);
  l->ctx = c;
  l->kind = kind;
  queue_init(&l->node);
  l->closed = 1; /* until it is open */
  tether__waitq_init_as(&l->acceptor, "accept");
  tether__set_metatable(L, c, CLASS_LISTENER);
  return l;
}

/* A new socket of the listener's kind, not bound yet: NULL with *err set
   when it has LISTEN_MAX sockets already or libuv refuses one. */
uv_stream_t *tether__listener_socket (struct listener *l, int *err) {
  struct lsock *sock;
  if (l->nsocks == LISTEN_MAX) {
    *err = UV_EINVAL;
    return NULL;
  }
  sock = calloc(1, sizeof *sock);
  if (sock == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  *err = strcmp(l->kind, "tcp") == 0
             ? uv_tcp_init(l->ctx->loop, &sock->h.tcp)
             : uv_pipe_init(l->ctx->loop, &sock->h.pipe, 0);
  if (*err < 0) {
    free(sock);
    return NULL;
  }
  sock->h.handle.data = sock;
  sock->owner = l;
  l->socks[l->nsocks++] = sock;
  return &sock->h.stream;
}

/* Records the socket file a UNIX listener bound ('path', with the identity
   of 'st'), which it removes when it closes. */
void tether__listener_bound_file (struct listener *l, const char *path,
                                  const struct stat *st) {
  size_t len = strlen(path);
  if (len >= sizeof l->path)
    return; /* cannot happen: the path fit in sun_path */
  memcpy(l->path, path, len + 1);
  l->dev = st->st_dev;
  l->ino = st->st_ino;
}

/* The listener's first socket (NULL when it has none). */
uv_stream_t *tether__listener_first (struct listener *l) {
  return l->nsocks > 0 ? &l->socks[0]->h.stream : NULL;
}

static void on_connection (uv_stream_t *server, int status);

/* Listens on a socket of the listener: 0 or a libuv error. */
int tether__listener_listen (uv_stream_t *sock, int backlog) {
  return uv_listen(sock, backlog, on_connection);
}

/* The listener is made (with 'port', 0 for a UNIX one): it is open, closed
   at the end of the run. If 'err' < 0 it closes again and raises that
   error as OSError (op "listen"). */
int tether__listener_open (lua_State *L, struct listener *l, int port, int err,
                           const char *fname) {
  l->closed = 0;
  queue_insert_tail(&l->ctx->listeners, &l->node);
  if (err < 0) {
    close_listener(l);
    return tether__raise_uv(L, l->ctx, err, fname, "listen");
  }
  l->port = port;
  tether__hold_sigpipe(l->ctx);
  return 1;
}

static void on_connection (uv_stream_t *server, int status) {
  struct lsock *sock = server->data;
  struct listener *l = sock->owner;
  if (l == NULL)
    return;
  if (status < 0)
    sock->error = status;
  else
    sock->pending++;
  if (l->acceptor.count > 0) {
    struct task *t = tether__waitq_first(&l->acceptor);
    t->nresume = 0;
    tether__waitq_wake(t, WAKE_OK);
  }
}

static struct listener *check_listener (lua_State *L, const char *fname) {
  return tether__check_self(L, 1, CTX(L), CLASS_LISTENER, fname);
}

/* Takes a queued connection as a Stream; 0 when none is queued. */
static int take_connection (lua_State *L, struct listener *l,
                            const char *fname) {
  int i;
  for (i = 0; i < l->nsocks; i++) {
    struct lsock *sock = l->socks[i];
    if (sock->error < 0) {
      int err = sock->error;
      sock->error = 0;
      return tether__raise_uv(L, l->ctx, err, fname, "accept");
    }
    if (sock->pending > 0) {
      int err;
      struct stream *s = tether__socket_stream(L, l->ctx, l->kind, &err);
      if (s == NULL)
        return tether__raise_uv(L, l->ctx, err, fname, "accept");
      err = uv_accept(&sock->h.stream, tether__stream_handle(s));
      sock->pending--;
      if (err < 0) {
        tether__stream_abort(s);
        return tether__raise_uv(L, l->ctx, err, fname, "accept");
      }
      tether__stream_started(s);
      return 1;
    }
  }
  return 0;
}

static int accept_call (lua_State *L);

/* An accept starts over after it waited: 'woken' from the acceptor queue,
   or else after the checkpoint of an accept started while cancelled. */
static int accept_k (lua_State *L, int status, lua_KContext woken) {
  struct task *t = tether__resumed(L, 1, woken, accept_k);
  (void)status;
  if (woken)
    tether__check_wake(L, t);
  else if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return accept_call(L);
}

/* A connection was taken at once: a schedule point, then it returns. */
static int accepted_k (lua_State *L, int status, lua_KContext k) {
  (void)status;
  tether__resumed(L, 2, k, accepted_k);
  return 1;
}

static int accept_call (lua_State *L) {
  const char *fname = "listener:accept";
  struct ctx *c = CTX(L);
  struct listener *l = check_listener(L, fname);
  struct task *t;
  lua_settop(L, 1);
  if (l->closed)
    return tether__raise(L, c, ERROR_CLOSED, fname, "the listener is closed");
  t = tether__check_task(L, c, fname);
  if (l->acceptor.count > 0)
    return tether__raise(L, c, ERROR_BUSY, fname,
                         "another task is already accepting on this "
                         "listener");
  if (t->scope->effective)
    return tether__reschedule(L, t, 0, accept_k);
  if (take_connection(L, l, fname))
    return tether__reschedule(L, t, 0, accepted_k);
  return tether__wait(L, t, &l->acceptor, 1, accept_k);
}

/* listener:accept() -> the next connection, as a Stream */
static int listener_accept (lua_State *L) {
  return accept_call(L);
}

/* for conn in listener do ... end */
static int listener__call (lua_State *L) {
  return accept_call(L);
}

/* listener:close(), <close>, __gc */
static int listener_close (lua_State *L) {
  struct listener *l = tether__test_class(L, 1, CTX(L), CLASS_LISTENER);
  if (l == NULL)
    check_listener(L, "listener:close");
  else
    close_listener(l);
  return 0;
}

/* [-0, +1, m] the address of listening socket 'sock': {path =} for a UNIX
   one, {host =, port =, family =} for a TCP one; nothing if it has none. */
static int push_socket_address (lua_State *L, struct listener *l,
                                struct lsock *sock) {
  if (strcmp(l->kind, "unix") == 0) {
    if (l->path[0] == '\0')
      return 0;
    lua_createtable(L, 0, 1);
    lua_pushstring(L, l->path);
    lua_setfield(L, -2, "path");
  }
  else {
    struct sockaddr_storage sa;
    int len = (int)sizeof sa;
    if (uv_tcp_getsockname(&sock->h.tcp, (struct sockaddr *)&sa, &len) < 0)
      return 0;
    tether__push_address(L, (struct sockaddr *)&sa);
  }
  return 1;
}

static int listener__index (lua_State *L) {
  struct listener *l = check_listener(L, "listener.__index");
  const char *key = lua_tostring(L, 2);
  if (key != NULL && strcmp(key, "port") == 0) {
    if (strcmp(l->kind, "tcp") == 0)
      lua_pushinteger(L, l->port);
    else
      lua_pushnil(L);
  }
  else if (key != NULL && strcmp(key, "addresses") == 0) {
    int i, n = 0;
    lua_createtable(L, l->nsocks, 0);
    for (i = 0; i < l->nsocks; i++)
      if (push_socket_address(L, l, l->socks[i]))
        lua_rawseti(L, -2, ++n);
  }
  else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(2)); /* methods */
  }
  return 1;
}

static int listener__tostring (lua_State *L) {
  struct listener *l = check_listener(L, "listener:__tostring");
  if (strcmp(l->kind, "tcp") == 0)
    lua_pushfstring(L, "tether.Listener (port %d, %s): %p", l->port,
                    l->closed ? "closed" : "open", (void *)l);
  else
    lua_pushfstring(L, "tether.Listener (unix, %s): %p",
                    l->closed ? "closed" : "open", (void *)l);
  return 1;
}

void tether__open_listener (lua_State *L, struct ctx *c) {
  static const luaL_Reg methods[] = {
      {"accept", listener_accept}, {"close", listener_close}, {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__call", listener__call},
                                         {"__close", listener_close},
                                         {"__gc", listener_close},
                                         {"__tostring", listener__tostring},
                                         {NULL, NULL}};
  static const struct class_def listener_class = {CLASS_LISTENER,
                                                  TETHER_LISTENER_MT, methods,
                                                  metamethods, listener__index};
  tether__add_class(L, c, &listener_class, 0);
  tether__push_methods(L, c, CLASS_LISTENER);
  lua_setfield(L, -2, "listener_methods");
}
