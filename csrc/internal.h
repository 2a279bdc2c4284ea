/*
** internal.h
** Private structures of the tether core and the prototypes shared between its
** files. Nothing here is visible outside the shared object.
*/

#ifndef TETHER_INTERNAL_H
#define TETHER_INTERNAL_H

#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <uv.h>

#include "heap.h"
#include "queue.h"
#include "tether.h"

#define TETHER__HIDDEN __attribute__((visibility("hidden")))

/* Metatable names (also the type names users see in errors). */
#define TETHER_SCOPE_MT    "tether.CancelScope"
#define TETHER_GROUP_MT    "tether.TaskGroup"
#define TETHER_STATUS_MT   "tether.TaskStatus"
#define TETHER_CTX_MT      "tether.Context"
#define TETHER_RECV_MT     "tether.SignalReceiver"
#define TETHER_LOT_MT      "tether.ParkingLot"
#define TETHER_EVENT_MT    "tether.Event"
#define TETHER_SEND_MT     "tether.MemoryObjectSendStream"
#define TETHER_RECEIVE_MT  "tether.MemoryObjectReceiveStream"
#define TETHER_STREAM_MT   "tether.Stream"
#define TETHER_LISTENER_MT "tether.Listener"
#define TETHER_UDP_MT      "tether.UdpSocket"
#define TETHER_PROCESS_MT  "tether.ProcessHandle"

/* Signal numbers are below this (Linux: NSIG is 65). */
#define TETHER_NSIG 65

/* Userdata classes; their metatables are found by registry index, not by
   name, on the hot paths (see tether__test_class). */
enum tether_class {
  CLASS_SCOPE,
  CLASS_GROUP,
  CLASS_STATUS,
  CLASS_RECEIVER,
  CLASS_LOT,
  CLASS_EVENT,
  CLASS_SEND,
  CLASS_RECEIVE,
  CLASS_STREAM,
  CLASS_LISTENER,
  CLASS_UDP,
  CLASS_PROCESS,
  CLASS_FS_REQUEST,
  CLASS_FILE,
  CLASS_DIR,
  CLASS_WATCHER,
  CLASS_CLOCK,
  NCLASSES
};

struct sigloop;
struct slab;
struct hub;
struct post;
struct tether_done;
struct mock_clock;

struct pool;
struct ctx;
struct task;
struct scope;
struct group;

/* tether's error classes (errors.c). */
enum error_class {
  ERROR_CANCELLED,
  ERROR_INTERRUPTED,
  ERROR_TIMEOUT,
  ERROR_GROUP,
  ERROR_WOULD_BLOCK,
  ERROR_END_OF_STREAM,
  ERROR_CLOSED,
  ERROR_BROKEN,
  ERROR_BUSY,
  ERROR_LIMIT,
  ERROR_INCOMPLETE,
  ERROR_OS,
  ERROR_PROCESS,
  ERROR_WORKER,
  NERRORS
};

/* An error a waker chooses for a parked task without allocating (a static
   description): the task builds the error in its continuation. */
struct wake_error {
  enum error_class cls;
  const char *message;
};

/*
** What owns a node of the loop's deadline heap (heap_node.kind): a sleeping
** task, a cancel scope, or the test watchdog (core.set_watchdog). All live
** in one heap under one uv_timer_t.
*/
enum deadline_kind { DEADLINE_SLEEP, DEADLINE_SCOPE, DEADLINE_WATCHDOG };

/*
** Called when cancellation reaches a parked task. Returns 1 when it withdrew
** the task from whatever it waited on (the task then raises Cancelled), 0 when
** the task keeps waiting (a task group's exit, a pending tg:start).
*/
typedef int (*tether_abort_fn)(struct task *t);

enum task_state {
  TASK_FREE,    /* in the free list of records */
  TASK_READY,   /* in the run queue */
  TASK_RUNNING, /* being resumed right now */
  TASK_PARKED,  /* blocked; 'abort' says how to withdraw it */
  TASK_DONE     /* finished; record about to be freed */
};

/* How a parked task was woken: normally (its continuation returns the values
   pushed for it), by cancellation, with an error value to raise (on top of
   its stack), or with an error to build from the struct wake_error that
   'wait_data' then points to. */
enum wake_status { WAKE_OK, WAKE_CANCELLED, WAKE_ERROR, WAKE_RAISE };

/*
** A task's record. Its thread is bound when it first runs (until then its
** start-up values wait in the stage table, see record.c), so a burst of short
** tasks runs on a few hot threads. Kept to 136 bytes: an idle task costs its
** thread plus this record. Records live in slabs (record.c); a task's context
** is its scope's, since a live task is always inside a scope.
*/
struct task {
  struct queue node;        /* in the run queue (or batch) while ready; in
                               what it waits on while parked; in the free
                               list while free */
  struct queue scope_node;  /* scope->tasks of its innermost scope */
  struct heap_node sleep;   /* wake-up time of sleep/sleep_until */
  lua_State *L;             /* its thread; NULL until it first runs */
  struct scope *scope;      /* innermost cancel scope */
  struct group *group;      /* its group (NULL: main task, tether_spawn) */
  struct task *starter;     /* tg:start caller until started() moves it */
  tether_abort_fn abort;    /* set while parked */
  struct tether_done *done; /* started by tether_spawn: report to the host */
  void *wait_data;          /* what the task waits on, for 'abort'; after
                               WAKE_RAISE, its struct wake_error */
  lua_Integer id; /* unique for the life of the state, so it also tells a
                     TaskStatus whether its record still runs that task */
  int slot;       /* its index among the records, and in the name table */
  int thread_ref; /* its thread's index in the thread table; 0: no thread */
  int start;      /* where its start-up values wait in the stage table until
                     its first run; 0: nowhere (see record.c) */
  unsigned nresume : 20; /* values pushed on its thread for its next resume
                            (fewer than LUAI_MAXSTACK, see record.c) */
  unsigned nstart : 2;   /* how many start-up values wait at 'start', or
                            START_COUNTED: more, their count first */
  unsigned state : 3;    /* enum task_state */
  unsigned wake : 2;     /* enum wake_status of the last park */
  unsigned ours : 1;     /* set by tether before every yield */
  unsigned started : 1;  /* task_status:started() was called */
  unsigned reraise : 1;  /* next message handler call is a re-raise */
  unsigned traced : 1;   /* has entries in the trace table */
  unsigned named : 1;    /* spawned with a name (else the name table holds
                            its function) */
};

/* struct task's nstart when a task stages more start-up values than the
   field holds. */
#define START_COUNTED 3

#define TASK_CTX(t) ((t)->scope->ctx)

/*
** A FIFO of parked tasks, linked through their 'node' (wait.c): what every
** primitive blocks on. Waking allocates nothing and calls no Lua, so a
** waker may walk the queue while it wakes.
*/
struct waitq {
  struct queue tasks;
  int count;
  const char *what; /* what its tasks wait on, for tether.task_tree:
                       static (or anchored) text, NULL: not said */
};

enum scope_state { SCOPE_NEW, SCOPE_ACTIVE, SCOPE_EXITED };

/* Why a scope was cancelled; the first cause wins. */
enum cancel_cause {
  CAUSE_NONE,
  CAUSE_EXPLICIT,
  CAUSE_DEADLINE,
  CAUSE_CHILD_ERROR,
  CAUSE_OUTER,
  CAUSE_INTERRUPT,
  CAUSE_WATCHDOG,
  CAUSE_MISNESTING,
  CAUSE_SHUTDOWN
};

struct scope {
  struct queue node;      /* in parent->children */
  struct queue children;  /* active scopes entered directly inside */
  struct queue tasks;     /* tasks whose innermost scope this is */
  struct heap_node timer; /* in the heap while active with a finite deadline */
  struct scope *parent;
  struct task *host;   /* task that entered it */
  struct ctx *ctx;     /* loop it is active in */
  double deadline;     /* absolute; HUGE_VAL for none */
  double delay;        /* move_on_after: deadline = entry time + delay */
  int reason_ref;      /* cancel(reason) text, or LUA_NOREF */
  int fail_reason_ref; /* fail_after reason, or LUA_NOREF */
  unsigned char state; /* enum scope_state */
  unsigned char shield;
  unsigned char cancel_called;
  unsigned char effective; /* cancelled as seen from inside (cached) */
  unsigned char caught;    /* cancelled_caught */
  unsigned char cause;     /* enum cancel_cause */
  unsigned char relative;  /* deadline computed at entry from 'delay' */
  unsigned char fail;      /* fail_after/fail_at: TimeoutError on expiry */
  unsigned char group;     /* the cancel scope of a task group */
};

enum group_state { GROUP_NEW, GROUP_ACTIVE, GROUP_EXITED };

struct group {
  struct scope *scope; /* tg.cancel_scope (user value 1) */
  struct task *host;
  int nchildren;
  int pending_starts;       /* tg:start calls whose child has not started */
  int errors_ref;           /* {errors, tracebacks, tasks} or LUA_NOREF */
  unsigned char state;      /* enum group_state */
  unsigned char waiting;    /* host parked in exit until children finish */
  unsigned char cancelled;  /* body raised Cancelled or host cancelled */
  unsigned char yielded;    /* exit has yielded at least once */
  unsigned char lost_error; /* an error could not be recorded for want of
                               memory: the exit raises "not enough memory" */
};

/* TaskStatus userdata: a tg:start child's handle to report readiness. */
struct task_status {
  int slot;       /* the child's record (see tether__record), */
  lua_Integer id; /* as long as it still runs this task */
};

/*
** tether's handles on a loop. They live apart from the context because a
** host may close the Lua state before its loop ran their close callbacks;
** the last callback frees the block.
*/
#define HUB_HANDLES 4
struct hub {
  uv_check_t tick;  /* runs ready tasks after each poll */
  uv_idle_t spin;   /* active while tasks are ready: poll does not block */
  uv_timer_t timer; /* armed for the earliest deadline */
  uv_async_t post;  /* tether_post from other threads */
  struct ctx *ctx;
  int open; /* handles not yet closed */
};

/* A thread whose task finished, waiting to run the next task. */
struct idle_thread {
  lua_State *L;
  int ref; /* in the thread table */
};

/* One per lua_State: the loop, the run queue, the task records and threads,
   the root scope. */
struct ctx {
  lua_State *L;    /* main thread */
  lua_State *from; /* thread driving the loop, 'from' of lua_resume */
  uv_loop_t *loop; /* NULL outside tether.run, unless attached */
  uv_loop_t own_loop;
  struct hub *hub;    /* tether's handles on 'loop' */
  struct post *posts; /* tether_post callbacks waiting, newest first */
  uv_mutex_t posts_lock;
  int posts_closed;          /* tether_shutdown began: refuse posts */
  int attached;              /* 'loop' belongs to a host (tether_attach) */
  struct queue ready;        /* run queue */
  struct queue batch;        /* the tick's batch: tasks taken from 'ready'
                                and not resumed yet */
  struct queue free_records; /* most recently freed first */
  struct slab **slabs;       /* task records; NULL where one was freed */
  int nslabs;
  int cap_slabs;
  int nholes;                   /* NULL entries in 'slabs' */
  int trim_cursor;              /* tether__trim_pools looks below it next
                                   (0: at the top slab) */
  struct waitq blocked_waiters; /* wait_all_tasks_blocked callers */
  struct heap deadlines;
  struct heap_node watchdog; /* tests only: see core.set_watchdog */
  struct scope root;    /* above the main task; Ctrl+C/watchdog cancel it */
  struct task *current; /* task being resumed, NULL between tasks */
  struct task *main;
  lua_Integer next_id; /* task ids are unique for the life of the state */
  int names_ref;       /* table: each task slot's name (or function) */
  int traces_ref;      /* table: last traceback and error of each task slot */
  int threads_ref;     /* table: every task thread, by thread_ref */
  int threads_top;     /* highest index the thread table has used */
  int threads_free;    /* first free index below it, 0 if none (record.c) */
  int stage_ref;       /* table: start-up values of tasks that have not run
                          yet (see record.c) */
  int stage_top;       /* next free index of the stage table */
  int nstaged;         /* tasks with values in the stage table */
  int nfree_records;   /* records in 'free_records' */
  struct idle_thread *idle; /* idle threads, most recently used last */
  int nidle;
  int cap_idle;
  int class_refs[NCLASSES];        /* metatables of the userdata classes */
  const void *class_mts[NCLASSES]; /* the same, by address */
  int opened;                      /* luaopen_tether_core completed */
  struct queue conns;              /* byte streams' connections, until freed */
  struct queue listeners;          /* open listeners */
  struct queue udps;               /* open UDP sockets */
  struct queue children;           /* child processes libuv has not reaped */
  int spawned;             /* this run started a child: libuv watches SIGCHLD */
  struct queue watchers;   /* open file-system watchers */
  char *scratch;           /* where a stream with nothing buffered reads */
  int sigpipe_held;        /* tether.run keeps SIGPIPE from killing it */
  int tty_mode_set;        /* a terminal's mode was changed */
  int stdio_refs[3];       /* tether.stdin/stdout/stderr streams */
  int error_refs[NERRORS]; /* tables of the error classes */
  const void *error_mts[NERRORS]; /* the same, by address */
  int ntasks;                     /* live tasks */
  int running;                    /* inside tether.run */
  int in_callback;                /* in the tick or posted callbacks */
  int stopping;                   /* main task done: leave uv_run */
  int fatal;               /* tether.run's tick failed; its error is on top of
                     'from' */
  int tick_failed;         /* attached: ticks failed in a row (reported once) */
  double watchdog_seconds; /* 0: off */
  int watchdog_fired;
  int interrupted;         /* Ctrl+C cancelled the run */
  struct sigloop *sigloop; /* this loop in the process's signal registry
                              (NULL until a signal is wanted) */
  int sigrunner;           /* tether.run's Ctrl+C watcher holds SIGINT */
  struct queue sigreceivers[TETHER_NSIG]; /* per signal: its receivers'
                                             links (while 'sigloop') */
  struct mock_clock *clock; /* tether.run_with's clock; NULL: the real one */
  uint64_t idle_since;      /* mock clock: uv_hrtime() when tasks last ran */
  uint64_t clock_started;   /* mock clock: uv_hrtime() when the run began */
  int dump_signal;          /* TETHER_DUMP_SIGNAL while run holds it, else 0 */
  int dump_pending;         /* it arrived: the next tick prints the task tree */
  const char *facade;       /* source prefix of the Lua facade (where.c) */
  int facade_ref;           /* anchors it */
  lua_CFunction pcall, xpcall; /* the base library's, found at opening */
  /* tether.coroutine (coroutine.c): the coroutine library's yield; the
     resumes in progress in which a coroutine is a task's thread; whether the
     scheduler is resuming a task's own thread to reach the coroutine that
     parked, and the wake values waiting on that coroutine */
  lua_CFunction coroutine_yield;
  int nnested;
  int descending;
  int descent_nargs;
  /* luv's loop, watched by tether.run when luv is loaded (luv.c), and the
     table of the luv functions it calls */
  struct luv_bridge *luv;
  int luv_ref;
  struct pool *workers; /* worker threads of this run (NULL until one is
                           needed) */
  double worker_idle;   /* seconds an idle worker thread lives */
};

/* The name table holds, per task slot, the task's name (or the function to
   derive it from). The trace table, written only when a task raises, keeps
   the traceback of its last error and that error (to recognise a re-raise
   of it). */
#define NAME_INDEX(slot)  ((slot) + 1)
#define TRACE_TEXT(slot)  (2 * (slot) + 1)
#define TRACE_ERROR(slot) (2 * (slot) + 2)

/* The clock deadlines use, in seconds: monotonic, or the run's MockClock
   (clock.c). */
#define tether__time(c)                                                        \
  ((c)->clock == NULL ? (double)uv_hrtime() * 1e-9                             \
                      : tether__clock_now((c)->clock))

/* Whether the value at 'idx' can be called (a function or has __call). */
static inline int tether__is_callable (lua_State *L, int idx) {
  if (lua_isfunction(L, idx))
    return 1;
  if (luaL_getmetafield(L, idx, "__call") == LUA_TNIL)
    return 0;
  lua_pop(L, 1);
  return 1;
}

/*
** Registration. Each file adds its own functions and classes to the module
** with an 'open' function called by luaopen_tether_core with the stack
** [ctx, module]; every function gets the context as upvalue 1.
*/
typedef void (*tether_open_fn)(lua_State *L, struct ctx *c);

/* A userdata class: 'metamethods' go into its metatable; 'methods' are
   found through __index: the methods table, or with 'index' set, that
   function with the context and the methods table as upvalues 1 and 2 (for
   classes that also have fields). */
struct class_def {
  enum tether_class cls;
  const char *name;
  const luaL_Reg *methods;
  const luaL_Reg *metamethods;
  lua_CFunction index;
};

/* core.c */
TETHER__HIDDEN struct ctx *tether__ctx (lua_State *L);
TETHER__HIDDEN void tether__add_functions (lua_State *L, const luaL_Reg *funcs);
TETHER__HIDDEN void tether__add_class (lua_State *L, struct ctx *c,
                                       const struct class_def *def, int nup);
TETHER__HIDDEN void *tether__test_class (lua_State *L, int idx, struct ctx *c,
                                         enum tether_class cls);
TETHER__HIDDEN void *tether__check_self (lua_State *L, int idx, struct ctx *c,
                                         enum tether_class cls,
                                         const char *fname);
TETHER__HIDDEN void tether__set_metatable (lua_State *L, struct ctx *c,
                                           enum tether_class cls);
TETHER__HIDDEN void tether__push_methods (lua_State *L, struct ctx *c,
                                          enum tether_class cls);

/* errors.c */
TETHER__HIDDEN void tether__open_errors (lua_State *L, struct ctx *c);
TETHER__HIDDEN int tether__is_error (lua_State *L, int idx, const struct ctx *c,
                                     enum error_class cls);
TETHER__HIDDEN void tether__set_error_class (lua_State *L, int idx,
                                             const struct ctx *c,
                                             enum error_class cls);
TETHER__HIDDEN void tether__new_error (lua_State *L, const struct ctx *c,
                                       enum error_class cls);
TETHER__HIDDEN int tether__fname_error (lua_State *L, const char *fname,
                                        const char *fmt, ...);
TETHER__HIDDEN int tether__raise (lua_State *L, const struct ctx *c,
                                  enum error_class cls, const char *fname,
                                  const char *fmt, ...);
TETHER__HIDDEN int tether__raise_wake_error (lua_State *L, const struct ctx *c,
                                             const struct wake_error *e);

/* What a task waits on while libuv works on a request (wait.c). */
struct request_wait {
  struct waitq waiting; /* the task */
  int status;           /* what the request's callback reported */
  unsigned char done, abandoned;
};

/* wait.c */
TETHER__HIDDEN void tether__waitq_init (struct waitq *q);
TETHER__HIDDEN void tether__waitq_init_as (struct waitq *q, const char *what);
TETHER__HIDDEN const char *tether__waitq_what (const struct task *t);
TETHER__HIDDEN struct task *tether__waitq_first (const struct waitq *q);
TETHER__HIDDEN int tether__wait (lua_State *L, struct task *t, struct waitq *q,
                                 lua_KContext kctx, lua_KFunction k);
TETHER__HIDDEN void tether__waitq_wake (struct task *t, enum wake_status how);
TETHER__HIDDEN void tether__waitq_raise (struct task *t,
                                         const struct wake_error *e);
TETHER__HIDDEN int tether__waitq_wake_all (struct waitq *q);
TETHER__HIDDEN void tether__request_init (struct request_wait *w);
TETHER__HIDDEN int tether__request_done (struct request_wait *w, int status);
TETHER__HIDDEN int tether__request_abandon (struct request_wait *w);

/* loop.c */
TETHER__HIDDEN int tether__open_hub (struct ctx *c, int attached);
TETHER__HIDDEN void tether__close_hub (struct ctx *c);
TETHER__HIDDEN void tether__hub_handles (struct hub *hub,
                                         uv_handle_t **handles);
TETHER__HIDDEN void tether__begin (struct ctx *c);
TETHER__HIDDEN void tether__abandon (struct ctx *c, lua_State *L);
TETHER__HIDDEN void tether__schedule (struct ctx *c, struct task *t);
TETHER__HIDDEN int tether__add_deadline (struct ctx *c, struct heap_node *d,
                                         double when);
TETHER__HIDDEN void tether__remove_deadline (struct ctx *c,
                                             struct heap_node *d);
TETHER__HIDDEN void tether__open_loop (lua_State *L, struct ctx *c);

/* embed.c */
TETHER__HIDDEN void tether__on_post (uv_async_t *h);
TETHER__HIDDEN void tether__report_error (lua_State *L, const char *what);
TETHER__HIDDEN void tether__report (struct ctx *c, struct task *t);
TETHER__HIDDEN void tether__drop_posts (struct ctx *c);

/* record.c */
TETHER__HIDDEN struct task *tether__spawn (lua_State *L, struct ctx *c,
                                           int nargs, struct scope *scope,
                                           struct group *group);
TETHER__HIDDEN void tether__bind_thread (struct ctx *c, struct task *t);
TETHER__HIDDEN void tether__release (lua_State *L, struct ctx *c,
                                     struct task *t);
TETHER__HIDDEN void tether__abandon_tasks (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__trim_pools (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__free_records (struct ctx *c);
TETHER__HIDDEN struct task *tether__record (struct ctx *c, int slot,
                                            lua_Integer id);
TETHER__HIDDEN struct task *tether__live_record (struct ctx *c, int slot);
TETHER__HIDDEN int tether__nslots (const struct ctx *c);
TETHER__HIDDEN struct task *tether__thread_task (struct ctx *c, lua_State *L);

/* invariants.c: checks of the scheduler's bookkeeping (TETHER_DEBUG builds
   only; aborts with a message when one fails) */
#ifdef TETHER_DEBUG
TETHER__HIDDEN void tether__check_invariants (struct ctx *c);
#else
#define tether__check_invariants(c) ((void)0)
#endif

/* task.c */
TETHER__HIDDEN void tether__open_task (lua_State *L, struct ctx *c);
TETHER__HIDDEN int tether__task_entry (lua_State *L);
TETHER__HIDDEN struct task *tether__current (lua_State *L, struct ctx *c,
                                             const char *fname);
TETHER__HIDDEN struct task *tether__check_task (lua_State *L, struct ctx *c,
                                                const char *fname);
TETHER__HIDDEN void tether__resume (struct ctx *c, struct task *t);
TETHER__HIDDEN int tether__park (lua_State *L, struct task *t,
                                 tether_abort_fn abort, lua_KContext kctx,
                                 lua_KFunction k);
TETHER__HIDDEN int tether__reschedule (lua_State *L, struct task *t,
                                       lua_KContext kctx, lua_KFunction k);
TETHER__HIDDEN void tether__wake (struct task *t, enum wake_status how);
TETHER__HIDDEN void tether__abort (struct task *t);
TETHER__HIDDEN void tether__check_wake (lua_State *L, struct task *t);
TETHER__HIDDEN int tether__checkpoint_k (lua_State *L, int status,
                                         lua_KContext k);
TETHER__HIDDEN int tether__scheduled_k (lua_State *L, int status,
                                        lua_KContext k);
TETHER__HIDDEN int tether__woken_k (lua_State *L, int status,
                                    lua_KContext base);
TETHER__HIDDEN int tether__msgh (lua_State *L);
TETHER__HIDDEN void tether__reraise (lua_State *L, struct task *t);
TETHER__HIDDEN struct task *
tether__resumed (lua_State *L, int base, lua_KContext kctx, lua_KFunction k);
TETHER__HIDDEN void tether__push_name (lua_State *L, struct task *t);
TETHER__HIDDEN void tether__push_traceback (lua_State *L, struct task *t);
TETHER__HIDDEN const char *tether__sleep_what (const struct task *t);

/* scope.c */
TETHER__HIDDEN void tether__scope_init (struct scope *s, double deadline,
                                        int shield);
TETHER__HIDDEN void tether__scope_enter (lua_State *L, struct task *t,
                                         struct scope *s);
TETHER__HIDDEN int tether__scope_exit (lua_State *L, struct task *t,
                                       struct scope *s, int status);
TETHER__HIDDEN void tether__cancel (struct scope *s, enum cancel_cause cause);
TETHER__HIDDEN void tether__propagate (struct scope *s);
TETHER__HIDDEN void tether__task_set_scope (struct task *t, struct scope *s);
TETHER__HIDDEN void tether__push_cancelled (lua_State *L, struct task *t);
TETHER__HIDDEN int tether__raise_cancelled (lua_State *L, struct task *t);
TETHER__HIDDEN struct scope *tether__new_scope (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__open_scope (lua_State *L, struct ctx *c);

/* sigstate.c: the process-wide signal state (see there) */
typedef void (*tether_sigdeliver_fn)(void *data, int signum, unsigned count);
TETHER__HIDDEN int tether__sigloop_open (uv_loop_t *loop,
                                         tether_sigdeliver_fn deliver,
                                         void *data, struct sigloop **out);
TETHER__HIDDEN void tether__sigloop_close (struct sigloop *l);
TETHER__HIDDEN int tether__sig_hold (struct sigloop *l, int signum, int runner);
TETHER__HIDDEN unsigned tether__sig_release (struct sigloop *l, int signum,
                                             int runner, int *restored);
TETHER__HIDDEN void tether__sig_drain (struct sigloop *l);
TETHER__HIDDEN int tether__sig_ignored (int signum);
TETHER__HIDDEN void tether__sig_interrupted (struct sigloop *l);
TETHER__HIDDEN void tether__sig_block_all (sigset_t *old);
TETHER__HIDDEN void tether__sig_unblock (const sigset_t *old);
TETHER__HIDDEN void tether__sig_spawning (void);
TETHER__HIDDEN void tether__sig_spawned (void);

/* signal.c */
TETHER__HIDDEN int tether__check_signal (lua_State *L, int idx,
                                         const char *fname, int catchable);
TETHER__HIDDEN void tether__hold_sigpipe (struct ctx *c);
TETHER__HIDDEN int tether__dump_signal_from_env (lua_State *L);
TETHER__HIDDEN void tether__signals_start (struct ctx *c);
TETHER__HIDDEN void tether__signals_stop (struct ctx *c);
TETHER__HIDDEN void tether__open_signal (lua_State *L, struct ctx *c);

/* park.c */
TETHER__HIDDEN void tether__open_park (lua_State *L, struct ctx *c);

/* bytestream.c */
struct stream;
TETHER__HIDDEN void tether__open_bytestream (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__streams_stop (struct ctx *c);
TETHER__HIDDEN int tether__raise_uv (lua_State *L, struct ctx *c, int err,
                                     const char *fname, const char *op);
TETHER__HIDDEN struct stream *
tether__socket_stream (lua_State *L, struct ctx *c, const char *kind, int *err);
TETHER__HIDDEN uv_stream_t *tether__stream_handle (struct stream *s);
TETHER__HIDDEN void tether__stream_started (struct stream *s);
TETHER__HIDDEN void tether__stream_abort (struct stream *s);
TETHER__HIDDEN struct stream *tether__fd_stream (lua_State *L, struct ctx *c,
                                                 int fd, int shared, int *err);
TETHER__HIDDEN int tether__stream_open (const struct stream *s);
TETHER__HIDDEN int tether__stream_fd (struct stream *s);

/* stdio.c */
TETHER__HIDDEN void tether__open_stdio (lua_State *L, struct ctx *c);

/* connect.c */
TETHER__HIDDEN void tether__on_connect (uv_connect_t *req, int status);
TETHER__HIDDEN uv_connect_t *tether__connect_request (lua_State *L,
                                                      struct ctx *c,
                                                      const char *kind,
                                                      const char *fname);
TETHER__HIDDEN int tether__connect_wait (lua_State *L, struct task *t, int err);

/* tcp.c */
TETHER__HIDDEN void tether__open_tcp (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__push_address (lua_State *L,
                                          const struct sockaddr *sa);

/* listener.c */
#define LISTEN_MAX 8 /* listening sockets of one listener */
struct listener;
struct stat;
TETHER__HIDDEN void tether__open_listener (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__listeners_stop (struct ctx *c);
TETHER__HIDDEN struct listener *
tether__new_listener (lua_State *L, struct ctx *c, const char *kind);
TETHER__HIDDEN uv_stream_t *tether__listener_socket (struct listener *l,
                                                     int *err);
TETHER__HIDDEN uv_stream_t *tether__listener_first (struct listener *l);
TETHER__HIDDEN int tether__listener_listen (uv_stream_t *sock, int backlog);
TETHER__HIDDEN void tether__listener_bound_file (struct listener *l,
                                                 const char *path,
                                                 const struct stat *st);
TETHER__HIDDEN int tether__listener_open (lua_State *L, struct listener *l,
                                          int port, int err, const char *fname);

/* udp.c */
TETHER__HIDDEN void tether__open_udp (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__udps_stop (struct ctx *c);

/* process.c */
TETHER__HIDDEN void tether__open_process (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__processes_stop (struct ctx *c);

/* unix.c */
TETHER__HIDDEN void tether__open_unix (lua_State *L, struct ctx *c);

/* clock.c */
TETHER__HIDDEN double tether__clock_now (const struct mock_clock *m);
TETHER__HIDDEN int tether__clock_autojump (struct ctx *c, int ran);
TETHER__HIDDEN double tether__clock_timer_ms (struct ctx *c);
TETHER__HIDDEN void tether__open_clock (lua_State *L, struct ctx *c);

/* event.c, stream.c */
TETHER__HIDDEN void tether__open_event (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__open_stream (lua_State *L, struct ctx *c);

/* A growing byte buffer of transferred values (transfer.c). */
struct tether_buffer {
  char *data;
  size_t len, cap, pos; /* pos: where unpacking reads next */
};

/* transfer.c */
TETHER__HIDDEN void tether__buffer_free (struct tether_buffer *b);
TETHER__HIDDEN void tether__pack (lua_State *L, int first, int n,
                                  struct tether_buffer *b, const char *fname,
                                  const char *what, int index0);
TETHER__HIDDEN int tether__unpack (lua_State *L, struct tether_buffer *b);

/* to_thread.c */
TETHER__HIDDEN void tether__open_to_thread (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__workers_stop (struct ctx *c);
TETHER__HIDDEN void tether__workers_close (struct ctx *c);

/* group.c */
TETHER__HIDDEN void tether__open_group (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__task_finished (lua_State *L, struct task *t,
                                           int ok);
TETHER__HIDDEN const char *tether__group_what (const struct task *t);

/* where.c */
TETHER__HIDDEN int tether__push_where (lua_State *L, const struct ctx *c,
                                       lua_State *co, int level);
TETHER__HIDDEN void tether__open_where (lua_State *L, struct ctx *c);

/* uncaught.c */
TETHER__HIDDEN int tether__raise_main_error (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__push_main_traceback (lua_State *L, struct task *t);
TETHER__HIDDEN void tether__open_uncaught (lua_State *L, struct ctx *c);

/* tasktree.c */
TETHER__HIDDEN void tether__open_tasktree (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__dump_task_tree (lua_State *L, struct ctx *c);

/* fsreq.c: file-system requests a task waits for */
struct fd_owner {
  int fd;       /* -1 when none */
  int inflight; /* requests running on it */
  int closing;  /* its file is closed: close it after the last request */
};

struct fs_req {
  union {
    uv_fs_t fs;
    uv_work_t work;
  } u; /* first: libuv's callbacks cast */
  struct request_wait wait;
  struct fd_owner *owner; /* the descriptor it works on, or NULL */
  char *buf;              /* its data (a read's block, a write's copy) */
  size_t len;
  int is_fs;         /* a uv_fs_t (else a job, see wholefile.c) */
  int started;       /* handed to libuv, which will call back */
  int64_t value;     /* a job's result */
  char *path, *temp; /* a job's paths */
  int flags, mode;   /* a job's options */
  uv_dir_t dir;      /* a finished readdir's entries (see fsdir.c) */
};
TETHER__HIDDEN void tether__open_fsreq (lua_State *L, struct ctx *c);
TETHER__HIDDEN struct fs_req *tether__fs_request (lua_State *L, struct ctx *c,
                                                  size_t buflen, int is_fs);
TETHER__HIDDEN struct fs_req *tether__fs_box (lua_State *L, int idx);
TETHER__HIDDEN const char *tether__fs_check_path (lua_State *L, int idx,
                                                  const char *fname,
                                                  const char *what);
TETHER__HIDDEN void tether__fs_drop (lua_State *L, int idx);
TETHER__HIDDEN void tether__fs_free (struct fs_req *r);
TETHER__HIDDEN void tether__fs_attach (struct fs_req *r, struct fd_owner *o);
TETHER__HIDDEN void tether__fd_release (struct fd_owner *o);
TETHER__HIDDEN void tether__fs_on_done (uv_fs_t *req);
TETHER__HIDDEN void tether__fs_on_job_done (uv_work_t *req, int status);
TETHER__HIDDEN int tether__fs_wait (lua_State *L, struct task *t, int box,
                                    int err, int shielded, lua_KContext kctx,
                                    lua_KFunction k);
TETHER__HIDDEN struct fs_req *tether__fs_woken (lua_State *L, struct task *t,
                                                int box);
TETHER__HIDDEN int tether__fs_raise (lua_State *L, struct ctx *c, int err,
                                     const char *op, const char *target);
TETHER__HIDDEN int tether__fs_cancelled (lua_State *L, struct task *t,
                                         lua_CFunction again);

/* file.c, fs.c, wholefile.c, fsdir.c, fswatch.c */
TETHER__HIDDEN void tether__open_file (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__open_fs (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__open_wholefile (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__open_fsdir (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__open_fswatch (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__watchers_stop (struct ctx *c);

/* coroutine.c */
TETHER__HIDDEN void tether__open_coroutine (lua_State *L, struct ctx *c);
TETHER__HIDDEN int tether__coroutine_waits (lua_State *co, struct ctx *c);
TETHER__HIDDEN lua_State *tether__descent (struct ctx *c, struct task *t,
                                           int *nargs);

/* luv.c */
TETHER__HIDDEN void tether__luv_start (lua_State *L, struct ctx *c);
TETHER__HIDDEN void tether__luv_stop (struct ctx *c);

/* errors.c, for the error of a blocking call in a plain coroutine */
TETHER__HIDDEN const char *tether__caller_position (lua_State *L);

#endif
