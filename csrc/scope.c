/*
** scope.c
** Cancel scopes: the scope tree, effective cancellation, deadlines, shields,
** the exit rule that decides which scope catches a Cancelled, and the
** CancelScope userdata with move_on_after/fail_after constructors.
*/

#include <math.h>
#include <string.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

void tether__scope_init (struct scope *s, double deadline, int shield) {
  memset(s, 0, sizeof *s);
  queue_init(&s->node);
  queue_init(&s->children);
  queue_init(&s->tasks);
  heap_node_init(&s->timer);
  s->timer.kind = DEADLINE_SCOPE;
  s->deadline = deadline;
  s->shield = (unsigned char)(shield != 0);
  s->reason_ref = s->fail_reason_ref = LUA_NOREF;
}

/* {====================================================================
** Effective cancellation
** ===================================================================== */

/* A scope is cancelled as seen from inside iff it was cancelled itself, or
   its parent is and it does not shield. */
static int compute_effective (const struct scope *s) {
  return s->cancel_called ||
         (!s->shield && s->parent != NULL && s->parent->effective);
}

/* Recomputes one scope's cached state; on becoming cancelled, aborts the
   waits of the tasks inside it. Returns whether the state changed. */
static int update (struct scope *s) {
  int eff = compute_effective(s);
  struct queue *q, *next;
  if (eff == s->effective)
    return 0;
  s->effective = (unsigned char)eff;
  if (eff)
    for (q = s->tasks.next; q != &s->tasks; q = next) {
      next = q->next; /* an abort may not unlink it, but be safe */
      tether__abort(queue_data(q, struct task, scope_node));
    }
  return 1;
}

/*
** Brings the cached state of 'top' and of every scope below it up to date,
** walking down only where something changed. The walk is iterative (parent
** pointers and sibling links), so deep trees use no C stack.
*/
void tether__propagate (struct scope *top) {
  struct scope *s = top;
  struct queue *q;
  if (!update(top))
    return;
  q = top->children.next;
  for (;;) {
    if (q != &s->children) {
      struct scope *child = queue_data(q, struct scope, node);
      if (update(child)) {
        s = child;
        q = child->children.next;
      }
      else
        q = q->next;
    }
    else if (s == top)
      return;
    else {
      q = s->node.next;
      s = s->parent;
    }
  }
}

void tether__cancel (struct scope *s, enum cancel_cause cause) {
  if (s->cancel_called)
    return;
  s->cancel_called = 1;
  s->cause = (unsigned char)cause;
  if (s->state == SCOPE_ACTIVE) {
    tether__remove_deadline(s->ctx, &s->timer);
    tether__propagate(s);
  }
}

/* Marks a scope cancelled by its deadline if that has passed (Trio's lazy
   rule: a passed deadline counts before the timer fires). */
static void check_deadline (struct scope *s) {
  if (!s->cancel_called && s->state != SCOPE_EXITED && !s->relative &&
      s->deadline <= tether__time(s->ctx))
    tether__cancel(s, CAUSE_DEADLINE);
}

/* Moves a task into the task list of its new innermost scope. */
void tether__task_set_scope (struct task *t, struct scope *s) {
  queue_remove(&t->scope_node);
  t->scope = s;
  if (s != NULL)
    queue_insert_tail(&s->tasks, &t->scope_node);
}

/* [-0, +1, m] pushes the message a Cancelled caused by 's' carries. */
static void push_cause (lua_State *L, const struct scope *s) {
  static const char *const messages[] = {
      "cancelled",
      "cancelled",
      "deadline exceeded",
      "cancelled because a task in the group raised an error",
      "cancelled from outside the task group",
      "interrupted by SIGINT",
      "watchdog expired",
      "cancel scope misnesting",
      "the host is shutting tether down"};
  if (s != NULL && s->reason_ref != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->reason_ref);
  else
    lua_pushstring(L, messages[s != NULL ? s->cause : CAUSE_NONE]);
}

/*
** [-0, +1, m] pushes a Cancelled for task 't'. Its message is the cause of
** the scope that will catch it: the outermost cancelled scope below the
** nearest shield.
*/
void tether__push_cancelled (lua_State *L, struct task *t) {
  struct scope *s, *catcher = NULL;
  for (s = t->scope; s != NULL; s = s->parent) {
    if (s->cancel_called)
      catcher = s;
    if (s->shield)
      break;
  }
  push_cause(L, catcher);
  tether__new_error(L, TASK_CTX(t), ERROR_CANCELLED);
}

int tether__raise_cancelled (lua_State *L, struct task *t) {
  tether__push_cancelled(L, t);
  return lua_error(L);
}

/* }==================================================================== */

/* {====================================================================
** Entering and exiting
** ===================================================================== */

/* Enters an unentered scope in the running task. */
void tether__scope_enter (lua_State *L, struct task *t, struct scope *s) {
  double now = tether__time(TASK_CTX(t));
  if (s->relative) {
    s->deadline = now + s->delay;
    s->relative = 0;
  }
  if (!s->cancel_called && s->deadline <= now) {
    s->cancel_called = 1;
    s->cause = CAUSE_DEADLINE;
  }
  else if (!s->cancel_called && s->deadline < HUGE_VAL &&
           tether__add_deadline(TASK_CTX(t), &s->timer, s->deadline) < 0)
    luaL_error(L, "not enough memory");
  s->state = SCOPE_ACTIVE;
  s->ctx = TASK_CTX(t);
  s->host = t;
  s->parent = t->scope;
  queue_insert_tail(&s->parent->children, &s->node);
  s->effective = (unsigned char)compute_effective(s);
  tether__task_set_scope(t, s);
}

/*
** Exits 's' in task 't'. With an error on top (ok == 0), returns 1 if the
** scope catches it: it is a Cancelled and this scope's own cancellation is
** in force while its parent's is not visible from inside (decided now, from
** the scopes' states at exit).
*/
int tether__scope_exit (lua_State *L, struct task *t, struct scope *s, int ok) {
  int catches;
  while (t->scope != s && t->scope != NULL && t->scope->host == t) {
    /* Misnesting: an inner scope of this task was left without exiting.
       Cancel it for good and exit it first, so the tree stays sound. */
    struct scope *inner = t->scope;
    tether__cancel(inner, CAUSE_MISNESTING);
    tether__remove_deadline(TASK_CTX(t), &inner->timer);
    queue_remove(&inner->node);
    tether__task_set_scope(t, inner->parent);
    inner->state = SCOPE_EXITED;
  }
  check_deadline(s);
  tether__remove_deadline(TASK_CTX(t), &s->timer);
  queue_remove(&s->node);
  tether__task_set_scope(t, s->parent);
  s->state = SCOPE_EXITED;
  if (ok)
    return 0;
  catches = s->cancel_called &&
            (s->shield || s->parent == NULL || !s->parent->effective) &&
            tether__is_error(L, -1, s->ctx, ERROR_CANCELLED);
  if (catches)
    s->caught = 1;
  return catches;
}

/* }==================================================================== */

/* {====================================================================
** The CancelScope userdata
** ===================================================================== */

/* [-0, +1, m] pushes a new unentered scope. */
struct scope *tether__new_scope (lua_State *L, struct ctx *c) {
  struct scope *s = lua_newuserdatauv(L, sizeof *s, 0);
  tether__scope_init(s, HUGE_VAL, 0);
  s->ctx = c; /* the state's only context, whose clock its deadline reads */
  tether__set_metatable(L, c, CLASS_SCOPE);
  return s;
}

static struct scope *check_scope (lua_State *L, int idx, const char *fname) {
  return tether__check_self(L, idx, CTX(L), CLASS_SCOPE, fname);
}

/* Reads the optional {shield = b} of an options table at 'idx'. */
static int opt_shield (lua_State *L, int idx, const char *fname) {
  int shield = 0;
  if (lua_isnoneornil(L, idx))
    return 0;
  if (!lua_istable(L, idx))
    tether__fname_error(L, fname, "options must be a table, got %s",
                        luaL_typename(L, idx));
  lua_getfield(L, idx, "shield");
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1))
      tether__fname_error(L, fname, "shield must be a boolean, got %s",
                          luaL_typename(L, -1));
    shield = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return shield;
}

/* Reads a deadline or delay at 'idx': nil means none (math.huge). */
static double opt_time (lua_State *L, int idx, const char *fname,
                        const char *what, int nonnegative) {
  lua_Number x;
  if (lua_isnoneornil(L, idx))
    return HUGE_VAL;
  if (lua_type(L, idx) != LUA_TNUMBER)
    tether__fname_error(L, fname, "%s must be a number or nil, got %s", what,
                        luaL_typename(L, idx));
  x = lua_tonumber(L, idx);
  if (x != x)
    tether__fname_error(L, fname, "%s must not be NaN", what);
  if (nonnegative && x < 0)
    tether__fname_error(L, fname, "%s must be >= 0, got %s", what,
                        lua_tostring(L, idx));
  return x;
}

/* tether.CancelScope{deadline = t, shield = b} */
static int scope_CancelScope (lua_State *L) {
  const char *fname = "tether.CancelScope";
  double deadline;
  int shield;
  struct scope *s;
  if (!lua_isnoneornil(L, 1) && !lua_istable(L, 1))
    return tether__fname_error(L, fname,
                               "expected an options table {deadline =, "
                               "shield =} or nothing, got %s",
                               luaL_typename(L, 1));
  shield = opt_shield(L, 1, fname);
  if (lua_istable(L, 1))
    lua_getfield(L, 1, "deadline");
  else
    lua_pushnil(L);
  deadline = opt_time(L, -1, fname, "deadline", 0);
  s = tether__new_scope(L, CTX(L));
  s->deadline = deadline;
  s->shield = (unsigned char)shield;
  s->ctx = CTX(L);
  return 1;
}

/* Shared by move_on_after/fail_after: a scope with a relative or absolute deadline. */
static int new_timeout (lua_State *L, const char *fname, int relative,
                        int fail) {
  double t = opt_time(L, 1, fname, relative ? "delay" : "deadline", relative);
  int shield = opt_shield(L, 2, fname);
  struct scope *s;
  if (fail && lua_istable(L, 2)) {
    lua_getfield(L, 2, "reason");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
      return tether__fname_error(L, fname,
                                 "reason must be a string or nil, got %s",
                                 luaL_typename(L, -1));
  }
  else
    lua_pushnil(L);
  s = tether__new_scope(L, CTX(L));
  s->ctx = CTX(L);
  s->shield = (unsigned char)shield;
  s->fail = (unsigned char)fail;
  if (relative && t < HUGE_VAL) {
    s->relative = 1;
    s->delay = t;
  }
  else
    s->deadline = t;
  if (!lua_isnil(L, -2)) {
    lua_pushvalue(L, -2);
    s->fail_reason_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 1;
}

static int scope_move_on_after (lua_State *L) {
  return new_timeout(L, "tether.move_on_after", 1, 0);
}

static int scope_move_on_at (lua_State *L) {
  return new_timeout(L, "tether.move_on_at", 0, 0);
}

static int scope_fail_after (lua_State *L) {
  return new_timeout(L, "tether.fail_after", 1, 1);
}

static int scope_fail_at (lua_State *L) {
  return new_timeout(L, "tether.fail_at", 0, 1);
}

/* scope:run continuation: exit the scope and deliver the outcome. */
static int scope_run_k (lua_State *L, int status, lua_KContext k) {
  struct scope *s = lua_touserdata(L, 1);
  struct task *t = s->host; /* not ctx->current: see tether__resumed */
  int ok = status == LUA_OK || status == LUA_YIELD;
  (void)k;
  if (tether__scope_exit(L, t, s, ok)) {
    if (!s->fail || s->cause != CAUSE_DEADLINE)
      return 0;
    if (s->fail_reason_ref != LUA_NOREF)
      lua_rawgeti(L, LUA_REGISTRYINDEX, s->fail_reason_ref);
    else
      lua_pushliteral(L, "deadline exceeded");
    tether__new_error(L, s->ctx, ERROR_TIMEOUT);
    return lua_error(L);
  }
  if (!ok)
    tether__reraise(L, t);
  return lua_gettop(L) - 2; /* fn's results, above self and the handler */
}

/* scope:run(fn, ...): enter, call fn(...), exit. */
static int scope_run (lua_State *L) {
  struct ctx *c = CTX(L);
  struct scope *s = check_scope(L, 1, "scope:run");
  struct task *t;
  if (!tether__is_callable(L, 2))
    return tether__fname_error(L, "scope:run",
                               "expected a function to run, got %s",
                               luaL_typename(L, 2));
  t = tether__check_task(L, c, "scope:run");
  if (s->state != SCOPE_NEW)
    return tether__fname_error(
        L, "scope:run",
        "this CancelScope was already %s; a scope runs once, create a new "
        "one for each block",
        s->state == SCOPE_ACTIVE ? "entered" : "used and exited");
  tether__scope_enter(L, t, s);
  lua_pushcfunction(L, tether__msgh);
  lua_insert(L, 2);
  return scope_run_k(
      L, lua_pcallk(L, lua_gettop(L) - 3, LUA_MULTRET, 2, 0, scope_run_k), 0);
}

/* scope:cancel([reason]) */
static int scope_cancel (lua_State *L) {
  struct scope *s = check_scope(L, 1, "scope:cancel");
  int type = lua_type(L, 2);
  if (type != LUA_TNONE && type != LUA_TNIL && type != LUA_TSTRING)
    return tether__fname_error(L, "scope:cancel",
                               "reason must be a string or nil, got %s",
                               luaL_typename(L, 2));
  if (s->cancel_called)
    return 0; /* the first cause wins */
  if (type == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    s->reason_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  tether__cancel(s, CAUSE_EXPLICIT);
  return 0;
}

static void set_deadline (lua_State *L, struct scope *s) {
  double d;
  if (lua_type(L, 3) != LUA_TNUMBER)
    tether__fname_error(L, "scope.deadline",
                        "deadline must be a number (math.huge for none), "
                        "got %s",
                        luaL_typename(L, 3));
  d = opt_time(L, 3, "scope.deadline", "deadline", 0);
  s->deadline = d;
  s->relative = 0;
  if (s->state != SCOPE_ACTIVE || s->cancel_called)
    return;
  tether__remove_deadline(s->ctx, &s->timer);
  if (d <= tether__time(s->ctx))
    tether__cancel(s, CAUSE_DEADLINE);
  else if (d < HUGE_VAL && tether__add_deadline(s->ctx, &s->timer, d) < 0)
    luaL_error(L, "not enough memory");
}

static void set_shield (lua_State *L, struct scope *s) {
  if (!lua_isboolean(L, 3))
    tether__fname_error(L, "scope.shield", "shield must be a boolean, got %s",
                        luaL_typename(L, 3));
  s->shield = (unsigned char)lua_toboolean(L, 3);
  if (s->state == SCOPE_ACTIVE)
    tether__propagate(s);
}

static int scope__newindex (lua_State *L) {
  struct scope *s = check_scope(L, 1, "scope.__newindex");
  const char *key = lua_tostring(L, 2);
  if (key != NULL && strcmp(key, "deadline") == 0)
    set_deadline(L, s);
  else if (key != NULL && strcmp(key, "shield") == 0)
    set_shield(L, s);
  else {
    lua_pushfstring(L, "scope.%s", key != NULL ? key : luaL_typename(L, 2));
    return tether__fname_error(L, lua_tostring(L, -1),
                               "read-only (only deadline and shield can be "
                               "set)");
  }
  return 0;
}

static int scope__index (lua_State *L) {
  struct scope *s = check_scope(L, 1, "scope.__index");
  const char *key = lua_tostring(L, 2);
  if (key == NULL)
    return 0;
  if (strcmp(key, "deadline") == 0)
    lua_pushnumber(L,
                   s->relative ? tether__time(CTX(L)) + s->delay : s->deadline);
  else if (strcmp(key, "shield") == 0)
    lua_pushboolean(L, s->shield);
  else if (strcmp(key, "cancel_called") == 0) {
    check_deadline(s);
    lua_pushboolean(L, s->cancel_called);
  }
  else if (strcmp(key, "cancelled_caught") == 0)
    lua_pushboolean(L, s->caught);
  else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(2)); /* methods */
  }
  return 1;
}

static int scope__tostring (lua_State *L) {
  struct scope *s = check_scope(L, 1, "scope.__tostring");
  static const char *const states[] = {"unentered", "active", "exited"};
  lua_pushfstring(L, "tether.CancelScope (%s%s%s): %p", states[s->state],
                  s->cancel_called ? ", cancelled" : "",
                  s->shield ? ", shielded" : "", (void *)s);
  return 1;
}

static int scope__gc (lua_State *L) {
  struct scope *s = tether__test_class(L, 1, CTX(L), CLASS_SCOPE);
  if (s == NULL)
    return 0;
  luaL_unref(L, LUA_REGISTRYINDEX, s->reason_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, s->fail_reason_ref);
  s->reason_ref = s->fail_reason_ref = LUA_NOREF;
  return 0;
}

/* tether.current_effective_deadline() */
static int scope_current_effective_deadline (lua_State *L) {
  struct task *t =
      tether__current(L, CTX(L), "tether.current_effective_deadline");
  struct scope *s;
  double deadline = HUGE_VAL;
  if (t->scope->effective) {
    lua_pushnumber(L, -HUGE_VAL);
    return 1;
  }
  for (s = t->scope; s != NULL; s = s->parent) {
    if (s->deadline < deadline)
      deadline = s->deadline;
    if (s->shield)
      break;
  }
  lua_pushnumber(L, deadline);
  return 1;
}

void tether__open_scope (lua_State *L, struct ctx *c) {
  static const luaL_Reg methods[] = {
      {"run", scope_run}, {"cancel", scope_cancel}, {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__newindex", scope__newindex},
                                         {"__tostring", scope__tostring},
                                         {"__gc", scope__gc},
                                         {NULL, NULL}};
  static const struct class_def scope_class = {
      CLASS_SCOPE, TETHER_SCOPE_MT, methods, metamethods, scope__index};
  static const luaL_Reg funcs[] = {
      {"CancelScope", scope_CancelScope},
      {"move_on_after", scope_move_on_after},
      {"move_on_at", scope_move_on_at},
      {"fail_after", scope_fail_after},
      {"fail_at", scope_fail_at},
      {"current_effective_deadline", scope_current_effective_deadline},
      {NULL, NULL}};
  tether__add_class(L, c, &scope_class, 0);
  tether__add_functions(L, funcs);
}

/* }==================================================================== */
