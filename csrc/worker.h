/*
** worker.h
** Worker threads: the pool (worker.c), a worker's own lua_State
** (worker_state.c) and the loop's side of tether.to_thread (to_thread.c)
** share these structures. Everything a worker thread and the loop thread
** both touch is guarded by the pool's lock, except 'cancel', which a
** worker reads with an atomic load while it runs Lua code.
*/

#ifndef TETHER_WORKER_H
#define TETHER_WORKER_H

#include "internal.h"

/* Where a job is, as the worker sees it (under the pool's lock). */
enum job_state {
  JOB_NEW,     /* not submitted yet */
  JOB_QUEUED,  /* in pool->queue */
  JOB_RUNNING, /* a worker runs it */
  JOB_CALLING, /* its worker waits for tether.worker.call's reply */
  JOB_DONE     /* finished; its worker has let go of it */
};

/* What the loop has seen of a job (loop thread only). */
enum job_seen { SEEN_NOTHING, SEEN_CALL, SEEN_DONE };

/* How a job ended. */
enum job_outcome { OUTCOME_OK, OUTCOME_ERROR, OUTCOME_CANCELLED };

/* tether.to_thread's cancel option. */
enum cancel_mode { CANCEL_INTERRUPT, CANCEL_WAIT, CANCEL_ABANDON };

/* The reply to tether.worker.call. */
enum reply_status {
  REPLY_OK,        /* the values follow */
  REPLY_ERROR,     /* message and traceback follow */
  REPLY_MISUSE,    /* a message follows */
  REPLY_CANCELLED, /* the caller was cancelled, or is gone */
  REPLY_NOMEM      /* the reply could not be packed */
};

/* One call of tether.to_thread: a userdata of the caller's state, anchored
   in the pool's table of jobs from submission until the loop has seen it
   end. */
struct job {
  struct waitq waiting; /* the to_thread caller (first member: abort) */
  struct queue node;    /* in pool->queue or pool->done */
  struct pool *pool;
  struct worker *worker;        /* while it runs */
  struct tether_buffer fn;      /* string.dump of the function, or its name */
  struct tether_buffer args;    /* the arguments */
  struct tether_buffer results; /* results; or message and traceback */
  struct tether_buffer call;    /* worker.call's name and arguments, then
                                   its reply's values */
  int by_name;                  /* 'fn' is "module.function" */
  int cancel;                   /* the caller was cancelled (atomic) */
  unsigned char mode;           /* enum cancel_mode */
  unsigned char state;          /* enum job_state */
  unsigned char seen;           /* enum job_seen */
  unsigned char outcome;        /* enum job_outcome */
  unsigned char reply;          /* enum reply_status */
  unsigned char abandoned;      /* its caller left ("abandon") */
  unsigned char anchored;       /* in pool->jobs_ref */
};

/* A thread of the pool with its own lua_State. */
struct worker {
  struct queue node; /* pool->workers while it runs, then pool->exited */
  struct pool *pool;
  uv_thread_t thread;
  uv_cond_t replied; /* tether.worker.call's reply arrived */
  lua_State *L;      /* NULL if it could not be made */
  struct job *job;   /* the job it runs */
};

/* The workers of one loop, made when a run first needs one, ended (every
   thread joined) when the run ends or the host shuts tether down. */
struct pool {
  uv_mutex_t lock;
  uv_cond_t work;    /* idle workers wait here for a job */
  uv_cond_t posted;  /* a job was put on 'done' (for tether__workers_stop) */
  uv_async_t *async; /* wakes the loop for 'done'; freed by its close */
  struct ctx *ctx;
  struct queue queue;   /* jobs waiting for a worker */
  struct queue done;    /* jobs that ended or call, for the loop */
  struct queue workers; /* threads that run */
  struct queue exited;  /* threads that ended, to be joined */
  int nthreads;         /* in 'workers' */
  int nidle;            /* idle threads no queued job has claimed */
  int njobs;            /* submitted, not yet seen ending by the loop */
  int nqueued;          /* jobs in 'queue' (also read without the lock) */
  int quit;             /* the pool ends: idle threads leave */
  uint64_t idle_ns;     /* an idle thread ends after this long */
  char *path, *cpath;   /* the caller's package.path and package.cpath */
  int jobs_ref;         /* registry: job address -> job userdata */
  int exposed_ref;      /* registry: tether.worker.expose's functions */
  int stopping;         /* the run ends: calls are refused, nobody waits */
};

/* worker.c */
TETHER__HIDDEN int tether__pool_submit (struct pool *p, struct job *j);
TETHER__HIDDEN void tether__pool_call (struct pool *p, struct worker *w,
                                       struct job *j);
TETHER__HIDDEN void tether__pool_interrupt (struct pool *p, struct job *j);
TETHER__HIDDEN void tether__pool_reply (struct pool *p, struct job *j,
                                        enum reply_status status);
TETHER__HIDDEN struct pool *tether__pool_new (struct ctx *c, uv_loop_t *loop,
                                              uv_async_cb on_async, int *err);
TETHER__HIDDEN int tether__pool_take_done (struct pool *p, struct queue *into,
                                           int wait);
TETHER__HIDDEN void tether__pool_forget (struct pool *p, struct job *j);
TETHER__HIDDEN void tether__pool_end (struct pool *p);

/* worker_state.c */
TETHER__HIDDEN lua_State *tether__worker_state (struct worker *w);
TETHER__HIDDEN void tether__worker_run (struct worker *w, struct job *j);
TETHER__HIDDEN void tether__worker_interrupt (lua_State *L);

#endif
