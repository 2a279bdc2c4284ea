/*
** fswatch.c
** tether.fs.watch(path): change notifications (uv_fs_event, inotify on
** Linux), received like signals: 'for event, name in tether.fs.watch(p)',
** or receive() and close().
**
** The watch starts when the watcher is made, so changes that come before
** the first receive are kept: libuv's callback queues them (at most
** WATCH_QUEUE; more are counted in 'dropped', and a change equal to the
** last one queued is not queued twice) and wakes the reader without handing
** it anything; the reader takes the change in its own continuation, so a
** cancelled receive leaves it queued. The handle is malloc'd apart from the
** userdata and freed by its close callback; open watchers are in a context
** list and closed where UDP sockets are.
*/

#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

#define WATCH_QUEUE 1024

struct change {
  struct change *next;
  int event; /* UV_RENAME or UV_CHANGE */
  int named; /* libuv gave a name */
  char name[];
};

struct fsev {
  uv_fs_event_t handle;
  struct watcher *owner; /* NULL once the watcher closed */
};

struct watcher {
  struct queue node; /* ctx->watchers while open */
  struct fsev *ev;
  struct waitq reader;
  struct change *head, *tail;
  int queued;
  lua_Integer dropped;
  int taking; /* a reader between its checkpoint and taking a change */
  int closed;
};

static void free_changes (struct watcher *w) {
  while (w->head != NULL) {
    struct change *ch = w->head;
    w->head = ch->next;
    free(ch);
  }
  w->tail = NULL;
  w->queued = 0;
}

static void free_fsev (uv_handle_t *h) {
  free(h->data);
}

static void close_watcher (struct watcher *w) {
  static const struct wake_error closed_while_reading = {
      ERROR_CLOSED, "watcher:receive: the watcher was closed while a task "
                    "was reading it"};
  struct task *t;
  if (w->closed)
    return;
  w->closed = 1;
  queue_remove(&w->node);
  while ((t = tether__waitq_first(&w->reader)) != NULL)
    tether__waitq_raise(t, &closed_while_reading);
  w->ev->owner = NULL;
  uv_fs_event_stop(&w->ev->handle);
  uv_close((uv_handle_t *)&w->ev->handle, free_fsev);
  w->ev = NULL;
  free_changes(w);
}

void tether__watchers_stop (struct ctx *c) {
  while (!queue_empty(&c->watchers))
    close_watcher(queue_data(queue_head(&c->watchers), struct watcher, node));
}

static void queue_change (struct watcher *w, int event, const char *name) {
  size_t len = name != NULL ? strlen(name) : 0;
  struct change *ch;
  if (w->tail != NULL && w->tail->event == event &&
      w->tail->named == (name != NULL) &&
      (name == NULL || strcmp(w->tail->name, name) == 0))
    return; /* the same as the last one: once is enough */
  if (w->queued >= WATCH_QUEUE || (ch = malloc(sizeof *ch + len + 1)) == NULL) {
    w->dropped++;
    return;
  }
  ch->next = NULL;
  ch->event = event;
  ch->named = name != NULL;
  memcpy(ch->name, name != NULL ? name : "", len + 1);
  if (w->tail != NULL)
    w->tail->next = ch;
  else
    w->head = ch;
  w->tail = ch;
  w->queued++;
}

static void on_event (uv_fs_event_t *h, const char *name, int events,
                      int status) {
  struct watcher *w = ((struct fsev *)h->data)->owner;
  struct task *t;
  if (w == NULL || status < 0)
    return;
  if (events & UV_RENAME)
    queue_change(w, UV_RENAME, name);
  if (events & UV_CHANGE)
    queue_change(w, UV_CHANGE, name);
  if (w->head != NULL && (t = tether__waitq_first(&w->reader)) != NULL) {
    t->nresume = 0;
    tether__waitq_wake(t, WAKE_OK);
  }
}

/* Stack of a watch: path, then the watcher. */
static int watch_k (lua_State *L, int status, lua_KContext k) {
  const char *fname = "tether.fs.watch";
  struct task *t = tether__resumed(L, 1, k, watch_k);
  struct ctx *c = TASK_CTX(t);
  struct watcher *w;
  int err;
  (void)status;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  w = lua_newuserdatauv(L, sizeof *w, 1);
  memset(w, 0, sizeof *w);
  w->closed = 1; /* until it watches */
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  tether__set_metatable(L, c, CLASS_WATCHER);
  tether__waitq_init_as(&w->reader, "file-system watcher");
  w->ev = malloc(sizeof *w->ev);
  if (w->ev == NULL)
    return luaL_error(L, "not enough memory");
  err = uv_fs_event_init(c->loop, &w->ev->handle);
  if (err < 0) {
    free(w->ev);
    w->ev = NULL;
    return tether__fs_raise(L, c, err, "watch", lua_tostring(L, 1));
  }
  w->ev->handle.data = w->ev;
  w->ev->owner = w;
  w->closed = 0;
  queue_insert_tail(&c->watchers, &w->node);
  err = uv_fs_event_start(&w->ev->handle, on_event, lua_tostring(L, 1), 0);
  if (err < 0) {
    close_watcher(w);
    return tether__fs_raise(L, c, err, "watch", lua_tostring(L, 1));
  }
  (void)fname;
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushvalue(L, -3);
  return 4;
}

/* core.fs_watch(path) -> watcher, nil, nil, watcher (a checkpoint) */
static int core_watch (lua_State *L) {
  const char *fname = "tether.fs.watch";
  struct ctx *c = CTX(L);
  struct task *t;
  tether__fs_check_path(L, 1, fname, "path");
  lua_settop(L, 1);
  t = tether__check_task(L, c, fname);
  return tether__reschedule(L, t, 0, watch_k);
}

static struct watcher *check_watcher (lua_State *L, const char *fname) {
  return tether__check_self(L, 1, CTX(L), CLASS_WATCHER, fname);
}

static int take_change (lua_State *L, struct watcher *w) {
  struct change *ch = w->head;
  lua_pushstring(L, ch->event == UV_RENAME ? "rename" : "change");
  if (ch->named)
    lua_pushstring(L, ch->name);
  else
    lua_pushnil(L);
  w->head = ch->next;
  if (w->head == NULL)
    w->tail = NULL;
  w->queued--;
  free(ch);
  return 2;
}

static int receive_k (lua_State *L, int status, lua_KContext parked) {
  struct task *t = tether__resumed(L, 1, parked, receive_k);
  struct watcher *w = lua_touserdata(L, 1);
  (void)status;
  if (parked)
    tether__check_wake(L, t);
  else {
    w->taking = 0;
    if (t->scope->effective)
      return tether__raise_cancelled(L, t);
  }
  if (w->closed)
    return tether__raise(L, TASK_CTX(t), ERROR_CLOSED, "watcher:receive",
                         "the watcher was closed");
  if (w->head == NULL) /* woken, but nothing kept: wait again */
    return tether__wait(L, t, &w->reader, 1, receive_k);
  return take_change(L, w);
}

/* watcher:receive() -> event, name (a checkpoint) */
static int watcher_receive (lua_State *L) {
  const char *fname = "watcher:receive";
  struct ctx *c = CTX(L);
  struct watcher *w = check_watcher(L, fname);
  struct task *t = tether__check_task(L, c, fname);
  lua_settop(L, 1);
  if (w->closed)
    return tether__raise(L, c, ERROR_CLOSED, fname, "the watcher is closed");
  if (w->reader.count > 0 || w->taking)
    return tether__raise(L, c, ERROR_BUSY, fname,
                         "another task is already reading this watcher");
  if (!lua_checkstack(L, 3))
    return luaL_error(L, "not enough memory");
  if (w->head != NULL) {
    w->taking = 1;
    return tether__reschedule(L, t, 0, receive_k);
  }
  return tether__wait(L, t, &w->reader, 1, receive_k);
}

/* watcher:close(): idempotent; a blocked reader gets ClosedResourceError */
static int watcher_close (lua_State *L) {
  close_watcher(check_watcher(L, "watcher:close"));
  return 0;
}

static int watcher__gc (lua_State *L) {
  struct watcher *w = lua_touserdata(L, 1);
  if (w->ev != NULL)
    close_watcher(w);
  return 0;
}

/* The generic 'for' calls the watcher: each step is a receive(). */
static int watcher__call (lua_State *L) {
  lua_settop(L, 1);
  return watcher_receive(L);
}

static int watcher__index (lua_State *L) {
  struct watcher *w = check_watcher(L, "watcher:__index");
  if (lua_type(L, 2) == LUA_TSTRING &&
      strcmp(lua_tostring(L, 2), "dropped") == 0) {
    lua_pushinteger(L, w->dropped);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  return 1;
}

static int watcher__tostring (lua_State *L) {
  struct watcher *w = check_watcher(L, "watcher:__tostring");
  lua_getiuservalue(L, 1, 1);
  lua_pushfstring(L, "tether.Watcher (%s, %s, %d queued): %p",
                  lua_tostring(L, -1), w->closed ? "closed" : "open", w->queued,
                  (void *)w);
  return 1;
}

void tether__open_fswatch (lua_State *L, struct ctx *c) {
  static const luaL_Reg methods[] = {
      {"receive", watcher_receive}, {"close", watcher_close}, {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__call", watcher__call},
                                         {"__close", watcher_close},
                                         {"__gc", watcher__gc},
                                         {"__tostring", watcher__tostring},
                                         {NULL, NULL}};
  static const struct class_def watcher_class = {
      CLASS_WATCHER, "tether.Watcher", methods, metamethods, watcher__index};
  static const luaL_Reg funcs[] = {{"fs_watch", core_watch}, {NULL, NULL}};
  tether__add_class(L, c, &watcher_class, 0);
  tether__add_functions(L, funcs);
}
