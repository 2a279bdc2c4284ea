/*
** stream.c
** Memory object streams (Trio's memory channels): a send end and a receive
** end sharing one state, each cloneable and closeable. Items go directly
** from a sender to the longest-waiting receiver, or through a bounded
** buffer. They live in C because a message hop is the hot path of most
** concurrent programs: one C call and one task switch per side.
*/

#include <math.h>
#include <string.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

/* Stack slots of a send/receive call's frame, which is the frame a parked
   task is suspended in: the handle it waits through, and a sender's item. */
#define SLOT_HANDLE 1
#define SLOT_ITEM   2

/*
** The shared state. The buffer is a ring in the state's user value (a
** table indexed from 1); 'head' is the next item to receive.
*/
struct stream {
  struct waitq senders;   /* parked senders, oldest first */
  struct waitq receivers; /* parked receivers, oldest first */
  double max;             /* max_buffer_size; HUGE_VAL: unbounded */
  lua_Integer head;
  lua_Integer count; /* items in the buffer */
  int open_send;     /* open handles of each end */
  int open_receive;
};

struct handle {
  struct stream *s;
  unsigned char sending; /* a send handle (else a receive handle) */
  unsigned char closed;
};

/* The handle at SLOT_HANDLE, of the send end ('sending') or the receive end;
   raises an error naming 'fname' otherwise. */
static struct handle *check_handle (lua_State *L, struct ctx *c, int sending,
                                    const char *fname) {
  return tether__check_self(L, SLOT_HANDLE, c,
                            sending ? CLASS_SEND : CLASS_RECEIVE, fname);
}

static struct handle *open_handle (lua_State *L, struct ctx *c, int sending,
                                   const char *fname) {
  struct handle *h = check_handle(L, c, sending, fname);
  if (h->closed)
    tether__raise(L, c, ERROR_CLOSED, fname, "this stream handle is closed");
  return h;
}

/* [-0, +1, -] pushes the buffer table of the handle at 'idx'. */
static void push_buffer (lua_State *L, int idx) {
  lua_getiuservalue(L, idx, 1); /* the state userdata */
  lua_getiuservalue(L, -1, 1);  /* its buffer */
  lua_remove(L, -2);
}

/* {====================================================================
** Sending
** ===================================================================== */

/*
** Delivers the item at 'item' without blocking: to the oldest parked
** receiver, or into the buffer. Returns 0 when it would have to wait.
*/
static int try_send (lua_State *L, struct ctx *c, struct stream *s, int item,
                     const char *fname) {
  struct task *t = tether__waitq_first(&s->receivers);
  if (s->open_receive == 0)
    tether__raise(L, c, ERROR_BROKEN, fname, "every receive end is closed");
  if (t != NULL) {
    lua_pushvalue(L, item);
    lua_xmove(L, t->L, 1); /* room was reserved when it parked */
    t->nresume = 1;
    tether__waitq_wake(t, WAKE_OK);
    return 1;
  }
  if ((double)s->count < s->max) {
    push_buffer(L, SLOT_HANDLE);
    lua_pushvalue(L, item);
    lua_rawseti(L, -2, s->head + s->count);
    lua_pop(L, 1);
    s->count++;
    return 1;
  }
  return 0;
}

static void check_item (lua_State *L, const char *fname) {
  if (lua_isnoneornil(L, SLOT_ITEM))
    tether__fname_error(L, fname, "cannot send nil (nil ends iteration)");
}

/* send:send_nowait(item) */
static int send_nowait (lua_State *L) {
  const char *fname = "send:send_nowait";
  struct ctx *c = CTX(L);
  struct handle *h = open_handle(L, c, 1, fname);
  check_item(L, fname);
  if (!try_send(L, c, h->s, SLOT_ITEM, fname))
    return tether__raise(L, c, ERROR_WOULD_BLOCK, fname,
                         "no receiver is waiting and the buffer is full");
  return 0;
}

static int send_send (lua_State *L);
static int receive (lua_State *L, int iterating);

/*
** A send or receive started while cancelled yields first (a checkpoint);
** if the task is still cancelled then, it raises, else the call starts over
** (a shield may have been raised meanwhile). 'k' tells which call it was.
*/
static int cancelled_k (lua_State *L, int status, lua_KContext k) {
  struct task *t = tether__resumed(L, -1, k, cancelled_k);
  (void)status;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  return k < 0 ? send_send(L) : receive(L, (int)k);
}

/* send:send(item): waits (FIFO) until a receiver or the buffer takes it */
static int send_send (lua_State *L) {
  const char *fname = "send:send";
  struct ctx *c = CTX(L);
  struct handle *h = open_handle(L, c, 1, fname);
  struct task *t;
  check_item(L, fname);
  t = tether__check_task(L, c, fname);
  if (lua_gettop(L) != SLOT_ITEM) /* lua_settop is not free: skip it */
    lua_settop(L, SLOT_ITEM);
  if (t->scope->effective)
    return tether__reschedule(L, t, -1, cancelled_k);
  if (try_send(L, c, h->s, SLOT_ITEM, fname))
    return tether__reschedule(L, t, 0, tether__scheduled_k);
  if (!lua_checkstack(L, 2))
    return luaL_error(L, "not enough memory");
  return tether__wait(L, t, &h->s->senders, SLOT_ITEM, tether__woken_k);
}

/* }==================================================================== */

/* {====================================================================
** Receiving
** ===================================================================== */

/*
** Pushes the next item without blocking: from the buffer (refilled from the
** oldest parked sender) or straight from that sender. Returns 1 with the
** item pushed, 0 when it would have to wait, -1 when the stream ended.
*/
static int try_receive (lua_State *L, struct stream *s) {
  struct task *t = tether__waitq_first(&s->senders);
  if (t != NULL) {
    if (s->count == 0) { /* rendezvous: straight from the sender */
      lua_pushvalue(t->L, SLOT_ITEM);
      lua_xmove(t->L, L, 1);
      tether__waitq_wake(t, WAKE_OK);
      return 1;
    }
    push_buffer(L, SLOT_HANDLE);
    lua_pushvalue(t->L, SLOT_ITEM);
    lua_xmove(t->L, L, 1);
    lua_rawseti(L, -2, s->head + s->count);
    lua_pop(L, 1);
    s->count++;
    tether__waitq_wake(t, WAKE_OK);
  }
  if (s->count > 0) {
    push_buffer(L, SLOT_HANDLE);
    lua_rawgeti(L, -1, s->head);
    lua_pushnil(L);
    lua_rawseti(L, -3, s->head);
    lua_remove(L, -2);
    s->head++;
    if (--s->count == 0)
      s->head = 1;
    return 1;
  }
  return s->open_send == 0 ? -1 : 0;
}

/* receive:receive_nowait() */
static int receive_nowait (lua_State *L) {
  const char *fname = "receive:receive_nowait";
  struct ctx *c = CTX(L);
  struct handle *h = open_handle(L, c, 0, fname);
  switch (try_receive(L, h->s)) {
    case 1:
      return 1;
    case 0:
      return tether__raise(L, c, ERROR_WOULD_BLOCK, fname, "no item is ready");
    default:
      return tether__raise(L, c, ERROR_END_OF_STREAM, fname,
                           "every send end is closed");
  }
}

/* After a receive parked: an item, or nothing when the stream ended. */
static int receive_k (lua_State *L, int status, lua_KContext iterating) {
  struct task *t = tether__resumed(L, SLOT_HANDLE, iterating, receive_k);
  (void)status;
  tether__check_wake(L, t);
  if (lua_gettop(L) > 1)
    return 1;
  if (iterating)
    return 0; /* ends a for loop */
  return tether__raise(L, TASK_CTX(t), ERROR_END_OF_STREAM, "receive:receive",
                       "every send end is closed");
}

/* After the schedule point of a receive that found its item at once. */
static int received_k (lua_State *L, int status, lua_KContext k) {
  (void)status;
  tether__resumed(L, SLOT_ITEM, k, received_k);
  return 1;
}

static int receive (lua_State *L, int iterating) {
  const char *fname = "receive:receive";
  struct ctx *c = CTX(L);
  struct handle *h = open_handle(L, c, 0, fname);
  struct task *t = tether__check_task(L, c, fname);
  if (lua_gettop(L) != SLOT_HANDLE)
    lua_settop(L, SLOT_HANDLE);
  if (t->scope->effective)
    return tether__reschedule(L, t, iterating, cancelled_k);
  switch (try_receive(L, h->s)) {
    case 1:
      return tether__reschedule(L, t, 0, received_k);
    case -1:
      if (iterating)
        return tether__reschedule(L, t, 0, tether__scheduled_k);
      return tether__raise(L, c, ERROR_END_OF_STREAM, fname,
                           "every send end is closed");
  }
  if (!lua_checkstack(L, 2))
    return luaL_error(L, "not enough memory");
  return tether__wait(L, t, &h->s->receivers, iterating, receive_k);
}

/* receive:receive(): the next item, waiting (FIFO) for one */
static int receive_receive (lua_State *L) {
  return receive(L, 0);
}

/* for item in receive do ... end: ends when the stream ends */
static int receive__call (lua_State *L) {
  return receive(L, 1);
}

/* }==================================================================== */

/* {====================================================================
** Handles: creation, cloning, closing, statistics
** ===================================================================== */

/* [-0, +1, m] pushes a new open handle on the state userdata at 'state'. */
static struct handle *new_handle (lua_State *L, int state, int sending) {
  struct handle *h = lua_newuserdatauv(L, sizeof *h, 1);
  h->s = lua_touserdata(L, state);
  h->sending = (unsigned char)sending;
  h->closed = 0;
  tether__set_metatable(L, CTX(L), sending ? CLASS_SEND : CLASS_RECEIVE);
  lua_pushvalue(L, state);
  lua_setiuservalue(L, -2, 1);
  return h;
}

/* tether.create_memory_object_stream([max_buffer_size]) -> send, receive */
static int core_create_memory_object_stream (lua_State *L) {
  const char *fname = "tether.create_memory_object_stream";
  double max = 0;
  struct stream *s;
  if (!lua_isnoneornil(L, 1)) {
    max = lua_tonumber(L, 1);
    if (!(lua_isinteger(L, 1) && max >= 0) && max != HUGE_VAL)
      return tether__fname_error(L, fname,
                                 "max_buffer_size must be an integer >= 0 "
                                 "or math.huge, got %s",
                                 luaL_tolstring(L, 1, NULL));
  }
  s = lua_newuserdatauv(L, sizeof *s, 1);
  memset(s, 0, sizeof *s);
  tether__waitq_init_as(&s->senders, "memory stream send");
  tether__waitq_init_as(&s->receivers, "memory stream receive");
  s->max = max;
  s->head = 1;
  s->open_send = s->open_receive = 1;
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  new_handle(L, lua_gettop(L), 1);
  new_handle(L, lua_gettop(L) - 1, 0);
  return 2;
}

/* The methods both ends share know their end from upvalue 2. */
#define SENDING(L) lua_toboolean((L), lua_upvalueindex(2))
#define END_NAME(L, send_name, receive_name)                                   \
  (SENDING(L) ? (send_name) : (receive_name))

/* handle:clone(): a new handle on the same end */
static int handle_clone (lua_State *L) {
  struct handle *h = open_handle(L, CTX(L), SENDING(L),
                                 END_NAME(L, "send:clone", "receive:clone"));
  if (h->sending)
    h->s->open_send++;
  else
    h->s->open_receive++;
  lua_getiuservalue(L, 1, 1);
  new_handle(L, lua_gettop(L), h->sending);
  return 1;
}

static const struct wake_error send_handle_closed = {
    ERROR_CLOSED, "send:send: this stream handle was closed"};
static const struct wake_error receive_handle_closed = {
    ERROR_CLOSED, "receive:receive: this stream handle was closed"};
static const struct wake_error receive_ends_closed = {
    ERROR_BROKEN, "send:send: every receive end was closed"};

/*
** Wakes the tasks of 'q' parked through handle 'h' (NULL: all of them):
** with the error 'e', or with nothing if 'e' is NULL. Waking allocates
** nothing, so no finalizer can change the queue during the walk.
*/
static void wake_parked (struct waitq *q, const struct handle *h,
                         const struct wake_error *e) {
  struct queue *node, *next;
  for (node = q->tasks.next; node != &q->tasks; node = next) {
    struct task *t = queue_data(node, struct task, node);
    next = node->next;
    if (h != NULL && lua_touserdata(t->L, SLOT_HANDLE) != h)
      continue;
    if (e == NULL) {
      t->nresume = 0;
      tether__waitq_wake(t, WAKE_OK);
    }
    else
      tether__waitq_raise(t, e);
  }
}

/*
** handle:close(): idempotent. Tasks blocked through this handle get
** ClosedResourceError. When the last send handle closes, blocked receivers
** see the end of the stream (after the buffer); when the last receive handle
** closes, blocked senders get BrokenResourceError.
*/
static int handle_close (lua_State *L) {
  struct handle *h = check_handle(L, CTX(L), SENDING(L),
                                  END_NAME(L, "send:close", "receive:close"));
  struct stream *s;
  if (h->closed)
    return 0;
  h->closed = 1;
  s = h->s;
  if (h->sending) {
    wake_parked(&s->senders, h, &send_handle_closed);
    if (--s->open_send == 0)
      wake_parked(&s->receivers, NULL, NULL);
  }
  else {
    wake_parked(&s->receivers, h, &receive_handle_closed);
    if (--s->open_receive == 0)
      wake_parked(&s->senders, NULL, &receive_ends_closed);
  }
  return 0;
}

/* handle:statistics() */
static int handle_statistics (lua_State *L) {
  struct stream *s =
      open_handle(L, CTX(L), SENDING(L),
                  END_NAME(L, "send:statistics", "receive:statistics"))
          ->s;
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, s->count);
  lua_setfield(L, -2, "current_buffer_used");
  if (s->max == HUGE_VAL)
    lua_pushnumber(L, HUGE_VAL);
  else
    lua_pushinteger(L, (lua_Integer)s->max);
  lua_setfield(L, -2, "max_buffer_size");
  lua_pushinteger(L, s->open_send);
  lua_setfield(L, -2, "open_send_streams");
  lua_pushinteger(L, s->open_receive);
  lua_setfield(L, -2, "open_receive_streams");
  lua_pushinteger(L, s->senders.count);
  lua_setfield(L, -2, "tasks_waiting_send");
  lua_pushinteger(L, s->receivers.count);
  lua_setfield(L, -2, "tasks_waiting_receive");
  return 1;
}

static int handle__tostring (lua_State *L) {
  struct handle *h = check_handle(L, CTX(L), SENDING(L), "stream:__tostring");
  lua_pushfstring(L, "%s (%s): %p",
                  SENDING(L) ? TETHER_SEND_MT : TETHER_RECEIVE_MT,
                  h->closed ? "closed" : "open", (void *)h);
  return 1;
}

/* for item in send: the send end cannot be iterated */
static int send__call (lua_State *L) {
  return tether__fname_error(L, "send:__call",
                             "the send end of a memory object stream cannot "
                             "be iterated; iterate its receive end: for item "
                             "in receive do ... end");
}

/* }==================================================================== */

/* Both ends' methods get the end as upvalue 2 (see SENDING). */
void tether__open_stream (lua_State *L, struct ctx *c) {
  static const luaL_Reg send_methods[] = {{"send", send_send},
                                          {"send_nowait", send_nowait},
                                          {"clone", handle_clone},
                                          {"close", handle_close},
                                          {"statistics", handle_statistics},
                                          {NULL, NULL}};
  static const luaL_Reg receive_methods[] = {
      {"receive", receive_receive},      {"receive_nowait", receive_nowait},
      {"clone", handle_clone},           {"close", handle_close},
      {"statistics", handle_statistics}, {NULL, NULL}};
  static const luaL_Reg send_metamethods[] = {{"__call", send__call},
                                              {"__close", handle_close},
                                              {"__gc", handle_close},
                                              {"__tostring", handle__tostring},
                                              {NULL, NULL}};
  static const luaL_Reg receive_metamethods[] = {
      {"__call", receive__call},
      {"__close", handle_close},
      {"__gc", handle_close},
      {"__tostring", handle__tostring},
      {NULL, NULL}};
  static const struct class_def send_class = {
      CLASS_SEND, TETHER_SEND_MT, send_methods, send_metamethods, NULL};
  static const struct class_def receive_class = {
      CLASS_RECEIVE, TETHER_RECEIVE_MT, receive_methods, receive_metamethods,
      NULL};
  static const luaL_Reg funcs[] = {
      {"create_memory_object_stream", core_create_memory_object_stream},
      {NULL, NULL}};
  lua_pushboolean(L, 1);
  tether__add_class(L, c, &send_class, 1);
  lua_pushboolean(L, 0);
  tether__add_class(L, c, &receive_class, 1);
  tether__add_functions(L, funcs);
}
