/*
** queue.h
** Intrusive circular doubly-linked lists: the node lives inside the owning
** struct, so linking never allocates. An empty list is a head pointing at
** itself; a node that is in no list is initialised the same way, so removing
** it twice is harmless.
*/

#ifndef TETHER_QUEUE_H
#define TETHER_QUEUE_H

#include <stddef.h>

struct queue {
  struct queue *next;
  struct queue *prev;
};

#define queue_data(node, type, field)                                          \
  ((type *)((char *)(node)-offsetof(type, field)))

static inline void queue_init (struct queue *q) {
  q->next = q;
  q->prev = q;
}

static inline int queue_empty (const struct queue *q) {
  return q->next == q;
}

static inline struct queue *queue_head (const struct queue *q) {
  return q->next;
}

static inline void queue_insert_head (struct queue *h, struct queue *n) {
  n->next = h->next;
  n->prev = h;
  n->next->prev = n;
  h->next = n;
}

static inline void queue_insert_tail (struct queue *h, struct queue *n) {
  n->next = h;
  n->prev = h->prev;
  n->prev->next = n;
  h->prev = n;
}

static inline void queue_remove (struct queue *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  queue_init(n);
}

/* Moves every node of 'from' to the end of 'to', leaving 'from' empty. */
static inline void queue_move_all (struct queue *from, struct queue *to) {
  if (queue_empty(from))
    return;
  from->next->prev = to->prev;
  to->prev->next = from->next;
  from->prev->next = to;
  to->prev = from->prev;
  queue_init(from);
}

#endif
