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
  struct queue senders;   /* parked senders, oldest first */
  struct queue receivers; /* parked receivers, oldest first */
  int nsenders;
  int nreceivers;
  double max; /* max_buffer_size; HUGE_VAL: unbounded */
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

/* [-0, +0, e] raises an error of class 'name' with "fname: message". */
static int raise_error (lua_State *L, const char *name, const char *fname,
                        const char *message) {
  lua_pushfstring(L, "%s: %s", fname, message);
  tether__new_error(L, name);
  return lua_error(L);
}

static struct handle *open_handle (lua_State *L, struct ctx *c, int sending,
                                   const char *fname) {
  struct handle *h = check_handle(L, c, sending, fname);
  if (h->closed)
    raise_error(L, "ClosedResourceError", fname,
                "this stream handle is closed");
  return h;
}

/* [-0, +1, -] pushes the buffer table of the handle at 'idx'. */
static void push_buffer (lua_State *L, int idx) {
  lua_getiuservalue(L, idx, 1); /* the state userdata */
  lua_getiuservalue(L, -1, 1);  /* its buffer */
  lua_remove(L, -2);
}

static struct task *oldest (struct queue *q) {
  return queue_data(queue_head(q), struct task, node);
}

/* Wakes a parked task with the error object on top of L. */
static void wake_with_error (lua_State *L, struct task *t) {
  lua_xmove(L, t->L, 1);
  t->nresume = 1;
  tether__wake(t, WAKE_ERROR);
}

/* {====================================================================
** Sending
** ===================================================================== */

/*
** Delivers the item at 'item' without blocking: to the oldest parked
** receiver, or into the buffer. Returns 0 when it would have to wait.
*/
static int try_send (lua_State *L, struct stream *s, int item,
                     const char *fname) {
  if (s->open_receive == 0)
    raise_error(L, "BrokenResourceError", fname, "every receive end is closed");
  if (s->nreceivers > 0) {
    struct task *t = oldest(&s->receivers);
    s->nreceivers--;
    lua_pushvalue(L, item);
    lua_xmove(L, t->L, 1); /* room was reserved when it parked */
    t->nresume = 1;
    tether__wake(t, WAKE_OK);
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
  struct handle *h = open_handle(L, CTX(L), 1, fname);
  check_item(L, fname);
  if (!try_send(L, h->s, SLOT_ITEM, fname))
    return raise_error(L, "WouldBlock", fname,
                       "no receiver is waiting and the buffer is full");
  return 0;
}

static int sender_abort (struct task *t) {
  struct handle *h = t->wait_data;
  queue_remove(&t->node);
  h->s->nsenders--;
  return 1;
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
  if (try_send(L, h->s, SLOT_ITEM, fname))
    return tether__reschedule(L, t, 0, tether__scheduled_k);
  if (!lua_checkstack(L, 2))
    return luaL_error(L, "not enough memory");
  queue_insert_tail(&h->s->senders, &t->node);
  h->s->nsenders++;
  t->wait_data = h;
  return tether__park(L, t, sender_abort, SLOT_ITEM, tether__woken_k);
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
  if (s->nsenders > 0) {
    struct task *t = oldest(&s->senders);
    s->nsenders--;
    if (s->count == 0) { /* rendezvous: straight from the sender */
      lua_pushvalue(t->L, SLOT_ITEM);
      lua_xmove(t->L, L, 1);
      tether__wake(t, WAKE_OK);
      return 1;
    }
    push_buffer(L, SLOT_HANDLE);
    lua_pushvalue(t->L, SLOT_ITEM);
    lua_xmove(t->L, L, 1);
    lua_rawseti(L, -2, s->head + s->count);
    lua_pop(L, 1);
    s->count++;
    tether__wake(t, WAKE_OK);
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
  struct handle *h = open_handle(L, CTX(L), 0, fname);
  switch (try_receive(L, h->s)) {
    case 1:
      return 1;
    case 0:
      return raise_error(L, "WouldBlock", fname, "no item is ready");
    default:
      return raise_error(L, "EndOfStream", fname, "every send end is closed");
  }
}

static int receiver_abort (struct task *t) {
  struct handle *h = t->wait_data;
  queue_remove(&t->node);
  h->s->nreceivers--;
  return 1;
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
  return raise_error(L, "EndOfStream", "receive:receive",
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
      return raise_error(L, "EndOfStream", fname, "every send end is closed");
  }
  if (!lua_checkstack(L, 2))
    return luaL_error(L, "not enough memory");
  queue_insert_tail(&h->s->receivers, &t->node);
  h->s->nreceivers++;
  t->wait_data = h;
  return tether__park(L, t, receiver_abort, iterating, receive_k);
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
  queue_init(&s->senders);
  queue_init(&s->receivers);
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

/* Wakes the tasks of 'q' parked through handle 'h' (NULL: all of them),
   each with a new error of class 'name', or with nothing if name is NULL. */
static void wake_parked (lua_State *L, struct queue *q, int *count,
                         struct handle *h, const char *name,
                         const char *message) {
  struct queue *node, *next;
  for (node = q->next; node != q; node = next) {
    struct task *t = queue_data(node, struct task, node);
    next = node->next;
    if (h != NULL && t->wait_data != h)
      continue;
    (*count)--;
    if (name == NULL) {
      t->nresume = 0;
      tether__wake(t, WAKE_OK);
    }
    else {
      lua_pushstring(L, message);
      tether__new_error(L, name);
      wake_with_error(L, t);
    }
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
    wake_parked(L, &s->senders, &s->nsenders, h, "ClosedResourceError",
                "send:send: this stream handle was closed");
    if (--s->open_send == 0)
      wake_parked(L, &s->receivers, &s->nreceivers, NULL, NULL, NULL);
  }
  else {
    wake_parked(L, &s->receivers, &s->nreceivers, h, "ClosedResourceError",
                "receive:receive: this stream handle was closed");
    if (--s->open_receive == 0)
      wake_parked(L, &s->senders, &s->nsenders, NULL, "BrokenResourceError",
                  "send:send: every receive end was closed");
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
  lua_pushinteger(L, s->nsenders);
  lua_setfield(L, -2, "tasks_waiting_send");
  lua_pushinteger(L, s->nreceivers);
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

/* }==================================================================== */

static void new_class (lua_State *L, int sending, const luaL_Reg *methods,
                       int ctx) {
  static const luaL_Reg shared[] = {{"clone", handle_clone},
                                    {"close", handle_close},
                                    {"statistics", handle_statistics},
                                    {"__close", handle_close},
                                    {"__gc", handle_close},
                                    {"__tostring", handle__tostring},
                                    {NULL, NULL}};
  tether__new_class(L, lua_touserdata(L, ctx),
                    sending ? CLASS_SEND : CLASS_RECEIVE,
                    sending ? TETHER_SEND_MT : TETHER_RECEIVE_MT);
  lua_pushvalue(L, ctx);
  lua_pushboolean(L, sending);
  luaL_setfuncs(L, shared, 2);
  lua_pushvalue(L, ctx);
  luaL_setfuncs(L, methods, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* Adds create_memory_object_stream to the module table on top; the ctx is
   just below it. */
void tether__open_stream (lua_State *L) {
  static const luaL_Reg send_methods[] = {
      {"send", send_send}, {"send_nowait", send_nowait}, {NULL, NULL}};
  static const luaL_Reg receive_methods[] = {{"receive", receive_receive},
                                             {"receive_nowait", receive_nowait},
                                             {"__call", receive__call},
                                             {NULL, NULL}};
  int ctx = lua_absindex(L, -2);
  new_class(L, 1, send_methods, ctx);
  new_class(L, 0, receive_methods, ctx);
  lua_pushvalue(L, ctx);
  lua_pushcclosure(L, core_create_memory_object_stream, 1);
  lua_setfield(L, -2, "create_memory_object_stream");
}
