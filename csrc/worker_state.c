/*
** worker_state.c
** A worker thread's own lua_State: the standard libraries, the caller's
** package.path and package.cpath, and a "tether" module of its own
** (tether.worker.check_cancelled and call, tether.Cancelled,
** tether.WorkerError). Runs one job in it: loads the function (a
** string.dump, kept in a small cache, or "module.function"), copies the
** arguments in and the results out, and turns an error into a message and
** a traceback.
**
** Cancellation under "interrupt": the loop thread sets a count hook on
** the state (tether__worker_interrupt), which raises Cancelled at the next
** Lua instruction and removes itself, so the <close> variables run while
** the error unwinds. The worker's pcall and xpcall set it again after a
** protected call returns while the job is cancelled, so a swallowed
** Cancelled comes back at the next instruction.
*/

#include <string.h>

#include <lualib.h>

#include "worker.h"

/* Registry keys (their addresses) of the worker state. */
static const char WORKER_KEY = 'w';    /* struct worker, light userdata */
static const char CANCELLED_KEY = 'c'; /* the Cancelled error value */
static const char CLASS_KEY = 'k';     /* class table of Cancelled */
static const char ERROR_KEY = 'e';     /* class table of WorkerError */
static const char CACHE_KEY = 'f';     /* dump -> loaded function */

/* Loaded functions kept per worker; the cache starts afresh past this. */
#define FUNCTION_CACHE_MAX 64

static struct worker *this_worker (lua_State *L) {
  struct worker *w;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &WORKER_KEY);
  w = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return w;
}

static int job_cancelled (const struct job *j) {
  return j != NULL && __atomic_load_n(&j->cancel, __ATOMIC_ACQUIRE);
}

static int raise_cancelled (lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &CANCELLED_KEY);
  return lua_error(L);
}

static void interrupt_hook (lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  raise_cancelled(L);
}

/* Makes L raise Cancelled at its next Lua instruction (from any thread:
   lua_sethook may be called asynchronously). */
void tether__worker_interrupt (lua_State *L) {
  lua_sethook(L, interrupt_hook, LUA_MASKCOUNT, 1);
}

/* tether.worker.check_cancelled(): raises Cancelled if the caller of
   tether.to_thread was cancelled. */
static int worker_check_cancelled (lua_State *L) {
  if (job_cancelled(this_worker(L)->job))
    return raise_cancelled(L);
  return 0;
}

/* The worker's pcall and xpcall pass their results through this: while
   the job is cancelled (under "interrupt"), the next instruction raises
   Cancelled again. */
static int worker_rearm (lua_State *L) {
  struct job *j = this_worker(L)->job;
  if (j != NULL && j->mode == CANCEL_INTERRUPT && job_cancelled(j))
    tether__worker_interrupt(L);
  return lua_gettop(L);
}

/* [-0, +1, m] A WorkerError with the message and traceback on the stack
   (popped). */
static void new_worker_error (lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_insert(L, -3);
  lua_setfield(L, -3, "traceback");
  lua_setfield(L, -2, "message");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ERROR_KEY);
  lua_setmetatable(L, -2);
}

/*
** tether.worker.call(name, ...): runs the function the main program exposed
** as 'name', in its loop, and returns its results.
*/
static int worker_call (lua_State *L) {
  static const char fname[] = "tether.worker.call";
  struct worker *w = this_worker(L);
  struct job *j = w->job;
  int n;
  luaL_checkstring(L, 1);
  tether__buffer_free(&j->call);
  tether__pack(L, 1, lua_gettop(L), &j->call, fname, "argument", 1);
  tether__pool_call(w->pool, w, j);
  lua_settop(L, 1);
  switch (j->reply) {
    case REPLY_CANCELLED:
      return raise_cancelled(L);
    case REPLY_NOMEM:
      return luaL_error(L, "%s: not enough memory", fname);
    default:
      break;
  }
  n = tether__unpack(L, &j->call);
  tether__buffer_free(&j->call);
  if (j->reply == REPLY_MISUSE)
    return lua_error(L);
  if (j->reply == REPLY_ERROR) {
    new_worker_error(L);
    return lua_error(L);
  }
  return n;
}

static int worker_expose (lua_State *L) {
  return luaL_error(L, "tether.worker.expose: expose functions in the main "
                       "program (inside tether.run), not in a worker");
}

static int error__tostring (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (luaL_getmetafield(L, 1, "__name") != LUA_TSTRING)
    lua_pushliteral(L, "tether error");
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "%s: %s", lua_tostring(L, -2),
                  lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
  return 1;
}

/* [-0, +1, m] an error class named 'name' */
static void new_class (lua_State *L, const char *name) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, error__tostring);
  lua_setfield(L, -2, "__tostring");
}

/* require "tether" in a worker: the worker's API. */
static int open_worker_tether (lua_State *L) {
  static const luaL_Reg worker_funcs[] = {
      {"check_cancelled", worker_check_cancelled},
      {"call", worker_call},
      {"expose", worker_expose},
      {NULL, NULL}};
  lua_createtable(L, 0, 4);
  luaL_newlib(L, worker_funcs);
  lua_setfield(L, -2, "worker");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &CLASS_KEY);
  lua_setfield(L, -2, "Cancelled");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ERROR_KEY);
  lua_setfield(L, -2, "WorkerError");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "in_worker");
  return 1;
}

/* Wraps pcall and xpcall (see worker_rearm). */
static const char wrap_pcall[] =
    "local rearm, pcall, xpcall = ...\n"
    "_G.pcall = function(...) return rearm(pcall(...)) end\n"
    "_G.xpcall = function(...) return rearm(xpcall(...)) end\n";

static void set_path (lua_State *L, const char *key, const char *value) {
  if (value == NULL)
    return;
  lua_getglobal(L, "package");
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
  lua_pop(L, 1);
}

static int init_state (lua_State *L) {
  struct worker *w = lua_touserdata(L, 1);
  luaL_openlibs(L);
  lua_pushlightuserdata(L, w);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &WORKER_KEY);
  new_class(L, "tether.Cancelled");
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "the caller of tether.to_thread was cancelled");
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, -2);
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &CANCELLED_KEY);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &CLASS_KEY);
  new_class(L, "tether.WorkerError");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ERROR_KEY);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &CACHE_KEY);
  set_path(L, "path", w->pool->path);
  set_path(L, "cpath", w->pool->cpath);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open_worker_tether);
  lua_setfield(L, -2, "tether");
  lua_pop(L, 1);
  if (luaL_loadbufferx(L, wrap_pcall, sizeof wrap_pcall - 1, "=tether.worker",
                       "t") != LUA_OK)
    return lua_error(L);
  lua_pushcfunction(L, worker_rearm);
  lua_getglobal(L, "pcall");
  lua_getglobal(L, "xpcall");
  lua_call(L, 3, 0);
  return 0;
}

/* A new worker state for 'w', or NULL when memory ran out. */
lua_State *tether__worker_state (struct worker *w) {
  lua_State *L = luaL_newstate();
  if (L == NULL)
    return NULL;
  lua_pushcfunction(L, init_state);
  lua_pushlightuserdata(L, w);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}

/* [-0, +1, e] the function "module.function" names */
static void push_named (lua_State *L, const char *name) {
  const char *dot = strrchr(name, '.');
  lua_getglobal(L, "require");
  lua_pushlstring(L, name, (size_t)(dot - name));
  lua_call(L, 1, 1);
  if (!lua_istable(L, -1))
    luaL_error(L, "tether.to_thread: module '%s' is a %s, not a table",
               lua_tostring(L, -1), luaL_typename(L, -1));
  lua_getfield(L, -1, dot + 1);
  if (!lua_isfunction(L, -1)) {
    if (luaL_getmetafield(L, -1, "__call") == LUA_TNIL)
      luaL_error(L, "tether.to_thread: '%s' is a %s, not a function", name,
                 luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  lua_remove(L, -2);
}

/* [-0, +1, e] the function of the dump in 'b', loaded or from the cache */
static void push_dumped (lua_State *L, const struct tether_buffer *b) {
  int cache;
  lua_Integer n;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &CACHE_KEY);
  cache = lua_gettop(L);
  lua_pushlstring(L, b->data, b->len);
  if (lua_rawget(L, cache) == LUA_TFUNCTION) {
    lua_remove(L, cache);
    return;
  }
  lua_pop(L, 1);
  if (luaL_loadbufferx(L, b->data, b->len, "=tether.to_thread", "b") != LUA_OK)
    lua_error(L);
  lua_getfield(L, cache, "n"); /* how many it holds */
  n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (n >= FUNCTION_CACHE_MAX) {
    lua_newtable(L);
    lua_replace(L, cache);
    lua_pushvalue(L, cache);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CACHE_KEY);
    n = 0;
  }
  lua_pushinteger(L, n + 1);
  lua_setfield(L, cache, "n");
  lua_pushlstring(L, b->data, b->len);
  lua_pushvalue(L, -2);
  lua_rawset(L, cache);
  lua_remove(L, cache);
}

/* The job's body, protected: function, arguments, call, results. */
static int run_body (lua_State *L) {
  struct job *j = lua_touserdata(L, 1);
  int n;
  lua_settop(L, 0);
  if (j->by_name) {
    lua_pushlstring(L, j->fn.data, j->fn.len);
    push_named(L, lua_tostring(L, 1));
    lua_remove(L, 1);
  }
  else
    push_dumped(L, &j->fn);
  n = tether__unpack(L, &j->args);
  lua_call(L, n, LUA_MULTRET);
  tether__pack(L, 1, lua_gettop(L), &j->results, "tether.to_thread", "result",
               1);
  return 0;
}

static int is_cancelled_value (lua_State *L, int idx) {
  int yes;
  if (!lua_getmetatable(L, idx))
    return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &CLASS_KEY);
  yes = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return yes;
}

/* Message handler: Cancelled passes as it is; any other error becomes
   {message, traceback}. */
static int worker_msgh (lua_State *L) {
  if (is_cancelled_value(L, 1))
    return 1;
  if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER ||
      luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL)
    luaL_tolstring(L, 1, NULL);
  else
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  lua_createtable(L, 2, 0);
  lua_insert(L, -2);
  lua_rawseti(L, -2, 1);
  luaL_traceback(L, L, NULL, 1);
  lua_rawseti(L, -2, 2);
  return 1;
}

/* Packs the error {message, traceback} on top into the job, protected. */
static int pack_error (lua_State *L) {
  struct job *j = lua_touserdata(L, 1);
  tether__buffer_free(&j->results);
  if (lua_istable(L, 2)) {
    lua_rawgeti(L, 2, 1);
    lua_rawgeti(L, 2, 2);
  }
  else { /* the message handler failed: its error is the message */
    luaL_tolstring(L, 2, NULL);
    lua_pushliteral(L, "");
  }
  tether__pack(L, -2, 2, &j->results, "tether.to_thread", "error", 1);
  return 0;
}

/* Runs 'j' in w's state and records its outcome and values. */
void tether__worker_run (struct worker *w, struct job *j) {
  lua_State *L = w->L;
  int status;
  j->outcome = OUTCOME_ERROR;
  if (L == NULL) /* no state: empty results say "not enough memory" */
    return;
  lua_settop(L, 0);
  lua_pushcfunction(L, worker_msgh);
  lua_pushcfunction(L, run_body);
  lua_pushlightuserdata(L, j);
  status = lua_pcall(L, 1, 0, 1);
  lua_sethook(L, NULL, 0, 0);
  if (status == LUA_OK)
    j->outcome = OUTCOME_OK;
  else if (is_cancelled_value(L, -1) && job_cancelled(j))
    j->outcome = OUTCOME_CANCELLED;
  else {
    if (is_cancelled_value(L, -1)) { /* its caller was not cancelled */
      lua_pop(L, 1);
      lua_pushliteral(L, "the worker raised tether.Cancelled, but the caller "
                         "of tether.to_thread was not cancelled");
    }
    lua_pushcfunction(L, pack_error);
    lua_pushlightuserdata(L, j);
    lua_rotate(L, -3, 2);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK)
      tether__buffer_free(&j->results);
  }
  lua_settop(L, 0);
}
