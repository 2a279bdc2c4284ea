/*
** task.c
** Running tasks (their records and threads are record.c's): resuming,
** finishing, the yield protocol (park, wake, abort, reschedule), error
** capture with tracebacks, and the blocking calls built directly on it:
** checkpoints, sleeps and wait_all_tasks_blocked.
*/

#include <math.h>

#include <lualib.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

/*
** Returns the running task if 'L' is its thread; otherwise raises an error
** naming 'fname' and the way out.
*/
struct task *tether__current (lua_State *L, struct ctx *c, const char *fname) {
  struct task *t = c->current;
  if (t == NULL || t->L != L) {
    if (!c->running)
      tether__fname_error(L, fname,
                          "called outside tether.run; run the program "
                          "as tether.run(main) and call it from a task");
    if (t == NULL)
      tether__fname_error(L, fname,
                          "not called from a tether task (a __gc or a host "
                          "callback between tasks); call it from a task");
    tether__fname_error(L, fname,
                        "called%s from a coroutine that is not a tether "
                        "task (a coroutine.wrap or coroutine.create inside "
                        "a task); run it with tether.coroutine.wrap or "
                        "tether.coroutine.resume, call it from the task "
                        "itself, or start the work as a task with "
                        "tg:start_soon",
                        tether__caller_position(L));
  }
  return t;
}

/* Like tether__current, and checks that the task may block (yield) here. */
struct task *tether__check_task (lua_State *L, struct ctx *c,
                                 const char *fname) {
  struct task *t = tether__current(L, c, fname);
  if (!lua_isyieldable(L))
    tether__fname_error(L, fname,
                        "cannot block across a C-call boundary (inside a "
                        "metamethod such as __tostring or __gc, a table.sort "
                        "comparator, a string.gsub callback, require, ...); "
                        "move the call out of that function");
  return t;
}

/* {====================================================================
** Running a task
** ===================================================================== */

/*
** The message handler of every protected call tether makes inside a task:
** records a traceback of the raise site in the trace table (not for
** Cancelled, and not when a scope or group re-raises an error it already
** saw), and returns the error unchanged.
*/
int tether__msgh (lua_State *L) {
  struct ctx *c = tether__ctx(L);
  struct task *t = c != NULL ? c->current : NULL;
  int rerun;
  if (t == NULL || t->L != L || tether__is_error(L, 1, c, ERROR_CANCELLED))
    return 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->traces_ref);
  rerun = t->reraise;
  t->reraise = 0;
  if (rerun) {
    lua_rawgeti(L, -1, TRACE_ERROR(t->slot));
    rerun = lua_rawequal(L, 1, -1);
    lua_pop(L, 1);
    if (rerun) {
      lua_pop(L, 1);
      return 1;
    }
  }
  luaL_traceback(L, L, NULL, 1);
  lua_rawseti(L, -2, TRACE_TEXT(t->slot));
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, TRACE_ERROR(t->slot));
  lua_pop(L, 1);
  t->traced = 1;
  return 1;
}

/* Raises the error on top again, keeping the traceback of its raise site. */
void tether__reraise (lua_State *L, struct task *t) {
  t->reraise = 1;
  lua_error(L);
}

/* [-0, +1, -] pushes the traceback recorded for the task's last error. */
void tether__push_traceback (lua_State *L, struct task *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, TASK_CTX(t)->traces_ref);
  lua_rawgeti(L, -1, TRACE_TEXT(t->slot));
  lua_remove(L, -2);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "stack traceback:\n\t(not available)");
  }
}

/* [-0, +1, m] pushes the task's name: the one given, or "source:line". */
void tether__push_name (lua_State *L, struct task *t) {
  lua_Debug ar;
  lua_rawgeti(L, LUA_REGISTRYINDEX, TASK_CTX(t)->names_ref);
  lua_rawgeti(L, -1, NAME_INDEX(t->slot));
  lua_remove(L, -2);
  if (lua_type(L, -1) == LUA_TSTRING)
    return;
  if (lua_isfunction(L, -1)) {
    lua_getinfo(L, ">S", &ar);
    if (ar.linedefined > 0)
      lua_pushfstring(L, "%s:%d", ar.short_src, ar.linedefined);
    else
      lua_pushstring(L, ar.short_src);
  }
  else {
    const char *type = luaL_typename(L, -1);
    lua_pop(L, 1);
    lua_pushfstring(L, "<callable %s>", type);
  }
}

/* The task body's result: true plus the results, or false plus the error. */
static int task_entry_k (lua_State *L, int status, lua_KContext k) {
  (void)k;
  lua_pushboolean(L, status == LUA_OK || status == LUA_YIELD);
  lua_replace(L, 1); /* in place of the message handler */
  return lua_gettop(L);
}

/*
** First function of every task's coroutine: calls the task function under a
** protected call inside the coroutine, so that <close> variables are closed
** while the task can still yield.
*/
int tether__task_entry (lua_State *L) {
  lua_pushcfunction(L, tether__msgh);
  lua_insert(L, 1);
  return task_entry_k(
      L, lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 1, 0, task_entry_k), 0);
}

/*
** A stray coroutine.yield in a task reached the loop. The task is resumed
** with a one-shot count hook that raises an error at its next instruction,
** so the error unwinds the task normally (closing <close> variables).
*/
static void stray_yield_hook (lua_State *L, lua_Debug *ar) {
  struct task *t = tether__ctx(L)->current;
  (void)ar;
  if (t == NULL || t->L != L) { /* a coroutine.resume from elsewhere */
    lua_yield(L, 0);            /* (see tether__resumed) */
    return;
  }
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "coroutine.yield: a tether task cannot yield to the loop; "
                "block with tether's functions (tether.checkpoint, "
                "tether.sleep, ...) and run generators in a coroutine of "
                "their own");
}

/* Resumes a ready task once and handles how it stopped. */
void tether__resume (struct ctx *c, struct task *t) {
  int nres, status, ok;
  int nargs;
  lua_State *L;
  if (t->L == NULL)
    tether__bind_thread(c, t);
  L = t->L;
  nargs = t->nresume;
  if (c->nnested > 0) /* it may wait inside tether.coroutine */
    L = tether__descent(c, t, &nargs);
  t->nresume = 0;
  t->ours = 0;
  t->state = TASK_RUNNING;
  c->current = t;
  status = lua_resume(L, c->from, nargs, &nres);
  c->current = NULL;
  /* 't->L' serves below: a park passed up from a coroutine of
     tether.coroutine leaves no values (t->ours is set), and any other yield
     or the end comes from the task's own thread, 't->L' again by then. */
  if (status == LUA_YIELD) {
    if (nres > 0) /* tether's own yields pass nothing */
      lua_pop(t->L, nres);
    if (!t->ours) {
      lua_sethook(t->L, stray_yield_hook, LUA_MASKCOUNT, 1);
      tether__schedule(c, t);
    }
    return;
  }
  if (status != LUA_OK) { /* task_entry itself failed: leave [false, error] */
    lua_xmove(t->L, c->from, 1);
    lua_settop(t->L, 0);
    lua_pushboolean(t->L, 0);
    lua_xmove(c->from, t->L, 1);
  }
  /* finished: [true, results...] or [false, error] */
  ok = lua_toboolean(t->L, 1);
  t->state = TASK_DONE;
  tether__task_finished(c->from, t, ok);
  if (t == c->main) {
    c->stopping = 1; /* tether.run collects its results */
    return;
  }
  if (t->done != NULL)
    tether__report(c, t);
  tether__release(c->from, c, t);
}

/* }==================================================================== */

/* {====================================================================
** The yield protocol
** ===================================================================== */

/* Queues a parked task to run with the given outcome. */
void tether__wake (struct task *t, enum wake_status how) {
  queue_remove(&t->node);
  t->abort = NULL;
  t->wake = (unsigned char)how;
  tether__schedule(TASK_CTX(t), t);
}

/* Cancellation reached a parked task: withdraw its wait if it allows. */
void tether__abort (struct task *t) {
  if (t->state == TASK_PARKED && t->abort != NULL && t->abort(t))
    tether__wake(t, WAKE_CANCELLED);
}

/*
** Parks the running task until tether__wake; the caller has already put it
** on whatever it waits for. If the task is already cancelled, the wait is
** withdrawn at once (the task still yields once, then raises Cancelled).
*/
int tether__park (lua_State *L, struct task *t, tether_abort_fn abort,
                  lua_KContext kctx, lua_KFunction k) {
  t->ours = 1;
  t->wake = WAKE_OK;
  t->state = TASK_PARKED;
  t->abort = abort;
  if (t->scope->effective)
    tether__abort(t);
  return lua_yieldk(L, 0, kctx, k);
}

/* Yields the running task to the back of the run queue. */
int tether__reschedule (lua_State *L, struct task *t, lua_KContext kctx,
                        lua_KFunction k) {
  t->ours = 1;
  t->wake = WAKE_OK;
  tether__schedule(TASK_CTX(t), t);
  return lua_yieldk(L, 0, kctx, k);
}

/*
** Every continuation of a wait starts here, and gets the task back when the
** scheduler resumed it. Otherwise a coroutine.resume from elsewhere (of the
** task's coroutine, taken with coroutine.running) reached the wait, with the
** task still on the run queue or parked: acting on it then would corrupt the
** scheduler. Instead, the values that resume passed are dropped (the stack
** goes back to 'base' plus what a waker left for the task; 'base' < 0 leaves
** it, for a continuation that returns nothing) and the task yields again at
** once, so it goes on waiting; that resume returns true and a message.
*/
struct task *tether__resumed (lua_State *L, int base, lua_KContext kctx,
                              lua_KFunction k) {
  struct ctx *c = CTX(L);
  struct task *t = c->current;
  if (t != NULL && t->L == L)
    return t;
  if (base >= 0) {
    struct task *self = tether__thread_task(c, L);
    lua_settop(L, base + (self != NULL ? self->nresume : 0));
  }
  lua_pushliteral(L, "coroutine.resume: this coroutine runs a tether task, "
                     "which only tether resumes; the task goes on waiting "
                     "(wake it with an Event, a stream or a cancel scope)");
  lua_yieldk(L, 1, kctx, k); /* does not return */
  return NULL;
}

/*
** Whether 'co' is suspended inside a tether task: its outermost frame is
** task_entry, which only tether starts coroutines with. (A coroutine a task
** created has frames of its own at the bottom.)
*/
static int runs_task (lua_State *co) {
  lua_Debug ar;
  int level = 0, is;
  if (lua_status(co) != LUA_YIELD || !lua_checkstack(co, 1))
    return 0;
  while (lua_getstack(co, level + 1, &ar))
    level++;
  if (!lua_getstack(co, level, &ar) || !lua_getinfo(co, "f", &ar))
    return 0;
  is = lua_tocfunction(co, -1) == tether__task_entry;
  lua_pop(co, 1);
  return is;
}

/*
** coroutine.close, guarded: closing a task's coroutine (taken with
** coroutine.running) would unwind the task behind the scheduler's back,
** leaving its records pointing at scopes and groups that its stack alone
** kept alive. Upvalue 1 is the original coroutine.close.
*/
static int guarded_close (lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  struct ctx *c = tether__ctx(L);
  if (co != NULL && runs_task(co))
    return tether__fname_error(
        L, "coroutine.close",
        "this coroutine runs a tether task, which only tether may close; "
        "to stop the task, cancel a scope around it (scope:cancel())");
  if (co != NULL && c != NULL && tether__coroutine_waits(co, c))
    return tether__fname_error(
        L, "coroutine.close",
        "this coroutine waits inside a tether task, which only tether may "
        "close; to stop the wait, cancel a scope around it");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* Puts guarded_close in place of the coroutine library's close (once). */
static void guard_coroutine_close (lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_COLIBNAME) == LUA_TTABLE &&
      lua_getfield(L, -1, "close") == LUA_TFUNCTION &&
      lua_tocfunction(L, -1) != guarded_close) {
    lua_pushcclosure(L, guarded_close, 1);
    lua_setfield(L, -2, "close");
    lua_pop(L, 2);
    return;
  }
  lua_settop(L, lua_gettop(L) - 3);
}

/* In a continuation: raises Cancelled or the error the waker chose. */
void tether__check_wake (lua_State *L, struct task *t) {
  switch (t->wake) {
    case WAKE_CANCELLED:
      tether__raise_cancelled(L, t);
      break;
    case WAKE_ERROR:
      tether__reraise(L, t);
      break;
    case WAKE_RAISE:
      tether__raise_wake_error(L, TASK_CTX(t), t->wait_data);
      break;
  }
}

/* }==================================================================== */

/* {====================================================================
** Checkpoints and sleeping
** ===================================================================== */

/* Continuation of a checkpoint: raises Cancelled if cancelled by now. */
int tether__checkpoint_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, -1, k, tether__checkpoint_k);
  (void)status;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return 0;
}

/* Continuation of a schedule point that is not a cancel point. */
int tether__scheduled_k (lua_State *L, int status, lua_KContext k) {
  (void)status;
  tether__resumed(L, -1, k, tether__scheduled_k);
  return 0;
}

/* Continuation of a plain park: raise, or return the values left for us. */
int tether__woken_k (lua_State *L, int status, lua_KContext base) {
  struct task *t = tether__resumed(L, (int)base, base, tether__woken_k);
  (void)status;
  tether__check_wake(L, t);
  return lua_gettop(L) - (int)base;
}

static int task_checkpoint (lua_State *L) {
  struct task *t = tether__check_task(L, CTX(L), "tether.checkpoint");
  return tether__reschedule(L, t, 0, tether__checkpoint_k);
}

static int task_checkpoint_if_cancelled (lua_State *L) {
  struct task *t =
      tether__check_task(L, CTX(L), "tether.checkpoint_if_cancelled");
  if (!t->scope->effective)
    return 0;
  return tether__reschedule(L, t, 0, tether__checkpoint_k);
}

static int task_cancel_shielded_checkpoint (lua_State *L) {
  struct task *t =
      tether__check_task(L, CTX(L), "tether.cancel_shielded_checkpoint");
  return tether__reschedule(L, t, 0, tether__scheduled_k);
}

/*
** The same three checkpoints for the facade's primitives: argument 1 names
** the public function, so errors speak of "lock:acquire", not of a
** checkpoint the user never called.
*/
static int task_checkpoint_as (lua_State *L) {
  struct task *t = tether__check_task(L, CTX(L), luaL_checkstring(L, 1));
  return tether__reschedule(L, t, 0, tether__checkpoint_k);
}

static int task_checkpoint_if_cancelled_as (lua_State *L) {
  struct task *t = tether__check_task(L, CTX(L), luaL_checkstring(L, 1));
  if (!t->scope->effective)
    return 0;
  return tether__reschedule(L, t, 0, tether__checkpoint_k);
}

static int task_cancel_shielded_checkpoint_as (lua_State *L) {
  struct task *t = tether__check_task(L, CTX(L), luaL_checkstring(L, 1));
  return tether__reschedule(L, t, 0, tether__scheduled_k);
}

static int sleep_abort (struct task *t) {
  tether__remove_deadline(TASK_CTX(t), &t->sleep);
  return 1;
}

static int forever_abort (struct task *t) {
  (void)t;
  return 1;
}

/* What a sleeping task waits on ("sleep until" its sleep.when), or NULL. */
const char *tether__sleep_what (const struct task *t) {
  if (t->abort == sleep_abort)
    return "sleep until";
  if (t->abort == forever_abort)
    return "sleep_forever";
  return NULL;
}

/* Blocks the running task until 'deadline' (a checkpoint if it passed). */
static int sleep_until (lua_State *L, struct task *t, double deadline) {
  if (deadline <= tether__time(TASK_CTX(t)))
    return tether__reschedule(L, t, 0, tether__checkpoint_k);
  if (deadline == HUGE_VAL)
    return tether__park(L, t, forever_abort, lua_gettop(L), tether__woken_k);
  if (tether__add_deadline(TASK_CTX(t), &t->sleep, deadline) < 0)
    return luaL_error(L, "not enough memory");
  return tether__park(L, t, sleep_abort, lua_gettop(L), tether__woken_k);
}

static double check_time (lua_State *L, const char *fname, const char *what,
                          int nonnegative) {
  lua_Number x;
  if (lua_type(L, 1) != LUA_TNUMBER)
    tether__fname_error(L, fname, "%s must be a number, got %s", what,
                        luaL_typename(L, 1));
  x = lua_tonumber(L, 1);
  if (x != x)
    tether__fname_error(L, fname, "%s must not be NaN", what);
  if (nonnegative && x < 0)
    tether__fname_error(L, fname, "%s must be >= 0, got %s", what,
                        lua_tostring(L, 1));
  return x;
}

static int task_sleep (lua_State *L) {
  struct ctx *c = CTX(L);
  double delay = check_time(L, "tether.sleep", "delay", 1);
  struct task *t = tether__check_task(L, c, "tether.sleep");
  if (delay == 0)
    return tether__reschedule(L, t, 0, tether__checkpoint_k);
  return sleep_until(L, t, tether__time(c) + delay);
}

static int task_sleep_until (lua_State *L) {
  struct ctx *c = CTX(L);
  double deadline = check_time(L, "tether.sleep_until", "deadline", 0);
  struct task *t = tether__check_task(L, c, "tether.sleep_until");
  return sleep_until(L, t, deadline);
}

static int task_sleep_forever (lua_State *L) {
  struct task *t = tether__check_task(L, CTX(L), "tether.sleep_forever");
  return sleep_until(L, t, HUGE_VAL);
}

/* }==================================================================== */

/* {====================================================================
** Task introspection
** ===================================================================== */

/* [-0, +1, m] pushes {id =, name =, parent_id =} for a task. Its parent is
   the caller of tg:start until started(), then the group's host. */
static void push_task_info (lua_State *L, struct task *t) {
  struct task *parent = t->starter != NULL ? t->starter
                        : t->group != NULL ? t->group->host
                                           : NULL;
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, t->id);
  lua_setfield(L, -2, "id");
  tether__push_name(L, t);
  lua_setfield(L, -2, "name");
  if (parent != NULL) {
    lua_pushinteger(L, parent->id);
    lua_setfield(L, -2, "parent_id");
  }
}

static int task_current_task (lua_State *L) {
  push_task_info(L, tether__current(L, CTX(L), "tether.current_task"));
  return 1;
}

static int task_get_running_tasks (lua_State *L) {
  struct ctx *c = CTX(L);
  lua_Integer i = 0;
  int slot;
  if (!c->running)
    return tether__fname_error(L, "tether.get_running_tasks",
                               "called outside tether.run");
  lua_createtable(L, c->ntasks, 0);
  for (slot = 0; slot < tether__nslots(c); slot++) {
    struct task *t = tether__live_record(c, slot);
    if (t == NULL)
      continue;
    push_task_info(L, t);
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

static int task_wait_all_tasks_blocked (lua_State *L) {
  struct ctx *c = CTX(L);
  struct task *t = tether__check_task(L, c, "tether.wait_all_tasks_blocked");
  return tether__wait(L, t, &c->blocked_waiters, lua_gettop(L),
                      tether__woken_k);
}

/* }==================================================================== */

void tether__open_task (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {
      {"sleep", task_sleep},
      {"sleep_until", task_sleep_until},
      {"sleep_forever", task_sleep_forever},
      {"checkpoint", task_checkpoint},
      {"checkpoint_if_cancelled", task_checkpoint_if_cancelled},
      {"cancel_shielded_checkpoint", task_cancel_shielded_checkpoint},
      {"checkpoint_as", task_checkpoint_as},
      {"checkpoint_if_cancelled_as", task_checkpoint_if_cancelled_as},
      {"cancel_shielded_checkpoint_as", task_cancel_shielded_checkpoint_as},
      {"current_task", task_current_task},
      {"get_running_tasks", task_get_running_tasks},
      {"wait_all_tasks_blocked", task_wait_all_tasks_blocked},
      {NULL, NULL}};
  (void)c;
  tether__add_functions(L, funcs);
  guard_coroutine_close(L);
}
