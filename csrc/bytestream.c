/*
** bytestream.c
** Streams: a byte stream over a libuv stream handle (a socketpair, a pipe;
** TCP, UNIX sockets and terminals build on it), with a bounded read-ahead
** buffer, a write queue bounded by 'high_water' into which a send commits
** all of its data or nothing, and a close that never blocks: queued data is
** flushed in the background for at most 'linger' seconds.
**
** Two objects. The Lua userdata (struct stream) holds the buffer, the waits,
** the options and the statistics. The connection (struct conn, malloc'd)
** holds the libuv handle and what libuv still needs once the Lua side is
** closed or collected: the count of bytes queued for writing and the linger
** timer. Its last close callback frees it; its 'owner' is NULL from the Lua
** side's close on.
**
** Reading: the handle reads while fewer than 'read_ahead' bytes are buffered
** (or while a waiting task needs more than that), so a reader that falls
** behind pushes back on the peer, and no receive toggles reading on and
** off. Data lands in a scratch block of the context when nothing is
** buffered and is copied into the stream's buffer, which is freed when it
** drains (above a small size): an idle stream owns no buffer. A waiting
** reader is woken without values; its continuation runs the read again on
** the buffer (building strings allocates, and waking must not: wait.c).
** Every read scans the buffer first and consumes only when it is complete,
** so a read that waits, and is cancelled meanwhile, consumed nothing.
**
** Writing: a send tries uv_try_write first and queues only what the kernel
** did not take (copied, so no Lua string needs an anchor), which in the
** steady state of a request/response protocol is one write system call per
** send and no allocation. Waiting for room happens before anything is
** committed, so a cancelled send committed nothing; delivery errors are
** sticky.
*/

#define _DEFAULT_SOURCE /* socketpair, pipe2, memmem beside POSIX */
#define _GNU_SOURCE     /* pipe2, memmem */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

/* Bytes read from the OS at once, and the default read_ahead/high_water. */
#define READ_CHUNK 65536
/* A drained buffer up to this size is kept for the next read. */
#define BUFFER_KEEP 16384
/* Gather writes of up to this many pieces need no allocation. */
#define GATHER_MAX 16

#define DEFAULT_MAX      65536
#define DEFAULT_READ_ALL (16 * 1024 * 1024)
#define DEFAULT_LINGER   5.0

struct conn {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
    uv_tty_t tty;
  } h;
  uv_timer_t linger;      /* bounds a closed stream's flush */
  uv_shutdown_t shutdown; /* send_eof */
  struct queue node;      /* ctx->conns until freed */
  struct stream *owner;   /* the Lua side; NULL once it closed */
  size_t queued;          /* bytes committed, not yet written */
  int handles;            /* open handles: freed when none is left */
  int file_fd;            /* a regular file's descriptor (no handle), or -1 */
  int shared_fd;          /* a descriptor sharing the handle's file
                             description (a standard one), or -1 */
  int shared_flags;       /* its file status flags before, restored */
  unsigned char closing;  /* its handles are being closed */
  unsigned char lingering;
  unsigned char reset; /* a TCP connection closes with RST, not FIN */
};

struct stream {
  struct ctx *ctx;
  struct conn *conn;     /* NULL once closed (or a pipe's end sent EOF) */
  struct waitq reader;   /* the task waiting for input */
  struct waitq writer;   /* the task waiting for room in the queue */
  struct waitq flushers; /* tasks waiting for the queue to empty */
  char *buf;             /* read-ahead: bytes [start, start + len) */
  size_t start, len, cap;
  size_t scanned;           /* bytes searched for a delimiter in vain */
  size_t wanted;            /* bytes a waiting reader needs buffered */
  unsigned char reader_due; /* input woke the reader, which has not read */
  lua_Integer read_ahead, high_water;
  double linger;
  lua_Integer sent, received;
  int read_error;  /* sticky: UV_EOF or the error that ended input */
  int write_error; /* sticky: the first failed write */
  const char *kind;
  int keepalive; /* TCP: seconds, 0 off */
  unsigned char readable, writable, reading, eof_sent, closed;
  unsigned char tcp, nodelay;
};

/* A write the kernel did not take at once: a copy of the rest. */
struct write_req {
  uv_write_t req;
  size_t len;
  char data[1];
};

static struct stream *check_stream (lua_State *L, struct ctx *c,
                                    const char *fname) {
  return tether__check_self(L, 1, c, CLASS_STREAM, fname);
}

/* The stream at index 1, open; raises ClosedResourceError otherwise. */
static struct stream *open_stream (lua_State *L, struct ctx *c,
                                   const char *fname) {
  struct stream *s = check_stream(L, c, fname);
  if (s->closed)
    tether__raise(L, c, ERROR_CLOSED, fname, "the stream is closed");
  return s;
}

/* Raises the error libuv reported as 'err' for operation 'op': a
   BrokenResourceError (with 'code') for a reset or a broken pipe, an
   OSError otherwise. */
int tether__raise_uv (lua_State *L, struct ctx *c, int err, const char *fname,
                      const char *op) {
  int broken = err == UV_EPIPE || err == UV_ECONNRESET;
  if (err == UV_ENOMEM || err == UV_ENOBUFS)
    return luaL_error(L, "not enough memory");
  lua_createtable(L, 0, 5);
  lua_pushstring(L, uv_err_name(err));
  lua_setfield(L, -2, "code");
  lua_pushinteger(L, -err);
  lua_setfield(L, -2, "errno");
  if (broken) /* an OSError's report names the operation instead */
    lua_pushfstring(L, "%s: %s", fname, uv_strerror(err));
  else
    lua_pushstring(L, uv_strerror(err));
  lua_setfield(L, -2, "message");
  if (!broken) {
    lua_pushstring(L, op);
    lua_setfield(L, -2, "op");
  }
  tether__set_error_class(L, -1, c, broken ? ERROR_BROKEN : ERROR_OS);
  return lua_error(L);
}

/* {====================================================================
** Connections: the libuv side
** ===================================================================== */

static void free_conn (uv_handle_t *h) {
  struct conn *conn = h->data;
  if (--conn->handles == 0) {
    if (conn->shared_fd >= 0) /* libuv made it non-blocking */
      fcntl(conn->shared_fd, F_SETFL, conn->shared_flags);
    queue_remove(&conn->node);
    free(conn);
  }
}

/* Closes the connection's handles now (queued writes are cancelled). */
static void close_conn (struct conn *conn) {
  if (conn->closing)
    return;
  conn->closing = 1;
  if (conn->file_fd >= 0) { /* a regular file: no handle, nothing queued */
    close(conn->file_fd);
    queue_remove(&conn->node);
    free(conn);
    return;
  }
  /* uv_tcp_close_reset refuses a connection that sent EOF: it closes with
     the FIN already sent */
  if (!conn->reset || conn->h.handle.type != UV_TCP ||
      uv_tcp_close_reset(&conn->h.tcp, free_conn) < 0)
    uv_close(&conn->h.handle, free_conn);
  if (conn->lingering)
    uv_close((uv_handle_t *)&conn->linger, free_conn);
}

static void on_linger (uv_timer_t *t) {
  struct conn *conn = t->data;
  conn->reset = 1; /* the peer learns that queued data was lost */
  close_conn(conn);
}

/* The Lua side let go: the queued bytes go out for at most 'linger' seconds,
   then the connection closes. */
static void release_conn (struct conn *conn, double linger) {
  conn->owner = NULL;
  if (conn->file_fd < 0)
    uv_read_stop(&conn->h.stream);
  if (conn->queued == 0 || !(linger > 0) ||
      uv_timer_init(conn->h.handle.loop, &conn->linger) < 0) {
    close_conn(conn);
    return;
  }
  conn->linger.data = conn;
  conn->handles++;
  conn->lingering = 1;
  uv_timer_start(&conn->linger, on_linger,
                 linger > 86400 ? 86400000u : (uint64_t)(linger * 1e3), 0);
}

/* }==================================================================== */

/* {====================================================================
** Waking and closing
** ===================================================================== */

static const struct wake_error closed_while_reading = {
    ERROR_CLOSED, "stream:receive: the stream was closed while a task was "
                  "reading it"};
static const struct wake_error closed_while_sending = {
    ERROR_CLOSED, "stream:send: the stream was closed while a task was "
                  "sending on it"};
static const struct wake_error closed_while_flushing = {
    ERROR_CLOSED, "stream:flush: the stream was closed while a task was "
                  "flushing it"};

static void wake_first (struct waitq *q) {
  struct task *t = tether__waitq_first(q);
  if (t != NULL) {
    t->nresume = 0;
    tether__waitq_wake(t, WAKE_OK);
  }
}

static void raise_all (struct waitq *q, const struct wake_error *e) {
  struct task *t;
  while ((t = tether__waitq_first(q)) != NULL)
    tether__waitq_raise(t, e);
}

static size_t queued (const struct stream *s) {
  return s->conn != NULL ? s->conn->queued : 0;
}

/* Wakes the writer when the queue is below high_water, and the flushers
   when it is empty; both when a write failed (they raise the error). */
static void wake_writers (struct stream *s) {
  if ((lua_Integer)queued(s) < s->high_water || s->write_error != 0)
    wake_first(&s->writer);
  if (queued(s) == 0 || s->write_error != 0)
    tether__waitq_wake_all(&s->flushers);
}

static void drop_buffer (struct stream *s) {
  free(s->buf);
  s->buf = NULL;
  s->start = s->len = s->cap = s->scanned = 0;
}

/* Closes the Lua side: waiting tasks get ClosedResourceError; the
   connection flushes for 'linger' seconds (none when 'reset'). */
static void close_stream (struct stream *s, int reset) {
  struct conn *conn = s->conn;
  if (s->closed)
    return;
  s->closed = 1;
  s->conn = NULL;
  s->reading = 0;
  raise_all(&s->reader, &closed_while_reading);
  raise_all(&s->writer, &closed_while_sending);
  raise_all(&s->flushers, &closed_while_flushing);
  drop_buffer(s);
  if (conn != NULL)
    release_conn(conn, reset ? 0 : s->linger);
}

/* At the end of tether.run (or of an attached state, or of the Lua state):
   every stream and every lingering connection closes now, and leaves the
   context's list (the context may be gone before the loop's close
   callbacks free them). */
void tether__streams_stop (struct ctx *c) {
  if (c->tty_mode_set) { /* a terminal set to raw gets its mode back */
    uv_tty_reset_mode();
    c->tty_mode_set = 0;
  }
  while (!queue_empty(&c->conns)) {
    struct conn *conn = queue_data(queue_head(&c->conns), struct conn, node);
    queue_remove(&conn->node);
    if (conn->owner != NULL)
      close_stream(conn->owner, 1); /* closes the connection too */
    else {
      conn->reset = 1; /* lingering: its queued data is lost */
      close_conn(conn);
    }
  }
}

/* }==================================================================== */

/* {====================================================================
** Reading from the OS
** ===================================================================== */

static void on_alloc (uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read (uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);

/* Reading from the OS pauses once this much is buffered: read_ahead, or
   more for a read waiting for more (read_exactly(n) with n > read_ahead). */
static size_t read_limit (const struct stream *s) {
  return s->wanted > (size_t)s->read_ahead ? s->wanted : (size_t)s->read_ahead;
}

/* Reads from the OS unless enough is buffered and nobody needs more. */
static void resume_reading (struct stream *s) {
  int err;
  if (s->reading || s->conn == NULL || !s->readable || s->read_error != 0 ||
      s->conn->file_fd >= 0) /* a regular file is read on demand */
    return;
  if (s->len >= read_limit(s))
    return;
  err = uv_read_start(&s->conn->h.stream, on_alloc, on_read);
  if (err < 0)
    s->read_error = err;
  else
    s->reading = 1;
}

static void pause_reading (struct stream *s) {
  if (s->reading) {
    uv_read_stop(&s->conn->h.stream);
    s->reading = 0;
  }
}

/* Makes room for 'n' more bytes after the buffered ones; 0: no memory. */
static int reserve (struct stream *s, size_t n) {
  size_t cap;
  char *b;
  if (s->start + s->len + n <= s->cap)
    return 1;
  if (s->start > 0) {
    memmove(s->buf, s->buf + s->start, s->len);
    s->start = 0;
    if (s->len + n <= s->cap)
      return 1;
  }
  for (cap = s->cap > 0 ? s->cap : 4096; cap < s->len + n; cap *= 2)
    ;
  b = realloc(s->buf, cap);
  if (b == NULL)
    return 0;
  s->buf = b;
  s->cap = cap;
  return 1;
}

/* The most a stream buffers from the OS: one read past its limit, however
   the reads fall. */
static size_t read_ceiling (const struct stream *s) {
  return read_limit(s) + READ_CHUNK;
}

/* libuv asks for memory before each read: with nothing buffered, the
   context's scratch block (on_read copies out what arrived), else room at
   the end of the buffer; never more than the ceiling leaves room for. */
static void on_alloc (uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct conn *conn = h->data;
  struct stream *s = conn->owner;
  size_t most;
  (void)suggested;
  buf->base = NULL;
  buf->len = 0;
  if (s == NULL)
    return;
  if (s->len == 0) {
    if (s->ctx->scratch == NULL)
      s->ctx->scratch = malloc(READ_CHUNK);
    buf->base = s->ctx->scratch;
  }
  else if (reserve(s, READ_CHUNK))
    buf->base = s->buf + s->start + s->len;
  most = read_ceiling(s) > s->len ? read_ceiling(s) - s->len : 0;
  if (buf->base != NULL) /* (bytes given back with unread may pass it) */
    buf->len = most > 0 && most < READ_CHUNK ? most : READ_CHUNK;
}

static void on_read (uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  struct conn *conn = h->data;
  struct stream *s = conn->owner;
  if (s == NULL || nread == 0)
    return;
  if (nread > 0 && buf->base == s->ctx->scratch) {
    if (!reserve(s, (size_t)nread))
      nread = UV_ENOMEM;
    else
      memcpy(s->buf + s->start + s->len, buf->base, (size_t)nread);
  }
  if (nread > 0) {
    size_t limit = read_limit(s);
    /* A reader is waiting, or was woken by this burst of reads and has not
       run yet, and takes these bytes next: reading goes on up to the
       ceiling (on_alloc keeps it there) rather than pausing only to resume
       right after (an epoll_ctl each way for every message larger than
       read_ahead). */
    if (s->reader.count > 0 || s->reader_due)
      limit = read_ceiling(s);
    s->len += (size_t)nread;
    s->received += nread;
    if (s->len >= limit)
      pause_reading(s);
  }
  else {
    s->read_error = (int)nread;
    pause_reading(s);
  }
  if (s->reader.count > 0)
    s->reader_due = 1;
  wake_first(&s->reader);
}

/* }==================================================================== */

/* {====================================================================
** Reads: scan the buffer, then consume
**
** A scan looks at the buffered bytes from 'off' without consuming them and
** says what it would return: 'take' bytes from 'off', then 'skip' more (a
** delimiter), or nil. With 'at_end' it knows no more input will come. It
** returns 0 when it needs more input, and raises LimitExceeded (consuming
** nothing) or IncompleteRead (consuming everything).
** ===================================================================== */

struct scan {
  size_t take, skip;
  int nil;
};

static int raise_limit (lua_State *L, struct stream *s, const char *fname,
                        size_t max, const char *before) {
  lua_createtable(L, 0, 2);
  lua_pushfstring(L, "%s: more than %I bytes came before %s (the limit)", fname,
                  (lua_Integer)max, before);
  lua_setfield(L, -2, "message");
  lua_pushinteger(L, (lua_Integer)max);
  lua_setfield(L, -2, "limit");
  tether__set_error_class(L, -1, s->ctx, ERROR_LIMIT);
  return lua_error(L);
}

static void consume (struct stream *s, size_t n) {
  s->start += n;
  s->len -= n;
  s->scanned = 0;
  if (s->len == 0) {
    s->start = 0;
    if (s->cap > BUFFER_KEEP)
      drop_buffer(s);
  }
  resume_reading(s);
}

/* Input ended before the read was satisfied: everything buffered is the
   IncompleteRead's 'partial', consumed. */
static int raise_incomplete (lua_State *L, struct stream *s,
                             const char *fname) {
  lua_createtable(L, 0, 2);
  lua_pushfstring(L, "%s: the input ended first", fname);
  lua_setfield(L, -2, "message");
  lua_pushlstring(L, s->buf + s->start, s->len);
  lua_setfield(L, -2, "partial");
  tether__set_error_class(L, -1, s->ctx, ERROR_INCOMPLETE);
  consume(s, s->len);
  return lua_error(L);
}

static const char *data_at (const struct stream *s, size_t off) {
  return s->buf + s->start + off;
}

/* Any bytes: up to 'max'. */
static int scan_any (struct stream *s, size_t off, size_t max, int at_end,
                     struct scan *r) {
  size_t avail = s->len - off;
  if (avail > 0) {
    r->take = avail < max ? avail : max;
    return 1;
  }
  r->nil = 1;
  return at_end;
}

/* Exactly 'n' bytes; fewer only at the end ('exact': IncompleteRead). */
static int scan_count (lua_State *L, struct stream *s, const char *fname,
                       size_t off, size_t n, int exact, int at_end,
                       struct scan *r) {
  size_t avail = s->len - off;
  s->wanted = off + n;
  if (avail >= n) {
    r->take = n;
    return 1;
  }
  if (!at_end)
    return 0;
  if (exact)
    raise_incomplete(L, s, fname);
  if (avail == 0)
    r->nil = 1;
  else
    r->take = avail;
  return 1;
}

/* Bytes up to 'delim' (consumed after them). 'line': a "\r" before a "\n"
   delimiter is dropped, and the last unterminated line is returned. */
static int scan_until (lua_State *L, struct stream *s, const char *fname,
                       size_t off, const char *delim, size_t dlen, size_t max,
                       int line, int at_end, struct scan *r) {
  const char *data = data_at(s, off), *found;
  size_t avail = s->len - off, from = 0;
  if (off == 0 && s->scanned >= dlen)
    from = s->scanned - (dlen - 1);
  found = avail >= dlen ? memmem(data + from, avail - from, delim, dlen) : NULL;
  if (found != NULL) {
    size_t n = (size_t)(found - data);
    r->skip = dlen;
    if (line == 1 && n > 0 && data[n - 1] == '\r') {
      n--;
      r->skip++;
    }
    if (line == 2) { /* "L": the newline is kept */
      n += dlen;
      r->skip = 0;
    }
    if (n - (line == 2 ? dlen : 0) > max)
      raise_limit(L, s, fname, max, line ? "a newline" : "the delimiter");
    r->take = n;
    return 1;
  }
  if (off == 0)
    s->scanned = avail;
  if (avail >
      max + dlen - 1 + (line != 0 && avail > 0 && data[avail - 1] == '\r'))
    raise_limit(L, s, fname, max, line ? "a newline" : "the delimiter");
  s->wanted = s->len + 1;
  if (!at_end)
    return 0;
  if (!line)
    raise_incomplete(L, s, fname);
  if (avail == 0)
    r->nil = 1;
  else
    r->take = avail;
  return 1;
}

/* Everything until the end of input, at most 'max' bytes. */
static int scan_all (lua_State *L, struct stream *s, const char *fname,
                     size_t off, size_t max, int at_end, struct scan *r) {
  size_t avail = s->len - off;
  if (avail > max)
    raise_limit(L, s, fname, max, "the end of input");
  s->wanted = s->len + 1;
  if (!at_end)
    return 0;
  r->take = avail;
  return 1;
}

/* }==================================================================== */

/* {====================================================================
** The read calls
**
** Each call has an op and a stack layout: receive/iterate (self, max),
** line/lines (self, max), until (self, delim, max), exactly (self, n), all
** (self, max), read (self, formats...). The driver scans; when the scan
** needs more input it parks the task on the stream's reader queue and runs
** the scan again when woken.
** ===================================================================== */

enum read_op {
  OP_RECEIVE,
  OP_ITERATE,
  OP_LINE,
  OP_UNTIL,
  OP_EXACTLY,
  OP_ALL,
  OP_READ
};

static const char *const op_names[] = {
    "stream:receive",    "stream:receive",      "stream:read_line",
    "stream:read_until", "stream:read_exactly", "stream:read_all",
    "stream:read"};

/* Whether no more input will come; raises the error that ended input. */
static int input_over (lua_State *L, struct stream *s, const char *fname) {
  if (s->read_error == 0 && s->conn != NULL)
    return 0;
  if (s->read_error == 0 || s->read_error == UV_EOF)
    return 1;
  return tether__raise_uv(L, s->ctx, s->read_error, fname, "read");
}

/* One format of stream:read at 'off': 0 when more input is needed. */
static int scan_format (lua_State *L, struct stream *s, int idx, size_t off,
                        int at_end, struct scan *r) {
  const char *fname = "stream:read";
  const char *f;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = lua_tointeger(L, idx);
    if (!lua_isinteger(L, idx) || n < 0)
      return tether__fname_error(L, fname, "a count must be an integer >= 0");
    if (n == 0) { /* "" unless at the end, as Lua's file:read(0) */
      if (s->len - off > 0 || at_end) {
        r->nil = s->len - off == 0;
        return 1;
      }
      s->wanted = off + 1;
      return 0;
    }
    return scan_count(L, s, fname, off, (size_t)n, 0, at_end, r);
  }
  f = lua_tostring(L, idx);
  if (f != NULL && *f == '*')
    f++; /* Lua 5.1's "*l" */
  if (f != NULL && (*f == 'l' || *f == 'L'))
    return scan_until(L, s, fname, off, "\n", 1, DEFAULT_MAX, *f == 'l' ? 1 : 2,
                      at_end, r);
  if (f != NULL && *f == 'a')
    return scan_all(L, s, fname, off, DEFAULT_READ_ALL, at_end, r);
  return tether__fname_error(L, fname,
                             "invalid format %s (use \"l\", \"L\", \"a\" or "
                             "a byte count)",
                             luaL_tolstring(L, idx, NULL));
}

/* The argument 'max' at 'idx' (default 'def'): a positive integer. */
static size_t check_max (lua_State *L, int idx, lua_Integer def,
                         const char *fname) {
  lua_Integer max;
  if (lua_isnoneornil(L, idx))
    return (size_t)def;
  max = lua_tointeger(L, idx);
  if (!lua_isinteger(L, idx) || max <= 0)
    tether__fname_error(L, fname, "max must be an integer > 0, got %s",
                        luaL_tolstring(L, idx, NULL));
  return (size_t)max;
}

/*
** Runs read 'op' on the buffer. Returns how many results it pushed (having
** consumed what it returns), or -1 when it needs more input.
*/
static int try_read (lua_State *L, struct stream *s, enum read_op op) {
  const char *fname = op_names[op];
  struct scan scan, *r = &scan;
  int at_end = 0, ok, nformats = 0, i;
  size_t off = 0;
  s->wanted = 0;
  s->reader_due = 0;
  for (;;) {
    memset(r, 0, sizeof *r);
    switch (op) {
      case OP_RECEIVE:
      case OP_ITERATE:
        ok = scan_any(s, 0, check_max(L, 2, DEFAULT_MAX, fname), at_end, r);
        break;
      case OP_LINE:
        ok = scan_until(L, s, fname, 0, "\n", 1,
                        check_max(L, 2, DEFAULT_MAX, fname), 1, at_end, r);
        break;
      case OP_UNTIL: {
        size_t dlen;
        const char *delim = lua_tolstring(L, 2, &dlen);
        ok = scan_until(L, s, fname, 0, delim, dlen,
                        check_max(L, 3, DEFAULT_MAX, fname), 0, at_end, r);
        break;
      }
      case OP_EXACTLY:
        ok = scan_count(L, s, fname, 0, (size_t)lua_tointeger(L, 2), 1, at_end,
                        r);
        break;
      case OP_ALL:
        ok = scan_all(L, s, fname, 0, check_max(L, 2, DEFAULT_READ_ALL, fname),
                      at_end, r);
        break;
      default: /* OP_READ: every format must succeed before any consumes */
        nformats = lua_gettop(L) - 1;
        ok = 1;
        for (i = 2, off = 0; ok && i <= nformats + 1; i++) {
          memset(r, 0, sizeof *r);
          ok = scan_format(L, s, i, off, at_end, r);
          if (ok && r->nil)
            break;
          off += r->take + r->skip;
        }
        if (!ok)
          break;
        if (!lua_checkstack(L, nformats))
          return luaL_error(L, "not enough memory");
        for (i = 2, off = 0; i <= nformats + 1; i++) {
          memset(r, 0, sizeof *r);
          scan_format(L, s, i, off, at_end, r);
          if (r->nil) {
            lua_pushnil(L);
            break;
          }
          lua_pushlstring(L, data_at(s, off), r->take);
          off += r->take + r->skip;
        }
        consume(s, off);
        return lua_gettop(L) - nformats - 1;
    }
    if (ok)
      break;
    if (at_end || !input_over(L, s, fname))
      return -1;
    at_end = 1;
  }
  if (r->nil) {
    if (op == OP_RECEIVE)
      return tether__raise(L, s->ctx, ERROR_END_OF_STREAM, fname,
                           "the input ended");
    lua_pushnil(L);
    return op == OP_ITERATE ? 0 : 1;
  }
  lua_pushlstring(L, data_at(s, 0), r->take);
  consume(s, r->take + r->skip);
  return 1;
}

/*
** The continuations below know the stack size of their frame from their
** context, 'base' (the arguments; a read pushes its results only when it
** completes): KCTX packs it with an op or a count of results.
*/
#define KCTX(base, low) (((lua_KContext)(base) << 16) | (lua_KContext)(low))
#define KBASE(k)        ((int)((k) >> 16))
#define KLOW(k)         ((int)((k)&0xffff))

static int read_k (lua_State *L, int status, lua_KContext k);

/*
** A regular file (a standard stream redirected to one) is read when a read
** needs more, directly: the kernel never makes such a read wait for input.
** End of file and errors end input as a socket's would.
*/
static void fill_from_file (struct stream *s) {
  ssize_t n;
  if (!reserve(s, READ_CHUNK)) {
    s->read_error = UV_ENOMEM;
    return;
  }
  do
    n = read(s->conn->file_fd, s->buf + s->start + s->len, READ_CHUNK);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    s->len += (size_t)n;
    s->received += n;
  }
  else
    s->read_error = n == 0 ? UV_EOF : uv_translate_sys_error(errno);
}

/* Waits for input: the task parks on the reader queue, and the read runs
   again when it wakes. */
static int wait_input (lua_State *L, struct stream *s, struct task *t,
                       enum read_op op) {
  resume_reading(s);
  return tether__wait(L, t, &s->reader, KCTX(lua_gettop(L), op), read_k);
}

static int read_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, KBASE(k), k, read_k);
  struct stream *s = lua_touserdata(L, 1);
  int n;
  (void)status;
  tether__check_wake(L, t);
  n = try_read(L, s, (enum read_op)KLOW(k));
  return n >= 0 ? n : wait_input(L, s, t, (enum read_op)KLOW(k));
}

static int read_call (lua_State *L, enum read_op op);

/* A read started while cancelled yields first (a checkpoint), then raises
   if still cancelled, else starts over (a shield may have come up). */
static int read_cancelled_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, KBASE(k), k, read_cancelled_k);
  (void)status;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return read_call(L, (enum read_op)KLOW(k));
}

/* After the schedule point of a read whose data was buffered: its results
   are above the arguments. */
static int read_done_k (lua_State *L, int status, lua_KContext k) {
  (void)status;
  tether__resumed(L, KBASE(k) + KLOW(k), k, read_done_k);
  return KLOW(k);
}

static int read_call (lua_State *L, enum read_op op) {
  const char *fname = op_names[op];
  struct ctx *c = CTX(L);
  struct stream *s = open_stream(L, c, fname);
  struct task *t;
  int n;
  if (!s->readable)
    return tether__fname_error(L, fname,
                               "this is the write end of a pipe; read from "
                               "its read end");
  t = tether__check_task(L, c, fname);
  if (s->reader.count > 0)
    return tether__raise(L, c, ERROR_BUSY, fname,
                         "another task is already reading this stream");
  if (t->scope->effective)
    return tether__reschedule(L, t, KCTX(lua_gettop(L), op), read_cancelled_k);
  n = try_read(L, s, op);
  while (n < 0 && s->conn->file_fd >= 0) {
    fill_from_file(s);
    n = try_read(L, s, op);
  }
  if (n < 0)
    return wait_input(L, s, t, op);
  return tether__reschedule(L, t, KCTX(lua_gettop(L) - n, n), read_done_k);
}

/* s:receive([max]) -> the next 1..max bytes; EndOfStream at the end */
static int stream_receive (lua_State *L) {
  lua_settop(L, 2);
  check_max(L, 2, DEFAULT_MAX, "stream:receive");
  return read_call(L, OP_RECEIVE);
}

/* for chunk in s do ... end */
static int stream__call (lua_State *L) {
  lua_settop(L, 1);
  lua_pushnil(L);
  return read_call(L, OP_ITERATE);
}

/* s:read_line([max]) -> a line without "\n" (nor "\r" before it), or nil */
static int stream_read_line (lua_State *L) {
  lua_settop(L, 2);
  check_max(L, 2, DEFAULT_MAX, "stream:read_line");
  return read_call(L, OP_LINE);
}

/* The iterator of s:lines(max): upvalue 2 is max. */
static int lines_step (lua_State *L) {
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  return read_call(L, OP_LINE);
}

/* for line in s:lines([max]) do ... end */
static int stream_lines (lua_State *L) {
  struct ctx *c = CTX(L);
  check_stream(L, c, "stream:lines");
  lua_settop(L, 2);
  check_max(L, 2, DEFAULT_MAX, "stream:lines");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, lines_step, 2);
  lua_pushvalue(L, 1);
  return 2;
}

/* s:read_until(delim, max) -> the bytes before delim (consumed too) */
static int stream_read_until (lua_State *L) {
  const char *fname = "stream:read_until";
  size_t dlen;
  lua_settop(L, 3);
  if (lua_type(L, 2) != LUA_TSTRING || (lua_tolstring(L, 2, &dlen), dlen == 0))
    return tether__fname_error(L, fname,
                               "delim must be a non-empty string, got %s",
                               luaL_typename(L, 2));
  if (lua_isnil(L, 3))
    return tether__fname_error(L, fname, "max is required (an integer > 0)");
  check_max(L, 3, DEFAULT_MAX, fname);
  return read_call(L, OP_UNTIL);
}

/* s:read_exactly(n) -> exactly n bytes; IncompleteRead if input ends */
static int stream_read_exactly (lua_State *L) {
  lua_settop(L, 2);
  if (!lua_isinteger(L, 2) || lua_tointeger(L, 2) <= 0)
    return tether__fname_error(L, "stream:read_exactly",
                               "n must be an integer > 0, got %s",
                               luaL_tolstring(L, 2, NULL));
  return read_call(L, OP_EXACTLY);
}

/* s:read_all([max]) -> everything until the end of input */
static int stream_read_all (lua_State *L) {
  lua_settop(L, 2);
  check_max(L, 2, DEFAULT_READ_ALL, "stream:read_all");
  return read_call(L, OP_ALL);
}

/* s:read(...) -> like file:read: "l", "L", "a" or a byte count each */
static int stream_read (lua_State *L) {
  if (lua_gettop(L) < 2) {
    lua_settop(L, 1);
    lua_pushliteral(L, "l");
  }
  return read_call(L, OP_READ);
}

/* s:unread(data): puts bytes back in front of the buffer */
static int stream_unread (lua_State *L) {
  const char *fname = "stream:unread";
  struct stream *s = open_stream(L, CTX(L), fname);
  size_t n;
  const char *data;
  if (lua_type(L, 2) != LUA_TSTRING)
    return tether__fname_error(L, fname, "data must be a string, got %s",
                               luaL_typename(L, 2));
  data = lua_tolstring(L, 2, &n);
  if (n == 0)
    return 0;
  if (s->start < n) {
    if (!reserve(s, n))
      return luaL_error(L, "not enough memory");
    memmove(s->buf + n, s->buf + s->start, s->len);
    s->start = n;
  }
  s->start -= n;
  s->len += n;
  memcpy(s->buf + s->start, data, n);
  s->scanned = 0;
  if (s->len >= (size_t)s->read_ahead)
    pause_reading(s);
  return 0;
}

/* }==================================================================== */

/* {====================================================================
** Writing
** ===================================================================== */

/* The error a failed write leaves: once the peer reset the connection, the
   kernel reports a later write as EPIPE (the read that met the reset took
   ECONNRESET), yet the reset is what broke the stream. */
static int write_failure (const struct stream *s, int err) {
  if (err == UV_EPIPE && s->read_error == UV_ECONNRESET)
    return UV_ECONNRESET;
  return err;
}

static void on_write (uv_write_t *req, int status) {
  struct write_req *w = (struct write_req *)req;
  struct conn *conn = req->handle->data;
  struct stream *s = conn->owner;
  size_t len = w->len;
  free(w);
  conn->queued -= len;
  if (s == NULL) { /* a closed stream, flushing */
    if (conn->queued == 0 || status < 0)
      close_conn(conn);
    return;
  }
  if (status == 0)
    s->sent += (lua_Integer)len;
  else if (s->write_error == 0 && status != UV_ECANCELED)
    s->write_error = write_failure(s, status);
  wake_writers(s);
}

/* The pieces of 'data' (a string or an array of strings) at 'idx', checked
   before anything is written; returns how many. */
static int check_data (lua_State *L, int idx, const char *fname) {
  lua_Integer i, n;
  if (lua_type(L, idx) == LUA_TSTRING)
    return 1;
  if (lua_type(L, idx) != LUA_TTABLE)
    return tether__fname_error(L, fname,
                               "data must be a string or an array of "
                               "strings, got %s",
                               luaL_typename(L, idx));
  n = (lua_Integer)lua_rawlen(L, idx);
  if (n > INT_MAX / 2)
    return tether__fname_error(L, fname, "too many pieces");
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
      return tether__fname_error(L, fname, "data[%I] must be a string, got %s",
                                 i, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  return (int)n;
}

/* Writes to a regular file directly, all of it (the kernel does not make
   such writes wait for room). */
static void write_file (lua_State *L, struct stream *s, uv_buf_t *bufs,
                        int npieces, const char *fname) {
  int i;
  for (i = 0; i < npieces; i++) {
    size_t done = 0;
    while (done < bufs[i].len) {
      ssize_t n =
          write(s->conn->file_fd, bufs[i].base + done, bufs[i].len - done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0) {
        s->write_error = write_failure(s, uv_translate_sys_error(errno));
        tether__raise_uv(L, s->ctx, s->write_error, fname, "write");
      }
      done += (size_t)n;
      s->sent += n;
    }
  }
}

/*
** Commits the data at 'idx' whole: what the kernel takes at once is
** written, the rest is copied into the write queue. A failure after part
** of it was written breaks the stream (the error is sticky).
*/
static void commit (lua_State *L, struct stream *s, int idx, int npieces,
                    const char *fname) {
  uv_buf_t small[GATHER_MAX], *bufs = small;
  struct conn *conn = s->conn;
  struct write_req *w;
  size_t total = 0, written = 0, at = 0, rest;
  int i, err;
  if (npieces > GATHER_MAX)
    bufs = lua_newuserdatauv(L, (size_t)npieces * sizeof *bufs, 0);
  for (i = 0; i < npieces; i++) {
    size_t len;
    const char *p;
    if (lua_type(L, idx) == LUA_TSTRING)
      p = lua_tolstring(L, idx, &len);
    else {
      lua_rawgeti(L, idx, i + 1); /* the table keeps the string alive */
      p = lua_tolstring(L, -1, &len);
      lua_pop(L, 1);
    }
    bufs[i] = uv_buf_init((char *)p, (unsigned)len);
    total += len;
  }
  if (total == 0)
    return;
  if (conn->file_fd >= 0) {
    write_file(L, s, bufs, npieces, fname);
    return;
  }
  if (conn->queued == 0) {
    err = uv_try_write(&conn->h.stream, bufs, (unsigned)npieces);
    if (err >= 0)
      written = (size_t)err;
    else if (err != UV_EAGAIN) {
      s->write_error = write_failure(s, err);
      tether__raise_uv(L, s->ctx, s->write_error, fname, "write");
    }
  }
  s->sent += (lua_Integer)written;
  rest = total - written;
  if (rest == 0)
    return;
  w = malloc(offsetof(struct write_req, data) + rest);
  if (w == NULL) {
    if (written > 0)
      s->write_error = UV_ENOMEM;
    luaL_error(L, "not enough memory");
  }
  w->len = rest;
  for (i = 0; i < npieces; i++) { /* copy what was not written */
    size_t len = bufs[i].len, skip = written > len ? len : written;
    written -= skip;
    memcpy(w->data + at, bufs[i].base + skip, len - skip);
    at += len - skip;
  }
  bufs[0] = uv_buf_init(w->data, (unsigned)rest);
  err = uv_write(&w->req, &conn->h.stream, bufs, 1, on_write);
  if (err < 0) {
    free(w);
    s->write_error = write_failure(s, err);
    tether__raise_uv(L, s->ctx, s->write_error, fname, "write");
  }
  conn->queued += rest;
}

/* The stream at index 1, open for writing: raises the reason otherwise. */
static struct stream *writable_stream (lua_State *L, struct ctx *c,
                                       const char *fname) {
  struct stream *s = open_stream(L, c, fname);
  if (!s->writable)
    tether__fname_error(L, fname,
                        "this is the read end of a pipe; write to its "
                        "write end");
  if (s->eof_sent)
    tether__raise(L, c, ERROR_CLOSED, fname,
                  "send_eof was called: the stream sends no more");
  if (s->write_error != 0)
    tether__raise_uv(L, c, s->write_error, fname, "write");
  return s;
}

static int send_call (lua_State *L);

/*
** A send starts over after it waited: 'woken' from the writer queue (room
** in the queue, an error or a close), or else after the checkpoint of a
** send started while cancelled (which raises if still cancelled).
*/
static int send_k (lua_State *L, int status, lua_KContext woken) {
  struct task *t = tether__resumed(L, 2, woken, send_k);
  (void)status;
  if (woken)
    tether__check_wake(L, t);
  else if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return send_call(L);
}

/* s:send(data): waits for room below high_water, then commits all of data */
static int send_call (lua_State *L) {
  const char *fname = "stream:send";
  struct ctx *c = CTX(L);
  struct stream *s = writable_stream(L, c, fname);
  int npieces = check_data(L, 2, fname);
  struct task *t = tether__check_task(L, c, fname);
  if (s->writer.count > 0)
    return tether__raise(L, c, ERROR_BUSY, fname,
                         "another task is already sending on this stream");
  if (t->scope->effective)
    return tether__reschedule(L, t, 0, send_k);
  if ((lua_Integer)queued(s) >= s->high_water)
    return tether__wait(L, t, &s->writer, 1, send_k);
  commit(L, s, 2, npieces, fname);
  return tether__reschedule(L, t, 0, tether__scheduled_k);
}

static int stream_send (lua_State *L) {
  lua_settop(L, 2);
  return send_call(L);
}

/* s:send_nowait(data): commits at once or raises WouldBlock */
static int stream_send_nowait (lua_State *L) {
  const char *fname = "stream:send_nowait";
  struct ctx *c = CTX(L);
  struct stream *s = writable_stream(L, c, fname);
  int npieces;
  lua_settop(L, 2);
  npieces = check_data(L, 2, fname);
  if (s->writer.count > 0)
    return tether__raise(L, c, ERROR_BUSY, fname,
                         "another task is blocked sending on this stream");
  if ((lua_Integer)queued(s) >= s->high_water)
    return tether__raise(L, c, ERROR_WOULD_BLOCK, fname,
                         "the write queue is full (high_water)");
  commit(L, s, 2, npieces, fname);
  return 0;
}

static int flush_call (lua_State *L);

/* A flush starts over after it waited (as send_k). */
static int flush_k (lua_State *L, int status, lua_KContext woken) {
  struct task *t = tether__resumed(L, 1, woken, flush_k);
  (void)status;
  if (woken)
    tether__check_wake(L, t);
  else if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return flush_call(L);
}

/* s:flush(): waits until the kernel has everything committed */
static int flush_call (lua_State *L) {
  const char *fname = "stream:flush";
  struct ctx *c = CTX(L);
  struct stream *s = open_stream(L, c, fname);
  struct task *t = tether__check_task(L, c, fname);
  if (s->write_error != 0)
    return tether__raise_uv(L, c, s->write_error, fname, "write");
  if (t->scope->effective)
    return tether__reschedule(L, t, 0, flush_k);
  if (queued(s) > 0)
    return tether__wait(L, t, &s->flushers, 1, flush_k);
  return tether__reschedule(L, t, 0, tether__scheduled_k);
}

static int stream_flush (lua_State *L) {
  lua_settop(L, 1);
  return flush_call(L);
}

static void on_shutdown (uv_shutdown_t *req, int status) {
  (void)req;
  (void)status; /* a failure shows as a write error or at the peer */
}

/* s:send_eof(): the peer sees the end of input after the queued data */
static int stream_send_eof (lua_State *L) {
  const char *fname = "stream:send_eof";
  struct ctx *c = CTX(L);
  struct stream *s = open_stream(L, c, fname);
  int err;
  if (s->eof_sent)
    return 0;
  if (!s->writable)
    return tether__fname_error(L, fname,
                               "this is the read end of a pipe; close it "
                               "instead");
  s->eof_sent = 1;
  if (!s->readable) { /* a pipe's write end: closing it is the EOF */
    struct conn *conn = s->conn;
    s->conn = NULL;
    release_conn(conn, s->linger);
    return 0;
  }
  err = uv_shutdown(&s->conn->shutdown, &s->conn->h.stream, on_shutdown);
  if (err < 0)
    return tether__raise_uv(L, c, err, fname, "shutdown");
  return 0;
}

/* }==================================================================== */

/* {====================================================================
** Closing, options, statistics
** ===================================================================== */

/* s:close(), <close>, __gc: never blocks; queued data lingers */
static int stream_close (lua_State *L) {
  struct stream *s = tether__test_class(L, 1, CTX(L), CLASS_STREAM);
  if (s == NULL)
    check_stream(L, CTX(L), "stream:close");
  else
    close_stream(s, 0);
  return 0;
}

/* s:abort(): drops the queued data and resets the connection */
static int stream_abort (lua_State *L) {
  struct stream *s = check_stream(L, CTX(L), "stream:abort");
  if (s->conn != NULL)
    s->conn->reset = 1;
  close_stream(s, 1);
  return 0;
}

/* s:stats() -> {bytes_sent, bytes_received, write_queue, read_buffer} */
static int stream_stats (lua_State *L) {
  struct stream *s = check_stream(L, CTX(L), "stream:stats");
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, s->sent);
  lua_setfield(L, -2, "bytes_sent");
  lua_pushinteger(L, s->received);
  lua_setfield(L, -2, "bytes_received");
  lua_pushinteger(L, (lua_Integer)queued(s));
  lua_setfield(L, -2, "write_queue");
  lua_pushinteger(L, (lua_Integer)s->len);
  lua_setfield(L, -2, "read_buffer");
  return 1;
}

static void apply_tcp_options (struct stream *s) {
  uv_tcp_nodelay(&s->conn->h.tcp, s->nodelay);
  uv_tcp_keepalive(&s->conn->h.tcp, s->keepalive > 0,
                   (unsigned)(s->keepalive > 0 ? s->keepalive : 0));
}

/* nodelay (a boolean) or keepalive (seconds > 0, or false) of a TCP
   stream. */
static int set_tcp_option (lua_State *L, struct stream *s, const char *name) {
  const char *fname = "stream:set_option";
  if (*name == 'n') {
    if (!lua_isboolean(L, 3))
      return tether__fname_error(L, fname, "nodelay must be a boolean, got %s",
                                 luaL_typename(L, 3));
    s->nodelay = (unsigned char)lua_toboolean(L, 3);
  }
  else if (lua_isboolean(L, 3) && !lua_toboolean(L, 3))
    s->keepalive = 0;
  else if (lua_isinteger(L, 3) && lua_tointeger(L, 3) > 0 &&
           lua_tointeger(L, 3) <= INT_MAX)
    s->keepalive = (int)lua_tointeger(L, 3);
  else
    return tether__fname_error(L, fname,
                               "keepalive must be seconds (an integer > 0) "
                               "or false, got %s",
                               luaL_tolstring(L, 3, NULL));
  if (s->conn != NULL && !s->closed)
    apply_tcp_options(s);
  return 0;
}

/* s:set_option(name, value) */
static int stream_set_option (lua_State *L) {
  const char *fname = "stream:set_option";
  struct stream *s = check_stream(L, CTX(L), fname);
  const char *name = lua_tostring(L, 2);
  if (lua_type(L, 2) != LUA_TSTRING)
    return tether__fname_error(L, fname,
                               "the option's name must be a string, "
                               "got %s",
                               luaL_typename(L, 2));
  if (strcmp(name, "read_ahead") == 0 || strcmp(name, "high_water") == 0) {
    lua_Integer v = lua_tointeger(L, 3);
    if (!lua_isinteger(L, 3) || v <= 0)
      return tether__fname_error(L, fname, "%s must be an integer > 0, got %s",
                                 name, luaL_tolstring(L, 3, NULL));
    if (*name == 'r') {
      s->read_ahead = v;
      if (s->len >= (size_t)v)
        pause_reading(s);
      else
        resume_reading(s);
    }
    else {
      s->high_water = v;
      wake_writers(s);
    }
    return 0;
  }
  if (strcmp(name, "linger") == 0) {
    lua_Number v = lua_tonumber(L, 3);
    if (lua_type(L, 3) != LUA_TNUMBER || !(v >= 0))
      return tether__fname_error(L, fname,
                                 "linger must be a number >= 0, got %s",
                                 luaL_tolstring(L, 3, NULL));
    s->linger = v;
    return 0;
  }
  if (strcmp(name, "nodelay") == 0 || strcmp(name, "keepalive") == 0) {
    if (!s->tcp)
      return tether__fname_error(
          L, fname, "%s applies to TCP streams; this is a %s", name, s->kind);
    return set_tcp_option(L, s, name);
  }
  return tether__fname_error(L, fname,
                             "unknown option %s (read_ahead, high_water, "
                             "linger, nodelay, keepalive)",
                             name);
}

/* [-0, +1, m] a UNIX stream's own ('local') or its peer's socket file:
   {path =}, or nil for an unnamed socket or a closed stream. (Not with
   uv_pipe_getsockname, which reads past what the kernel filled in for an
   unnamed socket.) */
static void push_unix_address (lua_State *L, struct stream *s, int local) {
  struct sockaddr_un sun;
  socklen_t len = sizeof sun;
  uv_os_fd_t fd;
  size_t n = 0;
  memset(&sun, 0, sizeof sun);
  if (s->conn != NULL && !s->closed &&
      uv_fileno(&s->conn->h.handle, &fd) == 0 &&
      (local ? getsockname(fd, (struct sockaddr *)&sun, &len)
             : getpeername(fd, (struct sockaddr *)&sun, &len)) == 0 &&
      len > offsetof(struct sockaddr_un, sun_path))
    n = strnlen(sun.sun_path, len - offsetof(struct sockaddr_un, sun_path));
  if (n == 0)
    lua_pushnil(L); /* also an abstract address: tether makes none */
  else {
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, sun.sun_path, n);
    lua_setfield(L, -2, "path");
  }
}

/* Fields: options and addresses; methods from the methods table. */
static int stream__index (lua_State *L) {
  struct stream *s = check_stream(L, CTX(L), "stream.__index");
  const char *key = lua_tostring(L, 2);
  if (key == NULL)
    return 0;
  if (strcmp(key, "read_ahead") == 0)
    lua_pushinteger(L, s->read_ahead);
  else if (strcmp(key, "high_water") == 0)
    lua_pushinteger(L, s->high_water);
  else if (strcmp(key, "linger") == 0)
    lua_pushnumber(L, s->linger);
  else if (strcmp(key, "keepalive") == 0) {
    if (s->keepalive > 0)
      lua_pushinteger(L, s->keepalive);
    else
      lua_pushboolean(L, 0);
  }
  else if (strcmp(key, "nodelay") == 0) {
    if (s->tcp)
      lua_pushboolean(L, s->nodelay);
    else
      lua_pushnil(L); /* a TCP option */
  }
  else if ((strcmp(key, "local_address") == 0 ||
            strcmp(key, "remote_address") == 0) &&
           strcmp(s->kind, "unix") == 0)
    push_unix_address(L, s, key[0] == 'l');
  else if (strcmp(key, "local_address") == 0 ||
           strcmp(key, "remote_address") == 0) {
    struct sockaddr_storage sa;
    int len = (int)sizeof sa, err = UV_ENOTSOCK;
    if (s->tcp && s->conn != NULL && !s->closed)
      err = key[0] == 'l' ? uv_tcp_getsockname(&s->conn->h.tcp,
                                               (struct sockaddr *)&sa, &len)
                          : uv_tcp_getpeername(&s->conn->h.tcp,
                                               (struct sockaddr *)&sa, &len);
    if (err < 0)
      lua_pushnil(L); /* unnamed sockets and pipes, closed streams */
    else
      tether__push_address(L, (struct sockaddr *)&sa);
  }
  else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(2)); /* methods */
  }
  return 1;
}

static int stream__tostring (lua_State *L) {
  struct stream *s = check_stream(L, CTX(L), "stream:__tostring");
  lua_pushfstring(L, "tether.Stream (%s, %s): %p", s->kind,
                  s->closed ? "closed" : "open", (void *)s);
  return 1;
}

/* }==================================================================== */

/* {====================================================================
** Making streams
** ===================================================================== */

/* [-0, +1, m] a closed stream (closed until a connection is attached). */
static struct stream *new_stream (lua_State *L, struct ctx *c, const char *kind,
                                  int readable, int writable) {
  struct stream *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->ctx = c;
  s->closed = 1;
  s->kind = kind;
  s->readable = (unsigned char)readable;
  s->writable = (unsigned char)writable;
  s->read_ahead = s->high_water = READ_CHUNK;
  s->linger = DEFAULT_LINGER;
  tether__waitq_init_as(&s->reader, "byte stream read");
  tether__waitq_init_as(&s->writer, "byte stream write (room to send)");
  tether__waitq_init_as(&s->flushers, "byte stream write (flush)");
  tether__set_metatable(L, c, CLASS_STREAM);
  return s;
}

/* Links a new connection to stream 's' (still closed: see start_stream);
   its handle is the caller's to initialise. NULL: out of memory. */
static struct conn *attach_conn (struct ctx *c, struct stream *s) {
  struct conn *conn = malloc(sizeof *conn);
  if (conn == NULL)
    return NULL;
  memset(conn, 0, sizeof *conn);
  conn->h.handle.data = conn;
  conn->handles = 1;
  conn->shared_fd = -1;
  conn->file_fd = -1;
  conn->owner = s;
  queue_insert_tail(&c->conns, &conn->node);
  s->conn = conn;
  return conn;
}

/* Undoes attach_conn when the handle could not be initialised. */
static void detach_conn (struct stream *s) {
  queue_remove(&s->conn->node);
  free(s->conn);
  s->conn = NULL;
}

/* The stream's connection is up: it is open, and reads. */
static void start_stream (struct ctx *c, struct stream *s) {
  s->closed = 0;
  if (s->tcp)
    apply_tcp_options(s);
  tether__hold_sigpipe(c);
  resume_reading(s);
}

/*
** [-0, +1, m] a new stream of 'kind' ("tcp", or "unix" for a UNIX socket)
** with its handle, not connected yet (see tether__stream_started). Returns
** NULL with *err set if libuv refuses the handle; raises a memory error.
*/
struct stream *tether__socket_stream (lua_State *L, struct ctx *c,
                                      const char *kind, int *err) {
  struct stream *s = new_stream(L, c, kind, 1, 1);
  s->tcp = strcmp(kind, "tcp") == 0;
  s->nodelay = s->tcp;
  if (attach_conn(c, s) == NULL)
    luaL_error(L, "not enough memory");
  *err = s->tcp ? uv_tcp_init(c->loop, &s->conn->h.tcp)
                : uv_pipe_init(c->loop, &s->conn->h.pipe, 0);
  if (*err < 0) {
    detach_conn(s);
    return NULL;
  }
  return s;
}

/* The libuv handle of a stream made by tether__socket_stream. */
uv_stream_t *tether__stream_handle (struct stream *s) {
  return &s->conn->h.stream;
}

/* The descriptor of an open stream (to hand to a child process). */
int tether__stream_fd (struct stream *s) {
  uv_os_fd_t fd;
  if (s->conn->file_fd >= 0)
    return s->conn->file_fd;
  return uv_fileno(&s->conn->h.handle, &fd) == 0 ? fd : -1;
}

/* A stream made by tether__socket_stream is connected: it opens. */
void tether__stream_started (struct stream *s) {
  start_stream(s->ctx, s);
}

/* Closes a stream at once, before or after it started (a connect or an
   accept that failed, or was cancelled). */
void tether__stream_abort (struct stream *s) {
  s->closed = 0;
  close_stream(s, 1);
}

/* Attaches a pipe handle over 'fd' (which it then owns) to stream 's'.
   Returns 0 or a libuv error ('fd' is then still the caller's). */
static int attach_fd (struct ctx *c, struct stream *s, int fd) {
  struct conn *conn = attach_conn(c, s);
  int err;
  if (conn == NULL)
    return UV_ENOMEM;
  err = uv_pipe_init(c->loop, &conn->h.pipe, 0);
  if (err < 0) {
    detach_conn(s);
    return err;
  }
  err = uv_pipe_open(&conn->h.pipe, fd);
  if (err < 0) {
    tether__stream_abort(s);
    return err;
  }
  start_stream(c, s);
  return 0;
}

/*
** [-0, +1, m] a stream over descriptor 'fd' (a pipe, a socket or a
** terminal), which it then owns; 'shared' is a descriptor of the same file
** description whose flags come back when the stream's handle closes (-1:
** none). Returns NULL with *err set ('fd' is then still the caller's).
*/
struct stream *tether__fd_stream (lua_State *L, struct ctx *c, int fd,
                                  int shared, int *err) {
  uv_handle_type type = uv_guess_handle(fd);
  const char *kind = type == UV_TTY    ? "tty"
                     : type == UV_TCP  ? "tcp"
                     : type == UV_FILE ? "file"
                                       : "pipe";
  struct stream *s;
  struct conn *conn;
  if (type != UV_TTY && type != UV_TCP && type != UV_NAMED_PIPE &&
      type != UV_FILE) {
    *err = UV_EBADF;
    return NULL;
  }
  s = new_stream(L, c, kind, 1, 1);
  s->tcp = type == UV_TCP;
  s->nodelay = s->tcp;
  conn = attach_conn(c, s);
  if (conn == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  if (type == UV_FILE) { /* read and written directly: no handle */
    conn->file_fd = fd;
    s->closed = 0;
    return s;
  }
  if (shared >= 0) {
    conn->shared_fd = shared;
    conn->shared_flags = fcntl(shared, F_GETFL);
  }
  *err = type == UV_TTY   ? uv_tty_init(c->loop, &conn->h.tty, fd, 1)
         : type == UV_TCP ? uv_tcp_init(c->loop, &conn->h.tcp)
                          : uv_pipe_init(c->loop, &conn->h.pipe, 0);
  if (*err < 0) {
    detach_conn(s);
    return NULL;
  }
  if (type == UV_TTY) {
    /* libuv may reopen the terminal (so that making it non-blocking does
       not touch other processes), put the new description on 'fd' with
       dup2 and use the new descriptor: then 'fd' is ours to close. */
    uv_os_fd_t used;
    if (uv_fileno(&conn->h.handle, &used) == 0 && used != fd)
      close(fd);
  }
  else
    *err = type == UV_TCP ? uv_tcp_open(&conn->h.tcp, fd)
                          : uv_pipe_open(&conn->h.pipe, fd);
  if (*err < 0) {
    conn->shared_fd = -1;
    tether__stream_abort(s);
    return NULL;
  }
  start_stream(c, s);
  return s;
}

/* Whether a stream is open (not closed). */
int tether__stream_open (const struct stream *s) {
  return !s->closed;
}

/* s:set_mode("normal" | "raw"): a terminal's mode; tether.run restores the
   terminal's original mode when it returns */
static int stream_set_mode (lua_State *L) {
  const char *fname = "stream:set_mode";
  struct ctx *c = CTX(L);
  struct stream *s = open_stream(L, c, fname);
  const char *mode = luaL_optstring(L, 2, "normal");
  int err;
  if (strcmp(s->kind, "tty") != 0)
    return tether__fname_error(L, fname, "this stream is not a terminal");
  if (strcmp(mode, "normal") != 0 && strcmp(mode, "raw") != 0)
    return tether__fname_error(
        L, fname, "mode must be \"normal\" or \"raw\", got %s", mode);
  err = uv_tty_set_mode(&s->conn->h.tty,
                        *mode == 'r' ? UV_TTY_MODE_RAW : UV_TTY_MODE_NORMAL);
  if (err < 0)
    return tether__raise_uv(L, c, err, fname, "set_mode");
  c->tty_mode_set = 1;
  return 0;
}

/* s:winsize() -> width, height of a terminal */
static int stream_winsize (lua_State *L) {
  const char *fname = "stream:winsize";
  struct ctx *c = CTX(L);
  struct stream *s = open_stream(L, c, fname);
  int width, height, err;
  if (strcmp(s->kind, "tty") != 0)
    return tether__fname_error(L, fname, "this stream is not a terminal");
  err = uv_tty_get_winsize(&s->conn->h.tty, &width, &height);
  if (err < 0)
    return tether__raise_uv(L, c, err, fname, "winsize");
  lua_pushinteger(L, width);
  lua_pushinteger(L, height);
  return 2;
}

/* Makes two streams over the descriptors fds[0] and fds[1] of 'kind';
   closes the descriptors if that fails. */
static int pair_of_streams (lua_State *L, struct ctx *c, const char *fname,
                            const char *kind, int pipe) {
  struct stream *a, *b;
  int fds[2], err;
  if (c->loop == NULL)
    return tether__fname_error(L, fname,
                               "called outside tether.run; make streams "
                               "inside a task");
  a = new_stream(L, c, kind, 1, !pipe);
  b = new_stream(L, c, kind, !pipe, 1);
  err = pipe ? (pipe2(fds, O_CLOEXEC) < 0 ? uv_translate_sys_error(errno) : 0)
             : (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0
                    ? uv_translate_sys_error(errno)
                    : 0);
  if (err < 0)
    return tether__raise_uv(L, c, err, fname, pipe ? "pipe" : "socketpair");
  err = attach_fd(c, a, fds[0]);
  if (err < 0) {
    close(fds[0]);
    close(fds[1]);
    return tether__raise_uv(L, c, err, fname, "open");
  }
  err = attach_fd(c, b, fds[1]);
  if (err < 0) {
    close(fds[1]);
    close_stream(a, 1);
    return tether__raise_uv(L, c, err, fname, "open");
  }
  return 2;
}

/* tether.socketpair() -> two connected streams */
static int core_socketpair (lua_State *L) {
  return pair_of_streams(L, CTX(L), "tether.socketpair", "socketpair", 0);
}

/* tether.open_pipe() -> read_end, write_end */
static int core_open_pipe (lua_State *L) {
  return pair_of_streams(L, CTX(L), "tether.open_pipe", "pipe", 1);
}

/* }==================================================================== */

void tether__open_bytestream (lua_State *L, struct ctx *c) {
  static const luaL_Reg methods[] = {{"receive", stream_receive},
                                     {"read", stream_read},
                                     {"read_line", stream_read_line},
                                     {"lines", stream_lines},
                                     {"read_until", stream_read_until},
                                     {"read_exactly", stream_read_exactly},
                                     {"read_all", stream_read_all},
                                     {"unread", stream_unread},
                                     {"send", stream_send},
                                     {"send_nowait", stream_send_nowait},
                                     {"flush", stream_flush},
                                     {"send_eof", stream_send_eof},
                                     {"close", stream_close},
                                     {"abort", stream_abort},
                                     {"stats", stream_stats},
                                     {"set_option", stream_set_option},
                                     {"set_mode", stream_set_mode},
                                     {"winsize", stream_winsize},
                                     {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__call", stream__call},
                                         {"__close", stream_close},
                                         {"__gc", stream_close},
                                         {"__tostring", stream__tostring},
                                         {NULL, NULL}};
  static const struct class_def stream_class = {
      CLASS_STREAM, TETHER_STREAM_MT, methods, metamethods, stream__index};
  static const luaL_Reg funcs[] = {{"socketpair", core_socketpair},
                                   {"open_pipe", core_open_pipe},
                                   {NULL, NULL}};
  tether__add_class(L, c, &stream_class, 0);
  tether__add_functions(L, funcs);
}
