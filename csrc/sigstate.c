/*
** sigstate.c
** The process-wide signal state, for every loop of the process: tether's
** own OS handler and the dispositions it replaced, the registry of loops
** that want signals, and the second-Ctrl+C escape.
**
** tether installs its handler with sigaction, saving the disposition it
** replaces, and puts that disposition back with one sigaction when the last
** loop lets go of the signal: there is never a moment at SIG_DFL (libuv's
** uv_signal_t resets to SIG_DFL when its last watcher stops, so a host
** thread could be killed by a signal its own handler was meant to get).
**
** The handler, on whatever thread the kernel picks, counts the delivery in
** each interested loop (per signal: a count and the arrival number of the
** first uncounted one, so the loop can replay distinct signals in arrival
** order) and wakes the loop with uv_async_send, which is async-signal-safe.
** The registry is a list changed only while handlers are kept out: a writer
** blocks every signal in its own thread, raises a flag that new handlers
** wait on, and waits until the handlers already inside have left.
*/

#define _DEFAULT_SOURCE /* NSIG beside POSIX */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#if NSIG - 1 > 64
#error "sigstate.c keeps one bit per signal in 64 bits"
#endif

#define SEQ __ATOMIC_SEQ_CST

/* One loop's registration. */
struct sigloop {
  uv_async_t wake;
  uv_signal_t anchor; /* SIGCHLD only: see hold_anchor */
  struct sigloop *next;
  tether_sigdeliver_fn deliver;
  void *data;
  int open;          /* handles not closed yet */
  int anchor_inited; /* 'anchor' is closed with the registration */
  int anchor_started;
  int runner;                       /* a run's Ctrl+C watcher holds SIGINT */
  int interrupted;                  /* atomic: the runner took a SIGINT */
  unsigned interest[TETHER_NSIG];   /* holds of this loop, per signal */
  unsigned counts[TETHER_NSIG];     /* atomic: deliveries not drained */
  unsigned long first[TETHER_NSIG]; /* atomic: arrival number of the
                                       first of them (0: unknown) */
  uint64_t dirty; /* atomic: bit signum - 1 when counts[signum] may be set */
};

static pthread_mutex_t writers = PTHREAD_MUTEX_INITIALIZER;
static int writing;            /* atomic: a writer keeps handlers out */
static int reading;            /* atomic: handlers inside the registry */
static struct sigloop *loops;  /* the registry */
static unsigned long arrivals; /* atomic: deliveries numbered in order */

static struct {
  int holds;                 /* loops holding the signal */
  struct sigaction before;   /* the disposition before tether took it */
  struct sigaction replaced; /* what tether's handler replaced: 'before',
                                or for SIGCHLD libuv's (see hold_anchor) */
} signals[TETHER_NSIG];

/* {====================================================================
** Keeping handlers out
** ===================================================================== */

/* Blocks every signal in this thread (a handler here would wait for this
   very writer) and takes the writers' lock. */
static void begin_write (sigset_t *old) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, old);
  pthread_mutex_lock(&writers);
}

static void end_write (const sigset_t *old) {
  pthread_mutex_unlock(&writers);
  pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* Waits until no handler is inside the registry and lets none in. */
static void keep_handlers_out (void) {
  __atomic_store_n(&writing, 1, SEQ);
  while (__atomic_load_n(&reading, SEQ) != 0)
    ;
}

static void let_handlers_in (void) {
  __atomic_store_n(&writing, 0, SEQ);
}

/* A handler's way in: never while a writer changes the registry. */
static void enter_registry (void) {
  for (;;) {
    while (__atomic_load_n(&writing, SEQ))
      ;
    __atomic_add_fetch(&reading, 1, SEQ);
    if (!__atomic_load_n(&writing, SEQ))
      return;
    __atomic_sub_fetch(&reading, 1, SEQ);
  }
}

static void leave_registry (void) {
  __atomic_sub_fetch(&reading, 1, SEQ);
}

/* }==================================================================== */

/* {====================================================================
** The handler
** ===================================================================== */

/* Whether 'sa' is SIG_DFL or SIG_IGN ('what'). */
static int is_plain (const struct sigaction *sa, void (*what)(int)) {
  return !(sa->sa_flags & SA_SIGINFO) && sa->sa_handler == what;
}

/* Counts one delivery in loop 'l' and wakes it. */
static void note (struct sigloop *l, int signum, unsigned long arrival) {
  unsigned long none = 0;
  __atomic_compare_exchange_n(&l->first[signum], &none, arrival, 0, SEQ, SEQ);
  __atomic_add_fetch(&l->counts[signum], 1, SEQ);
  __atomic_or_fetch(&l->dirty, (uint64_t)1 << (signum - 1), SEQ);
  uv_async_send(&l->wake);
}

/*
** A second Ctrl+C while a run is still being interrupted ends the process
** the way an unhandled SIGINT does, even if a task never lets its loop see
** the first one.
*/
static void escape (void) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGINT, &dfl, NULL);
  raise(SIGINT); /* blocked while this handler runs: kills on return */
}

/* Calls a handler that tether's replaced, as the kernel would have. */
static void pass_on (const struct sigaction *sa, int signum, siginfo_t *info,
                     void *uctx) {
  if (sa->sa_flags & SA_SIGINFO)
    sa->sa_sigaction(signum, info, uctx);
  else if (sa->sa_handler != SIG_DFL && sa->sa_handler != SIG_IGN)
    sa->sa_handler(signum);
}

static int same_action (const struct sigaction *a, const struct sigaction *b) {
  return (a->sa_flags & SA_SIGINFO) == (b->sa_flags & SA_SIGINFO) &&
         ((a->sa_flags & SA_SIGINFO) ? a->sa_sigaction == b->sa_sigaction
                                     : a->sa_handler == b->sa_handler);
}

static void on_signal (int signum, siginfo_t *info, void *uctx) {
  int saved_errno = errno, taken = 0, interrupted_twice = 0, holds;
  struct sigaction replaced, before;
  struct sigloop *l;
  unsigned long arrival;
  enter_registry();
  arrival = __atomic_add_fetch(&arrivals, 1, SEQ);
  for (l = loops; l != NULL; l = l->next) {
    if (l->interest[signum] == 0)
      continue;
    taken = 1;
    if (signum == SIGINT && l->runner && l->interest[SIGINT] == 1 &&
        __atomic_exchange_n(&l->interrupted, 1, SEQ))
      interrupted_twice = 1;
    note(l, signum, arrival);
  }
  holds = signals[signum].holds;
  replaced = signals[signum].replaced;
  before = signals[signum].before;
  leave_registry();
  if (interrupted_twice)
    escape();
  if (!taken && holds == 0)
    kill(getpid(), signum); /* in flight while the disposition came back */
  else if (signum == SIGCHLD) {
    /* libuv's handler (children of uv_spawn are reaped), and the host's
       if libuv's had replaced it */
    pass_on(&replaced, signum, info, uctx);
    if (!same_action(&before, &replaced))
      pass_on(&before, signum, info, uctx);
  }
  errno = saved_errno;
}

/* }==================================================================== */

/* {====================================================================
** Holding signals
** ===================================================================== */

static void on_anchor (uv_signal_t *h, int signum) {
  (void)h;
  (void)signum;
}

/*
** SIGCHLD is libuv's too: uv_spawn watches it with a uv_signal_t, and libuv
** installs its handler whenever its first SIGCHLD watcher starts, replacing
** whatever is there. So a loop that holds SIGCHLD also keeps a libuv
** watcher of it (the anchor) started: libuv's handler is then in place
** before tether's, tether's handler calls it after its own work (children
** are still reaped), and libuv never reinstalls it over tether's while
** tether holds the signal.
*/
static int hold_anchor (struct sigloop *l) {
  int err;
  if (!l->anchor_inited) {
    err = uv_signal_init(l->wake.loop, &l->anchor);
    if (err < 0)
      return err;
    l->anchor.data = l;
    l->anchor_inited = 1;
    l->open++;
    uv_unref((uv_handle_t *)&l->anchor);
  }
  err = uv_signal_start(&l->anchor, on_anchor, SIGCHLD);
  if (err == 0)
    l->anchor_started = 1;
  return err;
}

/* Stops the anchor. If libuv then reset SIGCHLD to SIG_DFL (its last
   watcher stopped), what was there before tether took SIGCHLD comes back;
   SIGCHLD's default action is to ignore, so the moment in between costs
   nothing but a notification. */
static void release_anchor (struct sigloop *l, int last) {
  struct sigaction now;
  uv_signal_stop(&l->anchor);
  l->anchor_started = 0;
  if (!last)
    return;
  sigaction(SIGCHLD, NULL, &now);
  if (is_plain(&now, SIG_DFL))
    sigaction(SIGCHLD, &signals[SIGCHLD].before, NULL);
}

/* Installs tether's handler (handlers are kept out). */
static int install (int signum) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);
  if (sigaction(signum, &sa, &signals[signum].replaced) != 0)
    return -errno;
  return 0;
}

/*
** Puts back what tether's handler replaced (for SIGCHLD, libuv's handler:
** see hold_anchor), with one sigaction. If something else has replaced
** tether's handler meanwhile, that is left in place.
*/
static void restore (int signum) {
  struct sigaction now;
  sigaction(signum, NULL, &now);
  if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_signal)
    sigaction(signum, &signals[signum].replaced, NULL);
}

int tether__sig_hold (struct sigloop *l, int signum, int runner) {
  sigset_t old;
  int err = 0, first_in_loop = l->interest[signum] == 0;
  begin_write(&old);
  if (first_in_loop && signals[signum].holds == 0)
    sigaction(signum, NULL, &signals[signum].before);
  if (first_in_loop && signum == SIGCHLD)
    err = hold_anchor(l);
  keep_handlers_out();
  if (err == 0 && first_in_loop && signals[signum].holds == 0)
    err = install(signum);
  if (err == 0) {
    if (first_in_loop)
      signals[signum].holds++;
    l->interest[signum]++;
    if (runner)
      l->runner = 1;
  }
  let_handlers_in();
  if (err < 0 && l->anchor_started)
    release_anchor(l, signals[SIGCHLD].holds == 0);
  end_write(&old);
  return err;
}

/* Takes the deliveries of 'signum' that loop 'l' has not drained. */
static unsigned take (struct sigloop *l, int signum) {
  unsigned n = __atomic_exchange_n(&l->counts[signum], 0, SEQ);
  __atomic_store_n(&l->first[signum], 0, SEQ);
  return n;
}

unsigned tether__sig_release (struct sigloop *l, int signum, int runner,
                              int *restored) {
  sigset_t old;
  int last_in_loop, last = 0;
  begin_write(&old);
  keep_handlers_out();
  last_in_loop = --l->interest[signum] == 0;
  if (runner) {
    l->runner = 0;
    __atomic_store_n(&l->interrupted, 0, SEQ);
  }
  if (last_in_loop && --signals[signum].holds == 0) {
    last = 1;
    restore(signum);
  }
  let_handlers_in();
  if (last_in_loop && l->anchor_started)
    release_anchor(l, last);
  end_write(&old);
  *restored = last;
  return last_in_loop ? take(l, signum) : 0;
}

/*
** Children. uv_spawn installs libuv's SIGCHLD handler over whatever is
** there, and when the loop that spawned closes (its last SIGCHLD watcher
** with it) libuv resets SIGCHLD to SIG_DFL. So the disposition from before
** the first of tether's runs that spawns is kept, and put back after the
** last one closed its loop, unless something else took SIGCHLD meanwhile.
*/
static int spawners; /* runs whose loop watches children */
static struct sigaction before_children;

void tether__sig_spawning (void) {
  sigset_t old;
  begin_write(&old);
  if (spawners++ == 0) {
    if (signals[SIGCHLD].holds > 0) /* tether's handler is there */
      before_children = signals[SIGCHLD].before;
    else
      sigaction(SIGCHLD, NULL, &before_children);
  }
  end_write(&old);
}

void tether__sig_spawned (void) {
  struct sigaction now;
  sigset_t old;
  begin_write(&old);
  if (--spawners == 0 && signals[SIGCHLD].holds == 0) {
    sigaction(SIGCHLD, NULL, &now);
    if (is_plain(&now, SIG_DFL))
      sigaction(SIGCHLD, &before_children, NULL);
  }
  end_write(&old);
}

/*
** tether's own threads (workers, the reaper) take no signals: a signal the
** program sends itself is then handled by the thread that sent it, before
** kill returns, as in a program of one thread (and a burst of them is
** never merged while another thread is slow to take the first). A thread
** started between these two calls inherits the mask.
*/
void tether__sig_block_all (sigset_t *old) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, old);
}

void tether__sig_unblock (const sigset_t *old) {
  pthread_sigmask(SIG_SETMASK, old, NULL);
}

int tether__sig_ignored (int signum) {
  struct sigaction now;
  sigset_t old;
  begin_write(&old);
  if (signals[signum].holds > 0)
    now = signals[signum].before;
  else
    sigaction(signum, NULL, &now);
  end_write(&old);
  return is_plain(&now, SIG_IGN);
}

void tether__sig_interrupted (struct sigloop *l) {
  __atomic_store_n(&l->interrupted, 1, SEQ);
}

/* }==================================================================== */

/* {====================================================================
** Loops
** ===================================================================== */

struct arrival {
  unsigned long first;
  unsigned count;
  int signum;
};

void tether__sig_drain (struct sigloop *l) {
  struct arrival got[TETHER_NSIG];
  uint64_t dirty = __atomic_exchange_n(&l->dirty, 0, SEQ);
  int n = 0, i;
  while (dirty != 0) {
    int signum = __builtin_ctzll(dirty) + 1;
    struct arrival a;
    dirty &= dirty - 1;
    a.count = __atomic_exchange_n(&l->counts[signum], 0, SEQ);
    a.first = __atomic_exchange_n(&l->first[signum], 0, SEQ);
    a.signum = signum;
    if (a.count == 0)
      continue;
    if (a.first == 0) /* counted while this drain ran: the latest */
      a.first = (unsigned long)-1;
    for (i = n++; i > 0 && got[i - 1].first > a.first; i--)
      got[i] = got[i - 1];
    got[i] = a;
  }
  for (i = 0; i < n; i++)
    l->deliver(l->data, got[i].signum, got[i].count);
}

static void on_wake (uv_async_t *h) {
  tether__sig_drain(h->data);
}

int tether__sigloop_open (uv_loop_t *loop, tether_sigdeliver_fn deliver,
                          void *data, struct sigloop **out) {
  struct sigloop *l = calloc(1, sizeof *l);
  sigset_t old;
  int err;
  if (l == NULL)
    return UV_ENOMEM;
  err = uv_async_init(loop, &l->wake, on_wake);
  if (err < 0) {
    free(l);
    return err;
  }
  l->wake.data = l;
  l->open = 1;
  l->deliver = deliver;
  l->data = data;
  uv_unref((uv_handle_t *)&l->wake); /* never keeps a loop alive */
  begin_write(&old);
  keep_handlers_out();
  l->next = loops;
  loops = l;
  let_handlers_in();
  end_write(&old);
  *out = l;
  return 0;
}

static void on_closed (uv_handle_t *h) {
  struct sigloop *l = h->data;
  if (--l->open == 0)
    free(l);
}

void tether__sigloop_close (struct sigloop *l) {
  struct sigloop **p;
  sigset_t old;
  begin_write(&old);
  keep_handlers_out();
  for (p = &loops; *p != l; p = &(*p)->next)
    ;
  *p = l->next;
  let_handlers_in();
  end_write(&old);
  if (l->anchor_inited)
    uv_close((uv_handle_t *)&l->anchor, on_closed);
  uv_close((uv_handle_t *)&l->wake, on_closed);
}

/* }==================================================================== */
