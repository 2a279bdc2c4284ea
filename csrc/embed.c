/*
** embed.c
** The embedding API of tether.h: running tether on a host's uv_loop_t,
** starting tasks from C, posting work from other threads, stepping the
** loop, and shutting down.
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A task started by tether_spawn reports its outcome here. */
struct tether_done {
  tether_done_cb cb;
  void *ud;
  int ok;     /* the task's outcome */
  int called; /* cb was called (it may have raised since) */
};

/* A tether_post callback waiting for the loop's thread. */
struct post {
  struct post *next;
  tether_post_cb cb;
  void *ud;
};

#define CTX_OF(t) ((struct ctx *)(void *)(t))

/* Opens the core (self-contained: the facade is the host's choice). */
static int open_core (lua_State *L) {
  luaL_requiref(L, "tether.core", luaopen_tether_core, 0);
  return 0;
}

/* The state's context, opening the module first if needed (or again, when
   memory ran out while it was being opened). */
static struct ctx *get_ctx (lua_State *L) {
  struct ctx *c = tether__ctx(L);
  if (c != NULL && c->opened)
    return c;
  lua_pushcfunction(L, open_core);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    return NULL;
  }
  return tether__ctx(L);
}

TETHER_API int tether_attach (lua_State *L, uv_loop_t *loop) {
  struct ctx *c = get_ctx(L);
  int err;
  if (c == NULL)
    return UV_ENOMEM;
  if (c->loop != NULL)
    return UV_EBUSY;
  if (loop == NULL)
    return UV_EINVAL;
  c->loop = loop;
  err = tether__open_hub(c, 1);
  if (err < 0) {
    c->loop = NULL;
    return err;
  }
  c->attached = 1;
  c->running = 1;
  c->from = c->L;
  c->posts_closed = 0;
  tether__begin(c);
  return 0;
}

TETHER_API tether_t *tether_get (lua_State *L) {
  struct ctx *c = tether__ctx(L);
  return c != NULL && c->attached ? (tether_t *)(void *)c : NULL;
}

/* [-(nargs+2), +0, m] spawns under a protected call; the stack holds the
   done (a light userdata), the function and its arguments. */
static int spawn_protected (lua_State *L) {
  struct ctx *c = tether__ctx(L);
  struct tether_done *d = lua_touserdata(L, 1);
  struct task *t;
  lua_pushnil(L); /* name: derived from the function */
  lua_replace(L, 1);
  t = tether__spawn(L, c, lua_gettop(L) - 2, &c->root, NULL);
  t->done = d;
  return 0;
}

TETHER_API int tether_spawn (lua_State *L, int nargs, tether_done_cb done,
                             void *ud) {
  struct ctx *c = tether__ctx(L);
  struct tether_done *d = NULL;
  int err = 0;
  if (c == NULL || !c->attached)
    err = UV_EINVAL;
  else if (c->posts_closed)
    err = UV_ESHUTDOWN;
  else if (lua_type(L, -(nargs + 1)) != LUA_TFUNCTION)
    err = UV_EINVAL;
  else if (!lua_checkstack(L, 2) ||
           (done != NULL && (d = malloc(sizeof *d)) == NULL))
    err = UV_ENOMEM;
  if (err < 0) {
    lua_pop(L, nargs + 1);
    return err;
  }
  if (d != NULL) {
    d->cb = done;
    d->ud = ud;
  }
  /* A light C function and a light userdata: nothing to allocate outside
     the protected call, where a memory error would end the host. */
  lua_pushcfunction(L, spawn_protected);
  lua_pushlightuserdata(L, d);
  lua_rotate(L, -(nargs + 3), 2);
  if (lua_pcall(L, nargs + 2, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    free(d);
    return UV_ENOMEM;
  }
  return 0;
}

/* Says on stderr that a callback (or the tick) raised the error on top. */
void tether__report_error (lua_State *L, const char *what) {
  if (lua_type(L, -1) == LUA_TSTRING)
    fprintf(stderr, "tether: %s: %s\n", what, lua_tostring(L, -1));
  else
    fprintf(stderr, "tether: %s: (error object is a %s value)\n", what,
            luaL_typename(L, -1));
  fflush(stderr);
}

/* [-1, +1, m] pushes task 't''s traceback (argument: 't'). */
static int push_traceback (lua_State *L) {
  tether__push_traceback(L, lua_touserdata(L, 1));
  return 1;
}

/* [-(n+1), +0, e] calls the done callback of task 't' (argument 1, a light
   userdata) with the n values above it: its results, or its error and
   traceback. */
static int call_done (lua_State *L) {
  struct task *t = lua_touserdata(L, 1);
  struct tether_done *d = t->done;
  lua_remove(L, 1);
  d->called = 1;
  d->cb(L, d->ok, lua_gettop(L), d->ud);
  return 0;
}

/*
** Hands a finished task's outcome, on 'L' above index 'base' ([ok,
** results...] or [false, error]), to the host's done callback, and leaves
** 'L' at 'base'. The callback runs under a protected call: an error it
** raises is reported on stderr, and the tasks after it go on (it must not
** unwind through the scheduler and lose them).
*/
static void report_on (lua_State *L, int base, struct task *t) {
  struct tether_done *d = t->done;
  /* Room for the calls below, and for the callback (LUA_MINSTACK), so that
     calling it does not have to grow the stack. */
  if (!lua_checkstack(L, LUA_MINSTACK + 4)) { /* report the memory error */
    lua_settop(L, base);
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "not enough memory"); /* interned: no allocation */
  }
  d->ok = lua_toboolean(L, base + 1);
  d->called = 0;
  lua_remove(L, base + 1);
  if (!d->ok) { /* the traceback, or the memory error in its place */
    lua_pushcfunction(L, push_traceback);
    lua_pushlightuserdata(L, t);
    lua_pcall(L, 1, 1, 0);
  }
  lua_pushcfunction(L, call_done);
  lua_pushlightuserdata(L, t);
  lua_rotate(L, base + 1, 2);
  if (lua_pcall(L, lua_gettop(L) - base - 1, 0, 0) != LUA_OK) {
    tether__report_error(L, d->called ? "error in a done callback"
                                      : "cannot call a done callback");
    lua_pop(L, 1);
  }
  lua_settop(L, base);
  t->done = NULL;
  free(d);
}

/* A spawned task finished: its thread holds its outcome. */
void tether__report (struct ctx *c, struct task *t) {
  (void)c;
  report_on(t->L, 0, t);
}

/* {====================================================================
** Posting from other threads
** ===================================================================== */

TETHER_API int tether_post (tether_t *handle, tether_post_cb cb, void *ud) {
  struct ctx *c = CTX_OF(handle);
  struct post *p;
  if (c == NULL || cb == NULL)
    return UV_EINVAL;
  p = malloc(sizeof *p);
  if (p == NULL)
    return UV_ENOMEM;
  p->cb = cb;
  p->ud = ud;
  uv_mutex_lock(&c->posts_lock);
  if (c->posts_closed || c->hub == NULL) {
    uv_mutex_unlock(&c->posts_lock);
    free(p);
    return UV_ESHUTDOWN;
  }
  p->next = c->posts;
  c->posts = p;
  uv_async_send(&c->hub->post); /* under the lock: the hub stays open */
  uv_mutex_unlock(&c->posts_lock);
  return 0;
}

static int run_post (lua_State *L) {
  struct post *p = lua_touserdata(L, 1);
  lua_settop(L, 0);
  p->cb(L, p->ud);
  return 0;
}

/* Takes the waiting posts, oldest first. */
static struct post *take_posts (struct ctx *c) {
  struct post *p, *reversed = NULL;
  uv_mutex_lock(&c->posts_lock);
  p = c->posts;
  c->posts = NULL;
  uv_mutex_unlock(&c->posts_lock);
  while (p != NULL) {
    struct post *next = p->next;
    p->next = reversed;
    reversed = p;
    p = next;
  }
  return reversed;
}

/* The async handle fired: run the posted callbacks on this thread. */
void tether__on_post (uv_async_t *h) {
  struct ctx *c = h->data;
  struct post *p = take_posts(c);
  c->in_callback++;
  while (p != NULL) {
    struct post *next = p->next;
    lua_pushcfunction(c->L, run_post);
    lua_pushlightuserdata(c->L, p);
    if (lua_pcall(c->L, 1, 0, 0) != LUA_OK) {
      tether__report_error(c->L, "error in a posted callback");
      lua_pop(c->L, 1);
    }
    free(p);
    p = next;
  }
  c->in_callback--;
}

/* Frees posts that will never run (the state is closing). */
void tether__drop_posts (struct ctx *c) {
  struct post *p = take_posts(c);
  while (p != NULL) {
    struct post *next = p->next;
    free(p);
    p = next;
  }
}

/* }==================================================================== */

/* {====================================================================
** Stepping and shutting down
** ===================================================================== */

TETHER_API int tether_step (lua_State *L) {
  struct ctx *c = tether__ctx(L);
  if (c == NULL || !c->attached)
    return UV_EINVAL;
  /* uv_run does nothing on a loop that nothing keeps alive, and tether's
     handles are unref'd: hold the tick's reference for this one pass. */
  uv_ref((uv_handle_t *)&c->hub->tick);
  uv_run(c->loop, UV_RUN_NOWAIT);
  if (c->hub != NULL)
    uv_unref((uv_handle_t *)&c->hub->tick);
  return !queue_empty(&c->ready);
}

TETHER_API int tether_backend_fd (lua_State *L) {
  struct ctx *c = tether__ctx(L);
  if (c == NULL || !c->attached)
    return UV_EINVAL;
  return uv_backend_fd(c->loop);
}

/* Milliseconds the host may wait before the next tether_step; -1: until the
   backend descriptor is readable. */
TETHER_API int tether_backend_timeout (lua_State *L) {
  struct ctx *c = tether__ctx(L);
  struct heap_node *n;
  double ms;
  if (c == NULL || !c->attached)
    return UV_EINVAL;
  if (!queue_empty(&c->ready) || c->blocked_waiters.count > 0)
    return 0;
  if (uv_loop_alive(c->loop)) /* the host's own handles count too */
    return uv_backend_timeout(c->loop);
  n = heap_min(&c->deadlines);
  if (n == NULL)
    return -1;
  ms = (n->when - tether__time(c)) * 1e3;
  return ms <= 0 ? 0 : ms >= 2147483647.0 ? 2147483647 : (int)ms + 1;
}

/* Ticks that fail in a row before tether_shutdown gives up on the tasks
   left (memory is not coming back). */
#define SHUTDOWN_FAILED_TICKS 8

/*
** tether_shutdown could not finish the tasks: their done callbacks get
** "not enough memory", and they are dropped without running their cleanup.
*/
static void abandon (struct ctx *c) {
  int slot, base = lua_gettop(c->L); /* the host's values stay */
  for (slot = 0; slot < tether__nslots(c); slot++) {
    struct task *t = tether__live_record(c, slot);
    if (t == NULL || t->done == NULL || !lua_checkstack(c->L, 2))
      continue;
    lua_pushboolean(c->L, 0);
    lua_pushliteral(c->L, "not enough memory"); /* interned: no allocation */
    report_on(c->L, base, t);
  }
  tether__abandon(c, c->L);
}

TETHER_API int tether_shutdown (lua_State *L) {
  struct ctx *c = tether__ctx(L);
  uv_handle_t *handles[HUB_HANDLES];
  int i;
  if (c == NULL || !c->attached)
    return UV_EINVAL;
  if (c->in_callback)
    return UV_EBUSY; /* inside uv_run, which is not reentrant */
  uv_mutex_lock(&c->posts_lock);
  c->posts_closed = 1;
  uv_mutex_unlock(&c->posts_lock);
  tether__on_post(&c->hub->post); /* posts accepted before still run */
  tether__cancel(&c->root, CAUSE_SHUTDOWN);
  /* Keep the loop alive (for tether's handles too) until every task ran
     its cleanup. */
  tether__hub_handles(c->hub, handles);
  for (i = 0; i < HUB_HANDLES; i++)
    uv_ref(handles[i]);
  while (c->ntasks > 0 && c->tick_failed < SHUTDOWN_FAILED_TICKS)
    uv_run(c->loop, UV_RUN_ONCE);
  if (c->ntasks > 0)
    abandon(c);
  tether__workers_stop(c);
  tether__streams_stop(c);
  tether__listeners_stop(c);
  tether__udps_stop(c);
  tether__processes_stop(c);
  tether__watchers_stop(c);
  tether__signals_stop(c);
  tether__close_hub(c);
  uv_run(c->loop, UV_RUN_NOWAIT); /* runs the close callbacks */
  c->loop = NULL;
  c->attached = 0;
  c->running = 0;
  return 0;
}

/* }==================================================================== */
