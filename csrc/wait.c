/*
** wait.c
** The wait queue every primitive blocks on: a FIFO of parked tasks with its
** length. A task parks at the back and is withdrawn by cancellation in any
** position; a waker takes tasks from the front (or walks the queue) and
** decides each one's outcome: values it pushed, or an error chosen from a
** static description.
**
** Waking allocates nothing and calls no Lua: a waker may walk a queue and
** wake as it goes without a finalizer (run by an allocation) changing the
** queue under it. The error a woken task raises is built by the task itself,
** in its continuation.
*/

#include "internal.h"

void tether__waitq_init (struct waitq *q) {
  tether__waitq_init_as(q, NULL);
}

/* An empty queue whose tasks wait on 'what' (text that outlives the queue:
   tether.task_tree shows it for each of them). */
void tether__waitq_init_as (struct waitq *q, const char *what) {
  queue_init(&q->tasks);
  q->count = 0;
  q->what = what;
}

/* The task parked longest in 'q', or NULL. */
struct task *tether__waitq_first (const struct waitq *q) {
  if (q->count == 0)
    return NULL;
  return queue_data(queue_head(&q->tasks), struct task, node);
}

/* Cancellation withdraws a task from its queue, wherever it is. */
static int waitq_abort (struct task *t) {
  struct waitq *q = t->wait_data;
  queue_remove(&t->node);
  q->count--;
  return 1;
}

/* What a task parked in a wait queue waits on; NULL if it is not in one. */
const char *tether__waitq_what (const struct task *t) {
  const struct waitq *q = t->wait_data;
  if (t->abort != waitq_abort)
    return NULL;
  return q->what != NULL ? q->what : "a wait queue";
}

/* Parks the running task at the back of 'q' (see tether__park). */
int tether__wait (lua_State *L, struct task *t, struct waitq *q,
                  lua_KContext kctx, lua_KFunction k) {
  queue_insert_tail(&q->tasks, &t->node);
  q->count++;
  t->wait_data = q;
  return tether__park(L, t, waitq_abort, kctx, k);
}

/* Takes 't' out of its queue and queues it to run: WAKE_OK with the values
   the waker pushed on its stack (t->nresume of them), or WAKE_ERROR with the
   error value on top of its stack. */
void tether__waitq_wake (struct task *t, enum wake_status how) {
  struct waitq *q = t->wait_data;
  q->count--;
  tether__wake(t, how);
}

/* Takes 't' out of its queue; it raises the error 'e' describes. */
void tether__waitq_raise (struct task *t, const struct wake_error *e) {
  struct waitq *q = t->wait_data;
  q->count--;
  tether__wake(t, WAKE_RAISE);
  t->wait_data = (void *)e; /* read by tether__check_wake */
}

/* Wakes every task of 'q', oldest first, with no values; returns how many. */
int tether__waitq_wake_all (struct waitq *q) {
  int n = 0;
  struct task *t;
  while ((t = tether__waitq_first(q)) != NULL) {
    t->nresume = 0;
    tether__waitq_wake(t, WAKE_OK);
    n++;
  }
  return n;
}

/*
** A wait on a libuv request (a connect, a lookup) that libuv finishes in a
** callback it always calls. The waiting task may be cancelled first: then
** the request is abandoned, and whoever comes last (the callback, or the
** cancelled task if the request had already finished) frees it.
*/

void tether__request_init (struct request_wait *w) {
  tether__waitq_init(&w->waiting);
  w->status = 0;
  w->done = w->abandoned = 0;
}

/* From the request's callback: 0 when it was abandoned (free it now), else
   records 'status' and wakes the waiting task. */
int tether__request_done (struct request_wait *w, int status) {
  struct task *t = tether__waitq_first(&w->waiting);
  if (w->abandoned)
    return 0;
  w->status = status;
  w->done = 1;
  if (t != NULL) {
    t->nresume = 0;
    tether__waitq_wake(t, WAKE_OK);
  }
  return 1;
}

/* From the continuation of a cancelled wait: 1 when the request already
   finished (free it now), else it is left for its callback to free. */
int tether__request_abandon (struct request_wait *w) {
  if (w->done)
    return 1;
  w->abandoned = 1;
  return 0;
}
