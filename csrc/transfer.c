/*
** transfer.c
** Copying Lua values between two lua_States that run on different threads:
** the sender packs them into a byte buffer of its own format, the receiver
** unpacks the buffer. Only nil, booleans, integers, floats, strings and
** tables of these cross; a table reached twice (or in a cycle) arrives as
** one table, and metatables stay behind.
*/

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Deeper nesting than this is refused (each level is a C call). */
#define TRANSFER_MAX_DEPTH 200

/* The tags of the format: one byte, then the value's bytes. */
enum {
  TAG_NIL,
  TAG_FALSE,
  TAG_TRUE,
  TAG_INTEGER, /* lua_Integer */
  TAG_FLOAT,   /* lua_Number */
  TAG_STRING,  /* size_t length, bytes */
  TAG_TABLE,   /* a new table: key/value pairs, then TAG_END */
  TAG_SEEN,    /* size_t: a table this transfer already sent */
  TAG_END
};

void tether__buffer_free (struct tether_buffer *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = b->pos = 0;
}

/* Grows 'b' for 'n' more bytes; 0 when memory ran out. */
static int reserve (struct tether_buffer *b, size_t n) {
  size_t cap = b->cap ? b->cap : 64;
  char *data;
  if (b->len + n <= b->cap)
    return 1;
  while (cap < b->len + n)
    cap *= 2;
  data = realloc(b->data, cap);
  if (data == NULL)
    return 0;
  b->data = data;
  b->cap = cap;
  return 1;
}

struct packer {
  lua_State *L;
  struct tether_buffer *b;
  int seen;         /* stack index of the table -> number table */
  size_t ntables;   /* tables sent so far */
  const char *what; /* "argument" or "result" */
  int index;        /* its position, for the error */
  const char *fname;
};

/* Raises "message" without a position: the message names the function. */
static int raise_plain (lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

static void put (struct packer *p, const void *bytes, size_t n) {
  if (!reserve(p->b, n))
    luaL_error(p->L, "not enough memory");
  memcpy(p->b->data + p->b->len, bytes, n);
  p->b->len += n;
}

static void put_tag (struct packer *p, unsigned char tag) {
  put(p, &tag, 1);
}

static void pack_value (struct packer *p, int idx, int depth);

static void pack_table (struct packer *p, int idx, int depth) {
  lua_State *L = p->L;
  if (depth > TRANSFER_MAX_DEPTH)
    raise_plain(L, "%s: %s %d is nested more than %d tables deep", p->fname,
                p->what, p->index, TRANSFER_MAX_DEPTH);
  luaL_checkstack(L, 4, "tables nested too deeply");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, p->seen) == LUA_TNUMBER) {
    size_t n = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    put_tag(p, TAG_SEEN);
    put(p, &n, sizeof n);
    return;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushinteger(L, (lua_Integer)++p->ntables);
  lua_rawset(L, p->seen);
  put_tag(p, TAG_TABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    pack_value(p, lua_gettop(L) - 1, depth + 1);
    pack_value(p, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
  }
  put_tag(p, TAG_END);
}

static void pack_value (struct packer *p, int idx, int depth) {
  lua_State *L = p->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      put_tag(p, TAG_NIL);
      break;
    case LUA_TBOOLEAN:
      put_tag(p, lua_toboolean(L, idx) ? TAG_TRUE : TAG_FALSE);
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        put_tag(p, TAG_INTEGER);
        put(p, &i, sizeof i);
      }
      else {
        lua_Number n = lua_tonumber(L, idx);
        put_tag(p, TAG_FLOAT);
        put(p, &n, sizeof n);
      }
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      put_tag(p, TAG_STRING);
      put(p, &len, sizeof len);
      put(p, s, len);
      break;
    }
    case LUA_TTABLE:
      pack_table(p, lua_absindex(L, idx), depth);
      break;
    default:
      if (depth == 0)
        raise_plain(L,
                    "%s: %s %d is a %s (only nil, booleans, numbers, strings "
                    "and tables of these cross to a worker thread)",
                    p->fname, p->what, p->index, luaL_typename(L, idx));
      else
        raise_plain(L,
                    "%s: %s %d holds a %s in a table (only nil, booleans, "
                    "numbers, strings and tables of these cross to a worker "
                    "thread)",
                    p->fname, p->what, p->index, luaL_typename(L, idx));
  }
}

/*
** [-0, +0, m/e] Appends the values at first .. first+n-1 to 'b' (which the
** caller frees, also after an error). A value that cannot cross raises
** "fname: <what> <i> is a function ...", numbering from 'index0'.
*/
void tether__pack (lua_State *L, int first, int n, struct tether_buffer *b,
                   const char *fname, const char *what, int index0) {
  struct packer p;
  int i;
  first = lua_absindex(L, first);
  lua_createtable(L, 0, 0);
  p.L = L;
  p.b = b;
  p.seen = lua_gettop(L);
  p.ntables = 0;
  p.what = what;
  p.fname = fname;
  put(&p, &n, sizeof n);
  for (i = 0; i < n; i++) {
    p.index = index0 + i;
    pack_value(&p, first + i, 0);
  }
  lua_pop(L, 1);
}

static void get (lua_State *L, struct tether_buffer *b, void *bytes, size_t n) {
  if (b->pos + n > b->len)
    luaL_error(L, "a transfer buffer ended early");
  memcpy(bytes, b->data + b->pos, n);
  b->pos += n;
}

/* [-0, +1, m] Pushes the next value of 'b'; 'tables' is the stack index of
   the number -> table list of this transfer. */
static void unpack_value (lua_State *L, struct tether_buffer *b, int tables,
                          size_t *ntables) {
  unsigned char tag;
  luaL_checkstack(L, 4, "tables nested too deeply");
  get(L, b, &tag, 1);
  switch (tag) {
    case TAG_NIL:
      lua_pushnil(L);
      break;
    case TAG_FALSE:
      lua_pushboolean(L, 0);
      break;
    case TAG_TRUE:
      lua_pushboolean(L, 1);
      break;
    case TAG_INTEGER: {
      lua_Integer i;
      get(L, b, &i, sizeof i);
      lua_pushinteger(L, i);
      break;
    }
    case TAG_FLOAT: {
      lua_Number n;
      get(L, b, &n, sizeof n);
      lua_pushnumber(L, n);
      break;
    }
    case TAG_STRING: {
      size_t len;
      get(L, b, &len, sizeof len);
      if (b->pos + len > b->len)
        luaL_error(L, "a transfer buffer ended early");
      lua_pushlstring(L, b->data + b->pos, len);
      b->pos += len;
      break;
    }
    case TAG_SEEN: {
      size_t n;
      get(L, b, &n, sizeof n);
      lua_rawgeti(L, tables, (lua_Integer)n);
      break;
    }
    case TAG_TABLE: {
      int t;
      lua_createtable(L, 0, 0);
      t = lua_gettop(L);
      lua_pushvalue(L, t);
      lua_rawseti(L, tables, (lua_Integer)++ * ntables);
      for (;;) {
        if (b->pos < b->len && (unsigned char)b->data[b->pos] == TAG_END) {
          b->pos++;
          break;
        }
        unpack_value(L, b, tables, ntables);
        unpack_value(L, b, tables, ntables);
        lua_rawset(L, t);
      }
      break;
    }
    default:
      luaL_error(L, "a transfer buffer is corrupt");
  }
}

/* [-0, +n, m] Pushes the values packed in 'b'; returns how many. */
int tether__unpack (lua_State *L, struct tether_buffer *b) {
  int n, i, tables;
  size_t ntables = 0;
  b->pos = 0;
  get(L, b, &n, sizeof n);
  luaL_checkstack(L, n + 2, "too many values to return");
  lua_createtable(L, 0, 0);
  tables = lua_gettop(L);
  for (i = 0; i < n; i++)
    unpack_value(L, b, tables, &ntables);
  lua_remove(L, tables);
  return n;
}
