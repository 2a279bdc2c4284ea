/*
** fsreq.c
** A file-system request a task waits for: a uv_fs_t (or, for a job of
** several system calls, a uv_work_t) that runs in libuv's thread pool and
** calls back on the loop, which wakes the task through a struct
** request_wait.
**
** Two kinds of wait. A request that only reads (stat, a read, opening a
** file for reading) is cancellable: the cancelled task abandons it, and
** whoever comes last frees it (a file that an abandoned open opened is
** closed then). A request that changes something (a write, mkdir, rename)
** is shielded once started: it completes, so a call that raised Cancelled
** had no effect; the cancellation is raised by the next checkpoint.
**
** Each request has a box on the waiting task's stack (a userdata whose
** __gc frees the request if nobody else will), so a memory error while its
** results are pushed leaks nothing.
*/

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct fs_box {
  struct fs_req *r; /* NULL once freed or handed to libuv's callback */
};

/* A descriptor is closed when its file is closed and no request of its own
   still runs on it (a descriptor number closed too early could be reused by
   another open and read by the abandoned request). */
static void release_descriptor (struct fd_owner *o) {
  if (--o->inflight == 0 && o->closing) {
    if (o->fd >= 0)
      close(o->fd);
    free(o);
  }
}

void tether__fd_release (struct fd_owner *o) {
  o->closing = 1;
  o->inflight++;
  release_descriptor(o);
}

void tether__fs_free (struct fs_req *r) {
  if (r->is_fs) {
    /* an abandoned open: nobody takes the descriptor */
    if (r->u.fs.fs_type == UV_FS_OPEN && r->u.fs.result >= 0)
      close((int)r->u.fs.result);
    uv_fs_req_cleanup(&r->u.fs);
  }
  if (r->owner != NULL)
    release_descriptor(r->owner);
  free(r->buf);
  free(r->path);
  free(r->temp);
  free(r);
}

/* libuv's callback for every request (uv_fs_cb and uv_after_work_cb). */
static void finish (struct fs_req *r, int status) {
  if (!tether__request_done(&r->wait, status))
    tether__fs_free(r); /* abandoned */
}

void tether__fs_on_done (uv_fs_t *req) {
  struct fs_req *r = (struct fs_req *)req;
  finish(r, req->result < 0 ? (int)req->result : 0);
}

void tether__fs_on_job_done (uv_work_t *req, int status) {
  finish((struct fs_req *)req, status);
}

static int box__gc (lua_State *L) {
  struct fs_box *b = lua_touserdata(L, 1);
  if (b->r != NULL && (!b->r->started || tether__request_abandon(&b->r->wait)))
    tether__fs_free(b->r);
  b->r = NULL;
  return 0;
}

struct fs_req *tether__fs_request (lua_State *L, struct ctx *c, size_t buflen,
                                   int is_fs) {
  struct fs_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  struct fs_req *r;
  b->r = NULL;
  tether__set_metatable(L, c, CLASS_FS_REQUEST);
  r = calloc(1, sizeof *r);
  if (r == NULL)
    luaL_error(L, "not enough memory");
  if (buflen > 0 && (r->buf = malloc(buflen)) == NULL) {
    free(r);
    luaL_error(L, "not enough memory");
  }
  r->len = buflen;
  r->is_fs = is_fs;
  tether__request_init(&r->wait);
  r->wait.waiting.what = "file-system operation";
  b->r = r;
  return r;
}

void tether__fs_attach (struct fs_req *r, struct fd_owner *o) {
  r->owner = o;
  o->inflight++;
}

/*
** The path at 'idx', or a misuse error naming 'fname' and 'what' the
** argument is: a string without NUL bytes (libuv takes C strings, so
** "a\0b" would silently be the file "a").
*/
const char *tether__fs_check_path (lua_State *L, int idx, const char *fname,
                                   const char *what) {
  size_t len;
  const char *path;
  if (lua_type(L, idx) != LUA_TSTRING)
    tether__fname_error(L, fname, "%s must be a string, got %s", what,
                        luaL_typename(L, idx));
  path = lua_tolstring(L, idx, &len);
  if (strlen(path) != len)
    tether__fname_error(L, fname, "%s must not contain NUL bytes", what);
  return path;
}

struct fs_req *tether__fs_box (lua_State *L, int idx) {
  return ((struct fs_box *)lua_touserdata(L, idx))->r;
}

void tether__fs_drop (lua_State *L, int idx) {
  struct fs_box *b = lua_touserdata(L, idx);
  if (b->r != NULL)
    tether__fs_free(b->r);
  b->r = NULL;
}

/* A shielded wait stays parked when cancelled. Only when the run failed
   and its tasks are abandoned does the task leave the queue (its box then
   abandons the request). */
static int shielded_abort (struct task *t) {
  struct waitq *q = t->wait_data;
  if (!TASK_CTX(t)->fatal)
    return 0;
  queue_remove(&t->node);
  q->count--;
  return 1;
}

int tether__fs_wait (lua_State *L, struct task *t, int box, int err,
                     int shielded, lua_KContext kctx, lua_KFunction k) {
  struct fs_req *r = tether__fs_box(L, box);
  struct waitq *q = &r->wait.waiting;
  if (err < 0) { /* libuv refused it: it never ran */
    if (r->is_fs)
      r->u.fs.result = err; /* not a descriptor to close */
    tether__fs_drop(L, box);
    if (err == UV_ENOMEM)
      return luaL_error(L, "not enough memory");
    return luaL_error(L, "%s", uv_strerror(err));
  }
  r->started = 1;
  if (!shielded)
    return tether__wait(L, t, q, kctx, k);
  queue_insert_tail(&q->tasks, &t->node);
  q->count++;
  t->wait_data = q;
  return tether__park(L, t, shielded_abort, kctx, k);
}

struct fs_req *tether__fs_woken (lua_State *L, struct task *t, int box) {
  struct fs_box *b = lua_touserdata(L, box);
  if (t->wake != WAKE_OK) { /* cancelled: the request finishes alone */
    if (tether__request_abandon(&b->r->wait))
      tether__fs_free(b->r);
    b->r = NULL;
    tether__check_wake(L, t);
  }
  return b->r;
}

int tether__fs_raise (lua_State *L, struct ctx *c, int err, const char *op,
                      const char *target) {
  if (err == UV_ENOMEM)
    return luaL_error(L, "not enough memory");
  lua_createtable(L, 0, 5);
  lua_pushstring(L, uv_err_name(err));
  lua_setfield(L, -2, "code");
  lua_pushinteger(L, -err);
  lua_setfield(L, -2, "errno");
  lua_pushstring(L, uv_strerror(err));
  lua_setfield(L, -2, "message");
  lua_pushstring(L, op);
  lua_setfield(L, -2, "op");
  if (target != NULL) {
    lua_pushstring(L, target);
    lua_setfield(L, -2, "target");
  }
  tether__set_error_class(L, -1, c, ERROR_OS);
  return lua_error(L);
}

/* Continuation of a call that found its task cancelled before it started
   anything: raises Cancelled, or starts over if a shield came up. */
static int cancelled_first_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, -1, k, cancelled_first_k);
  (void)status;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return ((lua_CFunction)k)(L);
}

int tether__fs_cancelled (lua_State *L, struct task *t, lua_CFunction again) {
  return tether__reschedule(L, t, (lua_KContext)again, cancelled_first_k);
}

void tether__open_fsreq (lua_State *L, struct ctx *c) {
  static const luaL_Reg metamethods[] = {{"__gc", box__gc}, {NULL, NULL}};
  static const luaL_Reg no_methods[] = {{NULL, NULL}};
  static const struct class_def box_class = {
      CLASS_FS_REQUEST, "tether.FileRequest", no_methods, metamethods, NULL};
  tether__add_class(L, c, &box_class, 0);
}
