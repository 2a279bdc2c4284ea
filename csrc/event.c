/*
** event.c
** Event: a one-shot flag that wakes every waiter when set. In C because a
** set/wait pair is a message hop (see stream.c).
*/

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

struct event {
  struct waitq waiters;
  int set;
};

static struct event *check_event (lua_State *L, struct ctx *c,
                                  const char *fname) {
  return tether__check_self(L, 1, c, CLASS_EVENT, fname);
}

/* tether.Event() */
static int core_Event (lua_State *L) {
  struct event *e = lua_newuserdatauv(L, sizeof *e, 0);
  tether__waitq_init_as(&e->waiters, "Event");
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
  tether__waitq_wake_all(&e->waiters);
  return 0;
}

static int event_is_set (lua_State *L) {
  lua_pushboolean(L, check_event(L, CTX(L), "event:is_set")->set);
  return 1;
}

/* event:wait(): blocks until set; a checkpoint even when it already is */
static int event_wait (lua_State *L) {
  struct ctx *c = CTX(L);
  struct event *e = check_event(L, c, "event:wait");
  struct task *t = tether__check_task(L, c, "event:wait");
  if (e->set)
    return tether__reschedule(L, t, 0, tether__checkpoint_k);
  return tether__wait(L, t, &e->waiters, lua_gettop(L), tether__woken_k);
}

static int event__tostring (lua_State *L) {
  struct event *e = check_event(L, CTX(L), "event:__tostring");
  lua_pushfstring(L, "tether.Event (%s): %p", e->set ? "set" : "not set",
                  (void *)e);
  return 1;
}

void tether__open_event (lua_State *L, struct ctx *c) {
  static const luaL_Reg methods[] = {{"set", event_set},
                                     {"is_set", event_is_set},
                                     {"wait", event_wait},
                                     {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__tostring", event__tostring},
                                         {NULL, NULL}};
  static const struct class_def event_class = {CLASS_EVENT, TETHER_EVENT_MT,
                                               methods, metamethods, NULL};
  static const luaL_Reg funcs[] = {{"Event", core_Event}, {NULL, NULL}};
  tether__add_class(L, c, &event_class, 0);
  tether__add_functions(L, funcs);
}
