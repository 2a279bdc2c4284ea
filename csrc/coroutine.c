/*
** coroutine.c
** tether.coroutine's resume and wrap: a coroutine a task resumes through
** them may block. While the task runs such a coroutine, the coroutine is
** the task's thread (t->L), so a blocking call inside parks it like any
** task, and wakers leave their values on it. The yield of that park goes on
** up through every resume in between (each yields its own thread in turn)
** to the scheduler. To wake the task, the scheduler resumes the task's own
** thread, and each resume of the chain resumes its coroutine again, down to
** the one that parked (the descent, see tether__resume). A yield of the
** coroutine's own (coroutine.yield) or its end returns from its resume as
** in Lua, and the resumer is the task's thread again. The chain is made of
** real resumes, so coroutine.status, running and isyieldable answer as for
** the same coroutines in plain Lua.
*/

#include <lualib.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

/* Which call a resume serves: tether.coroutine.resume or a wrap function. */
enum call { CALL_RESUME, CALL_WRAP };

/*
** The results of resume as Lua's coroutine.resume gives them: true and what
** 'co' yielded or returned, or false and the error (on 'co', or on top of
** 'L' when 'status' is -1).
*/
static int resume_results (lua_State *L, lua_State *co, int status, int nres) {
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "too many results to resume");
      return 2;
    }
    lua_xmove(co, L, nres);
    lua_pushboolean(L, 1);
    lua_insert(L, -(nres + 1));
    return nres + 1;
  }
  if (status != -1)
    lua_xmove(co, L, 1); /* ('co' may be 'L': then the error is on top) */
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

/*
** The results of a wrap function as Lua's coroutine.wrap gives them: what
** 'co' yielded or returned, or its error raised again after its
** to-be-closed variables were closed, with the position of the call in
** front of a string error.
*/
static int wrap_results (lua_State *L, lua_State *co, int status, int nres) {
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres)) {
      lua_pop(co, nres);
      return luaL_error(L, "too many results to resume");
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  if (status != -1) {
    status = lua_status(co);
    if (status != LUA_OK && status != LUA_YIELD) /* it died of the error */
      status = lua_resetthread(co);
    lua_xmove(co, L, 1);
  }
  if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int results (lua_State *L, lua_State *co, int status, int nres,
                    enum call call) {
  if (call == CALL_RESUME)
    return resume_results(L, co, status, nres);
  return wrap_results(L, co, status, nres);
}

/* The function 'co' is suspended in (level 0), or NULL if not a C one. */
static lua_CFunction suspended_in (lua_State *co) {
  lua_Debug ar;
  lua_CFunction f;
  if (lua_status(co) != LUA_YIELD || !lua_getstack(co, 0, &ar) ||
      !lua_checkstack(co, 1) || !lua_getinfo(co, "f", &ar))
    return NULL;
  f = lua_tocfunction(co, -1);
  lua_pop(co, 1);
  return f;
}

/*
** Whether 'co' is stopped at a yield of its own (or is not suspended at
** all), so that a resume may make it the task's thread. One stopped
** anywhere else waits inside tether for some task (or passes such a wait
** on up): it is resumed as plain Lua resumes it, and the wait refuses that.
*/
static int at_own_yield (lua_State *co, const struct ctx *c) {
  return lua_status(co) != LUA_YIELD || suspended_in(co) == c->coroutine_yield;
}

static int wrap_call (lua_State *L);
static int coroutine_resume (lua_State *L);

/*
** Whether closing 'co' would pull a wait out from under a task: it passes
** a park on up (suspended in a resume of this file), or it is the thread a
** task parked on.
*/
int tether__coroutine_waits (lua_State *co, struct ctx *c) {
  lua_CFunction f = suspended_in(co);
  if (f == NULL || f == c->coroutine_yield)
    return 0;
  return f == coroutine_resume || f == wrap_call ||
         tether__thread_task(c, co) != NULL;
}

static int chain_k (lua_State *L, int status, lua_KContext call);

/*
** A coroutine yielded from inside a cancel scope or task group of its own:
** the resumer would run inside them (cancelled with them, its own scopes
** out of order), and they would stay open while the coroutine may never be
** resumed. So the coroutine goes on at once with this error, which closes
** them as it unwinds.
*/
static void yield_in_scope_hook (lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "coroutine.yield: a coroutine of tether.coroutine cannot "
                "yield from inside a cancel scope or task group it opened; "
                "yield after it closed");
}

/*
** The resume of 'co' (index 1 of 'L', the task's thread until then; index
** 2 holds the task's scope at the resume) returned 'status': if 'co'
** parked, 'L' passes the park on up; otherwise the call ends as in Lua.
*/
static int finish (lua_State *L, struct ctx *c, struct task *t, int status,
                   int nres, enum call call) {
  lua_State *co = lua_tothread(L, 1);
  c->descending = 0;
  if (status == LUA_YIELD && t->ours)
    return lua_yieldk(L, 0, call, chain_k);
  while (status == LUA_YIELD && t->scope != lua_touserdata(L, 2)) {
    lua_pop(co, nres);
    lua_sethook(co, yield_in_scope_hook, LUA_MASKCOUNT, 1);
    status = lua_resume(co, L, 0, &nres);
    if (status == LUA_YIELD && t->ours) /* unwinding blocks */
      return lua_yieldk(L, 0, call, chain_k);
  }
  t->L = L;
  c->nnested--;
  return results(L, co, status, nres, call);
}

/*
** Continuation of a resume that passed a park on up: resumed on the way
** down to the wait (by the scheduler or by the resume above), or else by a
** coroutine.resume from elsewhere, which it refuses: the task waits on.
*/
static int chain_k (lua_State *L, int status, lua_KContext call) {
  struct ctx *c = CTX(L);
  struct task *t = c->current;
  lua_State *co = lua_tothread(L, 1);
  int nargs = 0, nres;
  if (t == NULL || !c->descending) {
    lua_settop(L, 2);
    lua_pushliteral(L, "coroutine.resume: this coroutine waits inside a "
                       "tether task, which only tether resumes; the task "
                       "goes on waiting");
    return lua_yieldk(L, 1, call, chain_k);
  }
  if (co == t->L) { /* the one that parked: the wake values are on it */
    c->descending = 0;
    nargs = c->descent_nargs;
  }
  t->ours = 0;
  status = lua_resume(co, L, nargs, &nres);
  return finish(L, c, t, status, nres, (enum call)call);
}

/*
** Resumes 'co' (index 1) with the values above it: as the task's thread if
** 'L' is the task's thread and may yield (then the task's scope at the
** resume is kept at index 2), else as Lua's resume does.
*/
static int resume (lua_State *L, enum call call) {
  struct ctx *c = CTX(L);
  struct task *t = c->current;
  lua_State *co = lua_tothread(L, 1);
  int nargs = lua_gettop(L) - 1, status, nres;
  if (!lua_checkstack(co, nargs)) {
    lua_pushliteral(L, "too many arguments to resume");
    return results(L, co, -1, 0, call);
  }
  lua_xmove(L, co, nargs);
  if (t == NULL || t->L != L || !lua_isyieldable(L) || !at_own_yield(co, c)) {
    status = lua_resume(co, L, nargs, &nres);
    return results(L, co, status, nres, call);
  }
  lua_pushlightuserdata(L, t->scope);
  t->L = co;
  c->nnested++;
  t->ours = 0;
  status = lua_resume(co, L, nargs, &nres);
  return finish(L, c, t, status, nres, call);
}

/*
** The thread the scheduler resumes for task 't' while coroutines are
** resumed as tasks' threads somewhere: if 't' parked inside one ('t->L'),
** the task's own thread, which descends to it through chain_k; the wake
** values ('*nargs' of them) stay on the coroutine for the last step.
*/
lua_State *tether__descent (struct ctx *c, struct task *t, int *nargs) {
  lua_State *own;
  lua_rawgeti(c->from, LUA_REGISTRYINDEX, c->threads_ref);
  lua_rawgeti(c->from, -1, t->thread_ref);
  own = lua_tothread(c->from, -1);
  lua_pop(c->from, 2);
  if (own == t->L)
    return own;
  c->descending = 1;
  c->descent_nargs = *nargs;
  *nargs = 0;
  return own;
}

/* tether.coroutine.resume(co, ...) */
static int coroutine_resume (lua_State *L) {
  if (lua_type(L, 1) != LUA_TTHREAD)
    return tether__fname_error(L, "tether.coroutine.resume",
                               "argument 1 must be a coroutine, got %s",
                               luaL_typename(L, 1));
  return resume(L, CALL_RESUME);
}

/* A function made by tether.coroutine.wrap; upvalue 2 is its coroutine. */
static int wrap_call (lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  return resume(L, CALL_WRAP);
}

/* tether.coroutine.wrap(fn) */
static int coroutine_wrap (lua_State *L) {
  lua_State *co;
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return tether__fname_error(L, "tether.coroutine.wrap",
                               "argument 1 must be a function, got %s",
                               luaL_typename(L, 1));
  co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, -2);
  lua_pushcclosure(L, wrap_call, 2);
  return 1;
}

void tether__open_coroutine (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {{"coroutine_resume", coroutine_resume},
                                   {"coroutine_wrap", coroutine_wrap},
                                   {NULL, NULL}};
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_COLIBNAME) == LUA_TTABLE &&
      lua_getfield(L, -1, "yield") == LUA_TFUNCTION)
    c->coroutine_yield = lua_tocfunction(L, -1);
  lua_settop(L, lua_gettop(L) - 3);
  tether__add_functions(L, funcs);
}
