/*
** signal.c
** OS signals: receivers that a 'for' loop iterates and the runner's Ctrl+C
** watcher, on one loop. What is process-wide (the OS handler, dispositions,
** the second-Ctrl+C escape) is sigstate.c's.
**
** A loop holds a signal in sigstate.c while it has receivers of it (or, for
** SIGINT, while tether.run watches Ctrl+C). Deliveries reach the loop in
** arrival order with counts; each is fanned out to the loop's receivers of
** that signal, and each receiver coalesces (an ordered set with counts).
*/

#define _DEFAULT_SOURCE /* NSIG, SIGWINCH and friends beside POSIX */

#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

#if NSIG > TETHER_NSIG
#error "TETHER_NSIG is smaller than this platform's NSIG"
#endif

struct receiver;

/* A receiver's membership in its loop's list of one signal's receivers. */
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
  struct waitq reader;  /* the task parked in receive(), if any */
  unsigned char taking; /* a task's receive() is at its checkpoint with a
                           signal pending (it takes it after) */
  unsigned char closed;
  int nlinks;
  int npending;
  unsigned char order[TETHER_NSIG];
  unsigned counts[TETHER_NSIG];
  struct rlink links[1]; /* nlinks of them */
};

/* {====================================================================
** Delivery
** ===================================================================== */

static void pop_pending (struct receiver *r, int *signum, unsigned *count) {
  *signum = r->order[0];
  *count = r->counts[*signum];
  r->counts[*signum] = 0;
  memmove(r->order, r->order + 1, (size_t)--r->npending);
}

/* Hands the oldest pending signal to the receiver's parked reader. */
static void hand_off (struct receiver *r, struct task *t) {
  int signum;
  unsigned count;
  pop_pending(r, &signum, &count);
  lua_pushinteger(t->L, signum); /* room was reserved before parking */
  lua_pushinteger(t->L, (lua_Integer)count);
  t->nresume = 2;
  tether__waitq_wake(t, WAKE_OK);
}

static void deliver (struct receiver *r, int signum, unsigned count) {
  if (r->counts[signum] == 0)
    r->order[r->npending++] = (unsigned char)signum;
  r->counts[signum] = count > UINT_MAX - r->counts[signum]
                          ? UINT_MAX
                          : r->counts[signum] + count;
  if (r->reader.count > 0)
    hand_off(r, tether__waitq_first(&r->reader));
}

/*
** Ctrl+C with no SIGINT receiver open: cancels every task (shields are
** honoured) and makes tether.run raise Interrupted. From now on a second
** Ctrl+C ends the process (sigstate.c), even if no task ever lets the loop
** poll again.
*/
static void interrupt (struct ctx *c) {
  tether__sig_interrupted(c->sigloop);
  if (!c->interrupted) {
    c->interrupted = 1;
    tether__cancel(&c->root, CAUSE_INTERRUPT);
  }
}

/* sigstate.c hands this loop its deliveries, in arrival order. */
static void on_signals (void *data, int signum, unsigned count) {
  struct ctx *c = data;
  struct queue *list = &c->sigreceivers[signum], *q;
  if (signum == c->dump_signal)
    c->dump_pending = 1; /* the tick after this poll prints the tree */
  if (queue_empty(list)) {
    if (signum == SIGINT && c->sigrunner)
      interrupt(c);
    return;
  }
  for (q = list->next; q != list; q = q->next)
    deliver(queue_data(q, struct rlink, node)->r, signum, count);
}

/* This loop's place in the signal registry, made when first needed. */
static int join_registry (struct ctx *c) {
  int signum, err;
  if (c->sigloop != NULL)
    return 0;
  err = tether__sigloop_open(c->loop, on_signals, c, &c->sigloop);
  if (err < 0)
    return err;
  for (signum = 0; signum < TETHER_NSIG; signum++)
    queue_init(&c->sigreceivers[signum]);
  return 0;
}

/*
** While tether.run has streams, SIGPIPE does not kill the process: a write
** to a closed pipe or socket fails with EPIPE instead (the stream raises
** BrokenResourceError). The disposition comes back when run returns. An
** attached state leaves SIGPIPE to its host.
*/
void tether__hold_sigpipe (struct ctx *c) {
  if (c->attached || c->sigpipe_held || tether__sig_ignored(SIGPIPE) ||
      join_registry(c) < 0)
    return;
  if (tether__sig_hold(c->sigloop, SIGPIPE, 0) == 0)
    c->sigpipe_held = 1;
}

/* At the start of tether.run: the Ctrl+C watcher, unless SIGINT is ignored
   (a background job), in which case it stays ignored. */
void tether__signals_start (struct ctx *c) {
  c->interrupted = 0;
  c->dump_pending = 0;
  if (c->dump_signal != 0 &&
      (tether__sig_ignored(c->dump_signal) || join_registry(c) < 0 ||
       tether__sig_hold(c->sigloop, c->dump_signal, 0) < 0))
    c->dump_signal = 0; /* an ignored signal stays ignored */
  if (tether__sig_ignored(SIGINT) || join_registry(c) < 0)
    return;
  if (tether__sig_hold(c->sigloop, SIGINT, 1) == 0)
    c->sigrunner = 1;
}

static void detach (struct receiver *r);

/* At the end of tether.run: stop watching Ctrl+C, close the receivers still
   open (re-raising what they did not read) and leave the registry; the
   dispositions come back when no loop of the process holds them. */
void tether__signals_stop (struct ctx *c) {
  int signum, restored;
  if (c->sigloop == NULL)
    return;
  if (c->sigpipe_held) { /* deliveries are expected: none is re-raised */
    c->sigpipe_held = 0;
    tether__sig_release(c->sigloop, SIGPIPE, 0, &restored);
  }
  if (c->dump_signal != 0) { /* a request as the run ends is dropped */
    tether__sig_release(c->sigloop, c->dump_signal, 0, &restored);
    c->dump_signal = 0;
  }
  if (c->sigrunner) {
    c->sigrunner = 0;
    if (tether__sig_release(c->sigloop, SIGINT, 1, &restored) > 0 && restored)
      uv_kill(uv_os_getpid(), SIGINT); /* arrived as the run ended */
  }
  for (signum = 1; signum < TETHER_NSIG; signum++)
    while (!queue_empty(&c->sigreceivers[signum]))
      detach(
          queue_data(queue_head(&c->sigreceivers[signum]), struct rlink, node)
              ->r);
  tether__sigloop_close(c->sigloop);
  c->sigloop = NULL;
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
int tether__check_signal (lua_State *L, int idx, const char *fname,
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

/*
** The signal TETHER_DUMP_SIGNAL names (SIGQUIT, QUIT or a number), read
** when tether.run starts; 0 when it is unset or empty. Raises for a value
** that names no signal tether can watch.
*/
int tether__dump_signal_from_env (lua_State *L) {
  const char *env = getenv("TETHER_DUMP_SIGNAL");
  const char *fname = "tether.run: TETHER_DUMP_SIGNAL";
  int signum;
  if (env == NULL || env[0] == '\0')
    return 0;
  if (strspn(env, "0123456789") == strlen(env))
    lua_pushinteger(L, strtol(env, NULL, 10));
  else
    lua_pushstring(L, env);
  signum = tether__check_signal(L, lua_gettop(L), fname, 1);
  lua_pop(L, 1);
  if (signum == SIGINT)
    return tether__fname_error(L, fname,
                               "SIGINT is Ctrl+C; choose another signal "
                               "(SIGQUIT, say)");
  return signum;
}

/* tether.signal_name(n) -> "SIGTERM" (nil for numbers without a name) */
static int core_signal_name (lua_State *L) {
  const char *name =
      name_of(tether__check_signal(L, 1, "tether.signal_name", 0));
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
    signum = tether__check_signal(L, 2, "tether.kill", 0);
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

/*
** Unlinks a receiver. When it was its loop's last receiver of a signal, the
** loop lets go of that signal, and what this receiver did not read (pending,
** or counted but not yet handed to the loop) goes to the runner's Ctrl+C
** watcher (SIGINT), or is re-raised once if that restored the disposition.
** Otherwise the other receivers got their own copies.
*/
static void detach (struct receiver *r) {
  struct ctx *c = r->ctx;
  int i;
  r->closed = 1;
  for (i = 0; i < r->nlinks; i++) {
    struct rlink *l = &r->links[i];
    struct queue *list = &c->sigreceivers[l->signum];
    int unread = r->counts[l->signum] > 0, restored;
    if (queue_empty(&l->node))
      continue; /* detached when the loop ended */
    queue_remove(&l->node);
    if (!queue_empty(list))
      continue;
    if (tether__sig_release(c->sigloop, l->signum, 0, &restored) > 0)
      unread = 1;
    if (l->signum == SIGINT && c->sigrunner) {
      if (unread)
        interrupt(c);
    }
    else if (restored && unread)
      uv_kill(uv_os_getpid(), l->signum);
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
    int signum = tether__check_signal(L, i, fname, 1);
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
  tether__waitq_init_as(&r->reader, "signal receiver");
  r->ctx = c;
  r->closed = 1; /* until every signal is held */
  tether__set_metatable(L, c, CLASS_RECEIVER);
  err = join_registry(c);
  for (i = 0; i < n && err == 0; i++) {
    struct queue *list = &c->sigreceivers[signums[i]];
    if (queue_empty(list) &&
        (err = tether__sig_hold(c->sigloop, signums[i], 0)) < 0)
      break;
    r->links[i].r = r;
    r->links[i].signum = signums[i];
    queue_insert_tail(list, &r->links[i].node);
    r->nlinks = i + 1;
  }
  if (err < 0) {
    detach(r);
    return tether__fname_error(L, fname, "cannot watch signal %d: %s",
                               signums[i < n ? i : 0], uv_strerror(err));
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
  r->taking = 0;
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
  if (r->reader.count > 0 || r->taking)
    return tether__raise(L, c, ERROR_BUSY, fname,
                         "another task is already reading this signal "
                         "receiver");
  if (!lua_checkstack(L, 3))
    return luaL_error(L, "not enough memory");
  if (r->npending > 0) {
    r->taking = 1;
    return tether__reschedule(L, t, 0, receive_k);
  }
  return tether__wait(L, t, &r->reader, 1, receive_k);
}

/* signals:close(): idempotent; a blocked reader gets ClosedResourceError */
static int receiver_close (lua_State *L) {
  struct receiver *r = check_receiver(L, "signals:close");
  if (r->closed)
    return 0;
  detach(r);
  if (r->reader.count > 0)
    tether__waitq_raise(tether__waitq_first(&r->reader), &closed_while_reading);
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
