/*
** fs.c
** tether.fs's calls on paths (stat, lstat, exists, mkdir, rmdir, unlink,
** rename, copy, symlink, readlink, realpath, chmod): one libuv request
** each, in the thread pool. Those that only look are cancellable (a
** cancelled one is abandoned); those that change something are shielded
** once started, so a call that raised Cancelled had no effect. The facade
** (lua/tether/fs.lua) builds mkdir with parents and recursive remove on
** these.
*/

#include <string.h>
#include <sys/stat.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

enum fs_op {
  OP_STAT,
  OP_LSTAT,
  OP_EXISTS,
  OP_MKDIR,
  OP_RMDIR,
  OP_UNLINK,
  OP_RENAME,
  OP_COPY,
  OP_SYMLINK,
  OP_READLINK,
  OP_REALPATH,
  OP_CHMOD
};

/* What each call takes: 'p' a path, 'i' an integer (a mode). */
static const struct op_def {
  const char *fname, *op, *args;
  int shielded;
} ops[] = {
    [OP_STAT] = {"tether.fs.stat", "stat", "p", 0},
    [OP_LSTAT] = {"tether.fs.lstat", "lstat", "p", 0},
    [OP_EXISTS] = {"tether.fs.exists", "stat", "p", 0},
    [OP_MKDIR] = {"tether.fs.mkdir", "mkdir", "pi", 1},
    [OP_RMDIR] = {"tether.fs.rmdir", "rmdir", "p", 1},
    [OP_UNLINK] = {"tether.fs.unlink", "unlink", "p", 1},
    [OP_RENAME] = {"tether.fs.rename", "rename", "pp", 1},
    [OP_COPY] = {"tether.fs.copy", "copy", "pp", 1},
    [OP_SYMLINK] = {"tether.fs.symlink", "symlink", "pp", 1},
    [OP_READLINK] = {"tether.fs.readlink", "readlink", "p", 0},
    [OP_REALPATH] = {"tether.fs.realpath", "realpath", "p", 0},
    [OP_CHMOD] = {"tether.fs.chmod", "chmod", "pi", 1},
};

/* Stack of a call: two arguments, the request's box. */
#define FS_BOX 3

static const char *kind_name (uint64_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "file";
    case S_IFDIR:
      return "dir";
    case S_IFLNK:
      return "link";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "socket";
    case S_IFCHR:
      return "char";
    case S_IFBLK:
      return "block";
    default:
      return "unknown";
  }
}

static void set_time (lua_State *L, const char *name, uv_timespec_t ts) {
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  lua_setfield(L, -2, name);
}

static void set_integer (lua_State *L, const char *name, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, name);
}

/* [-0, +1, m] the table of a stat */
static void push_stat (lua_State *L, const uv_stat_t *st) {
  lua_createtable(L, 0, 11);
  lua_pushstring(L, kind_name(st->st_mode));
  lua_setfield(L, -2, "type");
  set_integer(L, "size", st->st_size);
  set_integer(L, "mode", st->st_mode & 07777);
  set_time(L, "mtime", st->st_mtim);
  set_time(L, "atime", st->st_atim);
  set_time(L, "ctime", st->st_ctim);
  set_integer(L, "ino", st->st_ino);
  set_integer(L, "dev", st->st_dev);
  set_integer(L, "nlink", st->st_nlink);
  set_integer(L, "uid", st->st_uid);
  set_integer(L, "gid", st->st_gid);
}

static int fs_k (lua_State *L, int status, lua_KContext k) {
  enum fs_op op = (enum fs_op)k;
  struct task *t = tether__resumed(L, FS_BOX, k, fs_k);
  struct fs_req *r = tether__fs_woken(L, t, FS_BOX);
  int err = (int)r->u.fs.result;
  (void)status;
  if (op == OP_EXISTS) {
    tether__fs_drop(L, FS_BOX);
    if (err < 0 && err != UV_ENOENT && err != UV_ENOTDIR && err != UV_ELOOP)
      return tether__fs_raise(L, TASK_CTX(t), err, ops[op].op,
                              lua_tostring(L, 1));
    lua_pushboolean(L, err >= 0);
    return 1;
  }
  if (err < 0) {
    tether__fs_drop(L, FS_BOX);
    return tether__fs_raise(L, TASK_CTX(t), err, ops[op].op,
                            lua_tostring(L, op == OP_SYMLINK ? 2 : 1));
  }
  switch (op) {
    case OP_STAT:
    case OP_LSTAT:
      push_stat(L, &r->u.fs.statbuf);
      break;
    case OP_READLINK:
    case OP_REALPATH:
      lua_pushstring(L, r->u.fs.ptr);
      break;
    default:
      lua_pushboolean(L, 1);
  }
  tether__fs_drop(L, FS_BOX);
  return 1;
}

static int fs_call (lua_State *L, enum fs_op op, lua_CFunction self) {
  const struct op_def *d = &ops[op];
  struct ctx *c = CTX(L);
  struct fs_req *r;
  struct task *t;
  int i, err;
  uv_fs_t *req;
  const char *p1, *p2;
  for (i = 0; d->args[i] != '\0'; i++) {
    if (d->args[i] == 'p')
      tether__fs_check_path(L, i + 1, d->fname,
                            i == 0 ? "argument #1" : "argument #2");
    if (d->args[i] == 'i' && !lua_isinteger(L, i + 1))
      return tether__fname_error(L, d->fname,
                                 "argument #%d must be an integer mode (such "
                                 "as 493 for 0755), got %s",
                                 i + 1, luaL_typename(L, i + 1));
  }
  lua_settop(L, 2);
  t = tether__check_task(L, c, d->fname);
  if (t->scope->effective)
    return tether__fs_cancelled(L, t, self);
  p1 = lua_tostring(L, 1);
  p2 = d->args[1] == 'p' ? lua_tostring(L, 2) : NULL;
  r = tether__fs_request(L, c, 0, 1);
  req = &r->u.fs;
  switch (op) {
    case OP_STAT:
    case OP_EXISTS:
      err = uv_fs_stat(c->loop, req, p1, tether__fs_on_done);
      break;
    case OP_LSTAT:
      err = uv_fs_lstat(c->loop, req, p1, tether__fs_on_done);
      break;
    case OP_MKDIR:
      err = uv_fs_mkdir(c->loop, req, p1, (int)lua_tointeger(L, 2),
                        tether__fs_on_done);
      break;
    case OP_RMDIR:
      err = uv_fs_rmdir(c->loop, req, p1, tether__fs_on_done);
      break;
    case OP_UNLINK:
      err = uv_fs_unlink(c->loop, req, p1, tether__fs_on_done);
      break;
    case OP_RENAME:
      err = uv_fs_rename(c->loop, req, p1, p2, tether__fs_on_done);
      break;
    case OP_COPY:
      err = uv_fs_copyfile(c->loop, req, p1, p2, 0, tether__fs_on_done);
      break;
    case OP_SYMLINK:
      err = uv_fs_symlink(c->loop, req, p1, p2, 0, tether__fs_on_done);
      break;
    case OP_READLINK:
      err = uv_fs_readlink(c->loop, req, p1, tether__fs_on_done);
      break;
    case OP_REALPATH:
      err = uv_fs_realpath(c->loop, req, p1, tether__fs_on_done);
      break;
    default: /* OP_CHMOD */
      err = uv_fs_chmod(c->loop, req, p1, (int)lua_tointeger(L, 2),
                        tether__fs_on_done);
  }
  return tether__fs_wait(L, t, FS_BOX, err, d->shielded, op, fs_k);
}

#define FS_FUNCTION(name, op)                                                  \
  static int name(lua_State *L) {                                              \
    return fs_call(L, op, name);                                               \
  }

FS_FUNCTION(fs_stat, OP_STAT)
FS_FUNCTION(fs_lstat, OP_LSTAT)
FS_FUNCTION(fs_exists, OP_EXISTS)
FS_FUNCTION(fs_mkdir, OP_MKDIR)
FS_FUNCTION(fs_rmdir, OP_RMDIR)
FS_FUNCTION(fs_unlink, OP_UNLINK)
FS_FUNCTION(fs_rename, OP_RENAME)
FS_FUNCTION(fs_copy, OP_COPY)
FS_FUNCTION(fs_symlink, OP_SYMLINK)
FS_FUNCTION(fs_readlink, OP_READLINK)
FS_FUNCTION(fs_realpath, OP_REALPATH)
FS_FUNCTION(fs_chmod, OP_CHMOD)

void tether__open_fs (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {{"fs_stat", fs_stat},
                                   {"fs_lstat", fs_lstat},
                                   {"fs_exists", fs_exists},
                                   {"fs_mkdir", fs_mkdir},
                                   {"fs_rmdir", fs_rmdir},
                                   {"fs_unlink", fs_unlink},
                                   {"fs_rename", fs_rename},
                                   {"fs_copy", fs_copy},
                                   {"fs_symlink", fs_symlink},
                                   {"fs_readlink", fs_readlink},
                                   {"fs_realpath", fs_realpath},
                                   {"fs_chmod", fs_chmod},
                                   {NULL, NULL}};
  (void)c;
  tether__add_functions(L, funcs);
}
