/*
** heap.h
** A binary min-heap of deadlines. Nodes are embedded in their owners (a
** sleeping task, a cancel scope) and remember their index, so removal is
** O(log n); the array of pointers grows by doubling and is never shrunk, so
** steady-state operation allocates nothing. Ties break by insertion order.
** A node is 24 bytes: it sits in every task record.
*/

#ifndef TETHER_HEAP_H
#define TETHER_HEAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define HEAP_NONE UINT32_MAX

struct heap_node {
  double when;        /* absolute deadline, current_time() units */
  uint64_t seq;       /* insertion order, breaks ties */
  uint32_t index;     /* position in the heap, HEAP_NONE when not in it */
  unsigned char kind; /* what owns the node; the heap never reads it */
};

struct heap {
  struct heap_node **nodes;
  uint32_t len;
  uint32_t cap;
  uint64_t next_seq;
};

static inline void heap_init (struct heap *h) {
  h->nodes = NULL;
  h->len = h->cap = 0;
  h->next_seq = 0;
}

static inline void heap_free (struct heap *h) {
  free(h->nodes);
  heap_init(h);
}

static inline void heap_node_init (struct heap_node *n) {
  n->index = HEAP_NONE;
}

static inline int heap_contains (const struct heap_node *n) {
  return n->index != HEAP_NONE;
}

static inline struct heap_node *heap_min (const struct heap *h) {
  return h->len > 0 ? h->nodes[0] : NULL;
}

/* Implementation follows. */

static inline int heap_less (const struct heap_node *a,
                             const struct heap_node *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static inline void heap_place (struct heap *h, uint32_t i,
                               struct heap_node *n) {
  h->nodes[i] = n;
  n->index = i;
}

static inline void heap_sift_up (struct heap *h, uint32_t i) {
  struct heap_node *n = h->nodes[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!heap_less(n, h->nodes[parent]))
      break;
    heap_place(h, i, h->nodes[parent]);
    i = parent;
  }
  heap_place(h, i, n);
}

static inline void heap_sift_down (struct heap *h, uint32_t i) {
  struct heap_node *n = h->nodes[i];
  for (;;) {
    uint64_t child = 2 * (uint64_t)i + 1; /* no overflow past 2^31 */
    if (child >= h->len)
      break;
    if (child + 1 < h->len && heap_less(h->nodes[child + 1], h->nodes[child]))
      child++;
    if (!heap_less(h->nodes[child], n))
      break;
    heap_place(h, i, h->nodes[child]);
    i = (uint32_t)child;
  }
  heap_place(h, i, n);
}

/* Inserts 'n' (not in the heap) due at 'when'; returns -1 when out of memory. */
static inline int heap_insert (struct heap *h, struct heap_node *n,
                               double when) {
  if (h->len == h->cap) {
    uint32_t cap = h->cap ? 2 * h->cap : 64;
    struct heap_node **nodes;
    if (h->cap >= HEAP_NONE / 2)
      return -1; /* indexes would reach HEAP_NONE */
    nodes = realloc(h->nodes, (size_t)cap * sizeof *nodes);
    if (nodes == NULL)
      return -1;
    h->nodes = nodes;
    h->cap = cap;
  }
  n->when = when;
  n->seq = h->next_seq++;
  heap_place(h, h->len++, n);
  heap_sift_up(h, h->len - 1);
  return 0;
}

/* Removes 'n' if it is in the heap. */
static inline void heap_remove (struct heap *h, struct heap_node *n) {
  uint32_t i = n->index;
  struct heap_node *last;
  if (i == HEAP_NONE)
    return;
  n->index = HEAP_NONE;
  last = h->nodes[--h->len];
  if (last == n)
    return;
  heap_place(h, i, last);
  if (i > 0 && heap_less(last, h->nodes[(i - 1) / 2]))
    heap_sift_up(h, i);
  else
    heap_sift_down(h, i);
}

#endif
