/*
** connect.c
** Connecting a socket stream (TCP or UNIX): the request a connecting task
** waits on, and what happens when it is cancelled. tcp.c and unix.c start
** the connection; the waiting and its outcome are here.
**
** The task waits on a wait queue of its own request. A cancelled connect
** closes its socket (so it left nothing behind) and abandons the request,
** which its callback frees: libuv always calls it, here with UV_ECANCELED.
*/

#include <stdlib.h>

#include "internal.h"

struct tether_connect {
  uv_connect_t req;
  struct request_wait wait;
  const char *fname; /* the public function, for errors */
};

void tether__on_connect (uv_connect_t *req, int status) {
  struct tether_connect *r = (struct tether_connect *)req;
  if (!tether__request_done(&r->wait, status))
    free(r);
}

/*
** [-0, +2, m] pushes a new socket stream of 'kind' and a connect request
** (light userdata) for it, and returns the request, for the caller to start
** with tether__on_connect as callback. The stream is ready once
** tether__connect_wait returns it.
*/
uv_connect_t *tether__connect_request (lua_State *L, struct ctx *c,
                                       const char *kind, const char *fname) {
  struct tether_connect *r;
  int err;
  struct stream *s = tether__socket_stream(L, c, kind, &err);
  if (s == NULL)
    tether__raise_uv(L, c, err, fname, "socket");
  r = calloc(1, sizeof *r);
  if (r == NULL) {
    tether__stream_abort(s);
    luaL_error(L, "not enough memory");
  }
  tether__request_init(&r->wait);
  r->wait.waiting.what = "connect";
  r->fname = fname;
  lua_pushlightuserdata(L, r);
  return &r->req;
}

/* The continuation of a connect: the stream, or the error. The stream and
   the request are the top two values of a frame of 'base' values. */
static int connect_k (lua_State *L, int status, lua_KContext base) {
  struct task *t = tether__resumed(L, (int)base, base, connect_k);
  struct tether_connect *r = lua_touserdata(L, (int)base);
  struct stream *s = lua_touserdata(L, (int)base - 1);
  const char *fname = r->fname;
  int err;
  (void)status;
  if (t->wake != WAKE_OK) { /* cancelled: close the half-open socket */
    if (tether__request_abandon(&r->wait))
      free(r);
    tether__stream_abort(s);
    tether__check_wake(L, t);
  }
  err = r->wait.status;
  free(r);
  if (err < 0) {
    tether__stream_abort(s);
    return tether__raise_uv(L, TASK_CTX(t), err, fname, "connect");
  }
  tether__stream_started(s);
  lua_settop(L, (int)base - 1);
  return 1;
}

/*
** Waits for the connect that tether__connect_request pushed and the caller
** started ('err': what starting it returned) and returns the connected
** stream, or raises OSError (op "connect").
*/
int tether__connect_wait (lua_State *L, struct task *t, int err) {
  struct tether_connect *r = lua_touserdata(L, -1);
  if (err < 0) {
    const char *fname = r->fname;
    free(r);
    tether__stream_abort(lua_touserdata(L, -2));
    return tether__raise_uv(L, TASK_CTX(t), err, fname, "connect");
  }
  return tether__wait(L, t, &r->wait.waiting, lua_gettop(L), connect_k);
}
