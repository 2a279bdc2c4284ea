/*
** record.c
** Where tasks live: their C records, in slabs, and their Lua threads.
** Spawning (a record, the start-up values staged), binding a thread at the
** first run, releasing both when the task ends, and giving memory back
** after a burst.
**
** A record is taken when a task is spawned; its thread only when the task
** first runs. Until then its start-up values wait in the stage table: its
** arguments, and its function unless the name table holds it (an unnamed
** task keeps its function there anyway, to derive its name from). A
** finished task's thread goes to the idle stack and runs the next task to
** start, so a burst of short tasks runs on a few hot threads instead of one
** cold thread each. Both freed records and idle threads are reused most
** recent first.
*/

#include <limits.h>
#include <stdlib.h>

#include "internal.h"

/* struct task's nresume counts values on a Lua stack, which never holds
   LUAI_MAXSTACK of them: its bit field must be wide enough for that. */
#if LUAI_MAXSTACK >= (1 << 20)
#error "struct task: nresume is too narrow for this Lua's LUAI_MAXSTACK"
#endif

/* The record is part of what an idle task costs (docs/performance.md). */
typedef char task_record_size_check[sizeof(struct task) <= 136 ? 1 : -1];

/*
** Records are allocated a slab at a time: no allocator overhead per record,
** neighbours in memory, and a slot number that finds the record without a
** table. Slot = slab index * SLAB_RECORDS + index in the slab.
*/
#define SLAB_SHIFT   6
#define SLAB_RECORDS (1 << SLAB_SHIFT)

struct slab {
  int nused; /* records not in the free list */
  struct task records[SLAB_RECORDS];
};

/* The record in 'slot', or NULL if its slab was freed (or never existed). */
static struct task *slot_record (struct ctx *c, int slot) {
  struct slab *sl;
  if (slot < 0 || (slot >> SLAB_SHIFT) >= c->nslabs)
    return NULL;
  sl = c->slabs[slot >> SLAB_SHIFT];
  return sl != NULL ? &sl->records[slot & (SLAB_RECORDS - 1)] : NULL;
}

static struct slab *slab_of (struct ctx *c, struct task *t) {
  return c->slabs[t->slot >> SLAB_SHIFT];
}

/* The live task in 'slot', or NULL; slots run from 0 to tether__nslots(). */
struct task *tether__live_record (struct ctx *c, int slot) {
  struct task *t = slot_record(c, slot);
  return t != NULL && t->state != TASK_FREE ? t : NULL;
}

/* The task in 'slot' if it is still task 'id' and has not finished. */
struct task *tether__record (struct ctx *c, int slot, lua_Integer id) {
  struct task *t = tether__live_record(c, slot);
  return t != NULL && t->id == id && t->state != TASK_DONE ? t : NULL;
}

int tether__nslots (const struct ctx *c) {
  return c->nslabs * SLAB_RECORDS;
}

/* The live task whose thread is 'L', or NULL (a scan: for rare paths). */
struct task *tether__thread_task (struct ctx *c, lua_State *L) {
  int slot;
  for (slot = 0; slot < tether__nslots(c); slot++) {
    struct task *t = tether__live_record(c, slot);
    if (t != NULL && t->L == L)
      return t;
  }
  return NULL;
}

/* Adds a slab of free records (in a hole of 'slabs' if there is one). */
static void new_slab (lua_State *L, struct ctx *c) {
  struct slab *sl;
  int index = c->nslabs, i;
  if (c->nholes > 0)
    for (index = 0; c->slabs[index] != NULL; index++)
      ;
  else if (c->nslabs == c->cap_slabs) {
    int cap = c->cap_slabs ? 2 * c->cap_slabs : 16;
    struct slab **slabs;
    if (cap > INT_MAX >> SLAB_SHIFT ||
        (slabs = realloc(c->slabs, (size_t)cap * sizeof *slabs)) == NULL)
      luaL_error(L, "not enough memory");
    c->slabs = slabs;
    c->cap_slabs = cap;
  }
  sl = calloc(1, sizeof *sl);
  if (sl == NULL)
    luaL_error(L, "not enough memory");
  if (index < c->nslabs)
    c->nholes--;
  else
    c->nslabs++;
  c->slabs[index] = sl;
  for (i = SLAB_RECORDS - 1; i >= 0; i--) { /* lowest slot on top */
    struct task *t = &sl->records[i];
    queue_init(&t->scope_node);
    heap_node_init(&t->sleep);
    t->sleep.kind = DEADLINE_SLEEP;
    t->slot = (index << SLAB_SHIFT) + i;
    queue_insert_head(&c->free_records, &t->node);
  }
  c->nfree_records += SLAB_RECORDS;
}

/* The most recently freed record, made first if there is none; it stays in
   the free list until the caller takes it with take_record. */
static struct task *free_record (lua_State *L, struct ctx *c) {
  if (queue_empty(&c->free_records))
    new_slab(L, c);
  return queue_data(queue_head(&c->free_records), struct task, node);
}

static void take_record (struct ctx *c, struct task *t) {
  queue_remove(&t->node);
  c->nfree_records--;
  slab_of(c, t)->nused++;
}

static void put_record (struct ctx *c, struct task *t) {
  queue_insert_head(&c->free_records, &t->node);
  c->nfree_records++;
  slab_of(c, t)->nused--;
}

/* Frees slab 'index', whose records are all free. */
static void free_slab (struct ctx *c, int index) {
  struct slab *sl = c->slabs[index];
  int i;
  for (i = 0; i < SLAB_RECORDS; i++)
    queue_remove(&sl->records[i].node);
  c->nfree_records -= SLAB_RECORDS;
  free(sl);
  c->slabs[index] = NULL;
  if (index == c->nslabs - 1)
    c->nslabs--;
  else
    c->nholes++;
  while (c->nslabs > 0 && c->slabs[c->nslabs - 1] == NULL) {
    c->nslabs--;
    c->nholes--;
  }
}

/* [-0, +0, m] sets the name table's entry for 'slot' to the value at 'idx'
   (an absolute index, or 0 for nil). */
static void set_name (lua_State *L, struct ctx *c, int slot, int idx) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->names_ref);
  if (idx != 0)
    lua_pushvalue(L, idx);
  else
    lua_pushnil(L);
  lua_rawseti(L, -2, NAME_INDEX(slot));
  lua_pop(L, 1);
}

/* {====================================================================
** Staging: a task's start-up values until its first run
**
** The stage table is a plain array used from index 1 while any task waits
** in it, and started afresh when none does. A task's start-up values are
** its function (unless the name table holds it: see tether__spawn) and its
** arguments. They are staged from t->start on (0: the task has nothing
** staged); t->nstart says how many there are, up to two, and otherwise
** (START_COUNTED) their count is staged first. A burst of tasks with one
** argument each (or named ones with none) then stages one value per task.
** ===================================================================== */

/* Stage tables that grew past this many entries are replaced when they
   empty, to give the memory of a burst back. */
#define STAGE_KEEP 1024

/* [-0, +0, m] stages the 'n' (> 0) values from 'first' up for task 't'. */
static void stage (lua_State *L, struct ctx *c, struct task *t, int first,
                   int n) {
  int at = c->stage_top, counted = n >= START_COUNTED, i;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->stage_ref);
  if (counted) {
    lua_pushinteger(L, n);
    lua_rawseti(L, -2, at);
  }
  for (i = 0; i < n; i++) {
    lua_pushvalue(L, first + i);
    lua_rawseti(L, -2, at + counted + i);
  }
  lua_pop(L, 1);
  c->stage_top = at + counted + n;
  c->nstaged++;
  t->start = at;
  t->nstart = counted ? START_COUNTED : (unsigned)n;
}

/* [-0, +1, -] pushes the stage table and returns how many values task 't'
   has staged; they start at *first. */
static int staged (lua_State *L, struct ctx *c, struct task *t, int *first) {
  int n = (int)t->nstart;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->stage_ref);
  *first = t->start;
  if (n == START_COUNTED) {
    lua_rawgeti(L, -1, t->start);
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    (*first)++;
  }
  return n;
}

/*
** [-0, +0, -] clears task 't''s entries, up to 'last', from the stage table,
** which is on top of 'L'. Clearing existing entries allocates nothing, so
** a task that starts or finishes cannot be left half done; a stage table
** that a burst made big is replaced by reset_stage, between bursts.
*/
static void clear_staged (lua_State *L, struct ctx *c, struct task *t,
                          int last) {
  int i;
  for (i = t->start; i <= last; i++) {
    lua_pushnil(L);
    lua_rawseti(L, -2, i);
  }
  t->start = 0;
  t->nstart = 0;
  if (--c->nstaged == 0 && c->stage_top <= STAGE_KEEP)
    c->stage_top = 1;
}

/* Starts the stage table afresh once no task waits in it, replacing it if
   a burst made it big (to give that memory back). */
static void reset_stage (lua_State *L, struct ctx *c) {
  if (c->nstaged > 0)
    return;
  if (c->stage_top > STAGE_KEEP) {
    lua_createtable(L, STAGE_KEEP, 0);
    lua_rawseti(L, LUA_REGISTRYINDEX, c->stage_ref);
  }
  c->stage_top = 1;
}

/* [-0, +0, m] drops task 't''s staged values (it will not run). */
static void drop_staged (lua_State *L, struct ctx *c, struct task *t) {
  int first, n = staged(L, c, t, &first);
  clear_staged(L, c, t, first + n - 1);
  lua_pop(L, 1);
}

/* }==================================================================== */

/*
** [-(nargs+2), +0, m] starts a task running fn(args...), where the stack
** holds the task's name (or nil), fn and the nargs arguments. The task first
** runs in the next batch; its thread is bound then (tether__bind_thread).
** An unnamed task's name table entry is its function (its name is derived
** from it), so only its arguments are staged.
*/
struct task *tether__spawn (lua_State *L, struct ctx *c, int nargs,
                            struct scope *scope, struct group *group) {
  struct task *t = free_record(L, c);
  int name = lua_absindex(L, -(nargs + 2));
  int named = !lua_isnil(L, name);
  /* What can fail comes first, while the record is still in the free list
     (a stale name entry is overwritten when the slot is used again). */
  set_name(L, c, t->slot, named ? name : name + 1);
  if (named || nargs > 0)
    stage(L, c, t, named ? name + 1 : name + 2, named ? nargs + 1 : nargs);
  t->named = (unsigned)named;
  lua_settop(L, name - 1);
  take_record(c, t);
  t->id = c->next_id++;
  t->group = group;
  t->started = 0;
  t->reraise = 0;
  c->ntasks++;
  tether__task_set_scope(t, scope);
  tether__schedule(c, t);
  return t;
}

/*
** Threads are anchored in the thread table, each at its own index for its
** whole life. Free indices are chained through the table (each holds the
** next, the last 0) from c->threads_free, so finding one costs no length
** computation and no lookup outside the array.
*/

/* [-0, +0, m] creates a thread, anchors it and returns it with its index. */
static lua_State *new_thread (lua_State *L, struct ctx *c, int *index) {
  int ref = c->threads_free, next = 0;
  lua_State *co;
  if (ref == 0 && c->threads_top == INT_MAX)
    luaL_error(L, "not enough memory");
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->threads_ref);
  co = lua_newthread(L);
  if (ref != 0) { /* reads and then overwrites an entry: cannot fail */
    lua_rawgeti(L, -2, ref);
    next = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_rawseti(L, -2, ref);
    c->threads_free = next;
  }
  else {
    ref = c->threads_top + 1;
    lua_rawseti(L, -2, ref); /* may grow the table */
    c->threads_top = ref;
  }
  lua_pop(L, 1);
  *index = ref;
  return co;
}

/* Drops a thread for good (it died by an error, or the idle stack cannot
   grow, or trimming gives it back): its index goes to the free chain. */
static void drop_thread (lua_State *L, struct ctx *c, int ref) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->threads_ref);
  lua_pushinteger(L, c->threads_free);
  lua_rawseti(L, -2, ref);
  lua_pop(L, 1);
  c->threads_free = ref;
}

/*
** Gives a task that is about to run for the first time a thread (the most
** recently idle one, or a new one) and puts its entry function, its function
** and its arguments on it: its first resume passes t->nresume values to the
** entry function. Runs in the tick on c->from, so a memory error here is a
** scheduler error; everything that can fail comes first, so it leaves the
** task as it was (unbound, its values staged), to be bound by a later tick.
*/
void tether__bind_thread (struct ctx *c, struct task *t) {
  lua_State *L = c->from, *co;
  int first = 0, n = 0, ref, i;
  if (!lua_checkstack(L, 2))
    luaL_error(L, "not enough memory");
  if (t->start > 0) {
    n = staged(L, c, t, &first);
    lua_pop(L, 1);
  }
  /* Room on the thread: the entry function, the task's function (or the
     name table on the way to it), the stage table and the n values. */
  if (c->nidle > 0) {
    co = c->idle[c->nidle - 1].L;
    ref = c->idle[c->nidle - 1].ref;
    if (!lua_checkstack(co, n + 3))
      luaL_error(L, "not enough memory"); /* the thread stays idle */
    c->nidle--;
  }
  else {
    co = new_thread(L, c, &ref);
    if (!lua_checkstack(co, n + 3)) {
      drop_thread(L, c, ref);
      luaL_error(L, "not enough memory");
    }
  }
  /* From here on nothing allocates. */
  t->L = co;
  t->thread_ref = ref;
  lua_pushcfunction(co, tether__task_entry);
  if (!t->named) { /* its function is in the name table */
    lua_rawgeti(co, LUA_REGISTRYINDEX, c->names_ref);
    lua_rawgeti(co, -1, NAME_INDEX(t->slot));
    lua_remove(co, -2);
  }
  if (n > 0) {
    lua_rawgeti(co, LUA_REGISTRYINDEX, c->stage_ref);
    for (i = 0; i < n; i++)
      lua_rawgeti(co, -1 - i, first + i);
    lua_remove(co, -(n + 1));
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->stage_ref);
    clear_staged(L, c, t, first + n - 1);
    lua_pop(L, 1);
  }
  t->nresume = lua_gettop(co) - 1;
}

/* Puts task 't''s thread on the idle stack if it can run the next task,
   else drops it. */
static void retire_thread (lua_State *L, struct ctx *c, struct task *t) {
  if (lua_status(t->L) == LUA_OK) { /* finished normally */
    if (c->nidle == c->cap_idle) {
      int cap = c->cap_idle ? 2 * c->cap_idle : 64;
      struct idle_thread *idle = realloc(c->idle, (size_t)cap * sizeof *idle);
      if (idle != NULL) {
        c->idle = idle;
        c->cap_idle = cap;
      }
    }
    if (c->nidle < c->cap_idle) {
      lua_settop(t->L, 0);
      if (lua_gethook(t->L) != NULL)
        lua_sethook(t->L, NULL, 0, 0);
      c->idle[c->nidle].L = t->L;
      c->idle[c->nidle].ref = t->thread_ref;
      c->nidle++;
      t->L = NULL;
      t->thread_ref = 0;
      return;
    }
  }
  drop_thread(L, c, t->thread_ref);
  t->L = NULL;
  t->thread_ref = 0;
}

/*
** Returns a finished (or abandoned) task's record to the free list and its
** thread to the idle stack, dropping the references to its function, name,
** arguments and last error. 'L' is any thread of the state other than the
** task's.
*/
void tether__release (lua_State *L, struct ctx *c, struct task *t) {
  queue_remove(&t->node);
  queue_remove(&t->scope_node);
  tether__remove_deadline(c, &t->sleep);
  c->ntasks--;
  t->state = TASK_FREE;
  t->scope = NULL;
  t->group = NULL;
  t->starter = NULL;
  t->abort = NULL;
  t->done = NULL;
  t->nresume = 0;
  if (t->traced) {
    t->traced = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->traces_ref);
    lua_pushnil(L);
    lua_rawseti(L, -2, TRACE_TEXT(t->slot));
    lua_pushnil(L);
    lua_rawseti(L, -2, TRACE_ERROR(t->slot));
    lua_pop(L, 1);
  }
  set_name(L, c, t->slot, 0);
  if (t->start > 0) /* never ran, or its thread could not take them */
    drop_staged(L, c, t);
  if (t->L != NULL)
    retire_thread(L, c, t);
  put_record(c, t);
}

/* Forgets every live task without resuming it (after a scheduler failure,
   so that the loop can still be closed). */
void tether__abandon_tasks (lua_State *L, struct ctx *c) {
  int slot;
  for (slot = 0; slot < tether__nslots(c); slot++) {
    struct task *t = tether__live_record(c, slot);
    if (t == NULL)
      continue;
    if (t->state == TASK_PARKED && t->abort != NULL)
      t->abort(t); /* out of what it waits on (a wait queue keeps a count) */
    if (t->L != NULL && lua_status(t->L) != LUA_OK) {
      drop_thread(L, c, t->thread_ref); /* suspended: cannot be reused */
      t->L = NULL;
      t->thread_ref = 0;
    }
    tether__release(L, c, t);
  }
}

/* Idle records and threads always kept for reuse. */
#define POOL_MIN 1024

/* Slabs tether__trim_pools looks at per tick. */
#define TRIM_SCAN 8

/*
** Gives back part of the idle threads and free records once a burst of
** tasks is over: each pool keeps up to as many entries as there are live
** tasks (at least POOL_MIN), so a program that spawns many tasks again and
** again reuses them, and one that had a burst returns the memory over the
** following ticks. Records go back a slab at a time, when all of a slab's
** records are free; a few slabs are looked at per tick, from the top down
** (the slab array shrinks), starting on top again for each burst.
*/
void tether__trim_pools (lua_State *L, struct ctx *c) {
  int keep = c->ntasks > POOL_MIN ? c->ntasks : POOL_MIN, i;
  reset_stage(L, c);
  if (c->nidle > keep) {
    int n = (c->nidle - keep) / 8 + 1;
    while (n-- > 0)
      drop_thread(L, c, c->idle[--c->nidle].ref);
  }
  if (c->nfree_records < keep + SLAB_RECORDS)
    c->trim_cursor = 0; /* nothing to give back: the next trim starts on top */
  for (i = 0; i < TRIM_SCAN && c->nfree_records >= keep + SLAB_RECORDS; i++) {
    int index = c->trim_cursor - 1;
    if (index < 0 || index >= c->nslabs)
      index = c->nslabs - 1;
    c->trim_cursor = index;
    if (c->slabs[index] != NULL && c->slabs[index]->nused == 0)
      free_slab(c, index);
  }
}

/* Frees every record, live or free (the context is being collected; the
   threads go with the state). */
void tether__free_records (struct ctx *c) {
  int i, j;
  for (i = 0; i < c->nslabs; i++) {
    struct slab *sl = c->slabs[i];
    if (sl == NULL)
      continue;
    for (j = 0; j < SLAB_RECORDS; j++)
      if (sl->records[j].state != TASK_FREE)
        free(sl->records[j].done);
    free(sl);
  }
  free(c->slabs);
  c->slabs = NULL;
  c->nslabs = c->cap_slabs = c->nholes = 0;
  queue_init(&c->free_records);
  c->nfree_records = 0;
  free(c->idle);
  c->idle = NULL;
  c->nidle = c->cap_idle = 0;
}
