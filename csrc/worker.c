/*
** worker.c
** The pool of worker threads of one loop: tether's own threads (never
** libuv's thread pool, which files and name lookups use), each with a
** lua_State that lives as long as the thread. Threads start when a job
** finds none idle, take jobs FIFO, and end after idling for a while; the
** loop joins them. A job that ends, or calls tether.worker.call, goes on
** the 'done' list and wakes the loop through the pool's one async handle.
*/

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

static void worker_main (void *arg);

/* How many times an idle worker yields its CPU, looking for a job, before
   it sleeps on the condition variable. */
#define SPIN_CHECKS 50

/* With the lock held: sends 'j' to the loop. */
static void post_locked (struct pool *p, struct job *j) {
  queue_insert_tail(&p->done, &j->node);
  uv_cond_signal(&p->posted);
  uv_async_send(p->async);
}

/* From w's thread: sends the tether.worker.call of 'j' (its name and
   arguments in j->call) to the loop, and waits for the reply. */
void tether__pool_call (struct pool *p, struct worker *w, struct job *j) {
  uv_mutex_lock(&p->lock);
  j->state = JOB_CALLING;
  post_locked(p, j);
  while (j->state == JOB_CALLING)
    uv_cond_wait(&w->replied, &p->lock);
  uv_mutex_unlock(&p->lock);
}

/* Starts a thread for the pool; 0 or a libuv error. */
static int start_worker (struct pool *p) {
  struct worker *w = calloc(1, sizeof *w);
  sigset_t mask;
  int err;
  if (w == NULL)
    return UV_ENOMEM;
  w->pool = p;
  err = uv_cond_init(&w->replied);
  if (err < 0) {
    free(w);
    return err;
  }
  queue_insert_tail(&p->workers, &w->node);
  tether__sig_block_all(&mask);
  err = uv_thread_create(&w->thread, worker_main, w);
  tether__sig_unblock(&mask);
  if (err < 0) {
    queue_remove(&w->node);
    uv_cond_destroy(&w->replied);
    free(w);
    return err;
  }
  p->nthreads++;
  return 0;
}

/*
** Queues 'j' for a worker: wakes an idle one, or starts a thread. Returns 0,
** or a libuv error when no thread could be started and none runs (then the
** job is not queued).
*/
int tether__pool_submit (struct pool *p, struct job *j) {
  int err = 0;
  uv_mutex_lock(&p->lock);
  if (p->nidle > 0) {
    p->nidle--;
    uv_cond_signal(&p->work);
  }
  else {
    err = start_worker(p);
    if (err < 0 && p->nthreads > 0)
      err = 0; /* a running thread takes it when it is done */
  }
  if (err == 0) {
    j->state = JOB_QUEUED;
    queue_insert_tail(&p->queue, &j->node);
    __atomic_store_n(&p->nqueued, p->nqueued + 1, __ATOMIC_RELEASE);
    p->njobs++;
  }
  uv_mutex_unlock(&p->lock);
  return err;
}

/* The caller of 'j' was cancelled: check_cancelled raises from now on, and
   under "interrupt" the worker raises at its next Lua instruction. */
void tether__pool_interrupt (struct pool *p, struct job *j) {
  uv_mutex_lock(&p->lock);
  __atomic_store_n(&j->cancel, 1, __ATOMIC_RELEASE);
  if (j->mode == CANCEL_INTERRUPT &&
      (j->state == JOB_RUNNING || j->state == JOB_CALLING))
    tether__worker_interrupt(j->worker->L);
  uv_mutex_unlock(&p->lock);
}

/* Answers the tether.worker.call of 'j' (its values are in j->call). */
void tether__pool_reply (struct pool *p, struct job *j,
                         enum reply_status status) {
  uv_mutex_lock(&p->lock);
  j->reply = (unsigned char)status;
  j->state = JOB_RUNNING;
  uv_cond_signal(&j->worker->replied);
  uv_mutex_unlock(&p->lock);
}

/*
** The state is closing with 'j' still out (lua_close without the end of the
** run or tether_shutdown): stops it, refusing its calls, and waits until
** its worker has let go of it, so that its memory can go.
*/
void tether__pool_forget (struct pool *p, struct job *j) {
  uv_mutex_lock(&p->lock);
  __atomic_store_n(&j->cancel, 1, __ATOMIC_RELEASE);
  if (j->mode == CANCEL_INTERRUPT && j->state == JOB_RUNNING)
    tether__worker_interrupt(j->worker->L);
  for (;;) {
    if (j->state == JOB_CALLING) { /* nobody will answer but us */
      queue_remove(&j->node);      /* from 'done', if it is there */
      j->reply = REPLY_CANCELLED;
      j->state = JOB_RUNNING;
      uv_cond_signal(&j->worker->replied);
    }
    if (j->state == JOB_DONE || j->state == JOB_NEW)
      break;
    uv_cond_wait(&p->posted, &p->lock);
  }
  if (j->state == JOB_DONE) {
    queue_remove(&j->node);
    p->njobs--;
  }
  uv_mutex_unlock(&p->lock);
}

/* With the lock held: waits for a job; NULL when the thread should end
   (the pool ends, or it idled for p->idle_ns). */
static struct job *next_job (struct pool *p) {
  struct job *j;
  if (queue_empty(&p->queue) && !p->quit) {
    /* A program that calls to_thread in a loop sends the next job within
       microseconds: look for it a little before sleeping. */
    int i;
    uv_mutex_unlock(&p->lock);
    for (i = 0;
         i < SPIN_CHECKS && !__atomic_load_n(&p->nqueued, __ATOMIC_ACQUIRE);
         i++)
      sched_yield();
    uv_mutex_lock(&p->lock);
  }
  while (queue_empty(&p->queue) && !p->quit) {
    if (uv_cond_timedwait(&p->work, &p->lock, p->idle_ns) == UV_ETIMEDOUT &&
        queue_empty(&p->queue) && !p->quit) {
      p->nidle--; /* nobody claimed this thread: it ends */
      return NULL;
    }
  }
  if (queue_empty(&p->queue))
    return NULL;
  j = queue_data(queue_head(&p->queue), struct job, node);
  queue_remove(&j->node);
  __atomic_store_n(&p->nqueued, p->nqueued - 1, __ATOMIC_RELEASE);
  return j;
}

static void worker_main (void *arg) {
  struct worker *w = arg;
  struct pool *p = w->pool;
  struct job *j;
  lua_State *L = tether__worker_state(w);
  uv_mutex_lock(&p->lock);
  w->L = L;
  while ((j = next_job(p)) != NULL) {
    j->state = JOB_RUNNING;
    j->worker = w;
    w->job = j;
    if (L != NULL && j->mode == CANCEL_INTERRUPT && j->cancel)
      tether__worker_interrupt(L);
    uv_mutex_unlock(&p->lock);
    tether__worker_run(w, j);
    uv_mutex_lock(&p->lock);
    if (L != NULL)
      lua_sethook(L, NULL, 0, 0);
    j->state = JOB_DONE;
    j->worker = NULL;
    w->job = NULL;
    p->nidle++;
    post_locked(p, j);
  }
  w->L = NULL;
  queue_remove(&w->node);
  queue_insert_tail(&p->exited, &w->node);
  p->nthreads--;
  uv_cond_signal(&p->posted);
  uv_async_send(p->async);
  uv_mutex_unlock(&p->lock);
  if (L != NULL)
    lua_close(L);
}

/* Joins the threads that ended. */
static void join_exited (struct pool *p) {
  struct queue ended;
  queue_init(&ended);
  uv_mutex_lock(&p->lock);
  queue_move_all(&p->exited, &ended);
  uv_mutex_unlock(&p->lock);
  while (!queue_empty(&ended)) {
    struct worker *w = queue_data(queue_head(&ended), struct worker, node);
    queue_remove(&w->node);
    uv_thread_join(&w->thread);
    uv_cond_destroy(&w->replied);
    free(w);
  }
}

/*
** Moves the jobs the workers posted into 'into' and joins threads that
** ended. With 'wait', first blocks until something was posted or no job
** is left. Returns the number of jobs not yet seen ending.
*/
int tether__pool_take_done (struct pool *p, struct queue *into, int wait) {
  int njobs;
  uv_mutex_lock(&p->lock);
  while (wait && queue_empty(&p->done) && p->njobs > 0)
    uv_cond_wait(&p->posted, &p->lock);
  queue_move_all(&p->done, into);
  njobs = p->njobs;
  uv_mutex_unlock(&p->lock);
  join_exited(p);
  return njobs;
}

static char *copy_string (lua_State *L, const char *table, const char *key) {
  const char *s;
  char *copy = NULL;
  lua_getglobal(L, table);
  if (lua_istable(L, -1) && lua_getfield(L, -1, key) == LUA_TSTRING) {
    s = lua_tostring(L, -1);
    copy = malloc(strlen(s) + 1);
    if (copy != NULL)
      strcpy(copy, s);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return copy;
}

static void free_pool (struct pool *p) {
  free(p->path);
  free(p->cpath);
  free(p);
}

static void on_async_closed (uv_handle_t *h) {
  free(h);
}

/*
** [-0, +0, m] A pool for 'loop'; 'on_async' runs on the loop when jobs are
** posted. The worker states get L's package.path and package.cpath.
** NULL with *err set when a libuv resource could not be made.
*/
struct pool *tether__pool_new (struct ctx *c, uv_loop_t *loop,
                               uv_async_cb on_async, int *err) {
  struct pool *p = calloc(1, sizeof *p);
  *err = UV_ENOMEM;
  if (p == NULL)
    return NULL;
  p->path = copy_string(c->L, "package", "path");
  p->cpath = copy_string(c->L, "package", "cpath");
  p->async = malloc(sizeof *p->async);
  if (p->async == NULL)
    goto fail;
  if ((*err = uv_mutex_init(&p->lock)) < 0)
    goto fail;
  if ((*err = uv_cond_init(&p->work)) < 0)
    goto fail_work;
  if ((*err = uv_cond_init(&p->posted)) < 0)
    goto fail_posted;
  if ((*err = uv_async_init(loop, p->async, on_async)) < 0)
    goto fail_async;
  p->async->data = p;
  if (c->attached)
    uv_unref((uv_handle_t *)p->async);
  p->ctx = c;
  queue_init(&p->queue);
  queue_init(&p->done);
  queue_init(&p->workers);
  queue_init(&p->exited);
  p->jobs_ref = p->exposed_ref = LUA_NOREF;
  return p;
fail_async:
  uv_cond_destroy(&p->posted);
fail_posted:
  uv_cond_destroy(&p->work);
fail_work:
  uv_mutex_destroy(&p->lock);
fail:
  free(p->async);
  free_pool(p);
  return NULL;
}

/* Ends the pool once no job is left: idle threads leave, every thread is
   joined (their states closed), the async handle is closed. */
void tether__pool_end (struct pool *p) {
  uv_mutex_lock(&p->lock);
  p->quit = 1;
  uv_cond_broadcast(&p->work);
  while (p->nthreads > 0)
    uv_cond_wait(&p->posted, &p->lock);
  uv_mutex_unlock(&p->lock);
  join_exited(p);
  uv_close((uv_handle_t *)p->async, on_async_closed);
  uv_cond_destroy(&p->posted);
  uv_cond_destroy(&p->work);
  uv_mutex_destroy(&p->lock);
  free_pool(p);
}
