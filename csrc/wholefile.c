/*
** wholefile.c
** tether.fs.read_file and write_file: each is one job in libuv's thread
** pool (uv_queue_work) that makes all its system calls there (open, fstat,
** read, close; or open, write, fsync, rename), instead of one request per
** call, so a thousand small files read concurrently cost a thousand
** hand-overs, not four thousand.
**
** A read is cancellable (abandoned: its job finishes and is freed alone).
** A write is shielded once started, so a write_file that raised Cancelled
** wrote nothing. An atomic write goes to a new file beside the target,
** synced, then renamed over it; on any error the new file is removed.
*/

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

/* Which system call failed: the OSError's op. */
enum step {
  STEP_OPEN,
  STEP_STAT,
  STEP_READ,
  STEP_WRITE,
  STEP_SYNC,
  STEP_RENAME,
  STEP_LIMIT
};
static const char *const step_names[] = {"open",  "stat",   "read", "write",
                                         "fsync", "rename", "read"};

static void fail (struct fs_req *r, enum step step) {
  r->value = uv_translate_sys_error(errno);
  r->flags = step;
}

/* A copy of the path at 'idx' for the pool thread, or NULL (no memory). */
static char *copy_path (lua_State *L, int idx) {
  size_t len;
  const char *path = lua_tolstring(L, idx, &len);
  char *copy = malloc(len + 1);
  if (copy != NULL)
    memcpy(copy, path, len + 1);
  return copy;
}

/* {====================================================================
** Reading
** ===================================================================== */

/* In a pool thread: the file into r->buf (r->len bytes allocated before,
   read after); r->value is the limit (-1: none) before, 0 or a libuv error
   after. */
static void read_job (uv_work_t *req) {
  struct fs_req *r = (struct fs_req *)req;
  int64_t max = r->value;
  size_t cap, len = 0;
  struct stat st;
  int fd = open(r->path, O_RDONLY | O_CLOEXEC);
  r->value = 0;
  if (fd < 0) {
    fail(r, STEP_OPEN);
    return;
  }
  if (fstat(fd, &st) < 0) {
    fail(r, STEP_STAT);
    close(fd);
    return;
  }
  if (max >= 0 && st.st_size > max) {
    r->value = 1;
    r->flags = STEP_LIMIT;
    close(fd);
    return;
  }
  cap = r->len;
  if ((size_t)st.st_size + 1 > cap) { /* one more: the end is seen at once */
    char *grown = realloc(r->buf, (size_t)st.st_size + 1);
    if (grown == NULL) {
      errno = ENOMEM;
      fail(r, STEP_READ);
      close(fd);
      return;
    }
    r->buf = grown;
    cap = (size_t)st.st_size + 1;
  }
  for (;;) {
    ssize_t n;
    if (len == cap) {
      char *grown = realloc(r->buf, cap * 2);
      if (grown == NULL) {
        errno = ENOMEM;
        fail(r, STEP_READ);
        break;
      }
      r->buf = grown;
      cap *= 2;
    }
    n = read(fd, r->buf + len, cap - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      fail(r, STEP_READ);
      break;
    }
    if (n == 0)
      break;
    len += (size_t)n;
    if (max >= 0 && (int64_t)len > max) {
      r->value = 1;
      r->flags = STEP_LIMIT;
      break;
    }
    if (S_ISREG(st.st_mode) && st.st_size > 0 && len >= (size_t)st.st_size &&
        len < cap)
      break; /* all it had and a short read: the end (saves a read; not for
                /proc, whose files say size 0) */
  }
  r->len = len;
  close(fd);
}

#define SMALL_FILE 16384

/* Stack of read_file: path, max, the box. */
#define READ_BOX 3

static int read_file_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, READ_BOX, k, read_file_k);
  struct fs_req *r = tether__fs_woken(L, t, READ_BOX);
  struct ctx *c = TASK_CTX(t);
  int err = (int)r->value;
  (void)status;
  if (r->wait.status < 0 || err < 0) {
    enum step step = (enum step)r->flags;
    if (r->wait.status < 0)
      err = r->wait.status;
    tether__fs_drop(L, READ_BOX);
    return tether__fs_raise(L, c, err, step_names[step], lua_tostring(L, 1));
  }
  if (err > 0) { /* over the limit */
    tether__fs_drop(L, READ_BOX);
    lua_createtable(L, 0, 2);
    lua_pushfstring(L, "tether.fs.read_file: %s is larger than %I bytes",
                    lua_tostring(L, 1), lua_tointeger(L, 2));
    lua_setfield(L, -2, "message");
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "limit");
    tether__set_error_class(L, -1, c, ERROR_LIMIT);
    return lua_error(L);
  }
  lua_pushlstring(L, r->buf, r->len);
  tether__fs_drop(L, READ_BOX);
  return 1;
}

/* core.fs_read_file(path[, max]) -> the file's bytes */
static int core_read_file (lua_State *L) {
  const char *fname = "tether.fs.read_file";
  struct ctx *c = CTX(L);
  struct fs_req *r;
  struct task *t;
  int err;
  tether__fs_check_path(L, 1, fname, "path");
  if (!lua_isnoneornil(L, 2) &&
      (!lua_isinteger(L, 2) || lua_tointeger(L, 2) < 0))
    return tether__fname_error(L, fname,
                               "max must be an integer >= 0 (bytes), got %s",
                               luaL_tolstring(L, 2, NULL));
  lua_settop(L, 2);
  t = tether__check_task(L, c, fname);
  if (t->scope->effective)
    return tether__fs_cancelled(L, t, core_read_file);
  /* a small file's buffer comes from the loop thread: a block a pool
     thread allocated and this one frees would grow the pool thread's arena */
  r = tether__fs_request(L, c, SMALL_FILE, 0);
  r->value = lua_isnil(L, 2) ? -1 : lua_tointeger(L, 2);
  r->path = copy_path(L, 1);
  if (r->path == NULL) {
    tether__fs_drop(L, READ_BOX);
    return luaL_error(L, "not enough memory");
  }
  err = uv_queue_work(c->loop, &r->u.work, read_job, tether__fs_on_job_done);
  return tether__fs_wait(L, t, READ_BOX, err, 0, 0, read_file_k);
}

/* }==================================================================== */

/* {====================================================================
** Writing
** ===================================================================== */

static int write_all (int fd, const char *s, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, s, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    s += n;
    len -= (size_t)n;
  }
  return 0;
}

#define TEMP_SUFFIX 48 /* room for ".tmp-<pid>-<hex>" */

/* A new file beside the target; its name in r->temp (allocated by the loop
   thread). */
static int open_temp (struct fs_req *r) {
  size_t n = strlen(r->path) + TEMP_SUFFIX;
  int attempt, fd = -1;
  for (attempt = 0; attempt < 100 && fd < 0; attempt++) {
    snprintf(r->temp, n, "%s.tmp-%ld-%lx", r->path, (long)getpid(),
             (unsigned long)(uv_hrtime() ^ (uint64_t)(uintptr_t)r) +
                 (unsigned long)attempt);
    fd = open(r->temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST)
      break;
  }
  return fd;
}

/* In a pool thread: writes r->buf to r->path, atomically with r->flags. */
static void write_job (uv_work_t *req) {
  struct fs_req *r = (struct fs_req *)req;
  int atomic = r->flags, fd;
  struct stat st;
  r->value = 0;
  fd = atomic ? open_temp(r)
              : open(r->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    fail(r, STEP_OPEN);
    return;
  }
  if (write_all(fd, r->buf, r->len) < 0)
    fail(r, STEP_WRITE);
  else if (atomic && stat(r->path, &st) == 0 &&
           fchmod(fd, st.st_mode & 07777) < 0)
    fail(r, STEP_WRITE);
  else if (atomic && fsync(fd) < 0)
    fail(r, STEP_SYNC);
  if (close(fd) < 0 && r->value == 0)
    fail(r, STEP_WRITE);
  if (!atomic)
    return;
  if (r->value == 0 && rename(r->temp, r->path) < 0)
    fail(r, STEP_RENAME);
  if (r->value < 0)
    unlink(r->temp);
}

/* Stack of write_file: path, data, atomic, the box. */
#define WRITE_BOX 4

static int write_file_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, WRITE_BOX, k, write_file_k);
  struct fs_req *r = tether__fs_woken(L, t, WRITE_BOX);
  int err = r->wait.status < 0 ? r->wait.status : (int)r->value;
  enum step step = (enum step)r->flags;
  (void)status;
  tether__fs_drop(L, WRITE_BOX);
  if (err < 0)
    return tether__fs_raise(L, TASK_CTX(t), err, step_names[step],
                            lua_tostring(L, 1));
  return 0;
}

/* core.fs_write_file(path, data, atomic) */
static int core_write_file (lua_State *L) {
  const char *fname = "tether.fs.write_file";
  struct ctx *c = CTX(L);
  struct fs_req *r;
  struct task *t;
  const char *data;
  size_t len;
  int err;
  tether__fs_check_path(L, 1, fname, "path");
  if (lua_type(L, 2) != LUA_TSTRING)
    return tether__fname_error(L, fname, "data must be a string, got %s",
                               luaL_typename(L, 2));
  lua_settop(L, 3);
  t = tether__check_task(L, c, fname);
  if (t->scope->effective)
    return tether__fs_cancelled(L, t, core_write_file);
  data = lua_tolstring(L, 2, &len);
  r = tether__fs_request(L, c, len, 0);
  if (len > 0)
    memcpy(r->buf, data, len);
  r->flags = lua_toboolean(L, 3);
  r->path = copy_path(L, 1);
  if (r->flags && r->path != NULL)
    r->temp = malloc(strlen(r->path) + TEMP_SUFFIX);
  if (r->path == NULL || (r->flags && r->temp == NULL)) {
    tether__fs_drop(L, WRITE_BOX);
    return luaL_error(L, "not enough memory");
  }
  err = uv_queue_work(c->loop, &r->u.work, write_job, tether__fs_on_job_done);
  return tether__fs_wait(L, t, WRITE_BOX, err, 1, 0, write_file_k);
}

/* }==================================================================== */

void tether__open_wholefile (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {{"fs_read_file", core_read_file},
                                   {"fs_write_file", core_write_file},
                                   {NULL, NULL}};
  (void)c;
  tether__add_functions(L, funcs);
}
