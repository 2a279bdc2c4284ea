/*
** signal_runs.c
** Helper for spec/signal_spec.lua: two tether.run on two threads of one
** process, each in its own lua_State, and Ctrl+C (a process-directed SIGINT
** from the main thread, which runs no loop). The host has its own SIGINT
** handler, which must be SIGINT's disposition again once both runs are over
** and must not see the SIGINTs tether took.
**
**   signal_runs both       both runs wait; one SIGINT: each raises Interrupted
**   signal_runs receiver   run 1 has a SIGINT receiver open: it gets the
**                          SIGINT and returns normally; run 2 is interrupted
**   signal_runs escape     run 1 never reaches a checkpoint; one SIGINT
**                          interrupts run 2, a second one ends the process
**                          (killed by SIGINT)
*/

#include <signal.h>
#include <unistd.h>

#include "embed_test.h"

#define NRUNS 2

struct run_thread {
  int id;
  uv_thread_t thread;
  const char *script;
  char result[256];
};

static struct run_thread runs[NRUNS];
static uv_sem_t ready;    /* each run posts once it waits for Ctrl+C */
static uv_sem_t finished; /* each run posts once tether.run returned */
static volatile sig_atomic_t host_calls;

static void host_handler (int signum) {
  (void)signum;
  host_calls++;
}

/* ready(): the run waits for Ctrl+C. */
static int lua_ready (lua_State *L) {
  (void)L;
  uv_sem_post(&ready);
  return 0;
}

/* What the run did, as one line: "returned X" or "raised <class>". */
static const char report[] =
    "local tether = require 'tether'\n"
    "local ok, err = pcall(tether.run, ...)\n"
    "if ok then return 'returned ' .. tostring(err) end\n"
    "if tether.is(err, tether.Interrupted) then return 'raised Interrupted' "
    "end\n"
    "return 'raised ' .. tostring(err)\n";

static const char waits[] = "local tether, ready = require 'tether', ...\n"
                            "ready()\n"
                            "tether.sleep_forever()\n";

static const char receives[] =
    "local tether, ready = require 'tether', ...\n"
    "local r <close> = tether.open_signal_receiver(tether.SIGINT)\n"
    "ready()\n"
    "local signum, count = tether.fail_after(20):run(r.receive, r)\n"
    "return tether.signal_name(signum) .. ' ' .. count\n";

static const char spins[] = "local tether, ready = require 'tether', ...\n"
                            "ready()\n"
                            "while true do end\n";

static void thread_main (void *arg) {
  struct run_thread *t = arg;
  lua_State *L = embed_new_state();
  embed_load(L, report, "=report");
  embed_load(L, t->script, "=main");
  lua_pushcfunction(L, lua_ready);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK)
    snprintf(t->result, sizeof t->result, "error %s",
             luaL_tolstring(L, -1, NULL));
  else
    snprintf(t->result, sizeof t->result, "%s", lua_tostring(L, -1));
  lua_close(L);
  uv_sem_post(&finished);
}

int main (int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "both";
  struct sigaction sa, now;
  int i, calls;

  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = host_handler;
  sigaction(SIGINT, &sa, NULL);
  alarm(60); /* a hung run ends the program (SIGALRM) */
  uv_sem_init(&ready, 0);
  uv_sem_init(&finished, 0);
  for (i = 0; i < NRUNS; i++) {
    runs[i].id = i + 1;
    runs[i].script = waits;
  }
  if (strcmp(mode, "receiver") == 0)
    runs[0].script = receives;
  else if (strcmp(mode, "escape") == 0)
    runs[0].script = spins;
  else if (strcmp(mode, "both") != 0) {
    say("usage: signal_runs both|receiver|escape");
    return 2;
  }
  for (i = 0; i < NRUNS; i++)
    uv_thread_create(&runs[i].thread, thread_main, &runs[i]);
  for (i = 0; i < NRUNS; i++)
    uv_sem_wait(&ready);
  say("%d runs on %d threads wait; main thread: one SIGINT", NRUNS, NRUNS);
  kill(getpid(), SIGINT);

  if (strcmp(mode, "escape") == 0) {
    uv_sem_wait(&finished); /* run 2; run 1 never returns */
    say("run 2: %s", runs[1].result);
    say("main thread: a second SIGINT");
    kill(getpid(), SIGINT);
    uv_sem_wait(&finished);
    say("FAIL: the process survived the second SIGINT");
    return 1;
  }

  for (i = 0; i < NRUNS; i++) {
    uv_thread_join(&runs[i].thread);
    say("run %d: %s", runs[i].id, runs[i].result);
  }
  CHECK(host_calls == 0, "the host's handler saw none of tether's SIGINTs");
  sigaction(SIGINT, NULL, &now);
  say("SIGINT's disposition: %s", now.sa_handler == host_handler
                                      ? "the host's handler again"
                                      : "NOT the host's handler");
  CHECK(now.sa_handler == host_handler,
        "SIGINT's disposition is the host's handler again");
  calls = host_calls;
  raise(SIGINT);
  CHECK(host_calls == calls + 1, "the host's handler gets the next SIGINT");
  uv_sem_destroy(&ready);
  uv_sem_destroy(&finished);
  return embed_finish();
}
