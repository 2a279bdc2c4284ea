/*
** process.c
** Child processes: core.spawn and the ProcessHandle class under the Lua
** facade's Process (lua/tether/process.lua owns the policy: options,
** capture, the termination ladder).
**
** Two objects, as for streams: the Lua userdata (struct process) holds the
** exit status and the tasks waiting for it; the libuv handle (struct child,
** malloc'd) stays open until libuv has reaped the child, whatever happens
** to the userdata, because closing a uv_process_t earlier takes it off
** libuv's list of children to reap. When tether.run ends with a child still
** running (its owner dropped it without waiting), the child is killed and
** handed to a reaper thread, which waits for it: never a zombie.
**
** The child's standard descriptors are set up here: "pipe" makes an OS
** pipe whose far end the child gets (the near end becomes a Stream),
** "null" has libuv open /dev/null in the child, "inherit" passes ours, a
** Stream passes its descriptor, and "stdout" (for stderr) passes whatever
** stdout got.
*/

#define _GNU_SOURCE /* pipe2 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

/* The libuv side: open from the spawn until libuv reaped the child (or
   tether.run ended and the reaper took it over). */
struct child {
  uv_process_t handle;
  struct queue node;     /* ctx->children while the handle is open */
  struct process *owner; /* NULL once the userdata was collected */
};

struct process {
  struct child *child; /* NULL once the child exited or was handed over */
  struct waitq waiters;
  int pid;
  int group;     /* leads a process group of its own (the ladder signals it) */
  int exited;    /* libuv reaped it: 'code' or 'signal' is set */
  int abandoned; /* handed to the reaper: its status will not be known */
  lua_Integer code;
  int signal;
};

static struct process *check_process (lua_State *L, const char *fname) {
  return tether__check_self(L, 1, CTX(L), CLASS_PROCESS, fname);
}

/* {====================================================================
** The reaper
** ===================================================================== */

static void *reap (void *arg) {
  pid_t pid = (pid_t)(intptr_t)arg;
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
    ;
  return NULL;
}

/* Kills the child (its group too) and waits for it on a detached thread
   of its own, with a small stack: a child in uninterruptible sleep may take
   any time to go. If no thread can be made, the child is reaped by init
   once this process exits. */
static void hand_to_reaper (int pid, int group) {
  pthread_attr_t attr;
  pthread_t thread;
  sigset_t mask;
  kill(group ? -pid : pid, SIGKILL);
  if (pthread_attr_init(&attr) != 0)
    return;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  tether__sig_block_all(&mask);
  pthread_create(&thread, &attr, reap, (void *)(intptr_t)pid);
  tether__sig_unblock(&mask);
  pthread_attr_destroy(&attr);
}

/* }==================================================================== */

/* {====================================================================
** The libuv side
** ===================================================================== */

static void free_child (uv_handle_t *h) {
  free(h->data);
}

static void close_child (struct child *ch) {
  queue_remove(&ch->node);
  uv_close((uv_handle_t *)&ch->handle, free_child);
}

static void on_child_exit (uv_process_t *h, int64_t status, int signum) {
  struct child *ch = h->data;
  struct process *p = ch->owner;
  if (p != NULL) {
    p->child = NULL;
    p->exited = 1;
    p->code = (lua_Integer)status;
    p->signal = signum;
    tether__waitq_wake_all(&p->waiters);
  }
  close_child(ch);
}

/* At the end of tether.run (or of an attached state, or of the Lua state):
   a child still running is killed and left to the reaper. */
void tether__processes_stop (struct ctx *c) {
  while (!queue_empty(&c->children)) {
    struct child *ch = queue_data(queue_head(&c->children), struct child, node);
    struct process *p = ch->owner;
    if (p != NULL) {
      p->child = NULL;
      p->abandoned = 1;
    }
    hand_to_reaper(ch->handle.pid, p != NULL && p->group);
    close_child(ch);
  }
}

/* }==================================================================== */

/* {====================================================================
** Spawning
** ===================================================================== */

/*
** The descriptors a spawn made and still owns, in a to-be-closed userdata:
** an error anywhere (a memory error included) closes them. Each becomes a
** Stream's or is closed after the spawn.
*/
#define SPAWN_FDS 6 /* both ends of three pipes */
struct spawn_fds {
  int fd[SPAWN_FDS];
  int n;
};

static int spawn_fds__close (lua_State *L) {
  struct spawn_fds *f = lua_touserdata(L, 1);
  while (f->n > 0)
    if (f->fd[--f->n] >= 0)
      close(f->fd[f->n]);
  return 0;
}

static void keep_fd (struct spawn_fds *f, int fd) {
  f->fd[f->n++] = fd;
}

/* Takes 'fd' off the list: someone else owns it now. */
static void give_fd (struct spawn_fds *f, int fd) {
  int i;
  for (i = 0; i < f->n; i++)
    if (f->fd[i] == fd)
      f->fd[i] = -1;
}

/* Child descriptors that are not ours: what libuv opens on /dev/null in
   the child, and stderr's "whatever stdout got". */
#define CHILD_NULL      (-2)
#define CHILD_AS_STDOUT (-1)

/* Stack of a spawn: argv, opts, then these. */
#define IDX_FDS     3 /* struct spawn_fds, to be closed */
#define IDX_PROCESS 4 /* the ProcessHandle */
#define IDX_STREAMS 5 /* 3 slots: the Streams made for pipes, or nil */

/* Checks opts.stdio[which + 1] before anything is made: "inherit",
   "null", "pipe", "stdout" (stderr only) or an open Stream. */
static void check_stdio (lua_State *L, struct ctx *c, int which,
                         const char *fname) {
  const char *how;
  lua_getfield(L, 2, "stdio");
  if (!lua_istable(L, -1))
    tether__fname_error(L, fname, "opts.stdio must be a table");
  lua_rawgeti(L, -1, which + 1);
  how = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  if (lua_type(L, -1) == LUA_TUSERDATA) {
    struct stream *s = tether__test_class(L, -1, c, CLASS_STREAM);
    if (s == NULL || !tether__stream_open(s))
      tether__fname_error(L, fname, "stdio %d: not an open Stream", which);
  }
  else if (how == NULL ||
           (strcmp(how, "inherit") != 0 && strcmp(how, "null") != 0 &&
            strcmp(how, "pipe") != 0 &&
            (which != 2 || strcmp(how, "stdout") != 0)))
    tether__fname_error(L, fname, "stdio %d: bad value %s", which,
                        luaL_tolstring(L, -1, NULL));
  lua_pop(L, 2);
}

/*
** Sets up the child's descriptor 'which' (0, 1, 2) from opts.stdio[which +
** 1]: its fd in *child_fd. "pipe" leaves the near end's Stream in the
** stack slot IDX_STREAMS + which. Returns 0 or a libuv error.
*/
static int setup_stdio (lua_State *L, struct ctx *c, struct spawn_fds *f,
                        int which, int *child_fd) {
  const char *how;
  lua_getfield(L, 2, "stdio");
  lua_rawgeti(L, -1, which + 1);
  lua_remove(L, -2);
  how = lua_tostring(L, -1);
  if (lua_type(L, -1) == LUA_TUSERDATA)
    *child_fd = tether__stream_fd(lua_touserdata(L, -1));
  else if (strcmp(how, "inherit") == 0)
    *child_fd = which;
  else if (strcmp(how, "stdout") == 0)
    *child_fd = CHILD_AS_STDOUT;
  else if (strcmp(how, "null") == 0)
    *child_fd = CHILD_NULL;
  else { /* "pipe" */
    int ends[2], err, near;
    if (pipe2(ends, O_CLOEXEC) < 0)
      return uv_translate_sys_error(errno);
    keep_fd(f, ends[0]);
    keep_fd(f, ends[1]);
    near = which == 0 ? ends[1] : ends[0];
    *child_fd = which == 0 ? ends[0] : ends[1];
    if (tether__fd_stream(L, c, near, -1, &err) == NULL)
      return err;
    give_fd(f, near);
    lua_replace(L, IDX_STREAMS + which);
  }
  lua_pop(L, 1);
  return 0;
}

/* [-0, +0, m] a NULL-terminated array of the strings of the array at 'idx'
   (kept alive by that table), in a userdata left on the stack. */
static char **string_array (lua_State *L, int idx) {
  lua_Integer n = luaL_len(L, idx), i;
  char **a;
  idx = lua_absindex(L, idx);
  a = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *a, 0);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    a[i - 1] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  a[n] = NULL;
  return a;
}

static void new_process (lua_State *L, struct ctx *c) {
  struct process *p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  tether__waitq_init_as(&p->waiters, "child process exit");
  tether__set_metatable(L, c, CLASS_PROCESS);
}

/*
** core.spawn(argv, opts) -> handle, stdin, stdout, stderr (Streams or nil)
** argv: {file, args...} (strings, checked by the facade); opts: stdio =
** {3 of "pipe", "null", "inherit", "stdout", a Stream}, cwd, env (an array
** of "NAME=value", nil: ours), group (boolean). Raises OSError (op "spawn")
** when the program cannot be started; nothing is left behind then.
*/
static int core_spawn (lua_State *L) {
  const char *fname = "tether.spawn";
  struct ctx *c = CTX(L);
  uv_process_options_t o;
  uv_stdio_container_t stdio[3];
  struct spawn_fds *f;
  struct process *p;
  struct child *ch;
  int fds[3], i, err;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  if (c->loop == NULL)
    return tether__fname_error(L, fname,
                               "called outside tether.run; start processes "
                               "inside a task");
  for (i = 0; i < 3; i++)
    check_stdio(L, c, i, fname);
  f = lua_newuserdatauv(L, sizeof *f, 0);
  f->n = 0;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, spawn_fds__close);
  lua_setfield(L, -2, "__close");
  lua_setmetatable(L, -2);
  lua_toclose(L, IDX_FDS);
  new_process(L, c);
  lua_settop(L, IDX_STREAMS + 2);
  memset(&o, 0, sizeof o);
  for (i = 0; i < 3; i++) {
    err = setup_stdio(L, c, f, i, &fds[i]);
    if (err < 0)
      goto failed;
  }
  if (fds[2] == CHILD_AS_STDOUT)
    fds[2] = fds[1];
  o.args = string_array(L, 1);
  o.file = o.args[0];
  if (lua_getfield(L, 2, "env") == LUA_TTABLE)
    o.env = string_array(L, -1);
  if (lua_getfield(L, 2, "cwd") == LUA_TSTRING)
    o.cwd = lua_tostring(L, -1);
  lua_getfield(L, 2, "group");
  p = lua_touserdata(L, IDX_PROCESS);
  p->group = lua_toboolean(L, -1);
  o.flags = p->group ? UV_PROCESS_DETACHED : 0;
  for (i = 0; i < 3; i++) {
    stdio[i].flags = fds[i] == CHILD_NULL ? UV_IGNORE : UV_INHERIT_FD;
    stdio[i].data.fd = fds[i];
  }
  o.stdio = stdio;
  o.stdio_count = 3;
  o.exit_cb = on_child_exit;
  ch = malloc(sizeof *ch);
  if (ch == NULL) {
    err = UV_ENOMEM;
    goto failed;
  }
  if (!c->spawned && !c->attached) { /* libuv takes SIGCHLD from here on */
    tether__sig_spawning();
    c->spawned = 1;
  }
  err = uv_spawn(c->loop, &ch->handle, &o);
  if (err < 0) {
    /* libuv registered the handle all the same: it must be closed */
    ch->handle.data = ch;
    uv_close((uv_handle_t *)&ch->handle, free_child);
    goto failed;
  }
  ch->handle.data = ch;
  ch->owner = p;
  queue_insert_tail(&c->children, &ch->node);
  p->child = ch;
  p->pid = ch->handle.pid;
  lua_closeslot(L, IDX_FDS); /* the child has its ends now */
  lua_settop(L, IDX_STREAMS + 2);
  return 4;
failed:
  for (i = 0; i < 3; i++)
    if (!lua_isnil(L, IDX_STREAMS + i))
      tether__stream_abort(lua_touserdata(L, IDX_STREAMS + i));
  return tether__raise_uv(L, c, err, fname, "spawn");
}

/* core.environ() -> {NAME = value, ...}: this process's environment */
static int core_environ (lua_State *L) {
  char **e;
  lua_newtable(L);
  for (e = environ; *e != NULL; e++) {
    const char *eq = strchr(*e, '=');
    if (eq == NULL || eq == *e)
      continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

/* }==================================================================== */

/* {====================================================================
** The handle
** ===================================================================== */

/* [-0, +2] code, signal (nil for the one that does not apply) */
static int push_status (lua_State *L, const struct process *p) {
  if (p->signal != 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, p->code);
  if (p->signal != 0)
    lua_pushinteger(L, p->signal);
  else
    lua_pushnil(L);
  return 2;
}

static int raise_abandoned (lua_State *L, struct ctx *c) {
  return tether__raise(L, c, ERROR_PROCESS, "process:wait",
                       "the process did not exit even after SIGKILL; tether "
                       "stopped waiting for it (a thread of its own will "
                       "reap it when it goes)");
}

/* The exit arrived ('woken'), or the process had already exited: raise if
   cancelled, else return its status. */
static int wait_k (lua_State *L, int status, lua_KContext woken) {
  struct task *t = tether__resumed(L, 1, woken, wait_k);
  struct process *p = lua_touserdata(L, 1);
  (void)status;
  if (woken)
    tether__check_wake(L, t);
  else if (t->scope->effective)
    return tether__raise_cancelled(L, t);
  if (p->abandoned)
    return raise_abandoned(L, CTX(L));
  return push_status(L, p);
}

/* h:wait() -> code, signal: a checkpoint; cancelling it leaves the process
   alone */
static int process_wait (lua_State *L) {
  const char *fname = "process:wait";
  struct ctx *c = CTX(L);
  struct process *p = check_process(L, fname);
  struct task *t = tether__check_task(L, c, fname);
  lua_settop(L, 1);
  if (p->abandoned)
    return raise_abandoned(L, c);
  if (p->exited)
    return tether__reschedule(L, t, 0, wait_k);
  return tether__wait(L, t, &p->waiters, 1, wait_k);
}

/* h:status() -> exited, code, signal */
static int process_status (lua_State *L) {
  struct process *p = check_process(L, "process:status");
  lua_pushboolean(L, p->exited);
  if (!p->exited)
    return 1;
  return 1 + push_status(L, p);
}

/*
** h:signal(sig[, group]) -> true, or false when there was nothing to
** signal. To the child while it runs (libuv has not reaped it, so its pid
** is still its own); with 'group', to its process group, which outlives
** the child while a grandchild is in it.
*/
static int process_signal (lua_State *L) {
  const char *fname = "process:send_signal";
  struct process *p = check_process(L, fname);
  int signum = tether__check_signal(L, 2, fname, 0);
  int to_group = lua_toboolean(L, 3) && p->group;
  int err;
  if (to_group && p->pid > 0)
    err = kill(-p->pid, signum) < 0 ? uv_translate_sys_error(errno) : 0;
  else if (p->child != NULL)
    err = uv_process_kill(&p->child->handle, signum);
  else
    err = UV_ESRCH;
  if (err < 0 && err != UV_ESRCH)
    return tether__raise_uv(L, CTX(L), err, fname, "kill");
  lua_pushboolean(L, err == 0);
  return 1;
}

/* Whether process 'pid' (a /proc entry) is in group 'pgid' and not a
   zombie (a zombie has ended; its parent has not reaped it yet). */
static int lives_in_group (const char *pid, int pgid) {
  char path[64], buf[512], *p;
  int fd, len, group;
  char state;
  snprintf(path, sizeof path, "/proc/%s/stat", pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  len = (int)read(fd, buf, sizeof buf - 1);
  close(fd);
  if (len <= 0)
    return 0;
  buf[len] = '\0';
  p = strrchr(buf, ')'); /* the command name may hold anything */
  if (p == NULL || sscanf(p + 1, " %c %*d %d", &state, &group) != 2)
    return 0;
  return group == pgid && state != 'Z' && state != 'X';
}

/*
** h:group_alive() -> whether a live process is left in the child's group.
** kill(-pgid, 0) answers only "does the group exist", and counts zombies: a
** grandchild that died but whose new parent (init, which may not reap in a
** container) has not reaped it. So the members are looked up in /proc.
*/
static int process_group_alive (lua_State *L) {
  struct process *p = check_process(L, "process:group_alive");
  int alive = 0;
  if (p->group && p->pid > 0 && kill(-p->pid, 0) == 0) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d != NULL && !alive && (e = readdir(d)) != NULL)
      if (e->d_name[0] >= '1' && e->d_name[0] <= '9')
        alive = lives_in_group(e->d_name, p->pid);
    if (d != NULL)
      closedir(d);
    else
      alive = 1; /* no /proc: the group exists */
  }
  lua_pushboolean(L, alive);
  return 1;
}

/* h:abandon(): the child will not die in time; the reaper takes it (it is
   killed, and reaped whenever it goes). */
static int process_abandon (lua_State *L) {
  struct process *p = check_process(L, "process:abandon");
  struct child *ch = p->child;
  if (ch == NULL)
    return 0;
  ch->owner = NULL;
  p->child = NULL;
  p->abandoned = 1;
  hand_to_reaper(p->pid, p->group);
  close_child(ch);
  tether__waitq_wake_all(&p->waiters); /* they raise (see wait) */
  return 0;
}

/* __gc: the child goes on, to be reaped by libuv (or the reaper) */
static int process__gc (lua_State *L) {
  struct process *p = lua_touserdata(L, 1);
  if (p->child != NULL)
    p->child->owner = NULL;
  return 0;
}

static int process__index (lua_State *L) {
  struct process *p = check_process(L, "process.__index");
  const char *key = lua_tostring(L, 2);
  if (key != NULL && strcmp(key, "pid") == 0)
    lua_pushinteger(L, p->pid);
  else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(2)); /* methods */
  }
  return 1;
}

static int process__tostring (lua_State *L) {
  struct process *p = check_process(L, "process:__tostring");
  lua_pushfstring(L, "tether.ProcessHandle (pid %d, %s)", p->pid,
                  p->exited ? "exited" : "running");
  return 1;
}

/* }==================================================================== */

void tether__open_process (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {
      {"spawn", core_spawn}, {"environ", core_environ}, {NULL, NULL}};
  static const luaL_Reg methods[] = {
      {"wait", process_wait},       {"status", process_status},
      {"signal", process_signal},   {"group_alive", process_group_alive},
      {"abandon", process_abandon}, {NULL, NULL}};
  static const luaL_Reg metamethods[] = {
      {"__gc", process__gc}, {"__tostring", process__tostring}, {NULL, NULL}};
  static const struct class_def process_class = {
      CLASS_PROCESS, TETHER_PROCESS_MT, methods, metamethods, process__index};
  tether__add_functions(L, funcs);
  tether__add_class(L, c, &process_class, 0);
}
