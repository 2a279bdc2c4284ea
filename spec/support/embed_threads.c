/*
** embed_threads.c
** Helper for spec/embed_spec.lua: two loops on two threads, each with its own
** lua_State, tether attached and a SIGUSR2 receiver in a task. The main
** thread, which runs no loop, sends one process-directed SIGUSR2 with
** kill(2) once both receivers are open: each loop gets it (fan-out across
** loops, receivers on any thread). Afterwards no stray SIGUSR2 reached the
** host's own handler, SIGUSR2's disposition is that handler again, and every
** loop closed cleanly.
**
**   embed_threads [rounds]   the first round prints the transcript
**   embed_threads race       (Linux) the signal is handled by a SCHED_IDLE
**                            thread on the loops' CPU, so the loop threads
**                            preempt libuv's handler between its write to a
**                            loop's pipe and its count of the delivery
*/

#define _GNU_SOURCE /* sched_setaffinity, SCHED_IDLE */

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "embed_test.h"

#define NLOOPS 2

struct loop_thread {
  int id;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t keepalive; /* the host's handle: tether's never keep a loop
                           alive, so this one does until the task is done */
  lua_State *L;
  int ready_posted;
  int attach_rc, spawn_rc, shutdown_rc, close_rc;
  int task_done, task_ok, handles_left;
  lua_Integer signum, count;
  char error[512];
};

static struct loop_thread loops[NLOOPS];
static uv_sem_t ready; /* each thread posts once: receiver open, or failed */
static int race;       /* the "race" mode */
static volatile sig_atomic_t host_handler_calls, marker_calls, stop_signals;

static void host_handler (int signum) {
  (void)signum;
  host_handler_calls++;
}

static void marker_handler (int signum) {
  (void)signum;
  marker_calls++;
}

#ifdef __linux__
/* Race mode: every thread but the signal thread runs on CPU 0. */
static void pin_to_cpu0 (void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(0, &set);
  sched_setaffinity(0, sizeof set, &set);
}

/* Race mode: the only thread with SIGUSR2 and SIGALRM unblocked, at the
   lowest priority on the loops' CPU. */
static void signal_thread (void *arg) {
  struct sched_param param;
  sigset_t set;
  (void)arg;
  pin_to_cpu0();
  memset(&param, 0, sizeof param);
  sched_setscheduler(0, SCHED_IDLE, &param);
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  sigaddset(&set, SIGALRM);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  while (!stop_signals)
    pause();
}
#endif

/* Waits (at most 5 s) until *counter reaches 'want'. */
static void wait_for (volatile sig_atomic_t *counter, int want) {
  struct timespec ms = {0, 1000000};
  int i;
  for (i = 0; i < 5000 && *counter < want; i++)
    nanosleep(&ms, NULL);
}

/* Sends SIGALRM and waits for its handler. Standard signals are delivered
   lowest number first, so a SIGUSR2 (12) already pending got delivered too. */
static void flush_signals (void) {
  int want = marker_calls + 1;
  kill(getpid(), SIGALRM);
  wait_for(&marker_calls, want);
  CHECK(marker_calls == want, "the marker signal was delivered");
}

static void post_ready (struct loop_thread *t) {
  if (!t->ready_posted) {
    t->ready_posted = 1;
    uv_sem_post(&ready);
  }
}

/* ready(): the task's receiver is open. */
static int lua_ready (lua_State *L) {
  post_ready(lua_touserdata(L, lua_upvalueindex(1)));
  return 0;
}

static const char task_source[] =
    "local tether = require 'tether'\n"
    "local ready, timeout = ...\n"
    "local signals <close> = tether.open_signal_receiver(tether.SIGUSR2)\n"
    "ready()\n"
    "local signum, count = 0, 0\n"
    "tether.move_on_after(timeout):run(function()\n"
    "  signum, count = signals:receive()\n"
    "end)\n"
    "return signum, count\n";

static void on_done (lua_State *L, int ok, int n, void *ud) {
  struct loop_thread *t = ud;
  t->task_done = 1;
  t->task_ok = ok;
  if (ok && n == 2) {
    t->signum = lua_tointeger(L, 1);
    t->count = lua_tointeger(L, 2);
  }
  else if (!ok)
    snprintf(t->error, sizeof t->error, "%s", luaL_tolstring(L, 1, NULL));
  post_ready(t);
  uv_close((uv_handle_t *)&t->keepalive, NULL);
}

static void thread_main (void *arg) {
  struct loop_thread *t = arg;
#ifdef __linux__
  if (race)
    pin_to_cpu0();
#endif
  uv_loop_init(&t->loop);
  t->L = embed_new_state();
  t->attach_rc = tether_attach(t->L, &t->loop);
  uv_async_init(&t->loop, &t->keepalive, NULL);
  embed_load(t->L, task_source, "=receiver");
  lua_pushlightuserdata(t->L, t);
  lua_pushcclosure(t->L, lua_ready, 1);
  lua_pushnumber(t->L, 10.0);
  t->spawn_rc = tether_spawn(t->L, 2, on_done, t);
  if (t->spawn_rc < 0) {
    post_ready(t);
    uv_close((uv_handle_t *)&t->keepalive, NULL);
  }
  uv_run(&t->loop, UV_RUN_DEFAULT); /* until the task is done */
  t->shutdown_rc = tether_shutdown(t->L);
  lua_close(t->L);
  uv_run(&t->loop, UV_RUN_DEFAULT);
  t->handles_left = embed_handles(&t->loop);
  t->close_rc = uv_loop_close(&t->loop);
}

/* One round: both loops, one kill, checks. 'verbose': the transcript. */
static void run_round (int verbose) {
  struct sigaction now;
  int i, calls;

  memset(loops, 0, sizeof loops);
  host_handler_calls = 0;
  for (i = 0; i < NLOOPS; i++) {
    loops[i].id = i + 1;
    if (uv_thread_create(&loops[i].thread, thread_main, &loops[i]) != 0) {
      say("FAIL: cannot create thread %d", i + 1);
      exit(1);
    }
  }
  for (i = 0; i < NLOOPS; i++)
    uv_sem_wait(&ready);
  if (verbose) {
    say("%d loops on %d threads, each with a SIGUSR2 receiver open", NLOOPS,
        NLOOPS);
    say("main thread: kill(getpid(), SIGUSR2), once");
  }
  kill(getpid(), SIGUSR2);
  for (i = 0; i < NLOOPS; i++)
    uv_thread_join(&loops[i].thread);

  for (i = 0; i < NLOOPS; i++) {
    struct loop_thread *t = &loops[i];
    CHECK_RC(t->attach_rc, 0);
    CHECK_RC(t->spawn_rc, 0);
    if (!t->task_ok)
      say("loop %d: task failed: %s", t->id, t->error);
    else if (verbose)
      say("loop %d: received %s, count %d", t->id,
          t->signum == SIGUSR2 ? "SIGUSR2" : "nothing", (int)t->count);
    CHECK(t->task_done && t->task_ok, "the receiver task finished normally");
    CHECK(t->signum == SIGUSR2 && t->count == 1,
          "the loop's receiver got the SIGUSR2 once");
    CHECK_RC(t->shutdown_rc, 0);
    CHECK(t->handles_left == 0, "no handle left on the loop after lua_close");
    CHECK_RC(t->close_rc, 0);
    if (verbose)
      say("loop %d: closed (uv_loop_close %d)", t->id, t->close_rc);
  }

  /* The loops read the delivery: it must not come back to the host. */
  flush_signals();
  if (host_handler_calls != 0)
    say("a SIGUSR2 the loops had read was re-raised to the host's handler");
  CHECK(host_handler_calls == 0,
        "no stray SIGUSR2 reached the host's handler after the loops closed");
  sigaction(SIGUSR2, NULL, &now);
  CHECK(now.sa_handler == host_handler,
        "SIGUSR2's disposition is the host's handler again");
  calls = host_handler_calls;
  kill(getpid(), SIGUSR2);
  flush_signals();
  if (verbose)
    say("after both loops closed, SIGUSR2 %s the host's handler",
        host_handler_calls == calls + 1 ? "reaches" : "does NOT reach");
  CHECK(host_handler_calls == calls + 1,
        "the host's handler got the next SIGUSR2");
}

int main (int argc, char **argv) {
  struct sigaction sa;
  int rounds = 1, round, before;
  uv_thread_t signals;

  if (argc > 1 && strcmp(argv[1], "race") == 0) {
#ifdef __linux__
    sigset_t set;
    race = 1;
    rounds = 20;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread created next */
    uv_thread_create(&signals, signal_thread, NULL);
#else
    say("SKIP: the race mode needs Linux");
    return 77;
#endif
  }
  else if (argc > 1)
    rounds = atoi(argv[1]);

  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = host_handler;
  sigaction(SIGUSR2, &sa, NULL);
  sa.sa_handler = marker_handler;
  sigaction(SIGALRM, &sa, NULL);
  uv_sem_init(&ready, 0);
  for (round = 1; round <= rounds; round++) {
    before = embed_failures;
    run_round(round == 1);
    if (embed_failures > before && round > 1)
      say("round %d failed", round);
  }
  if (rounds > 1)
    say("%d rounds", rounds);
  if (race) {
    stop_signals = 1;
    kill(getpid(), SIGALRM);
    uv_thread_join(&signals);
  }
  uv_sem_destroy(&ready);
  return embed_finish();
}
