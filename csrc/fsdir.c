/*
** fsdir.c
** tether.fs.dir(path): a directory's entries, read with uv_fs_opendir and
** uv_fs_readdir in libuv's thread pool, a batch of entries per request.
** 'for name, kind in tether.fs.dir(path)' calls the Dir for each entry and
** closes it when the loop ends, however it ends.
**
** Reading a batch is shielded once started (a cancelled task raises at its
** next call), so no request still uses the directory when it closes.
** Closing is closedir, done at once (it frees memory and closes a
** descriptor).
*/

#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

#define BATCH 64 /* entries per readdir */

struct dir {
  uv_dir_t *dir; /* NULL once closed */
  int next;      /* index of the next entry in the batch (user value 1) */
  int count;     /* entries in the batch */
  int busy;      /* a request on it runs */
};

static const char *dirent_kind (uv_dirent_type_t type) {
  switch (type) {
    case UV_DIRENT_FILE:
      return "file";
    case UV_DIRENT_DIR:
      return "dir";
    case UV_DIRENT_LINK:
      return "link";
    case UV_DIRENT_FIFO:
      return "fifo";
    case UV_DIRENT_SOCKET:
      return "socket";
    case UV_DIRENT_CHAR:
      return "char";
    case UV_DIRENT_BLOCK:
      return "block";
    default:
      return "unknown";
  }
}

static void close_dir (struct dir *d) {
  uv_fs_t req;
  if (d->dir == NULL)
    return;
  uv_fs_closedir(NULL, &req, d->dir, NULL);
  uv_fs_req_cleanup(&req);
  d->dir = NULL;
}

/* Stack of an open: path, the Dir, the box. */
#define OPEN_BOX 3

static int opendir_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, OPEN_BOX, k, opendir_k);
  struct fs_req *r = tether__fs_woken(L, t, OPEN_BOX);
  struct dir *d = lua_touserdata(L, 2);
  int err = (int)r->u.fs.result;
  (void)status;
  if (err == 0) {
    d->dir = r->u.fs.ptr;
    d->dir->dirents = NULL;
  }
  tether__fs_drop(L, OPEN_BOX);
  if (err < 0)
    return tether__fs_raise(L, TASK_CTX(t), err, "opendir", lua_tostring(L, 1));
  lua_settop(L, 2);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushvalue(L, 2);
  return 4;
}

/* core.fs_dir(path) -> Dir, nil, nil, Dir (for a generic for that closes
   it) */
static int core_dir (lua_State *L) {
  const char *fname = "tether.fs.dir";
  struct ctx *c = CTX(L);
  struct dir *d;
  struct fs_req *r;
  struct task *t;
  int err;
  tether__fs_check_path(L, 1, fname, "path");
  lua_settop(L, 1);
  t = tether__check_task(L, c, fname);
  if (t->scope->effective)
    return tether__fs_cancelled(L, t, core_dir);
  d = lua_newuserdatauv(L, sizeof *d, 2);
  memset(d, 0, sizeof *d);
  tether__set_metatable(L, c, CLASS_DIR);
  lua_createtable(L, 2 * BATCH, 0);
  lua_setiuservalue(L, 2, 1);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, 2, 2);
  r = tether__fs_request(L, c, 0, 1);
  err =
      uv_fs_opendir(c->loop, &r->u.fs, lua_tostring(L, 1), tether__fs_on_done);
  return tether__fs_wait(L, t, OPEN_BOX, err, 1, 0, opendir_k);
}

/* [-0, +2, -] the batch's next entry */
static int next_entry (lua_State *L, struct dir *d) {
  lua_getiuservalue(L, 1, 1);
  lua_rawgeti(L, -1, 2 * d->next + 1);
  lua_rawgeti(L, -2, 2 * d->next + 2);
  d->next++;
  return 2;
}

/* A readdir's callback: from now on the entries' names are the request's
   (its cleanup frees them through r->dir), whenever the Dir closes. */
static void on_readdir (uv_fs_t *req) {
  struct fs_req *r = (struct fs_req *)req;
  if (req->ptr != NULL) {
    r->dir = *(uv_dir_t *)req->ptr;
    req->ptr = &r->dir;
  }
  tether__fs_on_done(req);
}

/* Stack of a read: the Dir, the box. */
#define READ_BOX 2

static int readdir_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, READ_BOX, k, readdir_k);
  struct fs_req *r = tether__fs_woken(L, t, READ_BOX);
  struct dir *d = lua_touserdata(L, 1);
  int n = (int)r->u.fs.result, i;
  (void)status;
  d->busy = 0;
  if (n < 0) {
    tether__fs_drop(L, READ_BOX);
    lua_getiuservalue(L, 1, 2);
    return tether__fs_raise(L, TASK_CTX(t), n, "readdir", lua_tostring(L, -1));
  }
  lua_getiuservalue(L, 1, 1);
  for (i = 0; i < n; i++) { /* the names go with the request */
    const uv_dirent_t *e = &((uv_dirent_t *)r->buf)[i];
    lua_pushstring(L, e->name);
    lua_rawseti(L, -2, 2 * i + 1);
    lua_pushstring(L, dirent_kind(e->type));
    lua_rawseti(L, -2, 2 * i + 2);
  }
  tether__fs_drop(L, READ_BOX); /* frees the names */
  if (d->dir != NULL)
    d->dir->dirents = NULL;
  lua_settop(L, 1);
  d->next = 0;
  d->count = n;
  if (n == 0) { /* the end */
    close_dir(d);
    return 0;
  }
  return next_entry(L, d);
}

/* After the checkpoint of a step served from the batch. */
static int step_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, 1, k, step_k);
  struct dir *d = lua_touserdata(L, 1);
  (void)status;
  d->busy = 0;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  if (d->next < d->count && d->dir != NULL)
    return next_entry(L, d);
  return 0;
}

/* dir:next() -> name, kind; nothing at the end (then the Dir is closed) */
static int dir_next (lua_State *L) {
  const char *fname = "dir:next";
  struct ctx *c = CTX(L);
  struct dir *d = tether__check_self(L, 1, c, CLASS_DIR, fname);
  struct task *t = tether__check_task(L, c, fname);
  struct fs_req *r;
  int err;
  lua_settop(L, 1);
  if (d->busy)
    return tether__raise(L, c, ERROR_BUSY, fname,
                         "another task is reading this directory");
  if (d->dir == NULL || d->next < d->count) {
    d->busy = 1;
    return tether__reschedule(L, t, 0, step_k);
  }
  if (t->scope->effective)
    return tether__fs_cancelled(L, t, dir_next);
  r = tether__fs_request(L, c, BATCH * sizeof(uv_dirent_t), 1);
  d->dir->dirents = (uv_dirent_t *)r->buf;
  d->dir->nentries = BATCH;
  err = uv_fs_readdir(c->loop, &r->u.fs, d->dir, on_readdir);
  if (err == 0)
    d->busy = 1;
  return tether__fs_wait(L, t, READ_BOX, err, 1, 0, readdir_k);
}

/* The generic 'for' calls the Dir: each step is a next(). */
static int dir__call (lua_State *L) {
  lua_settop(L, 1);
  return dir_next(L);
}

/* dir:close(): idempotent; not while a task reads it */
static int dir_close (lua_State *L) {
  struct ctx *c = CTX(L);
  struct dir *d = tether__check_self(L, 1, c, CLASS_DIR, "dir:close");
  if (d->busy)
    return tether__raise(L, c, ERROR_BUSY, "dir:close",
                         "another task is reading this directory");
  close_dir(d);
  return 0;
}

static int dir__gc (lua_State *L) {
  struct dir *d = lua_touserdata(L, 1);
  if (!d->busy) /* else its request still reads it: left to the OS */
    close_dir(d);
  return 0;
}

static int dir__tostring (lua_State *L) {
  struct dir *d = tether__check_self(L, 1, CTX(L), CLASS_DIR, "dir:__tostring");
  lua_getiuservalue(L, 1, 2);
  lua_pushfstring(L, "tether.Dir (%s%s): %p", lua_tostring(L, -1),
                  d->dir == NULL ? ", closed" : "", (void *)d);
  return 1;
}

void tether__open_fsdir (lua_State *L, struct ctx *c) {
  static const luaL_Reg methods[] = {
      {"next", dir_next}, {"close", dir_close}, {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__call", dir__call},
                                         {"__close", dir_close},
                                         {"__gc", dir__gc},
                                         {"__tostring", dir__tostring},
                                         {NULL, NULL}};
  static const struct class_def dir_class = {CLASS_DIR, "tether.Dir", methods,
                                             metamethods, NULL};
  static const luaL_Reg funcs[] = {{"fs_dir", core_dir}, {NULL, NULL}};
  tether__add_class(L, c, &dir_class, 0);
  tether__add_functions(L, funcs);
}
