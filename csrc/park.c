/*
** park.c
** The parking lot (Trio's ParkingLot): a FIFO queue of parked tasks that the
** synchronisation primitives of the Lua facade (lua/tether/sync.lua) are
** built on.
** Parking is cancellable; unparking hands values to the woken task at wake
** time, so a later cancel cannot undo it. Parking allocates nothing: the
** queue links through each task's wait node.
*/

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

struct lot {
  struct waitq waiters;
};

static struct lot *check_lot (lua_State *L, const char *fname) {
  return tether__check_self(L, 1, CTX(L), CLASS_LOT, fname);
}

/* tether.core.ParkingLot([what]): 'what' names, in tether.task_tree, what
   its tasks wait on (a Lock, say); the lot keeps the string alive. */
static int core_ParkingLot (lua_State *L) {
  const char *what = luaL_optstring(L, 1, "ParkingLot");
  struct lot *lot = lua_newuserdatauv(L, sizeof *lot, 1);
  tether__waitq_init_as(&lot->waiters, what);
  tether__set_metatable(L, CTX(L), CLASS_LOT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

/*
** lot:park([fname]) -> the values given to unpark; raises Cancelled if
** cancelled first. 'fname' names the public function in errors.
*/
static int lot_park (lua_State *L) {
  struct lot *lot = check_lot(L, "lot:park");
  struct task *t =
      tether__check_task(L, CTX(L), luaL_optstring(L, 2, "lot:park"));
  lua_settop(L, 2);
  return tether__wait(L, t, &lot->waiters, 2, tether__woken_k);
}

/* Wakes the longest-parked task, handing it the values at 'first'..top. */
static struct task *unpark_one (lua_State *L, struct lot *lot, int first) {
  struct task *t = tether__waitq_first(&lot->waiters);
  int n = lua_gettop(L) - first + 1, i;
  if (t == NULL)
    return NULL;
  if (!lua_checkstack(L, n) || !lua_checkstack(t->L, n + 1))
    luaL_error(L, "not enough memory");
  for (i = first; i < first + n; i++)
    lua_pushvalue(L, i);
  lua_xmove(L, t->L, n);
  t->nresume = n;
  tether__waitq_wake(t, WAKE_OK);
  return t;
}

/* [-0, +2, -] pushes a task's id and slot: what names it to task_running. */
static int push_task (lua_State *L, const struct task *t) {
  lua_pushinteger(L, t->id);
  lua_pushinteger(L, t->slot);
  return 2;
}

/*
** lot:unpark(...) -> id and slot of the woken task (so ownership can be
** handed to it), or nothing when none was parked. The task resumes with the
** values.
*/
static int lot_unpark (lua_State *L) {
  struct lot *lot = check_lot(L, "lot:unpark");
  struct task *t = unpark_one(L, lot, 2);
  if (t == NULL)
    return 0;
  return push_task(L, t);
}

/* lot:unpark_all(...) -> how many tasks were woken */
static int lot_unpark_all (lua_State *L) {
  struct lot *lot = check_lot(L, "lot:unpark_all");
  int n = 0;
  while (unpark_one(L, lot, 2) != NULL)
    n++;
  lua_pushinteger(L, n);
  return 1;
}

static int lot__len (lua_State *L) {
  lua_pushinteger(L, check_lot(L, "lot:__len")->waiters.count);
  return 1;
}

/* tether.core.current_task_id() -> id and slot of the running task, or nil */
static int core_current_task_id (lua_State *L) {
  struct task *t = CTX(L)->current;
  if (t == NULL || t->L != L)
    return 0;
  return push_task(L, t);
}

/* tether.core.task_running(id, slot) -> whether that task has not finished */
static int core_task_running (lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 1), slot = luaL_checkinteger(L, 2);
  struct ctx *c = CTX(L);
  lua_pushboolean(L, slot >= 0 && slot < tether__nslots(c) &&
                         tether__record(c, (int)slot, id) != NULL);
  return 1;
}

void tether__open_park (lua_State *L, struct ctx *c) {
  static const luaL_Reg methods[] = {{"park", lot_park},
                                     {"unpark", lot_unpark},
                                     {"unpark_all", lot_unpark_all},
                                     {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__len", lot__len}, {NULL, NULL}};
  static const struct class_def lot_class = {CLASS_LOT, TETHER_LOT_MT, methods,
                                             metamethods, NULL};
  static const luaL_Reg funcs[] = {{"ParkingLot", core_ParkingLot},
                                   {"current_task_id", core_current_task_id},
                                   {"task_running", core_task_running},
                                   {NULL, NULL}};
  tether__add_class(L, c, &lot_class, 0);
  tether__add_functions(L, funcs);
}
