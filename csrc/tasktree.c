/*
** tasktree.c
** tether.task_tree(): a snapshot of the running program as nested tables of
** cancel scopes, task groups and tasks, each blocked task with what it waits
** on, where and its traceback; and the TETHER_DUMP_SIGNAL dump that prints
** it to stderr while tether.run runs.
**
** Nothing here costs the scheduler anything: what a task waits on is read
** from the wait it is parked in (a wait queue's static description, a
** sleep's deadline, a group's exit), and strings are built only when a tree
** is asked for. The snapshot is taken in two steps: a walk of the scope
** tree that copies what it needs into a flat array and neither allocates
** nor calls Lua, then the tables are built from the copy. Building
** allocates, and a finalizer that runs then may change the tree; the copy
** does not change, and a task that finished meanwhile is left out.
*/

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CTX(L) ((struct ctx *)lua_touserdata((L), lua_upvalueindex(1)))

enum node_kind { NODE_RUN, NODE_SCOPE, NODE_GROUP, NODE_TASK };

/* One node of the snapshot, in depth-first order with its depth. */
struct tree_node {
  int kind;  /* enum node_kind */
  int depth; /* the run is at 0 */
  /* scopes and groups */
  double deadline;
  unsigned char shield, cancel_called;
  /* tasks */
  int slot;
  lua_Integer id;
  int state;        /* enum task_state */
  const char *what; /* what a parked task waits on */
  double until;     /* a sleep's deadline */
};

/* What a parked task waits on, from its wait (never NULL). */
static const char *wait_what (const struct task *t) {
  const char *what = tether__waitq_what(t);
  if (what == NULL)
    what = tether__sleep_what(t);
  if (what == NULL)
    what = tether__group_what(t);
  return what != NULL ? what : "a tether call";
}

/* Records node 'n' at 'out[i]' if there is room. */
static void put (struct tree_node *out, int cap, int i,
                 const struct tree_node *n) {
  if (i < cap)
    out[i] = *n;
}

/* Adds the scope 's' (at 'depth') and the tasks whose innermost scope it is
   (one deeper); returns the new count. */
static int put_scope (struct ctx *c, struct scope *s, int depth,
                      struct tree_node *out, int cap, int i) {
  struct tree_node n;
  struct queue *q;
  double now = tether__time(c);
  memset(&n, 0, sizeof n);
  n.kind = s == &c->root ? NODE_RUN : s->group ? NODE_GROUP : NODE_SCOPE;
  n.depth = depth;
  n.deadline = s->deadline;
  n.shield = s->shield;
  /* a passed deadline counts before its timer fires, as scope.cancel_called
     says */
  n.cancel_called = s->cancel_called || s->deadline <= now;
  put(out, cap, i++, &n);
  for (q = s->tasks.next; q != &s->tasks; q = q->next) {
    struct task *t = queue_data(q, struct task, scope_node);
    memset(&n, 0, sizeof n);
    n.kind = NODE_TASK;
    n.depth = depth + 1;
    n.slot = t->slot;
    n.id = t->id;
    n.state = t->state;
    if (t->state == TASK_PARKED) {
      n.what = wait_what(t);
      n.until = t->sleep.when;
    }
    put(out, cap, i++, &n);
  }
  return i;
}

/*
** Copies the scope tree into 'out' (up to 'cap' nodes) and returns how many
** nodes it has. Iterative, like tether__propagate: deep trees use no C
** stack. Allocates nothing and calls no Lua.
*/
static int walk (struct ctx *c, struct tree_node *out, int cap) {
  struct scope *s = &c->root;
  struct queue *q = s->children.next;
  int depth = 0, i = put_scope(c, s, 0, out, cap, 0);
  for (;;) {
    if (q != &s->children) {
      s = queue_data(q, struct scope, node);
      i = put_scope(c, s, ++depth, out, cap, i);
      q = s->children.next;
    }
    else if (s == &c->root)
      return i;
    else {
      q = s->node.next;
      s = s->parent;
      depth--;
    }
  }
}

static void set_string (lua_State *L, const char *key, const char *value) {
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

/* [-0, +1, m] pushes "sleep until T (in S s)" for a sleeping task. */
static void push_waiting_on (lua_State *L, struct ctx *c,
                             const struct tree_node *n) {
  char text[96];
  if (strcmp(n->what, "sleep until") == 0) {
    snprintf(text, sizeof text, "sleep until %.3f (in %.3f s)", n->until,
             n->until - tether__time(c));
    lua_pushstring(L, text);
  }
  else
    lua_pushstring(L, n->what);
}

/* [-0, +1, m] pushes the table of a task node, or nothing (returns 0) when
   the task finished since the walk. */
static int push_task (lua_State *L, struct ctx *c, const struct tree_node *n) {
  static const char *const states[] = {[TASK_READY] = "ready",
                                       [TASK_RUNNING] = "running",
                                       [TASK_PARKED] = "blocked"};
  struct task *t = tether__record(c, n->slot, n->id);
  if (t == NULL || t->state == TASK_FREE || t->state == TASK_DONE)
    return 0;
  lua_createtable(L, 0, 7);
  set_string(L, "kind", "task");
  lua_pushinteger(L, t->id);
  lua_setfield(L, -2, "id");
  tether__push_name(L, t);
  lua_setfield(L, -2, "name");
  set_string(L, "state", states[t->state]);
  if (t->state == TASK_PARKED && n->state == TASK_PARKED) {
    push_waiting_on(L, c, n);
    lua_setfield(L, -2, "waiting_on");
  }
  if (t->L != NULL && t->state != TASK_RUNNING) {
    if (tether__push_where(L, c, t->L, 0))
      lua_setfield(L, -2, "where");
    luaL_traceback(L, t->L, NULL, 0);
    lua_setfield(L, -2, "traceback");
  }
  return 1;
}

/* [-0, +1, m] pushes the table of a run, scope or group node with an empty
   'children' list, which it also pushes. */
static void push_scope (lua_State *L, const struct tree_node *n) {
  static const char *const kinds[] = {
      [NODE_RUN] = "run", [NODE_SCOPE] = "scope", [NODE_GROUP] = "group"};
  lua_createtable(L, 0, 5);
  set_string(L, "kind", kinds[n->kind]);
  if (n->kind != NODE_RUN) {
    lua_pushnumber(L, n->deadline);
    lua_setfield(L, -2, "deadline");
    lua_pushboolean(L, n->shield);
    lua_setfield(L, -2, "shield");
    lua_pushboolean(L, n->cancel_called);
    lua_setfield(L, -2, "cancel_called");
  }
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "children");
}

/*
** [-0, +1, m] builds the tree from the snapshot. The stack holds, from
** 'base' on, the children list of the open node at each depth.
*/
static void build (lua_State *L, struct ctx *c, const struct tree_node *nodes,
                   int count) {
  int base = lua_gettop(L) + 2, i;
  push_scope(L, &nodes[0]); /* the run: [root, its children] */
  for (i = 1; i < count; i++) {
    const struct tree_node *n = &nodes[i];
    luaL_checkstack(L, 4, "tether.task_tree: tree too deep");
    lua_settop(L, base + n->depth - 1); /* the parent's children on top */
    if (n->kind == NODE_TASK) {
      if (!push_task(L, c, n))
        continue;
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
    else {
      push_scope(L, n); /* [parent's children, node, its children] */
      lua_pushvalue(L, -2);
      lua_rawseti(L, -4, (lua_Integer)lua_rawlen(L, -4) + 1);
      lua_remove(L, -2);
    }
  }
  lua_settop(L, base - 1); /* the root */
}

/* tether.task_tree() */
static int tasktree_task_tree (lua_State *L) {
  struct ctx *c = CTX(L);
  struct tree_node *nodes;
  int count, cap;
  if (c->loop == NULL)
    return tether__fname_error(L, "tether.task_tree",
                               "called outside tether.run");
  lua_settop(L, 0);
  count = walk(c, NULL, 0);
  do { /* allocating may run finalizers that add nodes: then walk again */
    lua_settop(L, 0);
    cap = count;
    nodes = lua_newuserdatauv(L, (size_t)cap * sizeof *nodes, 0);
    count = walk(c, nodes, cap);
  } while (count > cap);
  build(L, c, nodes, count);
  return 1;
}

/* Under a protected call from tether__dump_task_tree: the formatted tree,
   by tether.format_task_tree of the loaded facade. */
static int format_tree (lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "tether") != LUA_TTABLE ||
      lua_getfield(L, -1, "format_task_tree") != LUA_TFUNCTION)
    return luaL_error(L, "require \"tether\" to have the tree printed");
  lua_call(L, 0, 1);
  luaL_checkstring(L, -1);
  return 1;
}

/*
** TETHER_DUMP_SIGNAL arrived (the tick calls this before running tasks, so
** nothing holds a wait queue): prints the task tree to stderr. The program
** goes on whatever happens here.
*/
void tether__dump_task_tree (lua_State *L, struct ctx *c) {
  c->dump_pending = 0;
  lua_pushcfunction(L, format_tree);
  if (lua_pcall(L, 0, 1, 0) == LUA_OK)
    fprintf(stderr, "tether: task tree (TETHER_DUMP_SIGNAL)\n%s\n",
            lua_tostring(L, -1));
  else
    fprintf(stderr, "tether: TETHER_DUMP_SIGNAL: cannot print the tree: %s\n",
            lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                           : "(an error that is not a "
                                             "string)");
  fflush(stderr);
  lua_pop(L, 1);
}

void tether__open_tasktree (lua_State *L, struct ctx *c) {
  static const luaL_Reg funcs[] = {{"task_tree", tasktree_task_tree},
                                   {NULL, NULL}};
  (void)c;
  tether__add_functions(L, funcs);
}
