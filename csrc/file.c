/*
** file.c
** File (tether.open_file): the methods of Lua's file on a descriptor read
** and written in libuv's thread pool.
**
** The position is the object's own: reads are positional (pread) and
** consume only when a read has everything it returns, so a cancelled read
** left the position and the data as they were. Reads go through a
** read-ahead block: a refill reads from the position on (keeping the bytes
** already buffered there) into a new block, which replaces the old one only
** when the refill completes; a cancelled refill is abandoned and freed by
** its callback. The block grows from 64 KiB to 1 MiB while reading goes on
** in sequence, so read("l") on a big file is not one request per line and
** reading in 64 KiB pieces is one request per MiB.
**
** Writes are not buffered: each write is one request, shielded once started
** (it completes; a cancellation is raised by the next checkpoint). With one
** request at a time per file, a second task using a file while a first one
** waits on it raises BusyResourceError.
*/

#define _GNU_SOURCE /* preadv2, RWF_NOWAIT */

#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

#define AHEAD_MIN  ((size_t)64 * 1024)
#define AHEAD_MAX  ((size_t)1024 * 1024)
#define NUMBER_MAX 200 /* longest numeral read("n") takes, as Lua's io */

struct file {
  struct fd_owner *fd; /* NULL once closed */
  char *buf;           /* read-ahead block: the file's bytes from buf_off */
  size_t buf_len;
  size_t buf_cap; /* bytes allocated at buf */
  int64_t buf_off;
  int64_t pos;  /* where the next read or write starts */
  size_t ahead; /* size of the next refill */
  int at_end;   /* the last refill reached the end of the file */
  int append;   /* writes go to the end */
  int stream;   /* not seekable (a pipe, a terminal): read and written in
                   order, without positions */
  int busy;     /* a task waits on a request of this file */
  struct fs_req *prefetch; /* the block after buf, being read ahead while
                              reading goes on in sequence; NULL if none */
  int64_t prefetch_off;    /* where it reads */
  int cached;              /* the last refill came from the page cache */
};

static struct file *check_open (lua_State *L, struct ctx *c,
                                const char *fname) {
  struct file *f = tether__check_self(L, 1, c, CLASS_FILE, fname);
  if (f->fd == NULL)
    tether__raise(L, c, ERROR_CLOSED, fname, "the file is closed");
  return f;
}

/* The open file at index 1 that no other task waits on. */
static struct file *check_file (lua_State *L, struct ctx *c,
                                const char *fname) {
  struct file *f = check_open(L, c, fname);
  if (f->busy)
    tether__raise(L, c, ERROR_BUSY, fname,
                  "another task is waiting on this file; use one file "
                  "from one task at a time, or open it again");
  return f;
}

/* [-0, +1, -] the path of the file at index 1 */
static const char *file_path (lua_State *L) {
  lua_getiuservalue(L, 1, 1);
  return lua_tostring(L, -1);
}

/* Raises the OSError of a failed request of the file at index 1. */
static int raise_file_error (lua_State *L, struct ctx *c, int err,
                             const char *op) {
  lua_getiuservalue(L, 1, 1);
  return tether__fs_raise(L, c, err, op, lua_tostring(L, -1));
}

/* Gives up the block being read ahead: its callback frees it. A reader
   waiting for it (the file is being closed) raises ClosedResourceError. */
static void drop_prefetch (struct file *f) {
  static const struct wake_error closed_while_reading = {
      ERROR_CLOSED, "file:read: the file was closed while a task was reading "
                    "it"};
  struct task *t;
  if (f->prefetch == NULL)
    return;
  if ((t = tether__waitq_first(&f->prefetch->wait.waiting)) != NULL)
    tether__waitq_raise(t, &closed_while_reading);
  if (tether__request_abandon(&f->prefetch->wait))
    tether__fs_free(f->prefetch);
  f->prefetch = NULL;
}

static void drop_buffer (struct file *f) {
  drop_prefetch(f);
  free(f->buf);
  f->buf = NULL;
  f->buf_len = f->buf_cap = 0;
  f->at_end = 0;
}

/* {====================================================================
** Opening
** ===================================================================== */

/* Lua's modes: [rwa]+?b* */
static int parse_mode (const char *mode, int *flags) {
  int plus = mode[0] != '\0' && mode[1] == '+';
  const char *rest = mode + 1 + plus;
  if (mode[0] == 'r')
    *flags = plus ? O_RDWR : O_RDONLY;
  else if (mode[0] == 'w')
    *flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_TRUNC;
  else if (mode[0] == 'a')
    *flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_APPEND;
  else
    return 0;
  *flags |= O_CLOEXEC;
  return strspn(rest, "b") == strlen(rest);
}

/* Stack of an open: path, mode, the File, the request's box. */
#define OPEN_BOX 4

static int open_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, OPEN_BOX, k, open_k);
  struct fs_req *r = tether__fs_woken(L, t, OPEN_BOX);
  struct file *f = lua_touserdata(L, 3);
  int64_t result = r->u.fs.result;
  (void)status;
  if (result < 0) {
    tether__fs_drop(L, OPEN_BOX);
    return tether__fs_raise(L, TASK_CTX(t), (int)result, "open",
                            lua_tostring(L, 1));
  }
  f->fd->fd = (int)result;
  r->u.fs.result = -1; /* the File has it now */
  f->stream = lseek(f->fd->fd, 0, SEEK_CUR) < 0;
  tether__fs_drop(L, OPEN_BOX);
  lua_settop(L, 3);
  return 1;
}

static int core_open_file (lua_State *L) {
  const char *fname = "tether.open_file";
  struct ctx *c = CTX(L);
  struct file *f;
  struct fs_req *r;
  struct task *t;
  int flags, err;
  const char *mode;
  tether__fs_check_path(L, 1, fname, "path");
  if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TSTRING)
    return tether__fname_error(L, fname, "mode must be a string, got %s",
                               luaL_typename(L, 2));
  mode = luaL_optstring(L, 2, "r");
  if (!parse_mode(mode, &flags))
    return tether__fname_error(L, fname,
                               "invalid mode '%s' (use \"r\", \"w\", \"a\", "
                               "\"r+\", \"w+\" or \"a+\", with an optional "
                               "\"b\")",
                               mode);
  lua_settop(L, 2);
  t = tether__check_task(L, c, fname);
  if (t->scope->effective)
    return tether__fs_cancelled(L, t, core_open_file);
  f = lua_newuserdatauv(L, sizeof *f, 1);
  memset(f, 0, sizeof *f);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  tether__set_metatable(L, c, CLASS_FILE);
  f->fd = malloc(sizeof *f->fd);
  if (f->fd == NULL)
    return luaL_error(L, "not enough memory");
  f->fd->fd = -1;
  f->fd->inflight = 0;
  f->fd->closing = 0;
  f->ahead = AHEAD_MIN;
  f->append = (flags & O_APPEND) != 0;
  r = tether__fs_request(L, c, 0, 1);
  err = uv_fs_open(c->loop, &r->u.fs, lua_tostring(L, 1), flags, 0666,
                   tether__fs_on_done);
  /* creating or truncating changes the file system: shielded */
  return tether__fs_wait(L, t, OPEN_BOX, err, (flags & O_CREAT) != 0, 0,
                         open_k);
}

/* }==================================================================== */

/* {====================================================================
** Reading
** ===================================================================== */

/* What one format found in the buffer. */
enum scan { SCAN_OK, SCAN_FAIL, SCAN_MORE };

/* The buffered bytes from 'p' on (none when 'p' is outside the block). */
static const char *buffered (const struct file *f, int64_t p, size_t *n) {
  if (f->buf == NULL || p < f->buf_off ||
      p > f->buf_off + (int64_t)f->buf_len) {
    *n = 0;
    return NULL;
  }
  *n = f->buf_len - (size_t)(p - f->buf_off);
  return f->buf + (p - f->buf_off);
}

/* read("n") over the bytes 's[0..n)', as Lua's io reads a numeral: the
   characters a numeral may have, at most NUMBER_MAX. */
struct numeral {
  const char *s;
  size_t n, i;
  int end; /* 's' ends where the file does */
  int more;
  int len;
  char buff[NUMBER_MAX + 1];
};

static int num_peek (struct numeral *rn) {
  if (rn->i < rn->n)
    return (unsigned char)rn->s[rn->i];
  if (!rn->end)
    rn->more = 1;
  return EOF;
}

static int num_next (struct numeral *rn) {
  if (rn->len >= NUMBER_MAX) {
    rn->buff[0] = '\0';
    return 0;
  }
  rn->buff[rn->len++] = (char)num_peek(rn);
  rn->i++;
  return 1;
}

static int num_test2 (struct numeral *rn, const char *set) {
  int ch = num_peek(rn);
  if (ch != EOF && (ch == set[0] || ch == set[1]))
    return num_next(rn);
  return 0;
}

static int num_digits (struct numeral *rn, int hex) {
  int count = 0, ch;
  while ((ch = num_peek(rn)) != EOF && (hex ? isxdigit(ch) : isdigit(ch)) &&
         num_next(rn))
    count++;
  return count;
}

static enum scan scan_number (lua_State *L, const char *s, size_t n, int end,
                              size_t *used) {
  struct numeral rn;
  char decp[2] = {'.', '.'};
  int count = 0, hex = 0;
  rn.s = s;
  rn.n = n;
  rn.i = 0;
  rn.end = end;
  rn.more = 0;
  rn.len = 0;
  while (num_peek(&rn) != EOF && isspace(num_peek(&rn)))
    rn.i++;
  num_test2(&rn, "-+");
  if (num_test2(&rn, "00")) {
    if (num_test2(&rn, "xX"))
      hex = 1;
    else
      count = 1;
  }
  count += num_digits(&rn, hex);
  if (num_test2(&rn, decp))
    count += num_digits(&rn, hex);
  if (count > 0 && num_test2(&rn, hex ? "pP" : "eE")) {
    num_test2(&rn, "-+");
    num_digits(&rn, 0);
  }
  num_peek(&rn); /* the look-ahead: past the buffer, more is needed */
  if (rn.more)
    return SCAN_MORE;
  rn.buff[rn.len] = '\0';
  *used = rn.i;
  if (lua_stringtonumber(L, rn.buff))
    return SCAN_OK;
  lua_pushnil(L);
  return SCAN_FAIL;
}

/*
** One format at 'p': pushes its value and advances 'p' (SCAN_OK), pushes
** nil (SCAN_FAIL: end of file), or pushes nothing and asks for 'want' more
** bytes (SCAN_MORE). 'end' tells whether the block is known to end where
** the file does.
*/
static enum scan scan_format (lua_State *L, struct file *f, int idx, int64_t *p,
                              int end, size_t *want) {
  size_t n, used;
  const char *s = buffered(f, *p, &n);
  const char *fmt;
  enum scan res;
  *want = n < f->ahead ? f->ahead : n; /* a line or "a": double it */
  if (lua_type(L, idx) == LUA_TNUMBER) {
    size_t count = (size_t)lua_tointeger(L, idx), most;
    if (count == 0 && (n > 0 || end)) { /* "" unless at the end */
      if (n == 0) {
        lua_pushnil(L);
        return SCAN_FAIL;
      }
      lua_pushliteral(L, "");
      return SCAN_OK;
    }
    if (count > 0 && (n >= count || end)) {
      if (n == 0) {
        lua_pushnil(L);
        return SCAN_FAIL;
      }
      lua_pushlstring(L, s, n < count ? n : count);
      *p += (int64_t)(n < count ? n : count);
      return SCAN_OK;
    }
    most = n > f->ahead ? n : f->ahead; /* a huge count: double */
    *want = count - n < most ? count - n : most;
    return SCAN_MORE;
  }
  fmt = lua_tostring(L, idx);
  if (*fmt == '*')
    fmt++;
  switch (*fmt) {
    case 'l':
    case 'L': {
      const char *nl = n > 0 ? memchr(s, '\n', n) : NULL;
      size_t len = nl != NULL ? (size_t)(nl - s) + 1 : n;
      if (nl == NULL && !end)
        return SCAN_MORE;
      if (len == 0) {
        lua_pushnil(L);
        return SCAN_FAIL;
      }
      lua_pushlstring(L, s, *fmt == 'l' && nl != NULL ? len - 1 : len);
      *p += (int64_t)len;
      return SCAN_OK;
    }
    case 'a':
      if (!end)
        return SCAN_MORE;
      lua_pushlstring(L, s, n);
      *p += (int64_t)n;
      return SCAN_OK;
    default: /* 'n' (checked by check_formats) */
      res = scan_number(L, s, n, end, &used);
      if (res == SCAN_MORE) {
        *want = NUMBER_MAX + 1;
        return SCAN_MORE;
      }
      *p += (int64_t)used;
      return res;
  }
}

static void check_formats (lua_State *L, int first, int last,
                           const char *fname) {
  int i;
  for (i = first; i <= last; i++) {
    if (lua_type(L, i) == LUA_TNUMBER) {
      if (!lua_isinteger(L, i) || lua_tointeger(L, i) < 0)
        tether__fname_error(L, fname,
                            "argument #%d: a count must be an integer >= 0",
                            i - first + 1);
    }
    else {
      const char *fmt = lua_tostring(L, i);
      if (fmt != NULL && *fmt == '*')
        fmt++;
      if (lua_type(L, i) != LUA_TSTRING || fmt[0] == '\0' ||
          strchr("lLan", fmt[0]) == NULL)
        tether__fname_error(L, fname,
                            "argument #%d: invalid format (use \"l\", \"L\", "
                            "\"a\", \"n\" or a byte count)",
                            i - first + 1);
    }
  }
}

static int file_read_k (lua_State *L, int status, lua_KContext k);

static int read_formats (lua_State *L, struct ctx *c, struct task *t,
                         struct file *f, int nfmt, int end);

/* After waiting for the block read ahead: read the formats again. */
static int prefetch_k (lua_State *L, int status, lua_KContext k) {
  int nfmt = (int)k;
  struct task *t = tether__resumed(L, nfmt + 1, k, prefetch_k);
  struct file *f = lua_touserdata(L, 1);
  (void)status;
  f->busy = 0;
  tether__check_wake(L, t); /* cancelled: the block stays the file's */
  if (f->fd == NULL)
    return tether__raise(L, TASK_CTX(t), ERROR_CLOSED, "file:read",
                         "the file was closed while a task was reading it");
  return read_formats(L, TASK_CTX(t), t, f, nfmt, 0);
}

/* The block read ahead, once read, joins the bytes buffered at the
   position; 0 when it failed (a refill then reports the error). */
static int take_prefetch (struct file *f, size_t keep, const char *kept) {
  struct fs_req *r = f->prefetch;
  size_t n, r_len;
  char *block;
  f->prefetch = NULL;
  if (r->wait.status < 0) {
    tether__fs_free(r);
    return 0;
  }
  n = (size_t)r->u.fs.result;
  r_len = r->len;
  if (keep == 0) {
    block = r->buf;
    r->buf = NULL;
  }
  else if ((block = malloc(keep + n)) != NULL) {
    memcpy(block, kept, keep);
    memcpy(block + keep, r->buf, n);
  }
  f->at_end = n < r->len;
  tether__fs_free(r);
  if (block == NULL)
    return 0;
  free(f->buf);
  f->buf = block;
  f->buf_off = f->pos;
  f->buf_len = keep + n;
  f->buf_cap = keep == 0 ? r_len : keep + n;
  return 1;
}

/*
** After a read served from a block it has read more than half of, the next
** block is read ahead (while reading goes on in sequence): reading waits
** less, and the Lua side copies one block while the pool reads the next.
** Not reading ahead (no memory) is not an error.
*/
static void start_prefetch (struct ctx *c, struct file *f) {
  int64_t end = f->buf_off + (int64_t)f->buf_len;
  struct fs_req *r;
  uv_buf_t b;
  if (f->prefetch != NULL || f->buf == NULL || f->stream || f->at_end ||
      f->cached || f->ahead < AHEAD_MAX ||
      (end - f->pos) * 2 > (int64_t)f->buf_len)
    return;
  r = calloc(1, sizeof *r);
  if (r == NULL || (r->buf = malloc(f->ahead)) == NULL) {
    free(r);
    return;
  }
  r->len = f->ahead;
  r->is_fs = 1;
  tether__request_init(&r->wait);
  r->wait.waiting.what = "file read";
  tether__fs_attach(r, f->fd);
  b = uv_buf_init(r->buf, (unsigned)f->ahead);
  if (uv_fs_read(c->loop, &r->u.fs, f->fd->fd, &b, 1, end, tether__fs_on_done) <
      0) {
    tether__fs_free(r);
    return;
  }
  f->prefetch = r;
  f->prefetch_off = end;
}

/*
** A refill from the page cache, on the loop thread: preadv2 with
** RWF_NOWAIT reads only what is cached and never waits for a disk, so it
** is no blocking call; reading what is not cached goes to the pool. The
** block is reused (no request, no allocation, and its memory stays in the
** cache). 1 when it read something.
*/
static int refill_cached (struct file *f, size_t want) {
  size_t keep;
  const char *kept = buffered(f, f->pos, &keep);
  int64_t from = f->pos + (int64_t)keep;
  struct iovec iov;
  ssize_t n;
  if (f->stream || f->prefetch != NULL)
    return 0;
  if (f->buf_cap < keep + want) {
    char *block = malloc(keep + want);
    if (block == NULL)
      return 0;
    if (keep > 0)
      memcpy(block, kept, keep);
    free(f->buf);
    f->buf = block;
    f->buf_cap = keep + want;
  }
  else if (keep > 0)
    memmove(f->buf, kept, keep);
  f->buf_off = f->pos;
  f->buf_len = keep;
  iov.iov_base = f->buf + keep;
  iov.iov_len = want;
  n = preadv2(f->fd->fd, &iov, 1, from, RWF_NOWAIT);
  if (n <= 0) /* not cached, the end, or an error: the pool says which */
    return 0;
  f->buf_len = keep + (size_t)n;
  f->at_end = 0;
  f->cached = 1;
  return 1;
}

/* Starts a refill of 'want' bytes past what is buffered at the position. */
static int refill (lua_State *L, struct ctx *c, struct task *t, struct file *f,
                   size_t want, int nfmt) {
  size_t keep;
  const char *kept = buffered(f, f->pos, &keep);
  int64_t from = f->pos + (int64_t)keep;
  struct fs_req *r;
  uv_buf_t b;
  int err;
  if (f->prefetch != NULL && f->prefetch_off == from) {
    if (!f->prefetch->wait.done) {
      f->busy = 1;
      return tether__wait(L, t, &f->prefetch->wait.waiting, nfmt, prefetch_k);
    }
    if (take_prefetch(f, keep, kept))
      return read_formats(L, c, t, f, nfmt, f->at_end);
  }
  drop_prefetch(f); /* not where reading goes on */
  if (refill_cached(f, want < f->ahead ? f->ahead : want))
    return read_formats(L, c, t, f, nfmt, 0);
  f->cached = 0;
  kept = buffered(f, f->pos, &keep); /* the block may have moved */
  if (f->buf != NULL && from == f->buf_off + (int64_t)f->buf_len) {
    if (f->ahead < AHEAD_MAX) /* reading on in sequence */
      f->ahead *= 2;
  }
  else
    f->ahead = AHEAD_MIN;
  if (want < f->ahead)
    want = f->ahead;
  r = tether__fs_request(L, c, keep + want, 1);
  if (keep > 0)
    memcpy(r->buf, kept, keep);
  r->value = (int64_t)keep;
  tether__fs_attach(r, f->fd);
  b = uv_buf_init(r->buf + keep, (unsigned)want);
  err = uv_fs_read(c->loop, &r->u.fs, f->fd->fd, &b, 1, f->stream ? -1 : from,
                   tether__fs_on_done);
  if (err == 0)
    f->busy = 1;
  return tether__fs_wait(L, t, nfmt + 2, err, 0, nfmt, file_read_k);
}

/* Reads the formats at 2..nfmt+1 from the position; 'end' tells whether
   the block's end is the file's. */
static int read_formats (lua_State *L, struct ctx *c, struct task *t,
                         struct file *f, int nfmt, int end) {
  int64_t p = f->pos;
  int i;
  for (i = 2; i <= nfmt + 1; i++) {
    size_t want;
    enum scan res = scan_format(L, f, i, &p, end, &want);
    if (res == SCAN_MORE) {
      lua_settop(L, nfmt + 1);
      return refill(L, c, t, f, want, nfmt);
    }
    if (res == SCAN_FAIL)
      break;
  }
  f->pos = p;
  start_prefetch(c, f);
  return lua_gettop(L) - nfmt - 1;
}

static int file_read_k (lua_State *L, int status, lua_KContext k) {
  int nfmt = (int)k;
  struct task *t = tether__resumed(L, nfmt + 2, k, file_read_k);
  struct file *f = lua_touserdata(L, 1);
  struct fs_req *r;
  int64_t result;
  (void)status;
  f->busy = 0;
  r = tether__fs_woken(L, t, nfmt + 2);
  result = r->u.fs.result;
  if (result < 0) {
    tether__fs_drop(L, nfmt + 2);
    return raise_file_error(L, TASK_CTX(t), (int)result, "read");
  }
  if (f->fd == NULL) { /* closed meanwhile */
    tether__fs_drop(L, nfmt + 2);
    return tether__raise(L, TASK_CTX(t), ERROR_CLOSED, "file:read",
                         "the file was closed while a task was reading it");
  }
  free(f->buf); /* the refill replaces the block */
  f->buf = r->buf;
  f->buf_cap = r->len;
  r->buf = NULL;
  f->buf_off = f->pos;
  f->buf_len = (size_t)r->value + (size_t)result;
  f->at_end = (size_t)result < r->len - (size_t)r->value;
  tether__fs_drop(L, nfmt + 2);
  lua_settop(L, nfmt + 1);
  return read_formats(L, TASK_CTX(t), t, f, nfmt, f->at_end);
}

/* After the checkpoint of a read served from the block. */
static int file_read_again_k (lua_State *L, int status, lua_KContext k) {
  int nfmt = (int)k;
  struct task *t = tether__resumed(L, nfmt + 1, k, file_read_again_k);
  struct file *f = lua_touserdata(L, 1);
  (void)status;
  f->busy = 0;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  if (f->fd == NULL)
    return tether__raise(L, TASK_CTX(t), ERROR_CLOSED, "file:read",
                         "the file was closed while a task was reading it");
  return read_formats(L, TASK_CTX(t), t, f, nfmt, 0);
}

/* Stack: file, formats (none: "l"). Every read is a checkpoint first. */
static int read_impl (lua_State *L, const char *fname) {
  struct ctx *c = CTX(L);
  struct file *f = check_file(L, c, fname);
  struct task *t;
  int nfmt;
  if (lua_gettop(L) == 1)
    lua_pushliteral(L, "l");
  nfmt = lua_gettop(L) - 1;
  check_formats(L, 2, nfmt + 1, fname);
  t = tether__check_task(L, c, fname);
  if (!lua_checkstack(L, nfmt + 4))
    return tether__fname_error(L, fname, "too many formats");
  f->busy = 1;
  return tether__reschedule(L, t, nfmt, file_read_again_k);
}

/* file:read(...) */
static int file_read (lua_State *L) {
  return read_impl(L, "file:read");
}

/* The iterator of file:lines: upvalues ctx, the file, the formats. */
static int lines_next (lua_State *L) {
  int n = 0;
  lua_settop(L, 0);
  while (lua_type(L, lua_upvalueindex(n + 2)) != LUA_TNONE)
    lua_pushvalue(L, lua_upvalueindex(++n + 1));
  return read_impl(L, "file:lines");
}

/* file:lines(...) -> iterator; the file stays open at its end, as in Lua. */
static int file_lines (lua_State *L) {
  struct ctx *c = CTX(L);
  int n = lua_gettop(L);
  check_file(L, c, "file:lines");
  if (n > 250)
    return tether__fname_error(L, "file:lines", "too many formats");
  check_formats(L, 2, n, "file:lines");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_pushcclosure(L, lines_next, n + 1);
  return 1;
}

/* }==================================================================== */

/* {====================================================================
** Writing, seeking, closing
** ===================================================================== */

static int file_write_k (lua_State *L, int status, lua_KContext k) {
  int box = (int)k;
  struct task *t = tether__resumed(L, box, k, file_write_k);
  struct file *f = lua_touserdata(L, 1);
  struct fs_req *r;
  int64_t result;
  (void)status;
  f->busy = 0;
  r = tether__fs_woken(L, t, box);
  result = r->u.fs.result;
  if (result < 0) {
    tether__fs_drop(L, box);
    return raise_file_error(L, TASK_CTX(t), (int)result, "write");
  }
  r->value += result;
  if (f->append && !f->stream)
    f->pos = lseek(r->owner->fd, 0, SEEK_CUR);
  else
    f->pos += result;
  if ((size_t)r->value < r->len && result > 0) { /* the rest */
    uv_buf_t b = uv_buf_init(r->buf + r->value, (unsigned)(r->len - r->value));
    int err;
    uv_fs_req_cleanup(&r->u.fs);
    err = uv_fs_write(TASK_CTX(t)->loop, &r->u.fs, r->owner->fd, &b, 1,
                      f->append || f->stream ? -1 : f->pos, tether__fs_on_done);
    if (err == 0)
      f->busy = 1;
    return tether__fs_wait(L, t, box, err, 1, k, file_write_k);
  }
  tether__fs_drop(L, box);
  lua_settop(L, 1);
  return 1;
}

/* file:write(...) -> the file. One request for all the values, shielded. */
static int file_write (lua_State *L) {
  const char *fname = "file:write";
  struct ctx *c = CTX(L);
  struct file *f = check_file(L, c, fname);
  int i, n = lua_gettop(L), err;
  size_t total = 0, len;
  struct fs_req *r;
  struct task *t;
  uv_buf_t b;
  for (i = 2; i <= n; i++) {
    int type = lua_type(L, i);
    if (type != LUA_TSTRING && type != LUA_TNUMBER)
      return tether__fname_error(L, fname,
                                 "argument #%d must be a string or a number, "
                                 "got %s",
                                 i - 1, luaL_typename(L, i));
    if (type == LUA_TNUMBER) { /* as Lua's io writes numbers */
      char num[64];
      if (lua_isinteger(L, i))
        snprintf(num, sizeof num, LUA_INTEGER_FMT,
                 (LUAI_UACINT)lua_tointeger(L, i));
      else
        snprintf(num, sizeof num, LUA_NUMBER_FMT,
                 (LUAI_UACNUMBER)lua_tonumber(L, i));
      lua_pushstring(L, num);
      lua_replace(L, i);
    }
    lua_tolstring(L, i, &len);
    total += len;
  }
  t = tether__check_task(L, c, fname);
  if (t->scope->effective)
    return tether__fs_cancelled(L, t, file_write);
  r = tether__fs_request(L, c, total, 1);
  for (i = 2, total = 0; i <= n; i++) {
    const char *s = lua_tolstring(L, i, &len);
    if (len > 0)
      memcpy(r->buf + total, s, len);
    total += len;
  }
  drop_buffer(f);
  tether__fs_attach(r, f->fd);
  b = uv_buf_init(r->buf, (unsigned)total);
  err = uv_fs_write(c->loop, &r->u.fs, f->fd->fd, &b, 1,
                    f->append || f->stream ? -1 : f->pos, tether__fs_on_done);
  if (err == 0)
    f->busy = 1;
  return tether__fs_wait(L, t, n + 1, err, 1, n + 1, file_write_k);
}

/* Stack of a seek: file, whence, offset, then (for "end") the box. */
#define SEEK_BOX 4

static int seek_to (lua_State *L, struct ctx *c, struct file *f, int64_t base) {
  int64_t to = base + lua_tointeger(L, 3);
  if (to < 0)
    return raise_file_error(L, c, UV_EINVAL, "seek");
  f->pos = to;
  lua_pushinteger(L, to);
  return 1;
}

static int seek_end_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, SEEK_BOX, k, seek_end_k);
  struct file *f = lua_touserdata(L, 1);
  struct fs_req *r;
  int64_t size;
  (void)status;
  f->busy = 0;
  r = tether__fs_woken(L, t, SEEK_BOX);
  size = r->u.fs.result < 0 ? r->u.fs.result : (int64_t)r->u.fs.statbuf.st_size;
  tether__fs_drop(L, SEEK_BOX);
  if (size < 0)
    return raise_file_error(L, TASK_CTX(t), (int)size, "seek");
  if (f->fd == NULL)
    return tether__raise(L, TASK_CTX(t), ERROR_CLOSED, "file:seek",
                         "the file was closed while a task was seeking");
  return seek_to(L, TASK_CTX(t), f, size);
}

static int seek_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, 3, k, seek_k);
  struct file *f = lua_touserdata(L, 1);
  (void)status;
  f->busy = 0;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return seek_to(L, TASK_CTX(t), f, k == SEEK_SET ? 0 : f->pos);
}

/* file:seek([whence = "cur"[, offset = 0]]) -> the new position */
static int file_seek (lua_State *L) {
  static const char *const names[] = {"set", "cur", "end", NULL};
  static const int whences[] = {SEEK_SET, SEEK_CUR, SEEK_END};
  const char *fname = "file:seek";
  struct ctx *c = CTX(L);
  struct file *f = check_file(L, c, fname);
  const char *name = luaL_optstring(L, 2, "cur");
  struct task *t;
  struct fs_req *r;
  int i, err;
  for (i = 0; names[i] != NULL && strcmp(names[i], name) != 0; i++)
    ;
  if (names[i] == NULL)
    return tether__fname_error(L, fname,
                               "whence must be \"set\", \"cur\" or \"end\", "
                               "got '%s'",
                               name);
  if (!lua_isnoneornil(L, 3) && !lua_isinteger(L, 3))
    return tether__fname_error(L, fname, "offset must be an integer, got %s",
                               luaL_typename(L, 3));
  lua_settop(L, 3);
  if (f->stream)
    return raise_file_error(L, c, UV_ESPIPE, "seek");
  if (lua_isnil(L, 3)) {
    lua_pushinteger(L, 0);
    lua_replace(L, 3);
  }
  t = tether__check_task(L, c, fname);
  f->busy = 1;
  if (whences[i] != SEEK_END)
    return tether__reschedule(L, t, whences[i], seek_k);
  if (t->scope->effective) {
    f->busy = 0;
    return tether__fs_cancelled(L, t, file_seek);
  }
  r = tether__fs_request(L, c, 0, 1);
  tether__fs_attach(r, f->fd);
  err = uv_fs_fstat(c->loop, &r->u.fs, f->fd->fd, tether__fs_on_done);
  if (err < 0)
    f->busy = 0;
  return tether__fs_wait(L, t, SEEK_BOX, err, 0, 0, seek_end_k);
}

static int flush_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, 1, k, flush_k);
  (void)status;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  lua_pushboolean(L, 1);
  return 1;
}

/* file:flush() -> true: a checkpoint (writes are not buffered). */
static int file_flush (lua_State *L) {
  struct ctx *c = CTX(L);
  struct task *t;
  check_file(L, c, "file:flush");
  t = tether__check_task(L, c, "file:flush");
  lua_settop(L, 1);
  return tether__reschedule(L, t, 0, flush_k);
}

/* Closes the descriptor once no request of the file runs on it. */
static void detach (struct file *f) {
  drop_buffer(f);
  if (f->fd != NULL)
    tether__fd_release(f->fd);
  f->fd = NULL;
}

static int closed_k (lua_State *L, int status, lua_KContext k) {
  (void)status;
  tether__resumed(L, 1, k, closed_k);
  lua_pushboolean(L, 1);
  return 1;
}

static int close_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, 2, k, close_k);
  struct fs_req *r = tether__fs_woken(L, t, 2);
  int64_t result = r->u.fs.result;
  (void)status;
  tether__fs_drop(L, 2);
  if (result < 0)
    return raise_file_error(L, TASK_CTX(t), (int)result, "close");
  lua_pushboolean(L, 1);
  return 1;
}

/*
** file:close() -> true. Closes in the thread pool when no abandoned read
** still runs on the descriptor (else the last one closes it); shielded.
*/
static int file_close (lua_State *L) {
  const char *fname = "file:close";
  struct ctx *c = CTX(L);
  struct file *f = check_open(L, c, fname);
  struct task *t = tether__check_task(L, c, fname);
  struct fd_owner *o = f->fd;
  struct fs_req *r;
  int err;
  lua_settop(L, 1);
  if (o->inflight > 0) { /* a waiting reader raises ClosedResourceError */
    detach(f);
    return tether__reschedule(L, t, 0, closed_k);
  }
  r = tether__fs_request(L, c, 0, 1);
  drop_buffer(f);
  f->fd = NULL;
  err = uv_fs_close(c->loop, &r->u.fs, o->fd, tether__fs_on_done);
  if (err < 0) /* not started: close it here */
    close(o->fd);
  free(o);
  return tether__fs_wait(L, t, 2, err, 1, 0, close_k);
}

/* __close: file:close() unless closed (or used) already. */
static int file__close (lua_State *L) {
  struct ctx *c = CTX(L);
  struct file *f = tether__check_self(L, 1, c, CLASS_FILE, "file:close");
  if (f->fd == NULL)
    return 0;
  if (f->fd->inflight > 0 || c->current == NULL || c->current->L != L ||
      !lua_isyieldable(L)) { /* not from a task that can wait: at once */
    detach(f);
    return 0;
  }
  lua_settop(L, 1);
  return file_close(L);
}

/* __gc: closes the descriptor directly. */
static int file__gc (lua_State *L) {
  detach(lua_touserdata(L, 1));
  return 0;
}

static int file__tostring (lua_State *L) {
  struct file *f =
      tether__check_self(L, 1, CTX(L), CLASS_FILE, "file:__tostring");
  if (f->fd == NULL)
    lua_pushliteral(L, "tether.File (closed)");
  else
    lua_pushfstring(L, "tether.File (%s): %p", file_path(L), (void *)f);
  return 1;
}

/* }==================================================================== */

void tether__open_file (lua_State *L, struct ctx *c) {
  static const luaL_Reg methods[] = {
      {"read", file_read}, {"lines", file_lines}, {"write", file_write},
      {"seek", file_seek}, {"flush", file_flush}, {"close", file_close},
      {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__close", file__close},
                                         {"__gc", file__gc},
                                         {"__tostring", file__tostring},
                                         {NULL, NULL}};
  static const struct class_def file_class = {CLASS_FILE, "tether.File",
                                              methods, metamethods, NULL};
  static const luaL_Reg funcs[] = {{"open_file", core_open_file}, {NULL, NULL}};
  tether__add_class(L, c, &file_class, 0);
  tether__add_functions(L, funcs);
}
