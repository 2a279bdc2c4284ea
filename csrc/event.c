/*
** event.c
** Event: a one-shot flag that wakes every waiter when set. In C because a
** set/wait pair is a message hop (see stream.c).
*/

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

struct event {
  struct queue waiters; /* parked tasks */
  int set;
};

static struct event *check_event (lua_State *L, struct ctx *c,
                                  const char *fname) {
  return tether__check_self(L, 1, c, CLASS_EVENT, fname);
}

/* tether.Event() */
static int core_Event (lua_State *L) {
  struct event *e = lua_newuserdatauv(L, sizeof *e, 0);
  queue_init(&e->waiters);
  e->set = 0;
  tether__set_metatable(L, CTX(L), CLASS_EVENT);
  return 1;
}

/* event:set(): wakes every waiter; idempotent, not a checkpoint */
static int event_set (lua_State *L) {
  struct event *e = check_event(L, CTX(L), "event:set");
  if (e->set)
    return 0;
  e->set = 1;
  while (!queue_empty(&e->waiters))
    tether__wake(queue_data(queue_head(&e->waiters), struct task, node),
                 WAKE_OK);
  return 0;
}

static int event_is_set (lua_State *L) {
  lua_pushboolean(L, check_event(L, CTX(L), "event:is_set")->set);
  return 1;
}

static int waiter_abort (struct task *t) {
  queue_remove(&t->node);
  return 1;
}

/* event:wait(): blocks until set; a checkpoint even when it already is */
static int event_wait (lua_State *L) {
  struct ctx *c = CTX(L);
  struct event *e = check_event(L, c, "event:wait");
  struct task *t = tether__check_task(L, c, "event:wait");
  if (e->set)
    return tether__reschedule(L, t, 0, tether__checkpoint_k);
  queue_insert_tail(&e->waiters, &t->node);
  return tether__park(L, t, waiter_abort, lua_gettop(L), tether__woken_k);
}

static int event__tostring (lua_State *L) {
  struct event *e = check_event(L, CTX(L), "event:__tostring");
  lua_pushfstring(L, "tether.Event (%s): %p", e->set ? "set" : "not set",
                  (void *)e);
  return 1;
}

/* Adds Event to the module table on top; the ctx is just below it. */
void tether__open_event (lua_State *L) {
  static const luaL_Reg methods[] = {{"set", event_set},
                                     {"is_set", event_is_set},
                                     {"wait", event_wait},
                                     {"__tostring", event__tostring},
                                     {NULL, NULL}};
  tether__new_class(L, lua_touserdata(L, -2), CLASS_EVENT, TETHER_EVENT_MT);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, methods, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, core_Event, 1);
  lua_setfield(L, -2, "Event");
}
