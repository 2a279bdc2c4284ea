/*
** clock.c
** Virtual time for tests: tether.MockClock (Trio's MockClock) and
** tether.run_with{clock = ...}. While a run uses a mock clock, every deadline,
** sleep and current_time() read it instead of the monotonic clock; the
** deadline timer is armed in real time for when the next deadline comes at
** the clock's rate, or for when the autojump threshold runs out.
**
** Virtual time is base + rate * (real time since rebase). A jump or a change
** of rate rebases, so the clock never goes back; autojump rebases onto the
** next deadline exactly, so that deadline is due at once, whatever the rate.
*/

#include <math.h>
#include <string.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

/* The longest the deadline timer is armed for (a day, in ms), as in loop.c:
   a clock with a tiny rate must not overflow libuv's uint64_t. */
#define CLOCK_TIMER_MAX_MS 86400000.0

struct mock_clock {
  double base;               /* virtual time at 'base_real' */
  uint64_t base_real;        /* uv_hrtime() of the last rebase */
  double rate;               /* virtual seconds per real second */
  double autojump_threshold; /* real seconds; HUGE_VAL: never */
};

double tether__clock_now (const struct mock_clock *m) {
  if (m->rate == 0)
    return m->base;
  return m->base + (double)(uv_hrtime() - m->base_real) * 1e-9 * m->rate;
}

/* Makes the clock read 'now' from this moment on. */
static void rebase (struct mock_clock *m, double now) {
  m->base = now;
  m->base_real = uv_hrtime();
}

/*
** The test watchdog (core.set_watchdog) counts real time under a mock clock
** too, so it is not in the deadline heap then (autojump would jump to it):
** milliseconds until it is due, HUGE_VAL when it is off or fired.
*/
static double watchdog_ms (const struct ctx *c) {
  if (c->watchdog_seconds == 0 || c->watchdog_fired)
    return HUGE_VAL;
  return c->watchdog_seconds * 1e3 -
         (double)(uv_hrtime() - c->clock_started) * 1e-6;
}

/*
** Called by the tick when no task is ready and no wait_all_tasks_blocked
** caller is left to wake (they go first, as in Trio); 'ran': tasks ran
** since the tick's last call, so every task is blocked from now on. Once
** every task has been blocked for the autojump threshold, moves the clock
** to the next deadline and returns 1.
*/
int tether__clock_autojump (struct ctx *c, int ran) {
  struct mock_clock *m = c->clock;
  struct heap_node *n = heap_min(&c->deadlines);
  if (ran)
    c->idle_since = uv_hrtime();
  if (n == NULL || m->autojump_threshold == HUGE_VAL ||
      (double)(uv_hrtime() - c->idle_since) * 1e-9 < m->autojump_threshold ||
      n->when <= tether__clock_now(m))
    return 0;
  rebase(m, n->when);
  return 1;
}

/*
** Called when the tick ends: milliseconds of real time until the timer must
** fire (HUGE_VAL: never): when the next deadline comes at the clock's rate,
** or, with nothing ready, when the autojump threshold runs out, or when the
** watchdog is due. Fires the watchdog when it is.
*/
double tether__clock_timer_ms (struct ctx *c) {
  struct mock_clock *m = c->clock;
  struct heap_node *n = heap_min(&c->deadlines);
  double wait = ceil(watchdog_ms(c)), jump;
  if (wait <= 0) { /* its tasks are woken; the tick runs them */
    c->watchdog_fired = 1;
    tether__cancel(&c->root, CAUSE_WATCHDOG);
    return HUGE_VAL;
  }
  if (n != NULL && n->when <= tether__clock_now(m))
    return 0; /* due already (jumped to while a tick was cut short) */
  if (n != NULL && m->rate > 0) {
    jump = ceil((n->when - tether__clock_now(m)) / m->rate * 1e3);
    if (jump < wait)
      wait = jump;
  }
  if (n != NULL && m->autojump_threshold < HUGE_VAL && queue_empty(&c->ready) &&
      c->blocked_waiters.count == 0) {
    jump = ceil(
        (m->autojump_threshold - (double)(uv_hrtime() - c->idle_since) * 1e-9) *
        1e3);
    if (jump < wait)
      wait = jump;
  }
  if (wait < 0)
    return 0;
  return wait > CLOCK_TIMER_MAX_MS ? CLOCK_TIMER_MAX_MS : wait;
}

static struct mock_clock *check_clock (lua_State *L, const char *fname) {
  return tether__check_self(L, 1, CTX(L), CLASS_CLOCK, fname);
}

/* Reads a rate or threshold: a number >= 0, not NaN; 'finite': not huge. */
static double check_amount (lua_State *L, int idx, const char *fname,
                            const char *what, int finite) {
  lua_Number x;
  if (lua_type(L, idx) != LUA_TNUMBER)
    tether__fname_error(L, fname, "%s must be a number, got %s", what,
                        luaL_typename(L, idx));
  x = lua_tonumber(L, idx);
  if (!(x >= 0))
    tether__fname_error(L, fname, "%s must be a number >= 0, got %s", what,
                        lua_tostring(L, idx));
  if (finite && x == HUGE_VAL)
    tether__fname_error(L, fname, "%s must be finite", what);
  return x;
}

static void set_rate (lua_State *L, int idx, struct mock_clock *m,
                      const char *fname) {
  double rate = check_amount(L, idx, fname, "rate", 1);
  rebase(m, tether__clock_now(m));
  m->rate = rate;
}

/* tether.MockClock{rate = 0, autojump_threshold = math.huge} */
static int clock_MockClock (lua_State *L) {
  const char *fname = "tether.MockClock";
  struct mock_clock *m;
  if (!lua_isnoneornil(L, 1) && !lua_istable(L, 1))
    return tether__fname_error(L, fname,
                               "expected an options table {rate =, "
                               "autojump_threshold =} or nothing, got %s",
                               luaL_typename(L, 1));
  m = lua_newuserdatauv(L, sizeof *m, 0);
  memset(m, 0, sizeof *m);
  m->autojump_threshold = HUGE_VAL;
  rebase(m, 0);
  if (lua_istable(L, 1)) {
    lua_pushnil(L);
    while (lua_next(L, 1)) {
      const char *key =
          lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
      if (key != NULL && strcmp(key, "rate") == 0)
        set_rate(L, -1, m, fname);
      else if (key != NULL && strcmp(key, "autojump_threshold") == 0)
        m->autojump_threshold =
            check_amount(L, -1, fname, "autojump_threshold", 0);
      else
        return tether__fname_error(L, fname,
                                   "unknown option '%s' (the options are rate "
                                   "and autojump_threshold)",
                                   luaL_tolstring(L, -2, NULL));
      lua_pop(L, 1);
    }
  }
  tether__set_metatable(L, CTX(L), CLASS_CLOCK);
  return 1;
}

/* clock:jump(seconds): moves virtual time forward. */
static int clock_jump (lua_State *L) {
  const char *fname = "clock:jump";
  struct mock_clock *m = check_clock(L, fname);
  double seconds;
  if (lua_type(L, 2) != LUA_TNUMBER)
    return tether__fname_error(L, fname, "seconds must be a number, got %s",
                               luaL_typename(L, 2));
  seconds = lua_tonumber(L, 2);
  if (!(seconds >= 0))
    return tether__fname_error(L, fname,
                               "seconds must be >= 0 (time cannot go back), "
                               "got %s",
                               lua_tostring(L, 2));
  rebase(m, tether__clock_now(m) + seconds);
  return 0;
}

/* clock:current_time() -> its virtual time, in or outside a run. */
static int clock_current_time (lua_State *L) {
  lua_pushnumber(L, tether__clock_now(check_clock(L, "clock:current_time")));
  return 1;
}

static int clock__index (lua_State *L) {
  struct mock_clock *m = check_clock(L, "clock.__index");
  const char *key = lua_tostring(L, 2);
  if (key == NULL)
    return 0;
  if (strcmp(key, "rate") == 0)
    lua_pushnumber(L, m->rate);
  else if (strcmp(key, "autojump_threshold") == 0)
    lua_pushnumber(L, m->autojump_threshold);
  else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(2)); /* methods */
  }
  return 1;
}

static int clock__newindex (lua_State *L) {
  struct mock_clock *m = check_clock(L, "clock.__newindex");
  const char *key = lua_tostring(L, 2);
  if (key != NULL && strcmp(key, "rate") == 0)
    set_rate(L, 3, m, "clock.rate");
  else if (key != NULL && strcmp(key, "autojump_threshold") == 0)
    m->autojump_threshold =
        check_amount(L, 3, "clock.autojump_threshold", "autojump_threshold", 0);
  else {
    lua_pushfstring(L, "clock.%s", key != NULL ? key : luaL_typename(L, 2));
    return tether__fname_error(L, lua_tostring(L, -1),
                               "not a field of MockClock (rate and "
                               "autojump_threshold can be set)");
  }
  return 0;
}

static int clock__tostring (lua_State *L) {
  struct mock_clock *m = check_clock(L, "clock.__tostring");
  lua_pushfstring(L, "tether.MockClock (time %f, rate %f): %p",
                  tether__clock_now(m), m->rate, (void *)m);
  return 1;
}

/*
** tether.run_with(opts, fn, ...): tether.run with options. The clock is
** anchored in the registry while the run uses it, and given up however
** the run ends.
*/
static int clock_run_with (lua_State *L) {
  const char *fname = "tether.run_with";
  struct ctx *c = CTX(L);
  struct mock_clock *clock = NULL;
  int status;
  if (!lua_istable(L, 1))
    return tether__fname_error(L, fname,
                               "expected an options table {clock =} first, "
                               "got %s",
                               luaL_typename(L, 1));
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    const char *key =
        lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (key == NULL || strcmp(key, "clock") != 0)
      return tether__fname_error(L, fname,
                                 "unknown option '%s' (the only option is "
                                 "clock)",
                                 luaL_tolstring(L, -2, NULL));
    clock = tether__test_class(L, -1, c, CLASS_CLOCK);
    if (clock == NULL)
      return tether__fname_error(L, fname,
                                 "clock must be a tether.MockClock, got %s",
                                 luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  if (clock == NULL || c->running) {       /* run itself refuses to nest */
    lua_pushvalue(L, lua_upvalueindex(2)); /* tether.run */
    lua_replace(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
  }
  lua_getfield(L, 1, "clock");
  lua_replace(L, 1); /* anchors the clock while the run uses it */
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 2); /* [clock, run, fn, args...] */
  c->clock = clock;
  c->idle_since = c->clock_started = uv_hrtime();
  status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
  c->clock = NULL;
  if (status != LUA_OK)
    return lua_error(L);
  return lua_gettop(L) - 1;
}

void tether__open_clock (lua_State *L, struct ctx *c) {
  static const luaL_Reg methods[] = {
      {"jump", clock_jump}, {"current_time", clock_current_time}, {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__newindex", clock__newindex},
                                         {"__tostring", clock__tostring},
                                         {NULL, NULL}};
  static const struct class_def clock_class = {
      CLASS_CLOCK, "tether.MockClock", methods, metamethods, clock__index};
  static const luaL_Reg funcs[] = {{"MockClock", clock_MockClock},
                                   {NULL, NULL}};
  tether__add_class(L, c, &clock_class, 0);
  tether__add_functions(L, funcs);
  lua_pushvalue(L, -2);
  lua_getfield(L, -2, "run"); /* loop.c's, opened before */
  lua_pushcclosure(L, clock_run_with, 2);
  lua_setfield(L, -2, "run_with");
}
