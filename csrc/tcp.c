/*
** tcp.c
** TCP: connecting a stream to one address, listening (the Listener and
** accept are listener.c's), and name resolution (getaddrinfo and
** getnameinfo). Happy
** Eyeballs, serving and the name-based calls are the facade's
** (lua/tether/net.lua), built on these.
**
** Every wait is on a wait queue of its own request (a connect's, a
** lookup's). A request that a cancelled task leaves behind is 'abandoned':
** its callback, which libuv always calls, frees it. A cancelled connect closes its socket (so it left
** nothing behind).
*/

#define _DEFAULT_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

/* [-0, +1, m] pushes {host =, port =, family =} for an IP address. */
void tether__push_address (lua_State *L, const struct sockaddr *sa) {
  char host[64];
  int port;
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(in6, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  else {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    uv_ip4_name(in, host, sizeof host);
    port = ntohs(in->sin_port);
  }
  lua_createtable(L, 0, 3);
  lua_pushstring(L, host);
  lua_setfield(L, -2, "host");
  lua_pushinteger(L, port);
  lua_setfield(L, -2, "port");
  lua_pushstring(L, sa->sa_family == AF_INET6 ? "inet6" : "inet");
  lua_setfield(L, -2, "family");
}

/* The port at 'idx': an integer in 0..65535 (0 only where 'zero'). */
static int check_port (lua_State *L, int idx, const char *fname, int zero) {
  lua_Integer port = lua_tointeger(L, idx);
  if (!lua_isinteger(L, idx) || port < (zero ? 0 : 1) || port > 65535)
    tether__fname_error(L, fname,
                        "port must be an integer in %d..65535, got %s",
                        zero ? 0 : 1, luaL_tolstring(L, idx, NULL));
  return (int)port;
}

/* Parses the numeric IP address at 'idx' with 'port'; 0 or a libuv error. */
static int parse_ip (lua_State *L, int idx, int port,
                     struct sockaddr_storage *sa) {
  const char *host = lua_tostring(L, idx);
  if (host == NULL)
    return UV_EINVAL;
  if (strchr(host, ':') != NULL)
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa);
  return uv_ip4_addr(host, port, (struct sockaddr_in *)sa);
}

/* {====================================================================
** Connecting
** ===================================================================== */

static int core_tcp_connect (lua_State *L);

/* Started while cancelled: a checkpoint, then it starts over if a shield
   came up meanwhile. */
static int connect_cancelled_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, 4, k, connect_cancelled_k);
  (void)status;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return core_tcp_connect(L);
}

/*
** core.tcp_connect(ip, port[, local_ip, local_port]) -> a connected Stream.
** Raises OSError (op "connect"). Cancelling it closes the socket.
*/
static int core_tcp_connect (lua_State *L) {
  const char *fname = "tether.tcp_connect";
  struct ctx *c = CTX(L);
  struct sockaddr_storage sa, local;
  uv_connect_t *req;
  uv_tcp_t *handle;
  struct task *t;
  int err, port = check_port(L, 2, fname, 0);
  lua_settop(L, 4);
  t = tether__check_task(L, c, fname);
  err = parse_ip(L, 1, port, &sa);
  if (err < 0)
    return tether__fname_error(L, fname, "not an IP address: %s",
                               luaL_tolstring(L, 1, NULL));
  if (!lua_isnil(L, 3) &&
      parse_ip(L, 3, lua_isnil(L, 4) ? 0 : check_port(L, 4, fname, 1), &local) <
          0)
    return tether__fname_error(L, fname, "local_host is not an IP address: %s",
                               luaL_tolstring(L, 3, NULL));
  if (t->scope->effective)
    return tether__reschedule(L, t, 0, connect_cancelled_k);
  req = tether__connect_request(L, c, "tcp", fname);
  handle = (uv_tcp_t *)tether__stream_handle(lua_touserdata(L, -2));
  err = 0;
  if (!lua_isnil(L, 3))
    err = uv_tcp_bind(handle, (struct sockaddr *)&local, 0);
  if (err == 0)
    err =
        uv_tcp_connect(req, handle, (struct sockaddr *)&sa, tether__on_connect);
  return tether__connect_wait(L, t, err);
}

/* }==================================================================== */

/* {====================================================================
** Listening
** ===================================================================== */

/* Binds and listens on one more socket of listener 'l'; 0 or a libuv
   error. */
static int listen_on (struct listener *l, const struct sockaddr *sa,
                      int backlog, int reuse_port) {
  int err;
  uv_stream_t *sock = tether__listener_socket(l, &err);
  if (sock == NULL)
    return err;
  if (reuse_port) {
    uv_os_fd_t fd;
    int on = 1;
    err = uv_fileno((uv_handle_t *)sock, &fd);
    if (err == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on))
      err = uv_translate_sys_error(errno);
  }
  if (err == 0)
    err = uv_tcp_bind((uv_tcp_t *)sock, sa, 0);
  if (err == 0)
    err = tether__listener_listen(sock, backlog);
  return err;
}

/*
** core.tcp_listen({ip, ...}, port, backlog, reuse_port) -> a Listener on
** every address, all on the same port (port 0: the one the first address
** got). Raises OSError (op "listen") and leaves nothing open.
*/
static int core_tcp_listen (lua_State *L) {
  const char *fname = "tether.listen_tcp";
  struct ctx *c = CTX(L);
  struct listener *l;
  int port = check_port(L, 2, fname, 1), n, i, err = 0;
  lua_Integer backlog = luaL_optinteger(L, 3, 511);
  luaL_checktype(L, 1, LUA_TTABLE);
  n = (int)lua_rawlen(L, 1);
  if (n < 1 || n > LISTEN_MAX)
    return tether__fname_error(L, fname, "between 1 and %d addresses",
                               LISTEN_MAX);
  if (c->loop == NULL)
    return tether__fname_error(L, fname,
                               "called outside tether.run; listen inside a "
                               "task");
  l = tether__new_listener(L, c, "tcp");
  for (i = 1; i <= n && err == 0; i++) {
    struct sockaddr_storage sa;
    lua_rawgeti(L, 1, i);
    err = parse_ip(L, -1, port, &sa);
    lua_pop(L, 1);
    if (err == 0)
      err = listen_on(l, (struct sockaddr *)&sa, (int)backlog,
                      lua_toboolean(L, 4));
    if (err == 0 && port == 0) { /* the rest take the port this one got */
      int len = (int)sizeof sa;
      uv_tcp_getsockname((uv_tcp_t *)tether__listener_first(l),
                         (struct sockaddr *)&sa, &len);
      port = ntohs(sa.ss_family == AF_INET6
                       ? ((struct sockaddr_in6 *)&sa)->sin6_port
                       : ((struct sockaddr_in *)&sa)->sin_port);
    }
  }
  return tether__listener_open(L, l, port, err, fname);
}

/* }==================================================================== */

/* {====================================================================
** Name resolution
** ===================================================================== */

struct lookup {
  uv_getaddrinfo_t req;
  struct request_wait wait;
  struct addrinfo *result;
};

static void on_lookup (uv_getaddrinfo_t *req, int status,
                       struct addrinfo *res) {
  struct lookup *q = (struct lookup *)req;
  q->result = res;
  if (!tether__request_done(&q->wait, status)) { /* nobody wants it */
    uv_freeaddrinfo(res);
    free(q);
  }
}

/* Stack of a lookup: host, port, family, passive, the request (light
   userdata). */
#define LOOKUP_REQ 5

/* [-1, +1, m] the addresses of the lookup result (a light userdata), as a
   list; a protected call. */
static int push_addresses (lua_State *L) {
  const struct addrinfo *res = lua_touserdata(L, 1);
  int n = 0;
  lua_newtable(L);
  for (; res != NULL; res = res->ai_next) {
    if (res->ai_family != AF_INET && res->ai_family != AF_INET6)
      continue;
    tether__push_address(L, res->ai_addr);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

static int lookup_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, LOOKUP_REQ, k, lookup_k);
  struct lookup *q = lua_touserdata(L, LOOKUP_REQ);
  int err;
  (void)status;
  if (t->wake != WAKE_OK) { /* cancelled: it finishes in the background */
    if (tether__request_abandon(&q->wait)) {
      uv_freeaddrinfo(q->result);
      free(q);
    }
    tether__check_wake(L, t);
  }
  err = q->wait.status;
  if (err < 0) {
    free(q);
    return tether__raise_uv(L, TASK_CTX(t), err, "tether.getaddrinfo",
                            "getaddrinfo");
  }
  lua_pushlightuserdata(L, NULL); /* freed below, whatever happens */
  lua_replace(L, LOOKUP_REQ);
  lua_pushcfunction(L, push_addresses);
  lua_pushlightuserdata(L, q->result);
  status = lua_pcall(L, 1, 1, 0); /* a memory error must not leak 'q' */
  uv_freeaddrinfo(q->result);
  free(q);
  if (status != LUA_OK)
    return lua_error(L);
  return 1;
}

static int core_getaddrinfo (lua_State *L);

static int lookup_cancelled_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, 4, k, lookup_cancelled_k);
  (void)status;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return core_getaddrinfo(L);
}

/*
** core.getaddrinfo(host, port[, family[, passive]]) -> {{host, port,
** family}, ...}. Numeric addresses are answered at once; names are looked
** up in libuv's thread pool. A cancelled lookup finishes in the background.
*/
static int core_getaddrinfo (lua_State *L) {
  const char *fname = "tether.getaddrinfo";
  struct ctx *c = CTX(L);
  struct addrinfo hints;
  struct sockaddr_storage sa;
  struct lookup *q;
  struct task *t;
  const char *family;
  char service[8];
  int err, port;
  lua_settop(L, 4);
  if (lua_type(L, 1) != LUA_TSTRING && !lua_isnil(L, 1))
    return tether__fname_error(L, fname, "host must be a string, got %s",
                               luaL_typename(L, 1));
  port = check_port(L, 2, fname, 1);
  family = luaL_optstring(L, 3, "any");
  t = tether__check_task(L, c, fname);
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = lua_toboolean(L, 4) ? AI_PASSIVE : AI_ADDRCONFIG;
  if (strcmp(family, "inet") == 0)
    hints.ai_family = AF_INET;
  else if (strcmp(family, "inet6") == 0)
    hints.ai_family = AF_INET6;
  else if (strcmp(family, "any") != 0)
    return tether__fname_error(L, fname,
                               "family must be \"inet\", \"inet6\" or nil, "
                               "got %s",
                               family);
  if (t->scope->effective)
    return tether__reschedule(L, t, 0, lookup_cancelled_k);
  if (!lua_isnil(L, 1) && parse_ip(L, 1, port, &sa) == 0 &&
      (hints.ai_family == AF_UNSPEC || hints.ai_family == sa.ss_family)) {
    lua_createtable(L, 1, 0); /* a numeric address: no lookup */
    tether__push_address(L, (struct sockaddr *)&sa);
    lua_rawseti(L, -2, 1);
    return 1;
  }
  snprintf(service, sizeof service, "%d", port); /* Lua would allocate */
  q = calloc(1, sizeof *q);
  if (q == NULL)
    return luaL_error(L, "not enough memory");
  tether__request_init(&q->wait);
  q->wait.waiting.what = "DNS lookup (getaddrinfo)";
  lua_pushlightuserdata(L, q);
  err = uv_getaddrinfo(c->loop, &q->req, on_lookup, lua_tostring(L, 1), service,
                       &hints);
  if (err < 0) {
    free(q);
    return tether__raise_uv(L, c, err, fname, "getaddrinfo");
  }
  return tether__wait(L, t, &q->wait.waiting, 0, lookup_k);
}

/* A reverse lookup (getnameinfo), abandoned like a lookup. */
struct name_lookup {
  uv_getnameinfo_t req;
  struct request_wait wait;
};

static void on_name_lookup (uv_getnameinfo_t *req, int status, const char *host,
                            const char *service) {
  struct name_lookup *q = (struct name_lookup *)req;
  (void)host; /* both are in the request too */
  (void)service;
  if (!tether__request_done(&q->wait, status))
    free(q);
}

/* Stack of a reverse lookup: host, port, the request (light userdata). */
#define NAME_LOOKUP_REQ 3

static int name_lookup_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, NAME_LOOKUP_REQ, k, name_lookup_k);
  struct name_lookup *q = lua_touserdata(L, NAME_LOOKUP_REQ);
  char name[sizeof q->req.host], service[sizeof q->req.service];
  int err;
  (void)status;
  if (t->wake != WAKE_OK) { /* cancelled: it finishes in the background */
    if (tether__request_abandon(&q->wait))
      free(q);
    tether__check_wake(L, t);
  }
  err = q->wait.status;
  if (err < 0) {
    free(q);
    return tether__raise_uv(L, TASK_CTX(t), err, "tether.getnameinfo",
                            "getnameinfo");
  }
  memcpy(name, q->req.host, sizeof name);          /* freed before pushing: a */
  memcpy(service, q->req.service, sizeof service); /* memory error leaks */
  free(q);                                         /* nothing */
  lua_pushlightuserdata(L, NULL);
  lua_replace(L, NAME_LOOKUP_REQ);
  lua_pushstring(L, name);
  lua_pushstring(L, service);
  return 2;
}

static int core_getnameinfo (lua_State *L);

static int name_lookup_cancelled_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, 2, k, name_lookup_cancelled_k);
  (void)status;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return core_getnameinfo(L);
}

/*
** core.getnameinfo(ip, port) -> name, service: the name of a numeric
** address, looked up in libuv's thread pool. A cancelled lookup finishes in
** the background.
*/
static int core_getnameinfo (lua_State *L) {
  const char *fname = "tether.getnameinfo";
  struct ctx *c = CTX(L);
  struct sockaddr_storage sa;
  struct name_lookup *q;
  struct task *t;
  int err, port;
  lua_settop(L, 2);
  if (lua_type(L, 1) != LUA_TSTRING)
    return tether__fname_error(L, fname, "host must be a string, got %s",
                               luaL_typename(L, 1));
  port = check_port(L, 2, fname, 1);
  if (parse_ip(L, 1, port, &sa) < 0)
    return tether__fname_error(L, fname, "not an IP address: %s",
                               lua_tostring(L, 1));
  t = tether__check_task(L, c, fname);
  if (t->scope->effective)
    return tether__reschedule(L, t, 0, name_lookup_cancelled_k);
  q = calloc(1, sizeof *q);
  if (q == NULL)
    return luaL_error(L, "not enough memory");
  tether__request_init(&q->wait);
  q->wait.waiting.what = "DNS lookup (getnameinfo)";
  err = uv_getnameinfo(c->loop, &q->req, on_name_lookup, (struct sockaddr *)&sa,
                       0);
  if (err < 0) {
    free(q);
    return tether__raise_uv(L, c, err, fname, "getnameinfo");
  }
  lua_pushlightuserdata(L, q);
  return tether__wait(L, t, &q->wait.waiting, 0, name_lookup_k);
}

/* }==================================================================== */

void tether__open_tcp (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {{"tcp_connect", core_tcp_connect},
                                   {"tcp_listen", core_tcp_listen},
                                   {"getaddrinfo", core_getaddrinfo},
                                   {"getnameinfo", core_getnameinfo},
                                   {NULL, NULL}};
  (void)c;
  tether__add_functions(L, funcs);
}
