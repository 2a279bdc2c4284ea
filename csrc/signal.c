/*
** signal.c
** OS signals: receivers that a 'for' loop iterates, the runner's Ctrl+C
** watcher, and process-wide bookkeeping of signal dispositions.
**
** libuv broadcasts every caught signal to each uv_signal_t watching it and
** resets the disposition to SIG_DFL when the last one stops. tether keeps one
** uv_signal_t per (loop, signal), fans each delivery out to that loop's
** receivers, coalesces per receiver (an ordered set with counts), saves the
** disposition before the first watcher in the process starts and restores it
** after the last one stops.
*/

#define _DEFAULT_SOURCE /* NSIG, SIGWINCH and friends beside POSIX */

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

#if NSIG > TETHER_NSIG
#error "TETHER_NSIG is smaller than this platform's NSIG"
#endif

/* One per (loop, signal): the libuv watcher and the receivers fed by it. */
struct sigwatch {
  uv_signal_t handle;
  struct ctx *ctx;
  struct queue receivers; /* struct rlink nodes */
  int signum;
  unsigned char runner; /* tether.run's Ctrl+C watcher (SIGINT only) */
};

struct receiver;

/* A receiver's membership in one watcher's list. */
struct rlink {
  struct queue node;
  struct receiver *r;
  int signum;
};

/*
** A signal receiver. Pending signals form an ordered set: 'order' holds
** each pending signal once, in first-arrival order, and 'counts' how many
** deliveries it stands for.
*/
struct receiver {
  struct ctx *ctx;
  struct task *reader; /* the task inside receive(), if any */
  int closed;
  int nlinks;
  int npending;
  unsigned char order[TETHER_NSIG];
  unsigned counts[TETHER_NSIG];
  struct rlink links[1]; /* nlinks of them */
};

/* {====================================================================
** Process-wide dispositions
** ===================================================================== */

static pthread_mutex_t dispositions_lock = PTHREAD_MUTEX_INITIALIZER;

static struct {
  int watchers;           /* tether watchers of this signal, all loops */
  struct sigaction saved; /* disposition before the first one started */
} dispositions[TETHER_NSIG];

/* Called before a watcher starts: saves the disposition if it is the first. */
static void hold_disposition (int signum) {
  pthread_mutex_lock(&dispositions_lock);
  if (dispositions[signum].watchers++ == 0)
    sigaction(signum, NULL, &dispositions[signum].saved);
  pthread_mutex_unlock(&dispositions_lock);
}

/*
** Stops a watcher; if it was the last in the process, restores the saved
** disposition and returns 1. The signal is blocked in this thread meanwhile,
** so one arriving between libuv's reset to SIG_DFL and the restore waits
** for the restored disposition instead of killing the process.
*/
static int stop_watching (uv_signal_t *h, int signum) {
  sigset_t block, old;
  int restored = 0;
  sigemptyset(&block);
  sigaddset(&block, signum);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  pthread_mutex_lock(&dispositions_lock);
  uv_signal_stop(h);
  if (--dispositions[signum].watchers == 0) {
    sigaction(signum, &dispositions[signum].saved, NULL);
    restored = 1;
  }
  pthread_mutex_unlock(&dispositions_lock);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return restored;
}

/* }==================================================================== */

/* {====================================================================
** Watchers and delivery
** ===================================================================== */

static void pop_pending (struct receiver *r, int *signum, unsigned *count) {
  *signum = r->order[0];
  *count = r->counts[*signum];
  r->counts[*signum] = 0;
  memmove(r->order, r->order + 1, (size_t)--r->npending);
}

/* Hands the oldest pending signal to the receiver's parked reader. */
static void hand_off (struct receiver *r) {
  struct task *t = r->reader;
  int signum;
  unsigned count;
  pop_pending(r, &signum, &count);
  r->reader = NULL;
  lua_pushinteger(t->L, signum); /* room was reserved before parking */
  lua_pushinteger(t->L, (lua_Integer)count);
  t->nresume = 2;
  tether__wake(t, WAKE_OK);
}

static void deliver (struct receiver *r, int signum) {
  if (r->counts[signum]++ == 0)
    r->order[r->npending++] = (unsigned char)signum;
  if (r->reader != NULL && r->reader->state == TASK_PARKED)
    hand_off(r);
}

/*
** Ctrl+C with no SIGINT receiver open: cancels every task (shields are
** honoured) and makes tether.run raise Interrupted. SIGINT's disposition
** becomes the default at once, so a second Ctrl+C ends the process by the
** kernel's hand even if no task ever lets the loop poll again; the saved
** disposition comes back when the run ends.
*/
static void interrupt (struct ctx *c) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGINT, &dfl, NULL);
  if (!c->interrupted) {
    c->interrupted = 1;
    tether__cancel(&c->root, CAUSE_INTERRUPT);
  }
}

/*
** The runner's SIGINT handler sits in front of libuv's. The first Ctrl+C
** goes to libuv (the loop sees it when it polls); a second one that comes
** before the loop saw the first, because a task never reaches a checkpoint,
** ends the process by SIGINT's default action right there.
*/
static struct sigaction libuv_sigint;      /* libuv's handler we forward to */
static volatile sig_atomic_t sigint_armed; /* the runner alone takes SIGINT */
static volatile sig_atomic_t
    sigint_unseen; /* deliveries the loop has not seen */

static void on_sigint (int signum) {
  if (sigint_armed && sigint_unseen++ > 0) {
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
    return;
  }
  libuv_sigint.sa_handler(signum);
}

/* Puts on_sigint in front of the handler libuv installed for SIGINT. */
static void wrap_sigint (void) {
  struct sigaction sa;
  sigaction(SIGINT, NULL, &libuv_sigint);
  if (libuv_sigint.sa_flags & SA_SIGINFO ||
      libuv_sigint.sa_handler == SIG_DFL || libuv_sigint.sa_handler == SIG_IGN)
    return; /* not libuv's plain handler: leave it alone */
  sa = libuv_sigint;
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, NULL);
}

/* Arms the second-Ctrl+C escape while the runner alone takes SIGINT. */
static void update_sigint (struct sigwatch *w) {
  if (w->signum == SIGINT)
    sigint_armed = w->runner && queue_empty(&w->receivers);
}

static void free_watch (uv_handle_t *h) {
  free(h->data);
}

static void on_signal (uv_signal_t *h, int signum) {
  struct sigwatch *w = h->data;
  struct queue *q;
  if (queue_empty(&w->receivers)) {
    if (w->runner) {
      sigint_unseen = 0;
      interrupt(w->ctx);
    }
    return;
  }
  for (q = w->receivers.next; q != &w->receivers; q = q->next)
    deliver(queue_data(q, struct rlink, node)->r, signum);
}

/* Returns this loop's watcher of 'signum', starting one if needed; NULL
   with *err set when libuv refuses. */
static struct sigwatch *watch (struct ctx *c, int signum, int *err) {
  struct sigwatch *w = c->sigwatch[signum];
  if (w != NULL)
    return w;
  w = malloc(sizeof *w);
  if (w == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  memset(w, 0, sizeof *w);
  w->ctx = c;
  w->signum = signum;
  queue_init(&w->receivers);
  uv_signal_init(c->loop, &w->handle);
  w->handle.data = w;
  hold_disposition(signum);
  *err = uv_signal_start(&w->handle, on_signal, signum);
  if (*err < 0) {
    stop_watching(&w->handle, signum);
    uv_close((uv_handle_t *)&w->handle, free_watch);
    return NULL;
  }
  if (c->attached)
    uv_unref((uv_handle_t *)&w->handle); /* never keep a host's loop alive */
  c->sigwatch[signum] = w;
  return w;
}

/* Whether libuv caught deliveries for this watcher that have not reached
   the loop yet (they wait in its self-pipe until the loop polls). */
static int in_flight (const struct sigwatch *w) {
  /* libuv's handler (any thread) writes to the pipe before it counts the
     signal as caught, so 'dispatched' may briefly run ahead of 'caught'. */
  return (int)(w->handle.caught_signals - w->handle.dispatched_signals) > 0;
}

/*
** Stops and frees a watcher nobody needs any more. If that restored the
** signal's disposition, deliveries nobody read ('unread', or still in
** flight) are re-raised once to it, as Trio does.
*/
static void unwatch_if_unused (struct sigwatch *w, int unread) {
  if (!queue_empty(&w->receivers) || w->runner)
    return;
  unread = unread || in_flight(w);
  w->ctx->sigwatch[w->signum] = NULL;
  if (stop_watching(&w->handle, w->signum) && unread)
    uv_kill(uv_os_getpid(), w->signum);
  uv_close((uv_handle_t *)&w->handle, free_watch);
}

/* At the start of tether.run: the Ctrl+C watcher, unless SIGINT is ignored
   (a background job), in which case it stays ignored. */
void tether__signals_start (struct ctx *c) {
  struct sigaction current;
  struct sigwatch *w;
  int err;
  c->interrupted = 0;
  sigaction(SIGINT, NULL, &current);
  if (current.sa_handler == SIG_IGN)
    return;
  w = watch(c, SIGINT, &err);
  if (w == NULL)
    return;
  w->runner = 1;
  sigint_unseen = 0;
  update_sigint(w);
  wrap_sigint();
}

static void detach (struct receiver *r);

/* At the end of tether.run: close the receivers still open (re-raising
   what they did not read) and stop every watcher of the loop, restoring
   dispositions. */
void tether__signals_stop (struct ctx *c) {
  struct sigwatch *w;
  int signum;
  if ((w = c->sigwatch[SIGINT]) != NULL) {
    w->runner = 0;
    update_sigint(w);
  }
  for (signum = 1; signum < TETHER_NSIG; signum++) {
    while ((w = c->sigwatch[signum]) != NULL && !queue_empty(&w->receivers))
      detach(queue_data(queue_head(&w->receivers), struct rlink, node)->r);
    if (w != NULL)
      unwatch_if_unused(w, 0);
  }
}

/* }==================================================================== */

/* {====================================================================
** Signal names
** ===================================================================== */

static const struct {
  const char *name;
  int signum;
} signal_names[] = {
    {"SIGHUP", SIGHUP},       {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT},
    {"SIGILL", SIGILL},       {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT},
    {"SIGBUS", SIGBUS},       {"SIGFPE", SIGFPE},   {"SIGKILL", SIGKILL},
    {"SIGUSR1", SIGUSR1},     {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
    {"SIGPIPE", SIGPIPE},     {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},
    {"SIGCHLD", SIGCHLD},     {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP},
    {"SIGTSTP", SIGTSTP},     {"SIGTTIN", SIGTTIN}, {"SIGTTOU", SIGTTOU},
    {"SIGURG", SIGURG},       {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},
    {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH},
    {"SIGIO", SIGIO},         {"SIGSYS", SIGSYS},   {NULL, 0}};

static const char *name_of (int signum) {
  int i;
  for (i = 0; signal_names[i].name != NULL; i++)
    if (signal_names[i].signum == signum)
      return signal_names[i].name;
  return NULL;
}

/*
** Reads the signal at 'idx' (a number, "SIGTERM" or "TERM"); raises an
** error naming 'fname' for anything else. 'catchable' rejects SIGKILL and
** SIGSTOP.
*/
static int check_signal (lua_State *L, int idx, const char *fname,
                         int catchable) {
  int signum = 0;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n;
    if (!lua_isinteger(L, idx))
      return tether__fname_error(L, fname, "signal #%d is not an integer", idx);
    n = lua_tointeger(L, idx);
    if (n < 1 || n >= NSIG)
      return tether__fname_error(L, fname, "unknown signal number %d", (int)n);
    signum = (int)n;
  }
  else if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    const char *bare = strncmp(s, "SIG", 3) == 0 ? s + 3 : s;
    int i;
    for (i = 0; signal_names[i].name != NULL; i++)
      if (strcmp(signal_names[i].name + 3, bare) == 0)
        signum = signal_names[i].signum;
    if (signum == 0)
      return tether__fname_error(L, fname, "unknown signal name '%s'", s);
  }
  else
    return tether__fname_error(L, fname,
                               "a signal must be a number or a name such as "
                               "\"SIGTERM\", got %s",
                               luaL_typename(L, idx));
  if (catchable && (signum == SIGKILL || signum == SIGSTOP))
    return tether__fname_error(
        L, fname, "%s cannot be caught, blocked or ignored", name_of(signum));
  return signum;
}

/* tether.signal_name(n) -> "SIGTERM" (nil for numbers without a name) */
static int core_signal_name (lua_State *L) {
  const char *name = name_of(check_signal(L, 1, "tether.signal_name", 0));
  if (name == NULL)
    return 0;
  lua_pushstring(L, name);
  return 1;
}

/* tether.kill(pid, sig) -> true, or nil, "ESRCH: no such process", "ESRCH" */
static int core_kill (lua_State *L) {
  lua_Integer pid;
  int signum, err;
  if (!lua_isinteger(L, 1))
    return tether__fname_error(L, "tether.kill",
                               "pid must be an integer, got %s",
                               luaL_typename(L, 1));
  pid = lua_tointeger(L, 1);
  if (pid < INT_MIN + 1 || pid > INT_MAX)
    return tether__fname_error(L, "tether.kill",
                               "pid %I is out of range for a process id",
                               (LUAI_UACINT)pid);
  if (lua_isinteger(L, 2) && lua_tointeger(L, 2) == 0)
    signum = 0; /* only checks that the process exists */
  else
    signum = check_signal(L, 2, "tether.kill", 0);
  err = uv_kill((int)pid, signum);
  if (err < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", uv_err_name(err), uv_strerror(err));
    lua_pushstring(L, uv_err_name(err));
    return 3;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int core_getpid (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_os_getpid());
  return 1;
}

/* }==================================================================== */

/* {====================================================================
** Receivers
** ===================================================================== */

static struct receiver *check_receiver (lua_State *L, const char *fname) {
  return tether__check_self(L, 1, CTX(L), CLASS_RECEIVER, fname);
}

/* Unlinks a receiver from its watchers; the pending signals nobody else
   will see are re-raised to the restored disposition (or, for SIGINT, to
   the runner's Ctrl+C watcher). */
static void detach (struct receiver *r) {
  int i;
  r->closed = 1;
  for (i = 0; i < r->nlinks; i++) {
    struct rlink *l = &r->links[i];
    struct sigwatch *w = r->ctx->sigwatch[l->signum];
    int unread = r->counts[l->signum] > 0;
    if (queue_empty(&l->node))
      continue; /* detached when the loop ended */
    queue_remove(&l->node);
    update_sigint(w);
    if (!queue_empty(&w->receivers))
      continue; /* other receivers got their own copy */
    if (w->runner && unread)
      interrupt(r->ctx); /* deliveries in flight reach the runner anyway */
    unwatch_if_unused(w, unread);
  }
  r->npending = 0;
  memset(r->counts, 0, sizeof r->counts);
}

/* tether.open_signal_receiver(sig, ...) -> receiver, nil, nil, receiver */
static int core_open_signal_receiver (lua_State *L) {
  const char *fname = "tether.open_signal_receiver";
  struct ctx *c = CTX(L);
  int signums[TETHER_NSIG], n = 0, nargs = lua_gettop(L), i, j, err = 0;
  struct receiver *r;
  if (nargs == 0)
    return tether__fname_error(L, fname,
                               "no signals were given; pass one or more, "
                               "e.g. tether.SIGTERM or \"SIGHUP\"");
  for (i = 1; i <= nargs; i++) {
    int signum = check_signal(L, i, fname, 1);
    for (j = 0; j < n && signums[j] != signum; j++)
      ;
    if (j == n)
      signums[n++] = signum;
  }
  if (!c->running)
    return tether__fname_error(L, fname,
                               "called outside tether.run; open receivers "
                               "inside a task");
  r = lua_newuserdatauv(L, sizeof *r + (size_t)(n - 1) * sizeof r->links[0], 0);
  memset(r, 0, sizeof *r);
  r->ctx = c;
  r->closed = 1; /* until every watcher is in place */
  tether__set_metatable(L, c, CLASS_RECEIVER);
  for (i = 0; i < n; i++) {
    struct sigwatch *w = watch(c, signums[i], &err);
    if (w == NULL)
      break;
    r->links[i].r = r;
    r->links[i].signum = signums[i];
    queue_insert_tail(&w->receivers, &r->links[i].node);
    update_sigint(w);
    r->nlinks = i + 1;
  }
  if (err < 0) {
    detach(r);
    return tether__fname_error(L, fname, "cannot watch signal %d: %s",
                               signums[i], uv_strerror(err));
  }
  r->closed = 0;
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushvalue(L, -3);
  return 4;
}

static const struct wake_error closed_while_reading = {
    ERROR_CLOSED, "signals:receive: the signal receiver was closed while a "
                  "task was reading it"};

static int reader_abort (struct task *t) {
  struct receiver *r = t->wait_data;
  r->reader = NULL;
  return 1;
}

/* After the checkpoint of a read with a signal already pending. */
static int receive_k (lua_State *L, int status, lua_KContext parked) {
  struct task *t = tether__resumed(L, 1, parked, receive_k);
  struct receiver *r = lua_touserdata(L, 1);
  int signum;
  unsigned count;
  (void)status;
  if (parked) {
    tether__check_wake(L, t);
    return 2;
  }
  r->reader = NULL;
  if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  if (r->closed)
    return tether__raise(L, TASK_CTX(t), ERROR_CLOSED, "signals:receive",
                         "the signal receiver was closed");
  pop_pending(r, &signum, &count);
  lua_pushinteger(L, signum);
  lua_pushinteger(L, (lua_Integer)count);
  return 2;
}

/* signals:receive() -> signum, count (a checkpoint) */
static int receiver_receive (lua_State *L) {
  const char *fname = "signals:receive";
  struct ctx *c = CTX(L);
  struct receiver *r = check_receiver(L, fname);
  struct task *t = tether__check_task(L, c, fname);
  lua_settop(L, 1);
  if (r->closed)
    return tether__raise(L, c, ERROR_CLOSED, fname,
                         "the signal receiver is closed");
  if (r->reader != NULL)
    return tether__raise(L, c, ERROR_BUSY, fname,
                         "another task is already reading this signal "
                         "receiver");
  if (!lua_checkstack(L, 3))
    return luaL_error(L, "not enough memory");
  r->reader = t;
  if (r->npending > 0)
    return tether__reschedule(L, t, 0, receive_k);
  t->wait_data = r;
  return tether__park(L, t, reader_abort, 1, receive_k);
}

/* signals:close(): idempotent; a blocked reader gets ClosedResourceError */
static int receiver_close (lua_State *L) {
  struct receiver *r = check_receiver(L, "signals:close");
  struct task *reader = r->reader;
  if (r->closed)
    return 0;
  detach(r);
  if (reader != NULL && reader->state == TASK_PARKED) {
    r->reader = NULL;
    tether__wake_raise(reader, &closed_while_reading);
  }
  return 0;
}

static int receiver__gc (lua_State *L) {
  struct receiver *r = tether__test_class(L, 1, CTX(L), CLASS_RECEIVER);
  if (r != NULL && !r->closed)
    detach(r);
  return 0;
}

/* The generic 'for' calls the receiver: each step is a receive(). */
static int receiver__call (lua_State *L) {
  lua_settop(L, 1);
  return receiver_receive(L);
}

static int receiver__tostring (lua_State *L) {
  struct receiver *r = check_receiver(L, "signals:__tostring");
  lua_pushfstring(L, "tether.SignalReceiver (%s, %d pending): %p",
                  r->closed ? "closed" : "open", r->npending, (void *)r);
  return 1;
}

/* Adds the receiver class, the functions and the SIG* constants. */
void tether__open_signal (lua_State *L, struct ctx *c) {
  static const luaL_Reg methods[] = {
      {"receive", receiver_receive}, {"close", receiver_close}, {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__call", receiver__call},
                                         {"__close", receiver_close},
                                         {"__gc", receiver__gc},
                                         {"__tostring", receiver__tostring},
                                         {NULL, NULL}};
  static const struct class_def receiver_class = {
      CLASS_RECEIVER, TETHER_RECV_MT, methods, metamethods, NULL};
  static const luaL_Reg funcs[] = {
      {"open_signal_receiver", core_open_signal_receiver},
      {"kill", core_kill},
      {"getpid", core_getpid},
      {"signal_name", core_signal_name},
      {NULL, NULL}};
  int i;
  tether__add_class(L, c, &receiver_class, 0);
  tether__add_functions(L, funcs);
  for (i = 0; signal_names[i].name != NULL; i++) {
    lua_pushinteger(L, signal_names[i].signum);
    lua_setfield(L, -2, signal_names[i].name);
  }
}

/* }==================================================================== */
