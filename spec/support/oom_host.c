/*
** oom_host.c
** The failing-allocator host of `make oom` and spec/oom_spec.lua. It checks
** tether's promise about memory exhaustion: any allocation may fail; the
** operation then raises "not enough memory", nothing leaks, no task is lost,
** no signal handler or mask stays changed, and the state can run again.
**
** Allocations are counted in one sequence: the Lua state's (a lua_Alloc of
** our own; only requests that need new memory count, shrinking never fails)
** and tether's own C allocations (the program is linked with
** -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free, which reroutes
** the calls of libtether.a, and of this file, through the __wrap_ functions
** below; libuv and libc keep the real ones). A counting run learns how many
** allocations a program makes; then, for every N (or every S-th), a fresh
** state runs the program with allocation N failing, in one of these modes:
**
**   once    allocation N fails (Lua retries it after an emergency collection)
**   twice   N and N+1 fail (Lua's retry fails too: the request fails)
**   burst   N to N+7 fail (the error path's own allocations fail as well)
**   from    every allocation from N on fails (nothing can allocate any more)
**
** After each failing run the program must have succeeded or raised an error
** that mentions "not enough memory" (anywhere in an error object: an
** ErrorGroup's errors, an Interrupted's error, ...); then the same program
** runs again in the same state with allocation working and must succeed;
** tether.core.debug_stats() must show no task, no loop, not running; after
** lua_close no block of tether's C memory may be left, and the dispositions
** of SIGINT, SIGTERM, SIGPIPE, SIGUSR1 and SIGCHLD, the signal mask and the
** number of open descriptors must be what they were before. Under ASan,
** LeakSanitizer checks everything else (Lua's and libuv's memory) at exit.
**
**   oom_host [--modes once,twice,burst,from] [--stride S] [--only N]
**            [--budget SECONDS] program.lua...
**
** A program file named attached*.lua is run by an attached host instead of
** being called (see run_attached): it returns a table of task functions.
** Each program prints one summary line on stdout; the last line is "PASS"
** or "FAIL (n problems)" and the exit status 0 or 1. The harness writes its
** findings on stdout; tether's own reports (a host callback that raised)
** go to stderr.
*/

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>
#include <tether.h>

/* {====================================================================
** Failing allocations
** ===================================================================== */

void *__real_malloc (size_t size);
void *__real_calloc (size_t n, size_t size);
void *__real_realloc (void *p, size_t size);
void __real_free (void *p);
void *__wrap_malloc (size_t size);
void *__wrap_calloc (size_t n, size_t size);
void *__wrap_realloc (void *p, size_t size);
void __wrap_free (void *p);

static long counted;    /* allocations counted since arm() */
static long fail_first; /* allocations fail_first..fail_last fail */
static long fail_last;
static long failed;      /* allocations made to fail since arm() */
static int counting;     /* count (and fail) allocations */
static long live_blocks; /* tether's C blocks not freed yet */

/* Whether the next allocation fails. Atomic: tether_post runs on a second
   thread of the attached host. */
static int next_fails (void) {
  long n;
  if (!__atomic_load_n(&counting, __ATOMIC_RELAXED))
    return 0;
  n = __atomic_add_fetch(&counted, 1, __ATOMIC_RELAXED);
  if (n < fail_first || n > fail_last)
    return 0;
  __atomic_add_fetch(&failed, 1, __ATOMIC_RELAXED);
  return 1;
}

static void arm (long first, long last) {
  counted = failed = 0;
  fail_first = first;
  fail_last = last;
  __atomic_store_n(&counting, 1, __ATOMIC_SEQ_CST);
}

static void disarm (void) {
  __atomic_store_n(&counting, 0, __ATOMIC_SEQ_CST);
}

void *__wrap_malloc (size_t size) {
  void *p = next_fails() ? NULL : __real_malloc(size);
  if (p != NULL)
    __atomic_add_fetch(&live_blocks, 1, __ATOMIC_RELAXED);
  return p;
}

void *__wrap_calloc (size_t n, size_t size) {
  void *p = next_fails() ? NULL : __real_calloc(n, size);
  if (p != NULL)
    __atomic_add_fetch(&live_blocks, 1, __ATOMIC_RELAXED);
  return p;
}

void *__wrap_realloc (void *p, size_t size) {
  void *q;
  if (size == 0 || next_fails())
    return size == 0 ? __wrap_free(p), NULL : NULL;
  q = __real_realloc(p, size);
  if (q != NULL && p == NULL)
    __atomic_add_fetch(&live_blocks, 1, __ATOMIC_RELAXED);
  return q;
}

void __wrap_free (void *p) {
  if (p != NULL)
    __atomic_sub_fetch(&live_blocks, 1, __ATOMIC_RELAXED);
  __real_free(p);
}

/* The Lua state's allocator: only requests for more memory can fail. */
static void *lua_alloc (void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    __real_free(p);
    return NULL;
  }
  if ((p == NULL || nsize > osize) && next_fails())
    return NULL;
  return __real_realloc(p, nsize);
}

/* }==================================================================== */

/* {====================================================================
** What a run must leave as it found it
** ===================================================================== */

static const int watched_signals[] = {SIGINT, SIGTERM, SIGPIPE, SIGUSR1,
                                      SIGCHLD};
#define NWATCHED (sizeof watched_signals / sizeof watched_signals[0])

struct process_state {
  struct sigaction actions[NWATCHED];
  sigset_t mask;
  int fds;
};

static int count_fds (void) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int n = 0;
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void take_state (struct process_state *s) {
  size_t i;
  memset(s, 0, sizeof *s);
  for (i = 0; i < NWATCHED; i++)
    sigaction(watched_signals[i], NULL, &s->actions[i]);
  sigprocmask(SIG_BLOCK, NULL, &s->mask);
  s->fds = count_fds();
}

/* }==================================================================== */

/* {====================================================================
** Findings
** ===================================================================== */

static const char *program_name; /* the program being swept */
static const char *mode_name;
static long current_n;  /* the N being run, for crash reports */
static int problems;    /* findings of the whole run */
static long uncalled;   /* done callbacks not called for want of memory */
static int run_problem; /* the current N has a finding already */

#define MAX_REPORTS 12

static void problem (const char *fmt, ...) {
  va_list ap;
  problems++;
  if (run_problem++ > 0 || problems > MAX_REPORTS)
    return;
  printf("FAIL %s, mode %s, N = %ld: ", program_name, mode_name, current_n);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n  repeat: oom_host --modes %s --only %ld %s\n", mode_name,
         current_n, program_name);
  fflush(stdout);
}

static void compare_state (const struct process_state *before) {
  struct process_state after;
  size_t i;
  take_state(&after);
  for (i = 0; i < NWATCHED; i++)
    if (before->actions[i].sa_handler != after.actions[i].sa_handler ||
        before->actions[i].sa_flags != after.actions[i].sa_flags)
      problem("the disposition of signal %d changed", watched_signals[i]);
  for (i = 1; i < 65; i++)
    if (sigismember(&before->mask, (int)i) != sigismember(&after.mask, (int)i))
      problem("signal %d is %s blocked", (int)i,
              sigismember(&after.mask, (int)i) ? "now" : "no longer");
  if (before->fds != after.fds)
    problem("%d descriptors open before, %d after", before->fds, after.fds);
  if (__atomic_load_n(&live_blocks, __ATOMIC_RELAXED) != 0)
    problem("%ld blocks of tether's C memory leaked", live_blocks);
  __atomic_store_n(&live_blocks, 0, __ATOMIC_RELAXED);
}

/* A crash (or a Lua panic) ends the sweep: say where. */
/* The programs send themselves SIGUSR1; one left unread is re-raised to
   the host's disposition when its receiver closes. */
static void on_usr1 (int signum) {
  (void)signum;
}

static void on_crash (int signum) {
  char text[256];
  int n = snprintf(text, sizeof text,
                   "FAIL %s, mode %s, N = %ld: signal %d\n  repeat: oom_host "
                   "--modes %s --only %ld %s\n",
                   program_name, mode_name, current_n, signum, mode_name,
                   current_n, program_name);
  if (n > 0 && write(1, text, (size_t)n) < 0)
    _exit(3);
  signal(signum, SIG_DFL);
  raise(signum);
}

static int on_panic (lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  printf("FAIL %s, mode %s, N = %ld: Lua panic: %s\n", program_name, mode_name,
         current_n, msg != NULL ? msg : "(not a string)");
  fflush(stdout);
  abort();
  return 0;
}

/* }==================================================================== */

/* {====================================================================
** Lua states
** ===================================================================== */

static int open_tether (lua_State *L) {
  tether_openlibs(L);
  return 0;
}

/* Whether an error value mentions "not enough memory" (in its text or in
   any field of an error object, recursively). */
static const char checker_source[] =
    "local function mentions(err, seen)\n"
    "  if type(err) == 'string' then\n"
    "    return err:find('not enough memory', 1, true) ~= nil\n"
    "  end\n"
    "  if type(err) ~= 'table' or seen[err] then return false end\n"
    "  seen[err] = true\n"
    "  for _, v in pairs(err) do\n"
    "    if mentions(v, seen) then return true end\n"
    "  end\n"
    "  return false\n"
    "end\n"
    "return function(err) return mentions(err, {}) end\n";

/* debug_stats() says nothing is left: no task, no loop, not running. */
static const char stats_source[] =
    "local s = require('tether.core').debug_stats()\n"
    "if s.tasks ~= 0 or s.loop_open or s.running then\n"
    "  error(('tasks = %d, loop_open = %s, running = %s'):format(\n"
    "      s.tasks, tostring(s.loop_open), tostring(s.running)))\n"
    "end\n";

/* Programs whose name starts with this require tether themselves under
   failing allocations; for the others the host requires it first. */
#define OPENS_TETHER "open"

static const char *base_name (const char *path) {
  const char *slash = strrchr(path, '/');
  return slash != NULL ? slash + 1 : path;
}

/*
** Lua 5.4.4's lauxlib registers the metatable of a growing luaL_Buffer's box
** ("_UBOX*") before it sets its __close: when that allocation fails, the
** state keeps a metatable without __close, and every later buffer that
** outgrows its first block (a table.concat of more than 1 KiB) raises
** "variable '(C temporary)' got a non-closable value". Not tether's to fix:
** the host makes the metatable before allocations start failing.
*/
static const char buffer_box_source[] =
    "local _ = table.concat { string.rep('x', 4096) }\n";

/* A fresh state with the standard libraries, tether's preloads, the loaded
   program at index 1 and the error checker at index 2. */
static lua_State *new_state (const char *path) {
  lua_State *L = lua_newstate(lua_alloc, NULL);
  int opens = strncmp(base_name(path), OPENS_TETHER, 4) == 0;
  if (L == NULL)
    return NULL;
  lua_atpanic(L, on_panic);
  luaL_openlibs(L);
  lua_pushcfunction(L, open_tether);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK ||
      luaL_dostring(L, buffer_box_source) != LUA_OK ||
      (!opens && luaL_dostring(L, "require 'tether'") != LUA_OK) ||
      luaL_loadfile(L, path) != LUA_OK ||
      luaL_loadstring(L, checker_source) != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK) {
    printf("FAIL: cannot load %s: %s\n", path, lua_tostring(L, -1));
    exit(1);
  }
  return L;
}

/* A description of the error at 'idx', for reports (made with allocation
   working; it stays alive until the next allocation). */
static const char *describe (lua_State *L, int idx) {
  int armed = __atomic_exchange_n(&counting, 0, __ATOMIC_SEQ_CST);
  const char *s = luaL_tolstring(L, idx, NULL);
  lua_pop(L, 1);
  __atomic_store_n(&counting, armed, __ATOMIC_SEQ_CST);
  return s != NULL ? s : "?";
}

/* The error at 'idx' is acceptable: it mentions "not enough memory". The
   check itself runs with allocation working. */
static int acceptable (lua_State *L, int idx) {
  int ok, armed = __atomic_exchange_n(&counting, 0, __ATOMIC_SEQ_CST);
  idx = lua_absindex(L, idx);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, idx);
  ok = lua_pcall(L, 1, 1, 0) == LUA_OK && lua_toboolean(L, -1);
  lua_pop(L, 1);
  __atomic_store_n(&counting, armed, __ATOMIC_SEQ_CST);
  return ok;
}

static void check_stats (lua_State *L, const char *when) {
  if (luaL_loadstring(L, stats_source) != LUA_OK ||
      lua_pcall(L, 0, 0, 0) != LUA_OK) {
    problem("%s, debug_stats: %s", when, describe(L, -1));
    lua_pop(L, 1);
  }
}

/* }==================================================================== */

/* {====================================================================
** Programs that call tether.run
** ===================================================================== */

/* Runs the program once under failing allocations, then again with working
   ones. Returns the allocations counted in the failing run. */
static long run_program (const char *path, long first, long last) {
  lua_State *L = new_state(path);
  long n;
  int status;
  lua_pushvalue(L, 1);
  arm(first, last);
  status = lua_pcall(L, 0, 0, 0);
  disarm();
  n = counted;
  if (status != LUA_OK && !acceptable(L, -1))
    problem("unexpected error: %s", describe(L, -1));
  lua_settop(L, 2);
  check_stats(L, "after the failing run");
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK)
    problem("the state cannot run the program again: %s", describe(L, -1));
  lua_settop(L, 2);
  check_stats(L, "after running again");
  lua_close(L);
  return n;
}

/* }==================================================================== */

/* {====================================================================
** An attached host
** ===================================================================== */

/*
** The program returns a table: 'tasks' (functions, each started with
** tether_spawn and its index as argument), 'posted' (started from each
** posted callback) and 'forever' (blocks until tether_shutdown cancels
** it). The done callback of a task whose result is "raise in done" raises
** an error, which tether must contain. A second thread posts POSTS
** callbacks while the loop runs.
*/
#define POSTS 4

struct host {
  lua_State *L;
  uv_loop_t loop;
  uv_timer_t poll;
  uv_thread_t poster;
  tether_t *t;
  int strict; /* allocation works: every call must succeed */
  int spawned, forever, done, cancelled;
  int posted, posts_ran, poster_done, ticks, progress, stalled;
};

static void on_done (lua_State *L, int ok, int n, void *ud) {
  struct host *h = ud;
  h->done++;
  if (ok && n >= 1 && lua_type(L, 1) == LUA_TSTRING &&
      strcmp(lua_tostring(L, 1), "raise in done") == 0)
    luaL_error(L, "a done callback raised (on purpose)");
  if (!ok && lua_type(L, 1) == LUA_TTABLE)
    h->cancelled++;
}

/* [-0, +0] spawns field 'name' of the program's table (at index 3) with
   argument 'arg'. */
static void spawn (struct host *h, const char *name, int arg) {
  lua_State *L = h->L;
  int rc;
  if (lua_type(L, 3) != LUA_TTABLE)
    return; /* the program did not load (not enough memory) */
  lua_getfield(L, 3, name);
  if (arg > 0) {
    lua_rawgeti(L, -1, arg);
    lua_remove(L, -2);
  }
  lua_pushinteger(L, arg);
  rc = tether_spawn(L, 1, on_done, h);
  if (rc == 0) {
    h->spawned++;
    h->forever += strcmp(name, "forever") == 0;
  }
  else if (h->strict || rc != UV_ENOMEM)
    problem("tether_spawn returned %d (%s)", rc, uv_err_name(rc));
}

static void on_posted (lua_State *L, void *ud) {
  struct host *h = ud;
  (void)L;
  h->posts_ran++;
  spawn(h, "posted", 0);
}

static void poster (void *arg) {
  struct host *h = arg;
  int i, rc;
  for (i = 0; i < POSTS; i++) {
    rc = tether_post(h->t, on_posted, h);
    if (rc == 0)
      h->posted++;
    else if (h->strict || rc != UV_ENOMEM)
      problem("tether_post returned %d (%s)", rc, uv_err_name(rc));
  }
  __atomic_store_n(&h->poster_done, 1, __ATOMIC_RELEASE);
}

/*
** Every millisecond: stop once every task but the 'forever' ones finished
** and every post ran. While allocations fail, tasks may wait for memory:
** stop when nothing happened for 50 ms (tether_shutdown must end them).
** With allocation working, give up after 10 s: a task was lost.
*/
static void on_poll (uv_timer_t *timer) {
  struct host *h = timer->data;
  int quiet = __atomic_load_n(&h->poster_done, __ATOMIC_ACQUIRE) &&
              h->posts_ran == h->posted && h->done == h->spawned - h->forever;
  int progress = h->done + h->posts_ran;
  if (progress != h->progress) {
    h->progress = progress;
    h->stalled = 0;
  }
  if (quiet || ++h->ticks > 10000 || (!h->strict && ++h->stalled > 50)) {
    if (!quiet && h->strict)
      problem("tasks never finished: %d spawned, %d done, %d of %d posts ran",
              h->spawned, h->done, h->posts_ran, h->posted);
    uv_timer_stop(timer);
  }
}

/* One attached session: attach, spawn, post from a thread, run the loop,
   shut down. */
static void session (struct host *h) {
  int rc, i, n;
  h->spawned = h->forever = h->done = h->cancelled = 0;
  h->posted = h->posts_ran = h->poster_done = h->ticks = 0;
  h->progress = h->stalled = 0;
  rc = tether_attach(h->L, &h->loop);
  if (rc != 0) {
    if (h->strict || rc != UV_ENOMEM)
      problem("tether_attach returned %d (%s)", rc, uv_err_name(rc));
    return;
  }
  h->t = tether_get(h->L);
  lua_settop(h->L, 2);
  lua_pushvalue(h->L, 1);
  if (lua_pcall(h->L, 0, 1, 0) != LUA_OK) {
    if (h->strict || !acceptable(h->L, -1))
      problem("the program raised: %s", describe(h->L, -1));
    lua_pop(h->L, 1);
    lua_pushnil(h->L);
  }
  n = lua_type(h->L, 3) == LUA_TTABLE
          ? (lua_getfield(h->L, 3, "tasks"), (int)lua_rawlen(h->L, -1))
          : 0;
  if (n > 0)
    lua_pop(h->L, 1);
  for (i = 1; i <= n; i++)
    spawn(h, "tasks", i);
  spawn(h, "forever", 0);
  if (uv_thread_create(&h->poster, poster, h) != 0) {
    problem("cannot create the posting thread");
    exit(1);
  }
  uv_timer_start(&h->poll, on_poll, 1, 1);
  uv_run(&h->loop, UV_RUN_DEFAULT);
  uv_thread_join(&h->poster);
  rc = tether_shutdown(h->L);
  if (rc != 0)
    problem("tether_shutdown returned %d (%s)", rc, uv_err_name(rc));
  if (h->done != h->spawned && h->strict)
    problem("%d tasks spawned, %d done callbacks", h->spawned, h->done);
  else if (h->done < h->spawned)
    uncalled += h->spawned - h->done; /* tether said so on stderr */
  else if (h->done > h->spawned)
    problem("%d tasks spawned, %d done callbacks", h->spawned, h->done);
  if (h->posts_ran != h->posted)
    problem("%d posts accepted, %d ran", h->posted, h->posts_ran);
  if (h->strict && h->cancelled != h->forever)
    problem("%d tasks cancelled by tether_shutdown, want %d", h->cancelled,
            h->forever);
  lua_settop(h->L, 2);
}

static long run_attached (const char *path, long first, long last) {
  struct host h;
  long n;
  memset(&h, 0, sizeof h);
  uv_loop_init(&h.loop);
  uv_timer_init(&h.loop, &h.poll);
  h.poll.data = &h;
  h.L = new_state(path);
  arm(first, last);
  session(&h);
  disarm();
  n = counted;
  check_stats(h.L, "after the failing session");
  h.strict = 1;
  session(&h);
  check_stats(h.L, "after the second session");
  lua_close(h.L);
  uv_close((uv_handle_t *)&h.poll, NULL);
  uv_run(&h.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&h.loop) != 0)
    problem("uv_loop_close failed: a handle was left on the host's loop");
  return n;
}

/* }==================================================================== */

/* {====================================================================
** The sweep
** ===================================================================== */

static const struct mode {
  const char *name;
  long width; /* allocations that fail from N on (0: all) */
} modes[] = {{"once", 1}, {"twice", 2}, {"burst", 8}, {"from", 0}};

static double now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long run_one (const char *path, long first, long last) {
  run_problem = 0;
  alarm(60); /* a hang (tether_shutdown looping, say) ends the sweep */
  return strncmp(base_name(path), "attached", 8) == 0
             ? run_attached(path, first, last)
             : run_program(path, first, last);
}

static void sweep (const char *path, const struct mode *m, long stride,
                   long only, double budget) {
  struct process_state before;
  long total, n, runs = 0, errors_before = problems;
  double start;
  program_name = path;
  mode_name = m->name;
  current_n = 0;
  /* The counting run (allocation works) also opens what libuv opens once
     per process, before the descriptors are counted. */
  total = run_one(path, 0, -1);
  take_state(&before);
  live_blocks = 0;
  start = now();
  for (n = only > 0 ? only : 1; n <= (only > 0 ? only : total); n += stride) {
    current_n = n;
    run_one(path, n, m->width > 0 ? n + m->width - 1 : 1L << 62);
    compare_state(&before);
    runs++;
    if (budget > 0 && now() - start > budget) {
      printf("%s, mode %s: time budget of %.0f s used up at N = %ld\n", path,
             m->name, budget, n);
      break;
    }
  }
  alarm(0);
  printf("%s, mode %s: %ld allocations, %ld runs (stride %ld), %.1f s, %s\n",
         path, m->name, total, runs, stride, now() - start,
         problems == errors_before ? "ok" : "FAILED");
  if (uncalled > 0)
    printf("  (%ld done callbacks could not be called: no memory for the "
           "call itself)\n",
           uncalled);
  uncalled = 0;
  fflush(stdout);
}

int main (int argc, char **argv) {
  const char *mode_list = "once,twice,burst,from";
  long stride = 1, only = 0;
  double budget = 0;
  int i;
  size_t m;
  signal(SIGUSR1, on_usr1);
  signal(SIGALRM, on_crash);
  signal(SIGSEGV, on_crash);
  signal(SIGABRT, on_crash);
  for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
    if (i + 1 >= argc)
      break;
    if (strcmp(argv[i], "--modes") == 0)
      mode_list = argv[i + 1];
    else if (strcmp(argv[i], "--stride") == 0)
      stride = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--only") == 0)
      only = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--budget") == 0)
      budget = atof(argv[i + 1]);
    else {
      printf("oom_host: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (i >= argc || stride < 1) {
    printf("usage: oom_host [--modes once,twice,burst,from] [--stride S] "
           "[--only N] [--budget SECONDS] program.lua...\n");
    return 2;
  }
  for (; i < argc; i++)
    for (m = 0; m < sizeof modes / sizeof modes[0]; m++)
      if (strstr(mode_list, modes[m].name) != NULL)
        sweep(argv[i], &modes[m], stride, only, budget);
  if (problems == 0)
    printf("PASS\n");
  else
    printf("FAIL (%d problems)\n", problems);
  return problems == 0 ? 0 : 1;
}

/* }==================================================================== */
