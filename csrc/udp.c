/*
** udp.c
** UDP sockets: the UdpSocket class, bound when it opens, reading from then
** on. Datagrams are queued as they arrive, up to the socket's 'queue'
** (further ones are dropped and counted); the receive callback only queues
** and wakes the receiver, which takes the datagram in its own continuation,
** so a cancelled receive leaves it queued.
**
** A send tries the socket at once (uv_udp_try_send); when the kernel's
** buffer is full it hands libuv a copy and returns. Only the checkpoint at
** its start can cancel it, so a cancelled send sent nothing. A send waits
** (cancellably, nothing sent yet) while SEND_QUEUE_MAX copies are pending;
** an error libuv reports for a copy is raised by the next send.
**
** Two objects, as for streams: the Lua userdata (struct udp) holds the
** queue and the waits; the libuv handle (struct usock, malloc'd) is freed
** by its close callback, once the userdata may be gone.
*/

#define _DEFAULT_SOURCE

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

#define QUEUE_DEFAULT  256
#define SEND_QUEUE_MAX 64
#define DATAGRAM_MAX   65536

struct datagram {
  struct datagram *next;
  struct sockaddr_storage from;
  size_t len;
  char data[];
};

struct usock {
  uv_udp_t handle;
  struct udp *owner; /* NULL once the socket closed */
  char buf[DATAGRAM_MAX];
};

struct udp {
  struct ctx *ctx;
  struct queue node; /* ctx->udps while open */
  struct usock *sock;
  struct waitq receiver;
  struct waitq senders; /* waiting for libuv's send queue to shrink */
  struct datagram *head, *tail;
  int queued, queue_max;
  int family;                 /* AF_INET or AF_INET6 */
  int recv_error, send_error; /* for the next receive, the next send */
  lua_Integer dropped;
  int connected;
  int closed;
};

/* A copy handed to libuv; freed by its callback. */
struct send_req {
  uv_udp_send_t req;
  struct usock *sock;
  char data[];
};

static void free_usock (uv_handle_t *h) {
  free(h->data);
}

static void free_datagrams (struct udp *u) {
  while (u->head != NULL) {
    struct datagram *d = u->head;
    u->head = d->next;
    free(d);
  }
  u->tail = NULL;
  u->queued = 0;
}

static void close_udp (struct udp *u) {
  static const struct wake_error closed_while_receiving = {
      ERROR_CLOSED, "udp:receive: the socket was closed while a task was "
                    "receiving"};
  static const struct wake_error closed_while_sending = {
      ERROR_CLOSED, "udp:send: the socket was closed while a task was "
                    "sending"};
  struct task *t;
  if (u->closed)
    return;
  u->closed = 1;
  queue_remove(&u->node);
  while ((t = tether__waitq_first(&u->receiver)) != NULL)
    tether__waitq_raise(t, &closed_while_receiving);
  while ((t = tether__waitq_first(&u->senders)) != NULL)
    tether__waitq_raise(t, &closed_while_sending);
  if (u->sock != NULL) {
    u->sock->owner = NULL;
    uv_udp_recv_stop(&u->sock->handle);
    uv_close((uv_handle_t *)&u->sock->handle, free_usock);
    u->sock = NULL;
  }
  free_datagrams(u);
}

/* At the end of tether.run (or of an attached state, or of the Lua state):
   every UDP socket still open closes. */
void tether__udps_stop (struct ctx *c) {
  while (!queue_empty(&c->udps))
    close_udp(queue_data(queue_head(&c->udps), struct udp, node));
}

/* {====================================================================
** The libuv side
** ===================================================================== */

static void on_alloc (uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct usock *sock = h->data;
  (void)suggested;
  *buf = uv_buf_init(sock->buf, sizeof sock->buf);
}

static void wake_receiver (struct udp *u) {
  if (u->receiver.count > 0) {
    struct task *t = tether__waitq_first(&u->receiver);
    t->nresume = 0;
    tether__waitq_wake(t, WAKE_OK);
  }
}

static void on_recv (uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                     const struct sockaddr *addr, unsigned flags) {
  struct usock *sock = h->data;
  struct udp *u = sock->owner;
  struct datagram *d;
  (void)buf;
  if (u == NULL || (nread == 0 && addr == NULL)) /* nothing more to read */
    return;
  if (nread < 0) {
    u->recv_error = (int)nread;
    wake_receiver(u);
    return;
  }
  if (u->queued >= u->queue_max || (flags & UV_UDP_PARTIAL)) {
    u->dropped++;
    return;
  }
  d = malloc(sizeof *d + (size_t)nread);
  if (d == NULL) { /* dropped too, and the receiver learns why */
    u->dropped++;
    u->recv_error = UV_ENOMEM;
    wake_receiver(u);
    return;
  }
  d->next = NULL;
  memset(&d->from, 0, sizeof d->from);
  memcpy(&d->from, addr,
         addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                     : sizeof(struct sockaddr_in));
  d->len = (size_t)nread;
  memcpy(d->data, sock->buf, (size_t)nread);
  if (u->tail != NULL)
    u->tail->next = d;
  else
    u->head = d;
  u->tail = d;
  u->queued++;
  wake_receiver(u);
}

static void on_sent (uv_udp_send_t *req, int status) {
  struct send_req *r = (struct send_req *)req;
  struct udp *u = r->sock->owner;
  free(r);
  if (u == NULL)
    return;
  if (status < 0)
    u->send_error = status;
  if (u->senders.count > 0) {
    struct task *t = tether__waitq_first(&u->senders);
    t->nresume = 0;
    tether__waitq_wake(t, WAKE_OK);
  }
}

/* }==================================================================== */

static struct udp *check_udp (lua_State *L, const char *fname) {
  return tether__check_self(L, 1, CTX(L), CLASS_UDP, fname);
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

/* The numeric address of 'family' at 'hidx' with the port at 'pidx' (0
   only to bind). */
static void check_address (lua_State *L, int hidx, int pidx, int family,
                           const char *fname, struct sockaddr_storage *sa) {
  const char *host = lua_tostring(L, hidx);
  int port = check_port(L, pidx, fname, strcmp(fname, "tether.open_udp") == 0);
  int err;
  if (lua_type(L, hidx) != LUA_TSTRING)
    tether__fname_error(L, fname, "host must be a string, got %s",
                        luaL_typename(L, hidx));
  memset(sa, 0, sizeof *sa);
  err = family == AF_INET6 ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa)
                           : uv_ip4_addr(host, port, (struct sockaddr_in *)sa);
  if (err < 0)
    tether__fname_error(L, fname,
                        "host must be a numeric %s address (the socket's "
                        "family), got %s",
                        family == AF_INET6 ? "IPv6" : "IPv4", host);
}

/* [-0, +2, m] pushes the host and port of 'sa'. */
static void push_host_port (lua_State *L, const struct sockaddr_storage *sa) {
  char host[64];
  int port;
  if (sa->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(in6, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  else {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    uv_ip4_name(in, host, sizeof host);
    port = ntohs(in->sin_port);
  }
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
}

/* {====================================================================
** Opening
** ===================================================================== */

/* opts.'key' as a boolean (nil: false). */
static int opt_boolean (lua_State *L, const char *key, const char *fname) {
  int type = lua_getfield(L, 1, key), on = lua_toboolean(L, -1);
  if (type != LUA_TNIL && type != LUA_TBOOLEAN)
    tether__fname_error(L, fname, "opts.%s must be a boolean, got %s", key,
                        luaL_typename(L, -1));
  lua_pop(L, 1);
  return on;
}

/* Stack of an open: opts, the UdpSocket, then these options. */
#define OPT_HOST   3
#define OPT_PORT   4
#define OPT_FAMILY 5
#define OPT_QUEUE  6

/* Fills 'u' from the options at index 1 and binds its socket; 0 or a
   libuv error. */
static int open_socket (lua_State *L, struct udp *u, const char *fname) {
  struct sockaddr_storage sa;
  const char *host, *family;
  int reuse = opt_boolean(L, "reuse_addr", fname);
  int broadcast = opt_boolean(L, "broadcast", fname);
  lua_Integer queue;
  int err;
  lua_settop(L, 2);
  lua_getfield(L, 1, "host");
  lua_getfield(L, 1, "port");
  lua_getfield(L, 1, "family");
  lua_getfield(L, 1, "queue");
  if (!lua_isnil(L, OPT_HOST) && lua_type(L, OPT_HOST) != LUA_TSTRING)
    tether__fname_error(L, fname, "opts.host must be a string, got %s",
                        luaL_typename(L, OPT_HOST));
  if (lua_isnil(L, OPT_PORT)) {
    lua_pushinteger(L, 0);
    lua_replace(L, OPT_PORT);
  }
  host = lua_tostring(L, OPT_HOST);
  if (lua_isnil(L, OPT_FAMILY))
    family = host != NULL && strchr(host, ':') != NULL ? "inet6" : "inet";
  else
    family = lua_tostring(L, OPT_FAMILY);
  if (family == NULL ||
      (strcmp(family, "inet") != 0 && strcmp(family, "inet6") != 0))
    tether__fname_error(L, fname,
                        "opts.family must be \"inet\", \"inet6\" or nil, got "
                        "%s",
                        luaL_tolstring(L, OPT_FAMILY, NULL));
  u->family = strcmp(family, "inet6") == 0 ? AF_INET6 : AF_INET;
  queue = lua_isnil(L, OPT_QUEUE) ? QUEUE_DEFAULT : lua_tointeger(L, OPT_QUEUE);
  if ((!lua_isnil(L, OPT_QUEUE) && !lua_isinteger(L, OPT_QUEUE)) || queue < 1 ||
      queue > 1000000)
    tether__fname_error(L, fname,
                        "opts.queue must be an integer in 1..1000000, got %s",
                        luaL_tolstring(L, OPT_QUEUE, NULL));
  u->queue_max = (int)queue;
  if (host == NULL) {
    lua_pushstring(L, u->family == AF_INET6 ? "::" : "0.0.0.0");
    lua_replace(L, OPT_HOST);
  }
  check_address(L, OPT_HOST, OPT_PORT, u->family, fname, &sa);
  u->sock = malloc(sizeof *u->sock);
  if (u->sock == NULL)
    return UV_ENOMEM;
  err = uv_udp_init_ex(u->ctx->loop, &u->sock->handle, (unsigned)u->family);
  if (err < 0) {
    free(u->sock);
    u->sock = NULL;
    return err;
  }
  u->sock->handle.data = u->sock;
  u->sock->owner = u;
  err = uv_udp_bind(&u->sock->handle, (struct sockaddr *)&sa,
                    reuse ? UV_UDP_REUSEADDR : 0);
  if (err == 0 && broadcast)
    err = uv_udp_set_broadcast(&u->sock->handle, 1);
  if (err == 0)
    err = uv_udp_recv_start(&u->sock->handle, on_alloc, on_recv);
  return err;
}

/* core.open_udp([opts]) -> a UdpSocket, bound and receiving. */
static int core_open_udp (lua_State *L) {
  const char *fname = "tether.open_udp";
  struct ctx *c = CTX(L);
  struct udp *u;
  int err;
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  else if (!lua_istable(L, 1))
    return tether__fname_error(L, fname, "opts must be a table, got %s",
                               luaL_typename(L, 1));
  lua_settop(L, 1);
  if (c->loop == NULL)
    return tether__fname_error(L, fname,
                               "called outside tether.run; open it inside a "
                               "task");
  u = lua_newuserdatauv(L, sizeof *u, 0);
  memset(u, 0, sizeof *u);
  u->ctx = c;
  queue_init(&u->node);
  u->closed = 1; /* until it is open */
  tether__waitq_init_as(&u->receiver, "UDP receive");
  tether__waitq_init_as(&u->senders, "UDP send (room to send)");
  tether__set_metatable(L, c, CLASS_UDP);
  u->closed = 0;
  queue_insert_tail(&c->udps, &u->node);
  err = open_socket(L, u, fname);
  if (err < 0) {
    close_udp(u);
    return tether__raise_uv(L, c, err, fname, "bind");
  }
  lua_settop(L, 2);
  return 1;
}

/* }==================================================================== */

/* {====================================================================
** Receiving
** ===================================================================== */

static int receive_call (lua_State *L);

/* A receive starts over after it waited: 'woken' from the receiver queue,
   or else after the checkpoint of a receive started while cancelled. */
static int receive_k (lua_State *L, int status, lua_KContext woken) {
  struct task *t = tether__resumed(L, 1, woken, receive_k);
  (void)status;
  if (woken)
    tether__check_wake(L, t);
  else if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return receive_call(L);
}

/* A datagram was taken at once: a schedule point, then it returns. */
static int received_k (lua_State *L, int status, lua_KContext k) {
  (void)status;
  tether__resumed(L, 4, k, received_k);
  return 3;
}

/* [-0, +3, m] takes the first queued datagram: data, host, port. */
static void take_datagram (lua_State *L, struct udp *u) {
  struct datagram *d = u->head;
  lua_pushlstring(L, d->data, d->len);
  push_host_port(L, &d->from);
  u->head = d->next; /* only now: a memory error above leaves it queued */
  if (u->head == NULL)
    u->tail = NULL;
  u->queued--;
  free(d);
}

static int receive_call (lua_State *L) {
  const char *fname = "udp:receive";
  struct ctx *c = CTX(L);
  struct udp *u = check_udp(L, fname);
  struct task *t;
  lua_settop(L, 1);
  if (u->closed)
    return tether__raise(L, c, ERROR_CLOSED, fname, "the socket is closed");
  t = tether__check_task(L, c, fname);
  if (u->receiver.count > 0)
    return tether__raise(L, c, ERROR_BUSY, fname,
                         "another task is already receiving on this socket");
  if (t->scope->effective)
    return tether__reschedule(L, t, 0, receive_k);
  if (u->head != NULL) {
    take_datagram(L, u);
    return tether__reschedule(L, t, 0, received_k);
  }
  if (u->recv_error < 0) {
    int err = u->recv_error;
    u->recv_error = 0;
    return tether__raise_uv(L, c, err, fname, "recv");
  }
  return tether__wait(L, t, &u->receiver, 1, receive_k);
}

/* udp:receive() -> data, host, port */
static int udp_receive (lua_State *L) {
  return receive_call(L);
}

/* for data, host, port in udp do ... end */
static int udp__call (lua_State *L) {
  return receive_call(L);
}

/* }==================================================================== */

/* {====================================================================
** Sending
** ===================================================================== */

static int send_call (lua_State *L);

/* A send starts over after it waited: 'woken' from the senders queue, or
   else after the checkpoint of a send started while cancelled. */
static int send_k (lua_State *L, int status, lua_KContext woken) {
  struct task *t = tether__resumed(L, 4, woken, send_k);
  (void)status;
  if (woken)
    tether__check_wake(L, t);
  else if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return send_call(L);
}

/* Sent (or handed to libuv): a schedule point, then it returns. */
static int sent_k (lua_State *L, int status, lua_KContext k) {
  (void)status;
  tether__resumed(L, -1, k, sent_k);
  return 0;
}

/* Sends 'len' bytes of 'data' to 'to' (NULL: the connected peer) now or
   through a copy; 0 or a libuv error. */
static int send_datagram (struct udp *u, const char *data, size_t len,
                          const struct sockaddr *to) {
  uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
  struct send_req *r;
  int err = uv_udp_try_send(&u->sock->handle, &buf, 1, to);
  if (err != UV_EAGAIN)
    return err < 0 ? err : 0;
  r = malloc(sizeof *r + len);
  if (r == NULL)
    return UV_ENOMEM;
  r->sock = u->sock;
  memcpy(r->data, data, len);
  buf = uv_buf_init(r->data, (unsigned)len);
  err = uv_udp_send(&r->req, &u->sock->handle, &buf, 1, to, on_sent);
  if (err < 0)
    free(r);
  return err;
}

static int send_call (lua_State *L) {
  const char *fname = "udp:send";
  struct ctx *c = CTX(L);
  struct udp *u = check_udp(L, fname);
  struct sockaddr_storage sa;
  struct task *t;
  size_t len;
  const char *data;
  int err;
  lua_settop(L, 4);
  if (lua_type(L, 2) != LUA_TSTRING)
    return tether__fname_error(L, fname, "data must be a string, got %s",
                               luaL_typename(L, 2));
  data = lua_tolstring(L, 2, &len);
  if (len > DATAGRAM_MAX - 8 - 40)
    return tether__fname_error(L, fname,
                               "a datagram holds at most %d bytes, got %d",
                               DATAGRAM_MAX - 8 - 40, (int)len);
  if (u->connected) {
    if (!lua_isnil(L, 3) || !lua_isnil(L, 4))
      return tether__fname_error(L, fname,
                                 "the socket is connected: send(data) "
                                 "without host and port");
  }
  else if (lua_isnil(L, 3))
    return tether__fname_error(L, fname,
                               "host and port required (the socket is not "
                               "connected)");
  if (u->closed)
    return tether__raise(L, c, ERROR_CLOSED, fname, "the socket is closed");
  if (!u->connected)
    check_address(L, 3, 4, u->family, fname, &sa);
  t = tether__check_task(L, c, fname);
  if (t->scope->effective)
    return tether__reschedule(L, t, 0, send_k);
  if (u->send_error < 0) {
    err = u->send_error;
    u->send_error = 0;
    return tether__raise_uv(L, c, err, fname, "send");
  }
  if (uv_udp_get_send_queue_count(&u->sock->handle) >= SEND_QUEUE_MAX)
    return tether__wait(L, t, &u->senders, 1, send_k);
  err =
      send_datagram(u, data, len, u->connected ? NULL : (struct sockaddr *)&sa);
  if (err < 0)
    return tether__raise_uv(L, c, err, fname, "send");
  return tether__reschedule(L, t, 0, sent_k);
}

/* udp:send(data[, host, port]) */
static int udp_send (lua_State *L) {
  return send_call(L);
}

/* }==================================================================== */

/* Keeps only the queued datagrams from 'peer' (after a connect). */
static void keep_from (struct udp *u, const struct sockaddr_storage *peer) {
  struct datagram **p = &u->head;
  size_t size = peer->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                            : sizeof(struct sockaddr_in);
  u->tail = NULL;
  while (*p != NULL) {
    struct datagram *d = *p;
    if (memcmp(&d->from, peer, size) != 0) {
      *p = d->next;
      u->queued--;
      free(d);
    }
    else {
      u->tail = d;
      p = &d->next;
    }
  }
}

/* udp:connect(host, port): sends go to, and datagrams come only from, that
   peer. */
static int udp_connect (lua_State *L) {
  const char *fname = "udp:connect";
  struct ctx *c = CTX(L);
  struct udp *u = check_udp(L, fname);
  struct sockaddr_storage sa;
  int err;
  lua_settop(L, 3);
  if (u->closed)
    return tether__raise(L, c, ERROR_CLOSED, fname, "the socket is closed");
  check_address(L, 2, 3, u->family, fname, &sa);
  if (u->connected)
    return tether__fname_error(L, fname, "the socket is already connected");
  err = uv_udp_connect(&u->sock->handle, (struct sockaddr *)&sa);
  if (err < 0)
    return tether__raise_uv(L, c, err, fname, "connect");
  u->connected = 1;
  keep_from(u, &sa);
  return 0;
}

/* udp:close(), <close>, __gc */
static int udp_close (lua_State *L) {
  struct udp *u = tether__test_class(L, 1, CTX(L), CLASS_UDP);
  if (u == NULL)
    check_udp(L, "udp:close");
  else
    close_udp(u);
  return 0;
}

static int udp__index (lua_State *L) {
  struct udp *u = check_udp(L, "udp.__index");
  const char *key = lua_tostring(L, 2);
  if (key != NULL && strcmp(key, "dropped") == 0)
    lua_pushinteger(L, u->dropped);
  else if (key != NULL && strcmp(key, "local_address") == 0) {
    struct sockaddr_storage sa;
    int len = (int)sizeof sa;
    if (u->closed ||
        uv_udp_getsockname(&u->sock->handle, (struct sockaddr *)&sa, &len) < 0)
      lua_pushnil(L);
    else
      tether__push_address(L, (struct sockaddr *)&sa);
  }
  else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(2)); /* methods */
  }
  return 1;
}

static int udp__tostring (lua_State *L) {
  struct udp *u = check_udp(L, "udp:__tostring");
  lua_pushfstring(L, "tether.UdpSocket (%s): %p", u->closed ? "closed" : "open",
                  (void *)u);
  return 1;
}

void tether__open_udp (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {{"open_udp", core_open_udp}, {NULL, NULL}};
  static const luaL_Reg methods[] = {{"send", udp_send},
                                     {"receive", udp_receive},
                                     {"connect", udp_connect},
                                     {"close", udp_close},
                                     {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__call", udp__call},
                                         {"__close", udp_close},
                                         {"__gc", udp_close},
                                         {"__tostring", udp__tostring},
                                         {NULL, NULL}};
  static const struct class_def udp_class = {CLASS_UDP, TETHER_UDP_MT, methods,
                                             metamethods, udp__index};
  tether__add_functions(L, funcs);
  tether__add_class(L, c, &udp_class, 0);
  tether__push_methods(L, c, CLASS_UDP); /* the facade resolves names */
  lua_setfield(L, -2, "udp_methods");
}
