/*
** loop.c
** The event loop: tether's handles on a loop (owned by tether.run or attached
** by a host), the tick that resumes ready tasks in batches, the single
** deadline timer, and tether.run itself.
*/

#include <math.h>
#include <stdlib.h>

#include "internal.h"

/*
** How long one tick may keep running batches of ready tasks before libuv
** polls for I/O again. Between batches deadlines are always processed; I/O
** (signals, later sockets) is polled at least this often, so a task that
** checkpoints in a tight loop costs no system call per checkpoint. A build
** may set it (docs/performance.md counts instructions under valgrind, which
** runs far fewer tasks in a slice, with a longer one).
*/
#ifndef TICK_SLICE_NS
#define TICK_SLICE_NS 500000u
#endif

/* The longest the deadline timer is armed for (a day, in ms): deadlines
   further away, up to 1e300 s, must not overflow libuv's uint64_t. */
#define TIMER_MAX_MS 86400000.0

/* How many tasks a batch runs between two looks at the clock. */
#define BATCH_CLOCK_EVERY 16

/* Puts what is left of the batch (cut, or left by a failed tick) back at the
   head of the run queue, before the tasks made ready meanwhile. */
static void requeue_batch (struct ctx *c) {
  queue_move_all(&c->ready, &c->batch);
  queue_move_all(&c->batch, &c->ready);
}

/*
** Moves every ready task to the batch and resumes each once. Tasks made ready
** while the batch runs wait for the next batch, as in Trio. A batch still
** running when the tick's time slice is used up (a burst of new tasks, say)
** is cut there, so that deadlines and I/O are processed on time: the tasks
** it has not reached go back to the head of the run queue, in order, and it
** returns 1. Its first 'woken' tasks (see process_deadlines) and at least one
** more always run, so a cut batch makes progress whatever the deadlines do.
** The batch lives in the context: when memory runs out binding a thread (the
** one step of a resume that can fail), the task stays first in the batch,
** and the next tick runs it and the rest of the batch first.
*/
static int run_batch (struct ctx *c, uint64_t start, unsigned woken) {
  unsigned n = 0;
  queue_move_all(&c->ready, &c->batch);
  while (!queue_empty(&c->batch)) {
    struct task *t = queue_data(queue_head(&c->batch), struct task, node);
    if (t->L == NULL)
      tether__bind_thread(c, t);
    queue_remove(&t->node);
    tether__resume(c, t);
    if (++n > woken && n % BATCH_CLOCK_EVERY == 0 && !queue_empty(&c->batch) &&
        uv_hrtime() - start > TICK_SLICE_NS) {
      requeue_batch(c);
      return 1;
    }
  }
  return 0;
}

/*
** Wakes sleepers and cancels scopes whose deadline has passed, and moves the
** tasks this made ready to the head of the run queue: after a cut batch they
** run before the rest of it, not after it. Returns how many there are.
*/
static unsigned process_deadlines (struct ctx *c) {
  struct heap_node *n = heap_min(&c->deadlines);
  struct queue *ready = &c->ready, *last, *first, *q;
  unsigned woken = 0;
  double now;
  if (n == NULL || n->when > (now = tether__time(c)))
    return 0;
  last = ready->prev; /* the tasks woken here are queued after it */
  while ((n = heap_min(&c->deadlines)) != NULL && n->when <= now) {
    heap_remove(&c->deadlines, n);
    if (n->kind == DEADLINE_SLEEP)
      tether__wake(queue_data(n, struct task, sleep), WAKE_OK);
    else if (n->kind == DEADLINE_SCOPE)
      tether__cancel(queue_data(n, struct scope, timer), CAUSE_DEADLINE);
    else {
      c->watchdog_fired = 1;
      tether__cancel(&c->root, CAUSE_WATCHDOG);
    }
  }
  first = last->next;
  for (q = first; q != ready; q = q->next)
    woken++;
  if (woken > 0 && last != ready) { /* splice first..tail in at the head */
    q = ready->prev;
    last->next = ready;
    ready->prev = last;
    q->next = ready->next;
    ready->next->prev = q;
    ready->next = first;
    first->prev = ready;
  }
  return woken;
}

static void on_spin (uv_idle_t *h) {
  (void)h; /* its being active keeps poll from blocking */
}

/*
** Timers run before poll in a libuv iteration, and the tick after it: keep
** poll from blocking so that the tick processes the deadline right away.
*/
static void on_timer (uv_timer_t *h) {
  struct ctx *c = h->data;
  uv_idle_start(&c->hub->spin, on_spin);
}

/* Arms the timer for 'wait' milliseconds (HUGE_VAL: stops it). */
static void start_timer (struct ctx *c, double wait) {
  if (wait == HUGE_VAL) {
    uv_timer_stop(&c->hub->timer);
    return;
  }
  uv_update_time(c->loop);
  if (wait > TIMER_MAX_MS) /* it fires early, finds nothing due, re-arms */
    wait = TIMER_MAX_MS;
  uv_timer_start(&c->hub->timer, on_timer, wait > 0 ? (uint64_t)wait : 0, 0);
}

/* Arms the timer for the earliest deadline so that poll wakes up for it
   (under a mock clock, when it comes in real time: see clock.c). */
static void arm_timer (struct ctx *c) {
  struct heap_node *n = heap_min(&c->deadlines);
  if (c->clock != NULL)
    start_timer(c, tether__clock_timer_ms(c));
  else if (n == NULL)
    start_timer(c, HUGE_VAL);
  else
    start_timer(c, ceil((n->when - tether__time(c)) * 1e3));
}

/*
** Runs batches until nothing is ready or the time slice is used up. Pools
** are trimmed only between bursts: the rest of a cut batch still needs
** the idle threads and free records.
*/
static int tick (lua_State *L) {
  struct ctx *c = lua_touserdata(L, 1);
  uint64_t start = uv_hrtime();
  int cut = 0, ran = 0;
  if (c->dump_pending)
    tether__dump_task_tree(L, c);
  requeue_batch(c);
  for (;;) {
    unsigned woken = process_deadlines(c);
    if (queue_empty(&c->ready)) {
      if (c->blocked_waiters.count == 0) {
        if (c->clock != NULL && tether__clock_autojump(c, ran))
          continue; /* the clock jumped to the next deadline */
        break;
      }
      tether__waitq_wake_all(&c->blocked_waiters);
    }
    cut = run_batch(c, start, woken);
    ran = 1;
    if (cut || c->stopping || uv_hrtime() - start > TICK_SLICE_NS)
      break;
  }
  if (c->stopping) {
    uv_stop(c->loop);
    return 0;
  }
  if (ran && c->clock != NULL) /* the autojump threshold counts from here */
    c->idle_since = uv_hrtime();
  if (!cut)
    tether__trim_pools(L, c);
  if (c->tick_failed)
    uv_ref((uv_handle_t *)&c->hub->spin);
  if (queue_empty(&c->ready) && c->blocked_waiters.count == 0)
    uv_idle_stop(&c->hub->spin);
  else
    uv_idle_start(&c->hub->spin, on_spin);
  arm_timer(c);
  tether__check_invariants(c);
  return 0;
}

/*
** The check handle runs the tick after every poll. The tick runs under a
** protected call: an error there (only memory errors can occur: binding a
** thread to a task, or trimming the pools) must not unwind through libuv.
** In tether.run it stops the loop, and run raises it; its error value stays
** on c->from's stack, which belongs to run meanwhile (keeping it anywhere
** else could fail for want of memory too). Attached, the host's loop goes on:
** the error is reported once per streak of failed ticks, and the tasks the
** tick did not run run in the next one.
*/
static void on_tick (uv_check_t *h) {
  struct ctx *c = h->data;
  lua_State *L = c->from;
  int status;
  lua_pushcfunction(L, tick);
  lua_pushlightuserdata(L, c);
  c->in_callback++;
  status = lua_pcall(L, 1, 0, 0);
  c->in_callback--;
  if (status == LUA_OK) {
    c->tick_failed = 0;
    return;
  }
  if (!c->attached) {
    if (c->fatal)
      lua_pop(L, 1); /* the first error is the one run raises */
    c->fatal = 1;
    c->stopping = 1;
    uv_stop(c->loop);
    return;
  }
  if (c->tick_failed++ == 0)
    tether__report_error(L, "scheduler error");
  lua_pop(L, 1);
  /* The tasks are still ready: the next tick tries again, without keeping
     the host's loop alive (memory may not come back). */
  uv_idle_start(&c->hub->spin, on_spin);
  uv_unref((uv_handle_t *)&c->hub->spin);
}

/* Queues a task that was parked; the tick resumes it in the next batch. */
void tether__schedule (struct ctx *c, struct task *t) {
  t->state = TASK_READY;
  queue_insert_tail(&c->ready, &t->node);
  if (c->hub != NULL && !uv_is_active((uv_handle_t *)&c->hub->spin))
    uv_idle_start(&c->hub->spin, on_spin);
}

int tether__add_deadline (struct ctx *c, struct heap_node *d, double when) {
  return heap_insert(&c->deadlines, d, when);
}

void tether__remove_deadline (struct ctx *c, struct heap_node *d) {
  heap_remove(&c->deadlines, d);
}

static void close_handle (uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/*
** After a scheduler failure: forgets every live task without resuming it
** (their threads are dropped), so the loop can still be closed.
*/
void tether__abandon (struct ctx *c, lua_State *L) {
  uint32_t i;
  for (i = 0; i < c->deadlines.len; i++)
    c->deadlines.nodes[i]->index = HEAP_NONE;
  c->deadlines.len = 0;
  tether__abandon_tasks(L, c);
  queue_init(&c->ready);
  queue_init(&c->batch);
  tether__waitq_init_as(&c->blocked_waiters, "wait_all_tasks_blocked");
  c->main = NULL;
}

static void on_hub_closed (uv_handle_t *h) {
  struct hub *hub = h->data;
  if (--hub->open == 0)
    free(hub);
}

/*
** Creates tether's handles on c->loop. They live in a block of their own,
** freed by the last close callback: a host may close the Lua state (and the
** context with it) before its loop has run those callbacks.
*/
int tether__open_hub (struct ctx *c, int attached) {
  struct hub *hub = malloc(sizeof *hub);
  uv_handle_t *handles[HUB_HANDLES];
  int i;
  if (hub == NULL)
    return UV_ENOMEM;
  hub->ctx = c;
  hub->open = HUB_HANDLES;
  uv_check_init(c->loop, &hub->tick);
  uv_idle_init(c->loop, &hub->spin);
  uv_timer_init(c->loop, &hub->timer);
  uv_async_init(c->loop, &hub->post, tether__on_post);
  tether__hub_handles(hub, handles);
  for (i = 0; i < HUB_HANDLES; i++) {
    handles[i]->data = c;
    /* A host's loop is kept alive by tether only while tasks are ready
       (the idle handle is active just then), never by waiting tasks. */
    if (attached && handles[i] != (uv_handle_t *)&hub->spin)
      uv_unref(handles[i]);
  }
  c->hub = hub;
  uv_check_start(&hub->tick, on_tick);
  return 0;
}

void tether__hub_handles (struct hub *hub, uv_handle_t **handles) {
  handles[0] = (uv_handle_t *)&hub->tick;
  handles[1] = (uv_handle_t *)&hub->spin;
  handles[2] = (uv_handle_t *)&hub->timer;
  handles[3] = (uv_handle_t *)&hub->post;
}

/* Closes tether's handles; their memory goes in the last close callback. */
void tether__close_hub (struct ctx *c) {
  uv_handle_t *handles[HUB_HANDLES];
  int i;
  if (c->hub == NULL)
    return;
  tether__hub_handles(c->hub, handles);
  for (i = 0; i < HUB_HANDLES; i++) {
    handles[i]->data = c->hub;
    uv_close(handles[i], on_hub_closed);
  }
  c->hub = NULL;
}

/* Closes tether's handles on the owned loop, and the loop itself. */
static int close_loop (struct ctx *c) {
  tether__close_hub(c);
  uv_walk(c->loop, close_handle, NULL); /* none should be left */
  while (uv_run(c->loop, UV_RUN_NOWAIT) != 0)
    ;
  return uv_loop_close(c->loop);
}

/* Prepares the root scope and the counters for a new set of tasks. */
void tether__begin (struct ctx *c) {
  c->stopping = 0;
  c->watchdog_fired = 0;
  c->fatal = 0;
  c->tick_failed = 0;
  tether__scope_init(&c->root, HUGE_VAL, 0);
  c->root.state = SCOPE_ACTIVE;
  c->root.ctx = c;
}

/* Ends what tether.run began, whether the main task ran or not: signal
   watchers, tether's handles and the loop. Returns uv_loop_close's code. */
static int end_run (struct ctx *c) {
  int err;
  tether__remove_deadline(c, &c->watchdog);
  tether__workers_stop(c);
  tether__streams_stop(c);
  tether__listeners_stop(c);
  tether__udps_stop(c);
  tether__processes_stop(c);
  tether__watchers_stop(c);
  tether__signals_stop(c);
  tether__luv_stop(c);
  err = close_loop(c);
  if (c->spawned) /* libuv's SIGCHLD watcher is gone with the loop */
    tether__sig_spawned();
  c->spawned = 0;
  c->loop = NULL;
  c->running = 0;
  c->current = NULL;
  c->nnested = 0; /* tasks abandoned inside tether.coroutine resumes */
  return err;
}

/*
** [-(n+2), +0, m] run's first step, under a protected call: arms the
** watchdog (tests only, see core.set_watchdog) and spawns the main task.
** The stack holds the context, fn and its n arguments.
*/
static int start_main (lua_State *L) {
  struct ctx *c = lua_touserdata(L, 1);
  if (c->watchdog_seconds > 0 && c->clock == NULL && /* else see clock.c */
      tether__add_deadline(c, &c->watchdog,
                           tether__time(c) + c->watchdog_seconds) < 0)
    return luaL_error(L, "not enough memory");
  tether__luv_start(L, c);
  lua_pushnil(L); /* main task's name: derived from fn */
  lua_replace(L, 1);
  c->main = tether__spawn(L, c, lua_gettop(L) - 2, &c->root, NULL);
  return 0;
}

/*
** tether.run(fn, ...): runs fn(...) as the main task of a new loop and
** returns its results once every task has finished and the loop is closed.
*/
static int loop_run (lua_State *L) {
  struct ctx *c = lua_touserdata(L, lua_upvalueindex(1));
  int nargs = lua_gettop(L) - 1, err, n;
  lua_State *main_L;
  if (!lua_isfunction(L, 1) && !luaL_getmetafield(L, 1, "__call"))
    return tether__fname_error(L, "tether.run",
                               "expected a function to run, got %s",
                               luaL_typename(L, 1));
  lua_settop(L, nargs + 1);
  if (c->attached)
    return tether__fname_error(
        L, "tether.run",
        "tether is attached to the host's loop; the host starts tasks "
        "with tether_spawn, and tasks start others with tether.task_group");
  if (c->running)
    return tether__fname_error(
        L, "tether.run",
        "a loop is already running in this Lua state; start tasks with "
        "tether.task_group instead of nesting tether.run");
  c->dump_signal = tether__dump_signal_from_env(L);
  err = uv_loop_init(&c->own_loop);
  if (err < 0)
    return tether__fname_error(L, "tether.run", "cannot create a loop: %s",
                               uv_strerror(err));
  c->loop = &c->own_loop;
  err = tether__open_hub(c, 0);
  if (err < 0) {
    uv_loop_close(c->loop);
    c->loop = NULL;
    return tether__fname_error(L, "tether.run", "%s", uv_strerror(err));
  }
  c->from = L;
  c->running = 1;
  tether__begin(c);
  tether__signals_start(c);
  lua_pushcfunction(L, start_main);
  lua_pushlightuserdata(L, c);
  lua_rotate(L, 1, 2); /* [start_main, c, fn, args...] */
  if (lua_pcall(L, nargs + 2, 0, 0) != LUA_OK) {
    end_run(c); /* the main task did not start: undo what run set up */
    return lua_error(L);
  }
  uv_run(c->loop, UV_RUN_DEFAULT);

  if (c->fatal) { /* the tick's error is on top */
    tether__abandon(c, L);
    end_run(c);
    tether__check_invariants(c);
    return lua_error(L);
  }
  err = end_run(c);
  lua_settop(L, 0);
  main_L = c->main->L;
  n = lua_gettop(main_L);
  if (!lua_checkstack(L, n)) { /* the results do not fit */
    tether__release(L, c, c->main);
    c->main = NULL;
    lua_pushliteral(L, "not enough memory"); /* interned: no allocation */
    return lua_error(L);
  }
  lua_xmove(main_L, L, n);    /* ok flag, then results or the error */
  if (!lua_toboolean(L, 1)) { /* [false, error, its traceback or nil] */
    lua_settop(L, 2);
    tether__push_main_traceback(L, c->main);
  }
  tether__release(L, c, c->main);
  c->main = NULL;
  tether__check_invariants(c);
  if (err < 0)
    return tether__fname_error(L, "tether.run",
                               "the loop did not close cleanly: %s",
                               uv_strerror(err));
  if (c->watchdog_fired)
    return tether__fname_error(L, "tether.run",
                               "watchdog: the run lasted longer than %f s "
                               "and every task was cancelled",
                               c->watchdog_seconds);
  if (c->interrupted) {
    /* An error other than Cancelled that ended the main task (raised during
       cleanup, say) is kept in the Interrupted as 'error'. */
    int keep =
        !lua_toboolean(L, 1) && !tether__is_error(L, 2, c, ERROR_CANCELLED);
    lua_pushliteral(L, "interrupted by Ctrl+C (SIGINT)");
    tether__new_error(L, c, ERROR_INTERRUPTED);
    if (keep) {
      lua_pushvalue(L, 2);
      lua_setfield(L, -2, "error");
    }
    return lua_error(L);
  }
  if (!lua_toboolean(L, 1))
    return tether__raise_main_error(L, c);
  return n - 1;
}

/* core.debug_stats(): live tasks, task records (live or free) and idle
   threads, and the loop's state, for the specs. */
static int loop_debug_stats (lua_State *L) {
  struct ctx *c = lua_touserdata(L, lua_upvalueindex(1));
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, c->ntasks);
  lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, c->ntasks + c->nfree_records); /* live or free */
  lua_setfield(L, -2, "records");
  lua_pushinteger(L, c->nidle);
  lua_setfield(L, -2, "idle_threads");
  lua_pushboolean(L, c->loop != NULL);
  lua_setfield(L, -2, "loop_open");
  lua_pushboolean(L, c->running);
  lua_setfield(L, -2, "running");
  return 1;
}

/* core.set_watchdog(seconds | nil): cancel everything in runs that last
   longer (tests only). */
static int loop_set_watchdog (lua_State *L) {
  struct ctx *c = lua_touserdata(L, lua_upvalueindex(1));
  lua_Number s = luaL_optnumber(L, 1, 0);
  if (!(s >= 0) || s == HUGE_VAL)
    return tether__fname_error(L, "core.set_watchdog",
                               "seconds must be a positive finite number");
  c->watchdog_seconds = s;
  return 0;
}

/* tether.current_time() -> the clock deadlines use, in seconds */
static int loop_current_time (lua_State *L) {
  struct ctx *c = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushnumber(L, tether__time(c));
  return 1;
}

void tether__open_loop (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {{"run", loop_run},
                                   {"current_time", loop_current_time},
                                   {"debug_stats", loop_debug_stats},
                                   {"set_watchdog", loop_set_watchdog},
                                   {NULL, NULL}};
  (void)c;
  tether__add_functions(L, funcs);
}
