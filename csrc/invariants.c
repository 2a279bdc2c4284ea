/*
** invariants.c
** The scheduler's bookkeeping, checked: debug builds (-DTETHER_DEBUG, which
** `make check` uses for its ASan run) call tether__check_invariants at the
** end of every tick and of every tether.run. A broken invariant ends the
** process with a message naming it. Other builds compile this file to
** nothing.
*/

#ifdef TETHER_DEBUG

#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

/* A task record keeps its size: an idle task costs its thread plus this. */
typedef char record_size_is_136[sizeof(struct task) == 136 ? 1 : -1];

/* Ticks between two full checks once there are many records (a full check
   walks every record). */
#define FULL_CHECK_SLOTS 4096
#define FULL_CHECK_EVERY 64

static void broken (const char *what, long got, long want) {
  fprintf(stderr, "tether: invariant broken: %s (%ld, want %ld)\n", what, got,
          want);
  abort();
}

#define CHECK(cond, what, got, want)                                           \
  ((cond) ? (void)0 : broken((what), (long)(got), (long)(want)))

/* Counts a queue of tasks, checking that each is in 'state'. */
static long count_queue (const struct queue *q, enum task_state state,
                         const char *what) {
  const struct queue *n;
  long len = 0;
  for (n = q->next; n != q; n = n->next, len++)
    CHECK(queue_data(n, struct task, node)->state == state, what,
          queue_data(n, struct task, node)->state, state);
  return len;
}

/* Checks a wait queue: its count is its length, and it holds parked tasks
   that know they wait in it. */
static void check_waitq (const struct waitq *q, const char *what) {
  const struct queue *n;
  long len = 0;
  for (n = q->tasks.next; n != &q->tasks; n = n->next, len++) {
    const struct task *t = queue_data(n, struct task, node);
    CHECK(t->state == TASK_PARKED, what, t->state, TASK_PARKED);
    CHECK(t->wait_data == q, "a task in a wait queue points to it", 0, 1);
  }
  CHECK(len == q->count, "a wait queue's count is its length", q->count, len);
}

/* Whether task 't' is linked into a task list (its innermost scope's): its
   neighbours point back at it, and it is not alone (a list head is there).
   Local, so a full check stays linear in the number of tasks. */
static int in_scope (const struct task *t) {
  const struct queue *n = &t->scope_node;
  return n->next != n && n->next->prev == n && n->prev->next == n;
}

void tether__check_invariants (struct ctx *c) {
  static unsigned long ticks;
  long live = 0, ready = 0;
  int slot;
  CHECK(c->current == NULL, "no task runs between ticks", 1, 0);
  ready = count_queue(&c->ready, TASK_READY, "the run queue holds READY tasks");
  ready += count_queue(&c->batch, TASK_READY, "the batch holds READY tasks");
  check_waitq(&c->blocked_waiters, "wait_all_tasks_blocked callers are PARKED");
  CHECK(count_queue(&c->free_records, TASK_FREE,
                    "the free list holds FREE records") == c->nfree_records,
        "nfree_records counts the free list", c->nfree_records, 0);
  if (tether__nslots(c) > FULL_CHECK_SLOTS && ticks++ % FULL_CHECK_EVERY != 0)
    return;
  for (slot = 0; slot < tether__nslots(c); slot++) {
    struct task *t = tether__live_record(c, slot);
    if (t == NULL)
      continue;
    live++;
    CHECK(t->state != TASK_RUNNING, "no task is RUNNING between ticks",
          t->state, TASK_READY);
    CHECK(t->scope != NULL && in_scope(t),
          "a live task is in its innermost scope's task list", 0, 1);
    CHECK(t->state != TASK_PARKED || t->abort != NULL,
          "every parked task has an abort", 0, 1);
    CHECK(t->state == TASK_READY || t->state == TASK_PARKED || t == c->main,
          "a live task is READY or PARKED (or the finished main task)",
          t->state, TASK_READY);
    ready -= t->state == TASK_READY;
  }
  CHECK(live == c->ntasks, "ntasks counts the live records", c->ntasks, live);
  CHECK(ready == 0, "every READY task is in the run queue or the batch", ready,
        0);
}

#else

/* ISO C forbids an empty translation unit. */
typedef int tether__no_invariants;

#endif
