/*
** group.c
** Task groups: children, error collection into one ErrorGroup, the exit
** algorithm (cancel on first error, wait for every child), tg:start with
** task_status:started, and what happens when a task finishes.
*/

#include <string.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

static struct group *check_group (lua_State *L, int idx, const char *fname) {
  return tether__check_self(L, idx, CTX(L), CLASS_GROUP, fname);
}

/*
** [-1, +0, m] records the error on top as raised by task 'source': appends
** it, its traceback and the task's name to the group's error lists, which
** become the ErrorGroup raised at exit.
*/
static void record_error (lua_State *L, struct group *g, struct task *source) {
  lua_Integer n;
  if (g->errors_ref == LUA_NOREF) {
    lua_createtable(L, 0, 4);
    lua_newtable(L);
    lua_setfield(L, -2, "errors");
    lua_newtable(L);
    lua_setfield(L, -2, "tracebacks");
    lua_newtable(L);
    lua_setfield(L, -2, "tasks");
    g->errors_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->errors_ref);
  lua_getfield(L, -1, "tasks"); /* has no holes: an error may be nil */
  n = (lua_Integer)lua_rawlen(L, -1) + 1;
  lua_pop(L, 1);
  lua_getfield(L, -1, "errors");
  lua_pushvalue(L, -3);
  lua_rawseti(L, -2, n);
  lua_getfield(L, -2, "tracebacks");
  tether__push_traceback(L, source);
  lua_rawseti(L, -2, n);
  lua_getfield(L, -3, "tasks");
  tether__push_name(L, source);
  lua_rawseti(L, -2, n);
  lua_pop(L, 5);
}

/* [-3, +0, m] record_error under a protected call: the group, the task
   (light userdata) and the error. */
static int record_protected (lua_State *L) {
  record_error(L, lua_touserdata(L, 1), lua_touserdata(L, 2));
  return 0;
}

/*
** [-1, +0, -] records the error on top as raised by 'source'. If memory
** runs out meanwhile, the group remembers that an error was lost (its exit
** raises "not enough memory"): a task's end and a group's exit must go on,
** whatever happens, or a child would be left running.
*/
static void keep_error (lua_State *L, struct group *g, struct task *source) {
  lua_pushcfunction(L, record_protected);
  lua_pushlightuserdata(L, g);
  lua_pushlightuserdata(L, source);
  lua_rotate(L, -4, 3); /* [f, g, source, error] */
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    g->lost_error = 1;
  }
}

/* [-0, +1, m] pushes the message of a tg:start child that returned without
   calling started(). */
static int push_unstarted (lua_State *L) {
  lua_pushliteral(L, "tg:start: the task returned without calling "
                     "task_status:started()");
  return 1;
}

/* Wakes the host waiting in the group's exit once nothing keeps it open. */
static void maybe_done (struct group *g) {
  if (g->waiting && g->nchildren == 0 && g->pending_starts == 0) {
    g->waiting = 0;
    tether__wake(g->host, WAKE_OK);
  }
}

/* [-0, +0, m] pushes 'n' values from the top of 'from' to a parked task. */
static void push_for (struct task *to, lua_State *from, int n) {
  lua_xmove(from, to->L, n);
  to->nresume += n;
}

/*
** A task finished (its thread holds [ok, results...] or [false, error]).
** A tg:start child that has not started reports to its starter; a group
** child records its error and cancels its siblings. 'L' is scratch space.
*/
void tether__task_finished (lua_State *L, struct task *t, int ok) {
  struct group *g = t->group;
  struct task *starter = t->starter;
  if (starter != NULL) {
    t->starter = NULL;
    g->pending_starts--;
    if (ok && t->started)
      tether__wake(starter, WAKE_OK); /* its value is already pushed */
    else {
      if (t->started)
        lua_settop(starter->L, lua_gettop(starter->L) - 1);
      starter->nresume = 0;
      if (ok) { /* the message, or the memory error instead */
        lua_pushcfunction(L, push_unstarted);
        lua_pcall(L, 0, 1, 0);
      }
      else {
        lua_pushvalue(t->L, -1);
        lua_xmove(t->L, L, 1);
      }
      push_for(starter, L, 1);
      tether__wake(starter, WAKE_ERROR);
    }
    maybe_done(g);
    return;
  }
  if (g == NULL)
    return; /* the main task: tether.run takes its outcome */
  /* A Cancelled is the group's business only while the group is cancelled;
     a stale one (caught earlier, raised again outside its scope) is a plain
     error of the child. */
  if (!ok && !(t->scope->effective &&
               tether__is_error(t->L, -1, TASK_CTX(t), ERROR_CANCELLED))) {
    lua_pushvalue(t->L, -1);
    lua_xmove(t->L, L, 1);
    keep_error(L, g, t);
    tether__cancel(g->scope, CAUSE_CHILD_ERROR);
  }
  g->nchildren--;
  maybe_done(g);
}

/* {====================================================================
** Entering and exiting: tether.task_group(fn, ...)
** ===================================================================== */

/*
** The host waits in the exit; that wait is not a cancel point. If
** cancellation reaches the host there, the group's scope counts as
** cancelled (its children are cancelled by the same walk) and the host
** keeps waiting.
*/
static int exit_abort (struct task *t) {
  struct group *g = t->wait_data;
  g->cancelled = 1;
  /* The scope is effectively cancelled already, so this walks nothing. */
  tether__cancel(g->scope, CAUSE_OUTER);
  return 0;
}

/* [-0, +1, m] pushes the group's error (arguments: the group and its host,
   light userdata): its ErrorGroup, "not enough memory" if an error could
   not be recorded, or a Cancelled. */
static int push_exit_error (lua_State *L) {
  struct group *g = lua_touserdata(L, 1);
  if (g->lost_error) {
    lua_pushliteral(L, "not enough memory"); /* interned: no allocation */
    return lua_error(L);
  }
  if (g->errors_ref == LUA_NOREF) {
    tether__push_cancelled(L, lua_touserdata(L, 2));
    return 1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->errors_ref);
  lua_getfield(L, -1, "tasks");
  lua_pushfstring(L, "%d error(s) raised in a task group",
                  (int)lua_rawlen(L, -1));
  lua_setfield(L, -3, "message");
  lua_pop(L, 1);
  tether__set_error_class(L, -1, g->scope->ctx, ERROR_GROUP);
  return 1;
}

/*
** Leaves the group: raises its ErrorGroup or Cancelled, or returns the
** body's results (on the stack above the group and the handler). The error
** is made under a protected call, so that the scope is exited even when
** memory runs out (the memory error is raised instead).
*/
static int finish (lua_State *L, struct group *g, struct task *t) {
  int ok = 1;
  g->state = GROUP_EXITED;
  if (g->errors_ref != LUA_NOREF || g->lost_error || g->cancelled) {
    lua_settop(L, 2);
    lua_pushcfunction(L, push_exit_error);
    lua_pushlightuserdata(L, g);
    lua_pushlightuserdata(L, t);
    lua_pcall(L, 2, 1, 0); /* the error, or the memory error instead */
    luaL_unref(L, LUA_REGISTRYINDEX, g->errors_ref);
    g->errors_ref = LUA_NOREF;
    ok = 0;
  }
  if (tether__scope_exit(L, t, g->scope, ok))
    return 0;
  if (!ok)
    return lua_error(L);
  return lua_gettop(L) - 2;
}

static int exit_k (lua_State *L, int status, lua_KContext k);

/* Waits for every child (a schedule point even when there is none). */
static int wait_children (lua_State *L, struct group *g, struct task *t) {
  if (g->nchildren > 0 || g->pending_starts > 0) {
    g->waiting = 1;
    g->yielded = 1;
    t->wait_data = g;
    return tether__park(L, t, exit_abort, lua_gettop(L), exit_k);
  }
  if (!g->yielded) {
    g->yielded = 1;
    return tether__reschedule(L, t, lua_gettop(L), exit_k);
  }
  return finish(L, g, t);
}

static int exit_k (lua_State *L, int status, lua_KContext base) {
  struct task *t = tether__resumed(L, (int)base, base, exit_k);
  (void)status;
  return wait_children(L, lua_touserdata(L, 1), t);
}

/* The body returned or raised: record its error, then wait for children. */
static int body_k (lua_State *L, int status, lua_KContext k) {
  struct group *g = lua_touserdata(L, 1);
  struct task *t = g->host; /* not ctx->current: see tether__resumed */
  (void)k;
  if (status != LUA_OK && status != LUA_YIELD) {
    if (tether__is_error(L, -1, TASK_CTX(t), ERROR_CANCELLED)) {
      g->cancelled = 1;
      lua_pop(L, 1);
    }
    else {
      keep_error(L, g, t);
      tether__cancel(g->scope, CAUSE_CHILD_ERROR);
    }
  }
  return wait_children(L, g, t);
}

/* tether.task_group(fn, ...): fn(tg, ...) then wait for all children. */
static int group_task_group (lua_State *L) {
  struct ctx *c = CTX(L);
  struct task *t;
  struct group *g;
  if (!tether__is_callable(L, 1))
    return tether__fname_error(L, "tether.task_group",
                               "expected a function as the group's body, "
                               "got %s",
                               luaL_typename(L, 1));
  t = tether__check_task(L, c, "tether.task_group");
  g = lua_newuserdatauv(L, sizeof *g, 1);
  memset(g, 0, sizeof *g);
  g->errors_ref = LUA_NOREF;
  tether__set_metatable(L, c, CLASS_GROUP);
  g->scope = tether__new_scope(L, c);
  g->scope->group = 1;
  lua_setiuservalue(L, -2, 1);
  g->host = t;
  g->state = GROUP_ACTIVE;
  tether__scope_enter(L, t, g->scope);
  /* [fn, args..., g] -> [g, msgh, fn, g, args...] */
  lua_insert(L, 1);
  lua_pushcfunction(L, tether__msgh);
  lua_insert(L, 2);
  lua_pushvalue(L, 1);
  lua_insert(L, 4);
  return body_k(L, lua_pcallk(L, lua_gettop(L) - 3, LUA_MULTRET, 2, 0, body_k),
                0);
}

/* }==================================================================== */

/* {====================================================================
** Starting children
** ===================================================================== */

/*
** Parses "[name,] fn, ..." after self; returns the index of fn. The name,
** if any, is at fn - 1.
*/
static int task_args (lua_State *L, const char *fname, struct group *g) {
  int fn = 2;
  if (lua_type(L, 2) == LUA_TSTRING) {
    fn = 3;
    if (!tether__is_callable(L, fn))
      tether__fname_error(L, fname,
                          "expected a function (or callable) after the task "
                          "name \"%s\", got %s; call it as "
                          "%s(\"%s\", fn, ...)",
                          lua_tostring(L, 2), luaL_typename(L, fn), fname,
                          lua_tostring(L, 2));
  }
  else if (!tether__is_callable(L, fn))
    tether__fname_error(L, fname,
                        "expected a function (or callable) to run, or a task "
                        "name and then one, got %s; call it as "
                        "%s([name,] fn, ...)",
                        luaL_typename(L, fn), fname);
  if (g->state != GROUP_ACTIVE)
    tether__fname_error(L, fname,
                        "this task group has exited; no new tasks can be "
                        "started in it (start them while tether.task_group "
                        "is still running)");
  return fn;
}

/* tg:start_soon([name,] fn, ...) */
static int group_start_soon (lua_State *L) {
  struct ctx *c = CTX(L);
  struct group *g = check_group(L, 1, "tg:start_soon");
  int fn = task_args(L, "tg:start_soon", g);
  if (fn == 2) {
    lua_pushnil(L); /* no name */
    lua_insert(L, 2);
  }
  tether__spawn(L, c, lua_gettop(L) - 3, g->scope, g);
  g->nchildren++;
  return 0;
}

/* Moves a started child from under its starter into the group. */
static void adopt (struct group *g, struct task *child) {
  struct scope *outer = NULL, *s;
  for (s = child->scope; s != NULL && s->host == child; s = s->parent)
    outer = s;
  child->starter = NULL;
  g->pending_starts--;
  g->nchildren++;
  if (outer != NULL) {
    queue_remove(&outer->node);
    outer->parent = g->scope;
    queue_insert_tail(&g->scope->children, &outer->node);
    tether__propagate(outer);
  }
  else {
    tether__task_set_scope(child, g->scope);
    if (g->scope->effective)
      tether__abort(child);
  }
}

static int start_abort (struct task *t) {
  (void)t; /* the child is inside the same scopes: wait for it to finish */
  return 0;
}

/* What a task waiting in a group waits on, or NULL. */
const char *tether__group_what (const struct task *t) {
  if (t->abort == exit_abort)
    return "the end of its task group's children";
  if (t->abort == start_abort)
    return "tg:start (the child has not called task_status:started)";
  return NULL;
}

/* tg:start([name,] fn, ...): runs fn(task_status, ...) until it calls
   task_status:started(value); returns value. */
static int group_start (lua_State *L) {
  struct ctx *c = CTX(L);
  struct group *g = check_group(L, 1, "tg:start");
  int fn = task_args(L, "tg:start", g);
  struct task *t = tether__check_task(L, c, "tg:start");
  struct task_status *st;
  struct task *child;
  int base;
  if (fn == 2) {
    lua_pushnil(L);
    lua_insert(L, 2);
  }
  st = lua_newuserdatauv(L, sizeof *st, 0);
  st->slot = -1;
  tether__set_metatable(L, c, CLASS_STATUS);
  lua_insert(L, 4); /* [g, name, fn, status, args...] */
  child = tether__spawn(L, c, lua_gettop(L) - 3, t->scope, g);
  st->slot = child->slot;
  st->id = child->id;
  child->starter = t;
  g->pending_starts++;
  base = lua_gettop(L);
  return tether__park(L, t, start_abort, base, tether__woken_k);
}

/* task_status:started([value]) */
static int status_started (lua_State *L) {
  struct task_status *st =
      tether__check_self(L, 1, CTX(L), CLASS_STATUS, "task_status:started");
  struct task *child, *starter;
  child = tether__record(CTX(L), st->slot, st->id);
  if (child == NULL)
    return tether__fname_error(
        L, "task_status:started",
        "the task has already finished; call it while the "
        "task started by tg:start still runs");
  if (child->started)
    return tether__fname_error(
        L, "task_status:started",
        "called twice for the same task; report readiness "
        "once");
  child->started = 1;
  starter = child->starter;
  lua_settop(L, 2);
  if (!lua_checkstack(starter->L, 2))
    return luaL_error(L, "not enough memory");
  if (!starter->scope->effective)
    adopt(child->group, child);
  push_for(starter, L, 1);
  if (child->starter == NULL)
    tether__wake(starter, WAKE_OK);
  /* else: the starter is cancelled, so started() changes nothing; the value
     waits on its stack in case the child finishes without a checkpoint. */
  return 0;
}

/* }==================================================================== */

static int group__index (lua_State *L) {
  const char *key = lua_tostring(L, 2);
  check_group(L, 1, "tg:__index");
  if (key != NULL && strcmp(key, "cancel_scope") == 0) {
    lua_getiuservalue(L, 1, 1);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2)); /* methods */
  return 1;
}

static int group__newindex (lua_State *L) {
  const char *key = lua_tostring(L, 2);
  check_group(L, 1, "tg:__newindex");
  lua_pushfstring(L, "tg.%s", key != NULL ? key : luaL_typename(L, 2));
  return tether__fname_error(L, lua_tostring(L, -1),
                             "a task group's fields are read-only");
}

static int group__gc (lua_State *L) {
  struct group *g = tether__test_class(L, 1, CTX(L), CLASS_GROUP);
  if (g == NULL)
    return 0;
  luaL_unref(L, LUA_REGISTRYINDEX, g->errors_ref);
  g->errors_ref = LUA_NOREF;
  return 0;
}

static int group__tostring (lua_State *L) {
  struct group *g = check_group(L, 1, "tg:__tostring");
  lua_pushfstring(L, "tether.TaskGroup (%s, %d children): %p",
                  g->state == GROUP_ACTIVE ? "active" : "exited", g->nchildren,
                  (void *)g);
  return 1;
}

void tether__open_group (lua_State *L, struct ctx *c) {
  static const luaL_Reg methods[] = {
      {"start_soon", group_start_soon}, {"start", group_start}, {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__gc", group__gc},
                                         {"__newindex", group__newindex},
                                         {"__tostring", group__tostring},
                                         {NULL, NULL}};
  static const luaL_Reg status_methods[] = {{"started", status_started},
                                            {NULL, NULL}};
  static const luaL_Reg no_metamethods[] = {{NULL, NULL}};
  static const struct class_def classes[] = {
      {CLASS_GROUP, TETHER_GROUP_MT, methods, metamethods, group__index},
      {CLASS_STATUS, TETHER_STATUS_MT, status_methods, no_metamethods, NULL}};
  static const luaL_Reg funcs[] = {{"task_group", group_task_group},
                                   {NULL, NULL}};
  tether__add_class(L, c, &classes[0], 0);
  tether__add_class(L, c, &classes[1], 0);
  tether__add_functions(L, funcs);
}
