/*
** embed_test.h
** Shared by the C test programs of spec/embed_spec.lua (spec/support/embed_*.c):
** checks that count failures, a transcript on stdout, Lua states with tether.
** Each program ends with `return embed_finish();`: it prints "PASS" or
** "FAIL (n checks)" last, and exits 0 or 1.
*/

#ifndef EMBED_TEST_H
#define EMBED_TEST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>
#include <tether.h>

static int embed_failures;

/* One transcript line (flushed: threads and crashes keep the order). */
static inline void say (const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
}

static inline void check_failed (const char *file, int line, const char *what) {
  printf("FAIL %s:%d: %s\n", file, line, what);
  fflush(stdout);
  embed_failures++;
}

/* CHECK(cond, "text"): a failed check is reported and counted; the program
   goes on, so one run shows every broken rule. */
#define CHECK(cond, what)                                                      \
  ((cond) ? (void)0 : check_failed(__FILE__, __LINE__, (what)))

/* CHECK_RC(rc, want): a libuv-style result code. */
#define CHECK_RC(rc, want)                                                     \
  do {                                                                         \
    int rc_ = (rc), want_ = (want);                                            \
    if (rc_ != want_) {                                                        \
      char what_[160];                                                         \
      snprintf(what_, sizeof what_, "%s returned %d (%s), want %d (%s)", #rc,  \
               rc_, rc_ < 0 ? uv_err_name(rc_) : "ok", want_,                  \
               want_ < 0 ? uv_err_name(want_) : "ok");                         \
      check_failed(__FILE__, __LINE__, what_);                                 \
    }                                                                          \
  } while (0)

/* A Lua state with the standard libraries and tether's preloads. */
static inline lua_State *embed_new_state (void) {
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    printf("FAIL: cannot create a Lua state\n");
    exit(1);
  }
  luaL_openlibs(L);
  tether_openlibs(L);
  return L;
}

/* Loads 'code' (chunk name 'name') and pushes the function; a syntax error
   ends the program (it is a bug of the test itself). */
static inline void embed_load (lua_State *L, const char *code,
                               const char *name) {
  if (luaL_loadbuffer(L, code, strlen(code), name) != LUA_OK) {
    printf("FAIL: %s\n", lua_tostring(L, -1));
    exit(1);
  }
}

/* Runs 'code' as a plain call (not a task); returns 1 if it did not raise,
   else prints the error and returns 0. */
static inline int embed_run (lua_State *L, const char *code) {
  embed_load(L, code, "=chunk");
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    say("error: %s", luaL_tolstring(L, -1, NULL));
    lua_pop(L, 2);
    return 0;
  }
  return 1;
}

static inline void embed_count_handle (uv_handle_t *handle, void *arg) {
  (void)handle;
  ++*(int *)arg;
}

/* Handles still on the loop, closing ones included. */
static inline int embed_handles (uv_loop_t *loop) {
  int n = 0;
  uv_walk(loop, embed_count_handle, &n);
  return n;
}

static inline int embed_finish (void) {
  if (embed_failures == 0)
    say("PASS");
  else
    say("FAIL (%d checks)", embed_failures);
  return embed_failures == 0 ? 0 : 1;
}

#endif
