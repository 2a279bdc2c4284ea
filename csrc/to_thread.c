/*
** to_thread.c
** The loop's side of worker threads: a job is made from the function and
** its arguments (copied at once, so a value that cannot cross raises at
** the call), submitted to the run's pool, and waited for. The waiting task
** is woken when the job ends or calls tether.worker.call. The Lua facade
** (lua/tether/worker.lua) drives these steps: the limiter, the calls, and
** what cancellation means in each mode.
**
** Cancelling a waiting task calls job_abort: under "interrupt" and "wait"
** the task keeps waiting (the worker is told, and under "interrupt" made to
** raise Cancelled); under "abandon" the task leaves at once and the job is
** left to the loop, which releases its token when the worker ends.
*/

#include <stdlib.h>
#include <string.h>

#include "worker.h"

#define CTX(L)   ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))
#define JOB_MT   "tether.WorkerJob"
#define FNAME    "tether.to_thread"
#define NS_PER_S 1e9

/* Registry keys (their addresses) of the caller's state. */
static const char REAPER_KEY = 'r'; /* releases an abandoned job's token */
static const char DUMPS_KEY = 'd';  /* function -> its string.dump (weak) */

static struct job *check_job (lua_State *L) {
  return luaL_checkudata(L, 1, JOB_MT);
}

/* A job is collected only after the loop saw it end, or when the state
   closes (then it is stopped and waited for first). */
static int job__gc (lua_State *L) {
  struct job *j = check_job(L);
  if (j->anchored)
    tether__pool_forget(j->pool, j);
  j->anchored = 0;
  tether__buffer_free(&j->fn);
  tether__buffer_free(&j->args);
  tether__buffer_free(&j->results);
  tether__buffer_free(&j->call);
  return 0;
}

static int writer (lua_State *L, const void *p, size_t n, void *ud) {
  luaL_addlstring(ud, p, n);
  (void)L;
  return 0;
}

/*
** [-0, +1, m/e] string.dump of the function at 'idx' (argument 'arg' of
** to_thread), from a cache: a Lua function whose only upvalue, if any, is
** _ENV.
*/
static void push_dump (lua_State *L, int idx, int arg) {
  const char *up;
  luaL_Buffer b;
  if (lua_iscfunction(L, idx))
    tether__fname_error(L, FNAME,
                        "argument %d is a C function (a worker can run a Lua "
                        "function or a \"module.function\" name)",
                        arg);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &DUMPS_KEY);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TSTRING) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  up = lua_getupvalue(L, idx, 1);
  if (up != NULL) {
    lua_pop(L, 1);
    if (strcmp(up, "_ENV") != 0 || lua_getupvalue(L, idx, 2) != NULL)
      tether__fname_error(L, FNAME,
                          "argument %d uses local variables of an enclosing "
                          "function (upvalues); a function moved to a worker "
                          "can use only globals and its arguments",
                          arg);
  }
  luaL_buffinit(L, &b);
  lua_pushvalue(L, idx);
  lua_dump(L, writer, &b, 0);
  lua_pop(L, 1);
  luaL_pushresult(&b);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
}

static void buffer_set (lua_State *L, struct tether_buffer *b, const char *s,
                        size_t len) {
  b->data = malloc(len);
  if (b->data == NULL)
    luaL_error(L, "not enough memory");
  memcpy(b->data, s, len);
  b->len = b->cap = len;
}

static int check_name (const char *s) {
  const char *dot = strrchr(s, '.');
  return dot != NULL && dot != s && dot[1] != '\0';
}

/*
** core.worker_job(mode, first, fn, ...): a job that runs fn(...) once
** started; 'first' is fn's position among to_thread's arguments, for the
** messages. Raises for a function or an argument that cannot cross.
*/
static int core_worker_job (lua_State *L) {
  static const char *const modes[] = {"interrupt", "wait", "abandon", NULL};
  int mode = luaL_checkoption(L, 1, NULL, modes);
  int first = (int)luaL_checkinteger(L, 2);
  int nargs = lua_gettop(L) - 3;
  struct job *j;
  size_t len;
  const char *s;
  if (lua_type(L, 3) == LUA_TSTRING) {
    if (!check_name(lua_tostring(L, 3)))
      return tether__fname_error(L, FNAME,
                                 "argument %d must name a function as "
                                 "\"module.function\", got \"%s\"",
                                 first, lua_tostring(L, 3));
    lua_pushvalue(L, 3);
  }
  else if (lua_type(L, 3) == LUA_TFUNCTION)
    push_dump(L, 3, first);
  else
    return tether__fname_error(L, FNAME,
                               "argument %d must be a function or a "
                               "\"module.function\" name, got %s",
                               first, luaL_typename(L, 3));
  j = lua_newuserdatauv(L, sizeof *j, 0);
  memset(j, 0, sizeof *j);
  tether__waitq_init(&j->waiting);
  queue_init(&j->node);
  j->mode = (unsigned char)mode;
  j->by_name = lua_type(L, 3) == LUA_TSTRING;
  luaL_setmetatable(L, JOB_MT);
  s = lua_tolstring(L, -2, &len);
  buffer_set(L, &j->fn, s, len);
  tether__pack(L, 4, nargs, &j->args, FNAME, "argument", first + 1);
  return 1;
}

static void on_async (uv_async_t *h);

/* The run's pool, made on first use. */
static struct pool *get_pool (lua_State *L, struct ctx *c, const char *fname) {
  struct pool *p;
  int err;
  if (c->workers != NULL)
    return c->workers;
  if (c->loop == NULL)
    tether__fname_error(L, fname, "must be called inside tether.run");
  lua_createtable(L, 0, 0);
  lua_createtable(L, 0, 0);
  p = tether__pool_new(c, c->loop, on_async, &err);
  if (p == NULL)
    tether__fname_error(L, fname, "cannot make a worker pool: %s",
                        uv_strerror(err));
  p->idle_ns = (uint64_t)(c->worker_idle * NS_PER_S);
  p->exposed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  p->jobs_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->workers = p;
  return p;
}

/* core.worker_start(job): hands the job to a worker thread. */
static int core_worker_start (lua_State *L) {
  struct ctx *c = CTX(L);
  struct job *j = check_job(L);
  struct pool *p = get_pool(L, c, FNAME);
  int err;
  if (j->pool != NULL)
    return luaL_error(L, FNAME ": this job was started already");
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->jobs_ref);
  lua_pushvalue(L, 1);
  lua_rawsetp(L, -2, j);
  j->pool = p;
  j->anchored = 1;
  err = tether__pool_submit(p, j);
  if (err < 0) {
    lua_pushnil(L);
    lua_rawsetp(L, -2, j);
    j->anchored = 0;
    return luaL_error(L, FNAME ": cannot start a worker thread: %s",
                      uv_strerror(err));
  }
  return 0;
}

/* Its caller leaves 'j' (cancelled under "abandon", or failed): a pending
   call is refused, the worker is told, and the token goes when it ends. */
static void leave (struct job *j) {
  j->abandoned = 1;
  tether__pool_interrupt(j->pool, j);
  if (j->seen == SEEN_CALL) {
    j->seen = SEEN_NOTHING;
    tether__pool_reply(j->pool, j, REPLY_CANCELLED);
  }
}

/* Cancellation reached the task waiting for a job (see the top). */
static int job_abort (struct task *t) {
  struct job *j = t->wait_data;
  tether__pool_interrupt(j->pool, j);
  if (j->mode != CANCEL_ABANDON)
    return 0;
  queue_remove(&t->node);
  j->waiting.count--;
  leave(j);
  return 1;
}

static int push_seen (lua_State *L, const struct job *j) {
  lua_pushstring(L, j->seen == SEEN_CALL ? "call" : "done");
  return 1;
}

static int wait_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, 1, k, wait_k);
  (void)status;
  tether__check_wake(L, t);
  return push_seen(L, lua_touserdata(L, 1));
}

/*
** core.worker_wait(job): blocks until the job ends ("done") or its worker
** calls tether.worker.call ("call"). Raises Cancelled only under "abandon".
*/
static int core_worker_wait (lua_State *L) {
  struct ctx *c = CTX(L);
  struct job *j = check_job(L);
  struct task *t = tether__check_task(L, c, FNAME);
  lua_settop(L, 1);
  if (j->pool == NULL)
    return luaL_error(L, FNAME ": this job was not started");
  if (j->seen != SEEN_NOTHING)
    return push_seen(L, j);
  queue_insert_tail(&j->waiting.tasks, &t->node);
  j->waiting.count++;
  t->wait_data = j; /* also the wait queue: its first member */
  return tether__park(L, t, job_abort, 0, wait_k);
}

/* [-0, +1, m] WorkerError from the message and traceback in j->results */
static void push_worker_error (lua_State *L, struct ctx *c, struct job *j) {
  int n;
  lua_createtable(L, 0, 2);
  n = j->results.len > 0 ? tether__unpack(L, &j->results) : 0;
  if (n < 2) {
    lua_settop(L, lua_gettop(L) - n);
    lua_pushliteral(L, "not enough memory");
    lua_pushliteral(L, "");
  }
  lua_setfield(L, -3, "traceback");
  lua_setfield(L, -2, "message");
  tether__set_error_class(L, -1, c, ERROR_WORKER);
}

/*
** core.worker_finish(job): after "done": the results, or raises the
** worker's error as WorkerError; returns nothing when the worker stopped
** for cancellation. Second result of core.worker_outcome.
*/
static int core_worker_finish (lua_State *L) {
  struct ctx *c = CTX(L);
  struct job *j = check_job(L);
  if (j->seen != SEEN_DONE)
    return luaL_error(L, FNAME ": this job has not ended");
  lua_settop(L, 1);
  switch (j->outcome) {
    case OUTCOME_OK:
      return tether__unpack(L, &j->results);
    case OUTCOME_ERROR:
      push_worker_error(L, c, j);
      return lua_error(L);
    default:
      return 0;
  }
}

/* core.worker_cancelled(job): whether the caller was cancelled, and
   whether the worker stopped for it. */
static int core_worker_cancelled (lua_State *L) {
  struct job *j = check_job(L);
  lua_pushboolean(L, j->cancel);
  lua_pushboolean(L, j->seen == SEEN_DONE && j->outcome == OUTCOME_CANCELLED);
  return 2;
}

/* core.worker_call_args(job): the name and arguments of the pending
   tether.worker.call. */
static int core_worker_call_args (lua_State *L) {
  struct job *j = check_job(L);
  if (j->seen != SEEN_CALL)
    return luaL_error(L, "tether.worker.call: no call is pending");
  lua_settop(L, 1);
  return tether__unpack(L, &j->call);
}

/*
** core.worker_reply(job, status, ...): answers the pending call: status
** "ok" (the values), "error" (message, traceback), "misuse" (message) or
** "cancelled". Raises if a value cannot cross (nothing is sent then).
*/
static int core_worker_reply (lua_State *L) {
  static const char *const statuses[] = {"ok", "error", "misuse", "cancelled",
                                         NULL};
  struct job *j = check_job(L);
  int status = luaL_checkoption(L, 2, NULL, statuses);
  if (j->seen != SEEN_CALL)
    return luaL_error(L, "tether.worker.call: no call is pending");
  tether__buffer_free(&j->call);
  tether__pack(L, 3, lua_gettop(L) - 2, &j->call, "tether.worker.call",
               "result", 1);
  j->seen = SEEN_NOTHING;
  if (status == REPLY_CANCELLED) /* the caller is cancelled: so is the job */
    tether__pool_interrupt(j->pool, j);
  tether__pool_reply(j->pool, j, (enum reply_status)status);
  return 0;
}

/* core.worker_leave(job): see leave(); allocates nothing. */
static int core_worker_leave (lua_State *L) {
  struct job *j = check_job(L);
  if (j->pool != NULL && j->seen != SEEN_DONE)
    leave(j);
  return 0;
}

/* core.worker_reply_nomem(job): answers the pending call with "not enough
   memory" (when even an error could not be sent). */
static int core_worker_reply_nomem (lua_State *L) {
  struct job *j = check_job(L);
  if (j->seen != SEEN_CALL)
    return luaL_error(L, "tether.worker.call: no call is pending");
  j->seen = SEEN_NOTHING;
  tether__pool_reply(j->pool, j, REPLY_NOMEM);
  return 0;
}

/* core.worker_exposed(): the table of exposed functions of this run. */
static int core_worker_exposed (lua_State *L) {
  struct pool *p = get_pool(L, CTX(L), "tether.worker.expose");
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->exposed_ref);
  return 1;
}

/* core.worker_set_reaper(fn): fn(job) releases an abandoned job's token. */
static int core_worker_set_reaper (lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &REAPER_KEY);
  return 0;
}

/* core.worker_threads(): the run's worker threads (for tests). */
static int core_worker_threads (lua_State *L) {
  struct pool *p = CTX(L)->workers;
  int n = 0;
  if (p != NULL) {
    uv_mutex_lock(&p->lock);
    n = p->nthreads;
    uv_mutex_unlock(&p->lock);
  }
  lua_pushinteger(L, n);
  return 1;
}

/* core.worker_idle_seconds([s]): how long an idle worker thread lives;
   returns the previous value. */
static int core_worker_idle_seconds (lua_State *L) {
  struct ctx *c = CTX(L);
  double old = c->worker_idle;
  if (!lua_isnoneornil(L, 1)) {
    lua_Number s = luaL_checknumber(L, 1);
    luaL_argcheck(L, s > 0 && s < 1e6, 1, "expected seconds in (0, 1e6)");
    c->worker_idle = s;
    if (c->workers != NULL) {
      uv_mutex_lock(&c->workers->lock);
      c->workers->idle_ns = (uint64_t)(s * NS_PER_S);
      uv_cond_broadcast(&c->workers->work);
      uv_mutex_unlock(&c->workers->lock);
    }
  }
  lua_pushnumber(L, old);
  return 1;
}

/* Calls the reaper for an abandoned job that ended. */
static void reap (lua_State *L, struct pool *p, struct job *j) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &REAPER_KEY);
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->jobs_ref);
  lua_rawgetp(L, -1, j);
  lua_remove(L, -2);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    tether__report_error(L, "error releasing a worker's token");
    lua_pop(L, 1);
  }
}

/*
** The loop's look at jobs the workers posted ('list', taken from the pool):
** a call wakes its caller (or is refused when nobody waits for it); an end
** wakes the caller, and the job leaves the table that anchored it. Waking
** allocates nothing; the reaper (Lua) runs for a job that stays anchored
** until after it, so a finalizer it runs cannot free a job of the list.
*/
static void see_jobs (struct pool *p, struct queue *list) {
  lua_State *L = p->ctx->L;
  while (!queue_empty(list)) {
    struct job *j = queue_data(queue_head(list), struct job, node);
    struct task *t = tether__waitq_first(&j->waiting);
    queue_remove(&j->node);
    if (j->state == JOB_CALLING) {
      if (j->abandoned || p->stopping || t == NULL) {
        tether__pool_reply(p, j, REPLY_CANCELLED);
        continue;
      }
      j->seen = SEEN_CALL;
    }
    else {
      j->seen = SEEN_DONE;
      uv_mutex_lock(&p->lock);
      p->njobs--;
      uv_mutex_unlock(&p->lock);
    }
    if (t != NULL) {
      t->nresume = 0;
      tether__waitq_wake(t, WAKE_OK);
    }
    if (j->seen == SEEN_DONE) {
      if (j->abandoned)
        reap(L, p, j);
      lua_rawgeti(L, LUA_REGISTRYINDEX, p->jobs_ref);
      lua_pushnil(L);
      lua_rawsetp(L, -2, j);
      lua_pop(L, 1);
      j->anchored = 0;
    }
  }
}

static void on_async (uv_async_t *h) {
  struct pool *p = h->data;
  struct queue list;
  queue_init(&list);
  tether__pool_take_done(p, &list, 0);
  p->ctx->in_callback++;
  see_jobs(p, &list);
  p->ctx->in_callback--;
}

/*
** The end of a run (or tether_shutdown): waits for every job still running
** (abandoned ones; a call from one is refused), then ends the pool. A
** worker that never returns keeps this waiting: a second Ctrl+C still ends
** the process.
*/
void tether__workers_stop (struct ctx *c) {
  struct pool *p = c->workers;
  struct queue list;
  if (p == NULL)
    return;
  p->stopping = 1;
  /* A call whose caller was dropped (after a scheduler failure) is
     refused. */
  lua_rawgeti(c->L, LUA_REGISTRYINDEX, p->jobs_ref);
  lua_pushnil(c->L);
  while (lua_next(c->L, -2)) {
    struct job *j = lua_touserdata(c->L, -1);
    if (j->seen == SEEN_CALL)
      leave(j);
    lua_pop(c->L, 1);
  }
  lua_pop(c->L, 1);
  for (;;) {
    queue_init(&list);
    tether__pool_take_done(p, &list, 1);
    if (queue_empty(&list))
      break;
    see_jobs(p, &list);
  }
  luaL_unref(c->L, LUA_REGISTRYINDEX, p->jobs_ref);
  luaL_unref(c->L, LUA_REGISTRYINDEX, p->exposed_ref);
  c->workers = NULL;
  tether__pool_end(p);
}

/* The state closes (lua_close) while a pool is open: every job was stopped
   by its finalizer already (they run before the context's); the threads
   end. */
void tether__workers_close (struct ctx *c) {
  struct pool *p = c->workers;
  if (p == NULL)
    return;
  c->workers = NULL;
  tether__pool_end(p);
}

void tether__open_to_thread (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {
      {"worker_job", core_worker_job},
      {"worker_start", core_worker_start},
      {"worker_wait", core_worker_wait},
      {"worker_finish", core_worker_finish},
      {"worker_cancelled", core_worker_cancelled},
      {"worker_call_args", core_worker_call_args},
      {"worker_reply", core_worker_reply},
      {"worker_reply_nomem", core_worker_reply_nomem},
      {"worker_leave", core_worker_leave},
      {"worker_exposed", core_worker_exposed},
      {"worker_set_reaper", core_worker_set_reaper},
      {"worker_threads", core_worker_threads},
      {"worker_idle_seconds", core_worker_idle_seconds},
      {NULL, NULL}};
  static const luaL_Reg job_meta[] = {{"__gc", job__gc}, {NULL, NULL}};
  if (c->worker_idle == 0)
    c->worker_idle = 10;
  if (luaL_newmetatable(L, JOB_MT))
    luaL_setfuncs(L, job_meta, 0);
  lua_pop(L, 1);
  lua_newtable(L); /* function -> dump, weak keys */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &DUMPS_KEY);
  tether__add_functions(L, funcs);
}
