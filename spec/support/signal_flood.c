/*
** signal_flood.c
** Helper for spec/signal_spec.lua: a host with its own SIGUSR1 handler and
** an idle extra thread opens and closes a tether SIGUSR1 receiver over and
** over while a child process floods it with SIGUSR1. Whichever thread the
** kernel picks for a delivery, the disposition it finds must be tether's
** handler or the host's, never SIG_DFL (which would kill the process).
** Afterwards the host's handler is SIGUSR1's disposition again.
**
**   signal_flood [seconds]   (default 2; at least 1000 cycles in any case)
*/

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "embed_test.h"

static volatile sig_atomic_t host_calls;

static void host_handler (int signum) {
  (void)signum;
  host_calls++;
}

/* The extra thread: does nothing, with SIGUSR1 unblocked, until cancelled. */
static void *idle_thread (void *arg) {
  (void)arg;
  for (;;)
    pause();
  return NULL;
}

/* The child: SIGUSR1 to the parent as fast as it can, until the parent is
   gone or kills it (30 s at most). */
static pid_t start_flood (void) {
  pid_t parent = getpid(), child = fork();
  if (child == 0) {
    alarm(30);
    while (getppid() == parent && kill(parent, SIGUSR1) == 0)
      ;
    _exit(0);
  }
  return child;
}

static const char script[] =
    "local tether = require 'tether'\n"
    "local seconds = ...\n"
    "return tether.run(function()\n"
    "  local stop = tether.current_time() + seconds\n"
    "  local cycles = 0\n"
    "  while cycles < 1000 or tether.current_time() < stop do\n"
    "    local r = tether.open_signal_receiver(tether.SIGUSR1)\n"
    "    r:close()\n"
    "    cycles = cycles + 1\n"
    "    if cycles % 64 == 0 then tether.checkpoint() end\n"
    "  end\n"
    "  return cycles\n"
    "end)\n";

int main (int argc, char **argv) {
  struct sigaction sa, now;
  pthread_t idle;
  lua_State *L;
  pid_t flood;
  int status, calls;
  lua_Integer cycles = 0;

  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = host_handler;
  sigaction(SIGUSR1, &sa, NULL);
  pthread_create(&idle, NULL, idle_thread, NULL);
  flood = start_flood();
  CHECK(flood > 0, "fork() started the flooding child");
  say("host: own SIGUSR1 handler, an idle thread, a child flooding SIGUSR1");

  L = embed_new_state();
  embed_load(L, script, "=flood");
  lua_pushnumber(L, argc > 1 ? atof(argv[1]) : 2.0);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK)
    say("error: %s", luaL_tolstring(L, -1, NULL));
  else
    cycles = lua_tointeger(L, -1);
  lua_close(L);
  if (flood > 0) {
    kill(flood, SIGKILL);
    waitpid(flood, &status, 0);
  }
  /* The main thread alone is left: a SIGUSR1 still pending reaches it at
     its next system call, before the count below is taken. */
  pthread_cancel(idle);
  pthread_join(idle, NULL);
  say("tether: %s1000 receivers opened and closed under the flood",
      cycles >= 1000 ? "over " : "NOT ");
  CHECK(cycles >= 1000, "at least 1000 open/close cycles");

  sigaction(SIGUSR1, NULL, &now);
  say("host: SIGUSR1's disposition is %s", now.sa_handler == host_handler
                                               ? "the host's handler again"
                                               : "NOT the host's handler");
  CHECK(now.sa_handler == host_handler,
        "SIGUSR1's disposition is the host's handler again");
  calls = host_calls;
  raise(SIGUSR1);
  CHECK(host_calls == calls + 1, "the host's handler gets the next SIGUSR1");
  return embed_finish();
}
