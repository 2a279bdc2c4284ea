--- Random structured-concurrency programs for spec/stress_spec.lua: a generator, an
--- interpreter that runs a program under tether.run and records what happened, and the
--- invariants checked afterwards.
--
--   local stress = require "spec.support.stress_program"
--   local prog = stress.generate(seed)       -- a plain table; stress.describe(prog) lists it
--   local rec = stress.new_record(prog)
--   helper.run_within(secs, stress.main, prog, rec)   -- or stress.main_batch(progs, recs)
--   local problems = stress.check(prog, rec)  -- list of strings, empty when all held
--
-- Every random choice is made by the generator, from `seed` alone; the interpreter makes
-- none.  So a seed names one program exactly; what differs between two runs of it is only
-- timing (which deadline fires first, where a cancel lands).
--
-- A program is a tree of blocks (lists of actions) run by tasks: task groups (depth <= 4,
-- <= 5 children each, started with start_soon by the body or by a sibling, or with
-- tg:start), cancel scopes (CancelScope, move_on_after, fail_after; random deadlines
-- 0-20 ms, random shields), cancels, deadline moves and shield flips aimed at any scope
-- of the program from whatever task runs them (also from `<close>` handlers), errors
-- (strings, tables, numbers) raised in bodies, children and `<close>` handlers,
-- `tether.pcall` blocks that catch errors, a plain pcall that swallows a Cancelled,
-- memory object streams (rendezvous, bounded, unbounded; send, send_nowait, receive,
-- receive_nowait, for loops), Locks, Semaphores, CapacityLimiters (total_tokens changed
-- on the fly), Conditions (wait, wait_for, notify, notify_all), Events,
-- wait_all_tasks_blocked, sleep_until and checkpoint_if_cancelled.  A program's time
-- unit is a real millisecond, or a fraction of one.  Every blocking action has its own
-- bounded timeout and every block has a bounded number of actions, so every program
-- ends by itself: a hang is a bug (the watchdog of helper.run_within reports it).
--
-- What the interpreter records, and the invariants (stress.check):
--
-- * Tasks: spawned, entered and exited counts per task id; each spawned task must enter
--   and exit exactly once (the exit is recorded by a `<close>` in the task's function,
--   so it also proves that a task's to-be-closed variables are closed when it fails),
--   runs under its name, with parent_id = its group's host (a tg:start child: the
--   task that called start), and is gone from get_running_tasks() at the end.
-- * `<close>` handlers: declared and run counts; every declared one runs exactly once.
-- * Errors: every raised error is a unique value tagged "stress#N" (a TimeoutError gets
--   the tag as its `reason`).  It is recorded when the `error` call executes (a task
--   cancelled before reaching it contributes nothing), together with its *landing*: the
--   innermost place in the same task that must receive it -- the enclosing task group
--   (into whose ErrorGroup it goes), the enclosing tether.pcall block, or, at the top of
--   a task, the group the task belongs to (for a tg:start child before `started`, or
--   one whose `started` was a no-op: the place where the task that called tg:start
--   receives it, since it comes out of start unwrapped).  Every ErrorGroup a group
--   raises is checked member by member at the group (each member must land there) and
--   then becomes an item itself, landing where the group was called.  Each item must
--   arrive exactly once, at its landing; the only way to vanish is to be *superseded*:
--   a `<close>` handler that raises while the item propagates (Lua 5.4 then propagates
--   the handler's error instead); handlers that raise record what they replace.  A
--   Cancelled must never appear in an ErrorGroup nor escape the run; any other error
--   value (a library error, a bug in this file) is reported as unexpected.
-- * Streams: every item is a unique integer.  An item whose send raised (Cancelled,
--   WouldBlock, BrokenResourceError) must never be received; nothing is received twice;
--   items of one sender reach one receiver in send order.  Items whose send returned
--   must all be received -- exactly, when the main task kept a receive clone open and
--   drains the buffer after the tree finished ("drain" mode).  Without that clone the
--   last receive handle may close with items still buffered: then the unreceived items
--   must be, per sender, the newest ones, and at most max_buffer_size of them.  Each
--   task holds its own clones and closes them after its last use, so receivers see
--   EndOfStream and senders BrokenResourceError when the other side is gone.
-- * Locks and Conditions: at most one holder at a time, and a Condition's lock is held
--   again after wait() returns or raises; Semaphores: at most `initial` holders;
--   CapacityLimiters: borrowed_tokens covers the holders; all free at the end.  Events:
--   a wait() that returned saw is_set().
-- * Scopes: cancelled_caught implies cancel_called; a fail_after raises its own
--   TimeoutError only with cancelled_caught.
local tether = require "tether"

local M = {}

-- Limits.
local MAX_GROUP_DEPTH = 4
local MAX_FANOUT = 5
local MAX_SCOPE_NEST = 4

---------------------------------------------------------------------------------------
-- Random numbers: splitmix64 on Lua integers (wrapping arithmetic), independent of
-- math.random so nothing else can disturb the sequence.
---------------------------------------------------------------------------------------

local function new_rng(seed)
  local state = math.tointeger(seed) or 0
  local r = {}
  function r.next()
    state = state + 0x9E3779B97F4A7C15
    local z = state
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    return z ~ (z >> 31)
  end
  function r.int(lo, hi) -- uniform in [lo, hi]
    return lo + ((r.next() >> 1) % (hi - lo + 1))
  end
  function r.chance(p)
    return (r.next() >> 11) * (1.0 / 9007199254740992.0) < p
  end
  function r.pick(list)
    return list[r.int(1, #list)]
  end
  -- A key of `weights` ({key = weight}, iterated in `order`), chosen by weight.
  function r.weighted(order, weights)
    local total = 0
    for _, k in ipairs(order) do total = total + (weights[k] or 0) end
    local x = (r.next() >> 11) * (1.0 / 9007199254740992.0) * total
    for _, k in ipairs(order) do
      local w = weights[k] or 0
      if x < w then return k end
      x = x - w
    end
    return order[#order]
  end
  return r
end

M.new_rng = new_rng

---------------------------------------------------------------------------------------
-- Generator
---------------------------------------------------------------------------------------

local OPS = {
  "sleep", "checkpoint", "swallow", "raise", "closevar", "send", "recv", "lock", "sem",
  "ev_wait", "ev_set", "cancel", "move_deadline", "scope", "group", "try", "spawn",
  "start", "shield", "wait_blocked", "cond", "limiter", "limiter_total", "self_deadline",
  "self_cancel", "sleep_until", "cp_if_cancelled",
}

local ERROR_KINDS = { "string", "table", "number" }

local function gen_action(g, env)
  local r = g.r
  local can_spawn = env.group and env.group.children < MAX_FANOUT and g.tasks < g.max_tasks
  local w = {
    sleep = 3, checkpoint = 2, swallow = 0.7, raise = g.raise_weight, closevar = 2,
    send = 2.5, recv = 2.5, lock = 1.5, sem = 1, ev_wait = 1, ev_set = 1, cancel = 1.5,
    move_deadline = 0.7,
    scope = env.scope_nest < MAX_SCOPE_NEST and 2.5 or 0,
    group = (env.depth < MAX_GROUP_DEPTH and g.tasks < g.max_tasks) and 2 or 0,
    try = env.scope_nest < MAX_SCOPE_NEST and 0.7 or 0,
    spawn = can_spawn and (env.in_body and 12 or 3) or 0,
    start = can_spawn and (env.in_body and 3 or 0.8) or 0,
    shield = 0.5, wait_blocked = 0.3, cond = 1.2, limiter = 1, limiter_total = 0.3,
    self_deadline = 0.5, self_cancel = 0.4, sleep_until = 0.5, cp_if_cancelled = 0.5,
  }
  local op = r.weighted(OPS, w)
  g.actions = g.actions + 1
  if op == "sleep" then
    return { op = op, ms = r.chance(0.8) and r.int(0, 3) or r.int(4, 12) }
  elseif op == "checkpoint" then
    return { op = op, shielded = r.chance(0.2) }
  elseif op == "swallow" then -- pcall(tether.sleep): swallows a Cancelled (a user mistake)
    return { op = op, ms = r.int(0, 3) }
  elseif op == "raise" then
    return { op = op, kind = r.weighted(ERROR_KINDS, { string = 6, table = 2, number = 1 }) }
  elseif op == "closevar" then
    local a = { op = op, cid = g:next_id("closevar"),
      how = r.weighted({ "ok", "raise", "shielded_sleep", "checkpoint", "cancel", "set_event" },
        { ok = 4, raise = g.raise_weight * 1.5, shielded_sleep = 1.5, checkpoint = 1.5,
          cancel = 0.7, set_event = 0.5 }),
      kind = r.weighted(ERROR_KINDS, { string = 6, table = 2, number = 1 }),
      k = r.int(1, g.nevents) }
    if a.how == "cancel" then g.targeted[#g.targeted + 1] = a end
    return a
  elseif op == "shield" then
    local a = { op = op, value = r.chance(0.5) }
    g.targeted[#g.targeted + 1] = a
    return a
  elseif op == "wait_blocked" then
    return { op = op, timeout = r.int(1, 10) }
  elseif op == "cond" then
    return { op = op, k = r.int(1, g.nconds), timeout = r.int(1, 15),
      how = r.pick { "wait", "wait", "wait_for", "notify", "notify", "notify_all" },
      n = r.int(0, 2), ev = r.int(1, g.nevents) }
  elseif op == "limiter" then
    return { op = op, k = r.int(1, #g.limiters), hold = r.int(0, 2), timeout = r.int(1, 15),
      nowait = r.chance(0.15) }
  elseif op == "limiter_total" then
    return { op = op, k = r.int(1, #g.limiters), total = r.int(0, 3) }
  elseif op == "self_deadline" then
    return { op = op, ms = r.int(0, 10) }
  elseif op == "self_cancel" then
    return { op = op }
  elseif op == "sleep_until" then
    return { op = op, ms = r.int(-3, 5) }
  elseif op == "cp_if_cancelled" then
    return { op = op }
  elseif op == "send" then
    local items = {}
    local k = r.int(1, #g.streams)
    for i = 1, r.int(1, 4) do
      g.next_item = g.next_item + 1
      items[i] = g.next_item
      g.item_stream[g.next_item] = k
    end
    return { op = op, stream = k, items = items, timeout = r.int(1, 20),
      nowait = r.chance(0.2) }
  elseif op == "recv" then
    return { op = op, stream = r.int(1, #g.streams), n = r.int(1, 5),
      timeout = r.int(1, 20), how = r.pick { "receive", "receive", "nowait", "iterate" } }
  elseif op == "lock" then
    return { op = op, k = r.int(1, g.nlocks), hold = r.int(0, 2), timeout = r.int(1, 15),
      nowait = r.chance(0.15) }
  elseif op == "sem" then
    return { op = op, k = r.int(1, #g.sems), hold = r.int(0, 2), timeout = r.int(1, 15),
      nowait = r.chance(0.15) }
  elseif op == "ev_wait" then
    return { op = op, k = r.int(1, g.nevents), timeout = r.int(1, 15) }
  elseif op == "ev_set" then
    return { op = op, k = r.int(1, g.nevents) }
  elseif op == "cancel" then -- target chosen once the program is complete
    local a = { op = op, delay = r.chance(0.3) and 0 or r.int(1, 8) }
    g.targeted[#g.targeted + 1] = a
    return a
  elseif op == "move_deadline" then
    local a = { op = op, ms = r.int(0, 20) }
    g.targeted[#g.targeted + 1] = a
    return a
  elseif op == "scope" then
    local kind = r.pick { "CancelScope", "move_on_after", "move_on_after", "fail_after" }
    local a = { op = op, sid = g:next_id("scope"), kind = kind,
      deadline = r.chance(0.75) and r.int(0, 20) or nil,
      shield = r.chance(0.25) }
    local sub = { depth = env.depth, group = env.group, in_body = env.in_body,
      scope_nest = env.scope_nest + 1 }
    a.block = M.gen_block(g, sub, 4)
    return a
  elseif op == "try" then
    local a = { op = op, fid = g:next_id("try") }
    local sub = { depth = env.depth, group = env.group, in_body = env.in_body,
      scope_nest = env.scope_nest + 1 }
    a.block = M.gen_block(g, sub, 4)
    return a
  elseif op == "group" then
    local grp = { gid = g:next_id("group"), children = 0, depth = env.depth + 1 }
    local a = { op = op, gid = grp.gid, sid = g:next_id("scope") }
    local sub = { depth = env.depth + 1, group = grp, in_body = true, scope_nest = 0 }
    a.body = M.gen_block(g, sub, 7, 2)
    return a
  else -- spawn / start: a child of env.group (the body's group, or the task's own group)
    local grp = env.group
    grp.children = grp.children + 1
    g.tasks = g.tasks + 1
    local a = { op = op, tid = g:next_id("task") }
    local sub = { depth = grp.depth, group = grp, in_body = false, scope_nest = 0 }
    a.block = M.gen_block(g, sub, 5)
    if op == "start" then
      table.insert(a.block, r.int(1, #a.block + 1), { op = "started" })
    end
    return a
  end
end

function M.gen_block(g, env, max_len, min_len)
  local block = {}
  local n = g.r.int(min_len or 1, max_len)
  for _ = 1, n do
    if g.actions >= g.max_actions then break end
    block[#block + 1] = gen_action(g, env)
  end
  return block
end

-- Which stream ends an action needs in the task that runs it: its own sends and
-- receives, those of blocks it runs in the same task, and those of the children it
-- spawns (the spawner clones their handles).  Keys "s1", "r1", "s2", ...
local function compute_uses(a)
  if a.uses then return a.uses end
  local u = {}
  if a.op == "send" then u["s" .. a.stream] = true end
  if a.op == "recv" then u["r" .. a.stream] = true end
  for _, b in ipairs { a.block or false, a.body or false } do
    if b then
      for _, x in ipairs(b) do
        for e in pairs(compute_uses(x)) do u[e] = true end
      end
    end
  end
  a.uses = u
  return u
end

local function sorted_keys(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- Inserts { op = "drop", ends = {...} } after the last action of each block (in the
-- task's own order of execution) that needs a stream end, so that every task closes
-- its handles as early as it can: receivers then see EndOfStream and senders
-- BrokenResourceError when the other side is gone.  Children (spawn, start) are
-- separate tasks, annotated on their own.
local function annotate(block, after)
  local need = {}
  for k in pairs(after) do need[k] = true end
  for i = #block, 1, -1 do
    local a = block[i]
    local drops = {}
    for e in pairs(compute_uses(a)) do
      if not need[e] then drops[e] = true end
    end
    if a.op == "scope" or a.op == "try" then
      annotate(a.block, need)
    elseif a.op == "group" then
      annotate(a.body, need)
    elseif a.op == "spawn" or a.op == "start" then
      annotate(a.block, {})
    end
    local list = sorted_keys(drops)
    if #list > 0 then table.insert(block, i + 1, { op = "drop", ends = list, uses = {} }) end
    for e in pairs(compute_uses(a)) do need[e] = true end
  end
end

--- The program for `seed`.
function M.generate(seed)
  local r = new_rng(seed)
  local g = {
    r = r, seed = seed, actions = 0, tasks = 0, next_item = 0, item_stream = {},
    targeted = {}, counters = {},
    max_actions = r.int(15, 90), max_tasks = r.int(3, 25),
    raise_weight = r.pick { 0, 0.3, 0.6, 1.0 },
    -- Seconds per "millisecond" of the program: most run in real milliseconds, some
    -- faster, where timers fire in the same loop iterations and cancellations land
    -- between checkpoints rather than in sleeps.
    unit = r.pick { 0.001, 0.001, 0.001, 0.0002, 0.00005 },
  }
  function g:next_id(kind)
    local n = (self.counters[kind] or 0) + 1
    self.counters[kind] = n
    return n
  end
  g.streams = {}
  for i = 1, r.int(1, 2) do
    g.streams[i] = { size = r.pick { 0, 0, 1, 2, 4, math.huge }, drain = r.chance(0.5) }
  end
  g.nlocks = r.int(1, 2)
  g.sems = {}
  for i = 1, r.int(1, 2) do g.sems[i] = { initial = r.int(1, 3) } end
  g.nevents = r.int(1, 3)
  g.nconds = r.int(1, 2)
  g.limiters = {}
  for i = 1, r.int(1, 2) do g.limiters[i] = { total = r.int(1, 3) } end

  -- The main task: a group first, then whatever else.
  local env = { depth = 0, group = nil, in_body = false, scope_nest = 0 }
  local root = M.gen_block(g, env, 2)
  local grp = { gid = g:next_id("group"), children = 0, depth = 1 }
  local top = { op = "group", gid = grp.gid, sid = g:next_id("scope") }
  top.body = M.gen_block(g, { depth = 1, group = grp, in_body = true, scope_nest = 0 }, 8, 3)
  root[#root + 1] = top
  for _, a in ipairs(M.gen_block(g, env, 2)) do root[#root + 1] = a end

  local nscopes = g.counters.scope or 0
  for _, a in ipairs(g.targeted) do
    a.target = r.int(1, math.max(1, nscopes))
  end
  annotate(root, {})

  return {
    seed = seed, root = root, streams = g.streams, nlocks = g.nlocks, sems = g.sems,
    nevents = g.nevents, item_stream = g.item_stream, nitems = g.next_item,
    nconds = g.nconds, limiters = g.limiters, unit = g.unit,
    counts = g.counters, actions = g.actions,
  }
end

--- A readable listing of a program (for failure messages and STRESS_VERBOSE).
function M.describe(prog)
  local out = {}
  local function line(depth, s) out[#out + 1] = ("  "):rep(depth) .. s end
  local function fields(a)
    local parts = {}
    for _, k in ipairs { "tid", "gid", "sid", "fid", "cid", "kind", "how", "stream", "k",
      "n", "ms", "delay", "deadline", "shield", "shielded", "hold", "timeout", "nowait",
      "target", "value", "total", "ev" } do
      if a[k] ~= nil then parts[#parts + 1] = k .. "=" .. tostring(a[k]) end
    end
    if a.items then parts[#parts + 1] = "items=" .. table.concat(a.items, ",") end
    if a.ends then parts[#parts + 1] = "ends=" .. table.concat(a.ends, ",") end
    return table.concat(parts, " ")
  end
  local function block(b, depth)
    for _, a in ipairs(b) do
      line(depth, a.op .. " " .. fields(a))
      if a.block then block(a.block, depth + 1) end
      if a.body then block(a.body, depth + 1) end
    end
  end
  local s = {}
  for i, st in ipairs(prog.streams) do
    s[i] = ("stream%d(size=%s,%s)"):format(i, tostring(st.size), st.drain and "drain" or "no drain")
  end
  line(0, ("program seed=%s (unit %g s): %d actions, %d tasks, %s; %d locks, %d semaphores, "
    .. "%d events, %d conditions, %d limiters"):format(tostring(prog.seed), prog.unit, prog.actions,
      prog.counts.task or 0, table.concat(s, " "), prog.nlocks, #prog.sems, prog.nevents,
      prog.nconds, #prog.limiters))
  block(prog.root, 1)
  return table.concat(out, "\n")
end

---------------------------------------------------------------------------------------
-- Interpreter
---------------------------------------------------------------------------------------

--- A fresh record for one run of `prog`.
function M.new_record(prog)
  local rec = {
    problems = {},
    spawned = {}, entered = {}, exited = {},
    declared = {}, closed = {},
    items = {},      -- error key (string or ErrorGroup) -> { landing, arrived, superseded }
    next_err = 0,
    starts = {},     -- tid -> { starter = landing, gid, returned }
    scopes = {},     -- sid -> scope object
    holders = {}, sem_holders = {},
    sent_ok = {}, send_failed = {}, received = {}, sender_of = {},
    recv_order = {}, recv_by = {}, -- per stream: items in the order received, and by whom
    drained = {},
    -- Counts for coverage reports (not checked).
    stats = { scopes_caught = 0, timeouts = 0, acquired = 0, event_waits = 0, cancels = 0,
      swallowed = 0, start_returned = 0 },
  }
  for i = 1, #prog.streams do rec.recv_order[i], rec.recv_by[i] = {}, {} end
  for i = 1, prog.nlocks do rec.holders[i] = 0 end
  for i = 1, #prog.sems do rec.sem_holders[i] = 0 end
  rec.cond_holders, rec.limiter_holders = {}, {}
  for i = 1, prog.nconds do rec.cond_holders[i] = 0 end
  for i = 1, #prog.limiters do rec.limiter_holders[i] = 0 end
  return rec
end

local function describe_value(v)
  local ok, s = pcall(tostring, v)
  return ok and s or ("<" .. type(v) .. ">")
end

local function problem(rec, fmt, ...)
  rec.problems[#rec.problems + 1] = fmt:format(...)
end

local function closer(fn)
  return setmetatable({}, { __close = fn })
end

-- The key under which an error value is tracked: its tag string, the ErrorGroup
-- itself, "Cancelled", or nil (an unexpected error).
local NUMBER_BASE = 1000000000 -- number errors are NUMBER_BASE + N

local function key_of(e)
  if type(e) == "string" then
    return e:match("^stress#%d+$") and e or nil
  end
  if math.type(e) == "integer" then
    return e > NUMBER_BASE and e or nil
  end
  if type(e) == "table" and type(rawget(e, "stress")) == "string" then return e end
  if tether.is(e, tether.Cancelled) then return "Cancelled" end
  if tether.is(e, tether.TimeoutError) then
    local m = e.message
    return type(m) == "string" and m:match("^stress#%d+$") and m or nil
  end
  if tether.is(e, tether.ErrorGroup) then return e end
  return nil
end

local function key_name(rec, key)
  if type(key) == "string" then return key end
  local item = rec.items[key]
  if item and item.name then return item.name end
  if math.type(key) == "integer" then return "stress#" .. (key - NUMBER_BASE) .. " (number)" end
  if type(key) == "table" and rawget(key, "stress") then
    return rawget(key, "stress") .. " (table)"
  end
  return item and item.name or ("an unknown " .. describe_value(key):match("^[^\n]*"))
end

-- Where an error raised now in context `ctx` must land: a place ({ place = ... }) or
-- the task's own landing (a start child's is resolved later, see resolve()).
local function landing_of(ctx)
  if ctx.place then return { place = ctx.place } end
  local t = ctx.task
  if t.start_tid then return { start = t.start_tid, phase = t.phase } end
  return t.landing
end

local function resolve(rec, landing)
  if landing.place then return landing.place end
  local info = rec.starts[landing.start]
  if landing.phase == "post" and info.returned then return "group" .. info.gid end
  return resolve(rec, info.starter)
end

local function register(rec, key, landing, name)
  if rec.items[key] then
    problem(rec, "%s was raised twice", key_name(rec, key))
    return
  end
  rec.items[key] = { landing = landing, arrived = {}, name = name }
end

-- The error `e` arrived at `place` (a group's ErrorGroup, a pcall block, the run).
local function arrive(rec, e, place, traceback)
  local key = key_of(e)
  if key == nil then
    problem(rec, "unexpected error at %s: %s%s", place, describe_value(e),
      traceback and ("\n" .. traceback) or "")
    return
  end
  if key == "Cancelled" then
    problem(rec, "a Cancelled arrived at %s (%s)", place, describe_value(e))
    return
  end
  local item = rec.items[key]
  if not item then
    problem(rec, "%s arrived at %s but was never raised", key_name(rec, key), place)
    return
  end
  item.arrived[#item.arrived + 1] = place
end

-- A `<close>` handler raises while `err` propagates: `err` is replaced (superseded).
local function supersede(rec, err)
  if err == nil then return end
  local key = key_of(err)
  if key == nil then
    problem(rec, "a <close> handler saw an unexpected error: %s", describe_value(err))
  elseif key ~= "Cancelled" then
    local item = rec.items[key]
    if item then item.superseded = true
    else problem(rec, "a <close> handler saw %s, which was never raised", key_name(rec, key)) end
  end
end

local ERROR_MT = { __tostring = function(e) return "error table " .. rawget(e, "stress") end }

-- A new unique error value of `kind` ("string", "table", "number"), registered as
-- raised now in ctx.
local function new_error(rec, ctx, kind)
  rec.next_err = rec.next_err + 1
  local tag = "stress#" .. rec.next_err
  local value = tag
  if kind == "table" then
    value = { stress = tag }
    if rec.next_err % 2 == 0 then setmetatable(value, ERROR_MT) end
  elseif kind == "number" then
    value = NUMBER_BASE + rec.next_err
  end
  register(rec, value, landing_of(ctx), kind == "string" and tag or (tag .. " (" .. kind .. ")"))
  return value
end

local function with(ctx, changes)
  local new = {}
  for k, v in pairs(ctx) do new[k] = v end
  for k, v in pairs(changes) do new[k] = v end
  return new
end

local exec_block

local function expect_class(rec, e, where, ...)
  for i = 1, select("#", ...) do
    if tether.is(e, (select(i, ...))) then return true end
  end
  if not tether.is(e, tether.Cancelled) then
    problem(rec, "%s raised an unexpected error: %s", where, describe_value(e))
  end
  return false
end

-- Spawns (or starts) the child task of action `a` into ctx.group.
local function spawn_child(prog, rec, a, ctx)
  local handles = {}
  for e in pairs(a.uses) do
    handles[e] = ctx.handles[e]:clone()
  end
  local tid = a.tid
  local gid = ctx.gid
  local host_id = ctx.host_id
  local starter_id = tether.current_task().id
  local name = "task" .. tid
  local function body(status)
    rec.entered[tid] = (rec.entered[tid] or 0) + 1
    local _exit <close> = closer(function() rec.exited[tid] = (rec.exited[tid] or 0) + 1 end)
    local me = tether.current_task()
    if me.name ~= name then problem(rec, "%s runs under the name %s", name, me.name) end
    -- A child's parent is its group's host, also when a sibling started it; a tg:start
    -- child's parent is the task that called start, until `started`.
    local want_parent = status and starter_id or host_id
    if me.parent_id ~= want_parent then
      problem(rec, "%s (%s): parent_id %s, want %s", name, a.op, describe_value(me.parent_id),
        describe_value(want_parent))
    end
    local _handles <close> = closer(function()
      for _, h in pairs(handles) do h:close() end
    end)
    local task = { tid = tid, landing = { place = "group" .. gid }, status = status }
    if status then task.start_tid, task.phase = tid, "pre" end
    exec_block(prog, rec, a.block, {
      task = task, handles = handles, group = ctx.group, gid = gid, place = nil,
      host_id = host_id,
    })
  end
  rec.spawned[tid] = (rec.spawned[tid] or 0) + 1
  if a.op == "spawn" then
    ctx.group:start_soon(name, body)
  else
    local info = { starter = landing_of(ctx), gid = gid, returned = false }
    rec.starts[tid] = info
    local v = ctx.group:start(name, body)
    info.returned = true
    rec.stats.start_returned = rec.stats.start_returned + 1
    if v ~= "started" .. tid then
      problem(rec, "tg:start of task%d returned %s", tid, describe_value(v))
    end
  end
end

local function new_scope(prog, a, rec)
  local d = a.deadline and a.deadline * prog.unit
  if a.kind == "CancelScope" then
    return tether.CancelScope { shield = a.shield,
      deadline = d and tether.current_time() + d or math.huge }
  elseif a.kind == "move_on_after" then
    return tether.move_on_after(d, { shield = a.shield })
  else
    rec.next_err = rec.next_err + 1
    local reason = "stress#" .. rec.next_err
    return tether.fail_after(d, { shield = a.shield, reason = reason }), reason
  end
end

local function exec_action(prog, rec, a, ctx)
  local op = a.op
  if op == "sleep" then
    tether.sleep(a.ms * prog.unit)
  elseif op == "checkpoint" then
    if a.shielded then tether.cancel_shielded_checkpoint() else tether.checkpoint() end
  elseif op == "swallow" then
    if not pcall(tether.sleep, a.ms * prog.unit) then
      rec.stats.swallowed = rec.stats.swallowed + 1
    end
  elseif op == "raise" then
    error(new_error(rec, ctx, a.kind), 0)
  elseif op == "started" then
    ctx.task.status:started("started" .. ctx.task.tid)
    ctx.task.phase = "post"
  elseif op == "spawn" or op == "start" then
    spawn_child(prog, rec, a, ctx)
  elseif op == "drop" then
    for _, e in ipairs(a.ends) do ctx.handles[e]:close() end
  elseif op == "scope" then
    local scope, reason = new_scope(prog, a, rec)
    rec.scopes[a.sid] = scope
    local ok, e = pcall(scope.run, scope, exec_block, prog, rec, a.block,
      with(ctx, { scope = scope }))
    if scope.cancelled_caught then rec.stats.scopes_caught = rec.stats.scopes_caught + 1 end
    if scope.cancelled_caught and not scope.cancel_called then
      problem(rec, "scope %d: cancelled_caught without cancel_called", a.sid)
    end
    if not ok then
      -- This scope's own TimeoutError (others only pass through).
      if tether.is(e, tether.TimeoutError) and e.message == reason then
        if not scope.cancelled_caught then
          problem(rec, "scope %d raised its TimeoutError without cancelled_caught", a.sid)
        end
        register(rec, reason, landing_of(ctx))
        rec.stats.timeouts = rec.stats.timeouts + 1
      end
      error(e, 0)
    end
  elseif op == "try" then
    local place = "try" .. a.fid
    local ok, e = tether.pcall(exec_block, prog, rec, a.block, with(ctx, { place = place }))
    if not ok then arrive(rec, e, place) end
  elseif op == "group" then
    local place = "group" .. a.gid
    local ok, e = pcall(tether.task_group, function(tg)
      rec.scopes[a.sid] = tg.cancel_scope
      exec_block(prog, rec, a.body, with(ctx, {
        group = tg, gid = a.gid, place = place, scope = tg.cancel_scope,
        host_id = tether.current_task().id,
      }))
    end)
    if not ok then
      if tether.is(e, tether.ErrorGroup) then
        -- Its lists line up (tasks has no holes, errors may: a nil error keeps its
        -- place), its message counts them, and every member must land here.
        local n = type(e.tasks) == "table" and #e.tasks or 0
        if n == 0 or type(e.errors) ~= "table" or type(e.tracebacks) ~= "table"
            or #e.tracebacks ~= n or #e.errors > n then
          problem(rec, "%s raised a malformed ErrorGroup: %d tasks, %s errors, %s tracebacks",
            place, n, type(e.errors) == "table" and #e.errors or "no",
            type(e.tracebacks) == "table" and #e.tracebacks or "no")
        elseif not tostring(e.message):match("^" .. n .. " error") then
          problem(rec, "%s: an ErrorGroup of %d errors says %q", place, n, tostring(e.message))
        end
        for i = 1, math.max(n, type(e.errors) == "table" and #e.errors or 0) do
          arrive(rec, e.errors[i], place, type(e.tracebacks) == "table" and e.tracebacks[i] or nil)
        end
        register(rec, e, landing_of(ctx), "ErrorGroup of " .. place)
      elseif not tether.is(e, tether.Cancelled) then
        problem(rec, "%s raised something else than an ErrorGroup or Cancelled: %s",
          place, describe_value(e))
      end
      error(e, 0)
    end
  elseif op == "send" then
    local h = ctx.handles["s" .. a.stream]
    tether.move_on_after(a.timeout * prog.unit):run(function()
      for _, item in ipairs(a.items) do
        rec.sender_of[item] = ctx.task.tid or 0
        local ok, e
        if a.nowait then
          ok, e = pcall(h.send_nowait, h, item)
        else
          ok, e = pcall(h.send, h, item)
        end
        if ok then
          rec.sent_ok[item] = true
        else
          rec.send_failed[item] = true
          if not expect_class(rec, e, "send", tether.WouldBlock, tether.BrokenResourceError)
          then
            error(e, 0)
          end
          if not a.nowait then return end
        end
      end
    end)
  elseif op == "recv" then
    local k = a.stream
    local h = ctx.handles["r" .. k]
    local function got(v)
      rec.received[v] = (rec.received[v] or 0) + 1
      local order = rec.recv_order[k]
      order[#order + 1] = v
      local by = rec.recv_by[k]
      by[#order] = ctx.task.tid
    end
    tether.move_on_after(a.timeout * prog.unit):run(function()
      if a.how == "iterate" then
        local n = 0
        for v in h do
          got(v)
          n = n + 1
          if n >= a.n then break end
        end
        return
      end
      for _ = 1, a.n do
        local ok, v
        if a.how == "nowait" then
          ok, v = pcall(h.receive_nowait, h)
          if not ok and tether.is(v, tether.WouldBlock) then
            tether.sleep(0.001)
            goto continue
          end
        else
          ok, v = pcall(h.receive, h)
        end
        if ok then
          got(v)
        else
          if not expect_class(rec, v, "receive", tether.EndOfStream) then error(v, 0) end
          return
        end
        ::continue::
      end
    end)
  elseif op == "lock" or op == "sem" or op == "limiter" then
    local obj, holders, limit
    if op == "lock" then
      obj, holders, limit = prog.lock_objects[a.k], rec.holders, 1
    elseif op == "sem" then
      obj, holders, limit = prog.sem_objects[a.k], rec.sem_holders, prog.sems[a.k].initial
    else
      obj, holders, limit = prog.limiter_objects[a.k], rec.limiter_holders, 3
    end
    tether.move_on_after(a.timeout * prog.unit):run(function()
      local guard
      if a.nowait then
        local ok, e = pcall(obj.acquire_nowait, obj)
        if not ok then
          if not expect_class(rec, e, op .. ":acquire_nowait", tether.WouldBlock) then
            error(e, 0)
          end
          return
        end
        guard = e
      else
        guard = obj:acquire()
      end
      local _guard <close> = guard
      rec.stats.acquired = rec.stats.acquired + 1
      holders[a.k] = holders[a.k] + 1
      local _count <close> = closer(function() holders[a.k] = holders[a.k] - 1 end)
      if holders[a.k] > limit then
        problem(rec, "%s %d: %d holders at once (limit %d)", op, a.k, holders[a.k], limit)
      end
      if op == "limiter" and obj.borrowed_tokens < holders[a.k] then
        problem(rec, "limiter %d: %d holders but borrowed_tokens = %s", a.k, holders[a.k],
          describe_value(obj.borrowed_tokens))
      end
      if a.hold > 0 then tether.sleep(a.hold * prog.unit) else tether.checkpoint() end
    end)
  elseif op == "ev_wait" then
    local ev = prog.event_objects[a.k]
    tether.move_on_after(a.timeout * prog.unit):run(function()
      ev:wait()
      if not ev:is_set() then problem(rec, "event %d: wait() returned while unset", a.k) end
      rec.stats.event_waits = rec.stats.event_waits + 1
    end)
  elseif op == "ev_set" then
    prog.event_objects[a.k]:set()
  elseif op == "cancel" then
    if a.delay > 0 then tether.sleep(a.delay * prog.unit) end
    local s = rec.scopes[a.target]
    if s then
      s:cancel("stress cancel")
      rec.stats.cancels = rec.stats.cancels + 1
    end
  elseif op == "move_deadline" then
    local s = rec.scopes[a.target]
    if s then s.deadline = tether.current_time() + a.ms * prog.unit end
  elseif op == "shield" then
    local s = rec.scopes[a.target]
    if s then s.shield = a.value end
  elseif op == "self_deadline" then
    if ctx.scope then ctx.scope.deadline = tether.current_time() + a.ms * prog.unit end
  elseif op == "self_cancel" then
    if ctx.scope then ctx.scope:cancel("self") end
  elseif op == "sleep_until" then
    tether.sleep_until(tether.current_time() + a.ms * prog.unit)
  elseif op == "cp_if_cancelled" then
    tether.checkpoint_if_cancelled()
  elseif op == "wait_blocked" then
    tether.move_on_after(a.timeout * prog.unit):run(tether.wait_all_tasks_blocked)
  elseif op == "limiter_total" then
    prog.limiter_objects[a.k].total_tokens = a.total
  elseif op == "cond" then
    local cond = prog.cond_objects[a.k]
    local holders = rec.cond_holders
    local function check(when)
      if holders[a.k] ~= 1 then
        problem(rec, "condition %d: %d holders %s", a.k, holders[a.k], when)
      end
      if not cond:locked() then problem(rec, "condition %d: not locked %s", a.k, when) end
    end
    tether.move_on_after(a.timeout * prog.unit):run(function()
      local _guard <close> = cond:acquire()
      holders[a.k] = holders[a.k] + 1
      local _count <close> = closer(function() holders[a.k] = holders[a.k] - 1 end)
      check("after acquire")
      if a.how == "wait" or a.how == "wait_for" then
        holders[a.k] = holders[a.k] - 1
        local ok, e
        if a.how == "wait" then
          ok, e = pcall(cond.wait, cond)
        else
          local ev = prog.event_objects[a.ev]
          ok, e = pcall(cond.wait_for, cond, function() return ev:is_set() end)
        end
        holders[a.k] = holders[a.k] + 1
        check(ok and "after wait returned" or "after wait raised")
        if not ok then error(e, 0) end
      elseif a.how == "notify" then
        cond:notify(a.n)
      else
        cond:notify_all()
      end
    end)
  else
    error("stress: unknown op " .. tostring(op))
  end
end

-- Runs block[i..] in ctx; a closevar action holds its variable until the block ends.
local function exec_from(prog, rec, block, i, ctx)
  for j = i, #block do
    local a = block[j]
    if a.op == "closevar" then
      rec.declared[a.cid] = (rec.declared[a.cid] or 0) + 1
      local _var <close> = closer(function(_, err)
        rec.closed[a.cid] = (rec.closed[a.cid] or 0) + 1
        if a.how == "raise" then
          local value = new_error(rec, ctx, a.kind)
          supersede(rec, err)
          error(value, 0)
        elseif a.how == "cancel" then
          local s = rec.scopes[a.target]
          if s then s:cancel("from a <close> handler") end
        elseif a.how == "set_event" then
          prog.event_objects[a.k]:set()
        elseif a.how == "shielded_sleep" then
          tether.CancelScope { shield = true }:run(tether.sleep, 0.001)
        elseif a.how == "checkpoint" then
          local ok, e = pcall(tether.checkpoint)
          if not ok then
            if not tether.is(e, tether.Cancelled) then
              problem(rec, "checkpoint in a <close> handler raised %s", describe_value(e))
            end
            supersede(rec, err)
            error(e, 0)
          end
        end
      end)
      return exec_from(prog, rec, block, j + 1, ctx) -- not a tail call: _var is open
    end
    exec_action(prog, rec, a, ctx)
  end
end

exec_block = function(prog, rec, block, ctx)
  exec_from(prog, rec, block, 1, ctx)
end

--- The main task of one run (give it to helper.run_within).
function M.main(prog, rec, batched)
  prog.lock_objects, prog.sem_objects, prog.event_objects = {}, {}, {}
  for i = 1, prog.nlocks do prog.lock_objects[i] = tether.Lock() end
  for i, s in ipairs(prog.sems) do prog.sem_objects[i] = tether.Semaphore(s.initial, s.initial) end
  for i = 1, prog.nevents do prog.event_objects[i] = tether.Event() end
  prog.cond_objects, prog.limiter_objects = {}, {}
  for i = 1, prog.nconds do prog.cond_objects[i] = tether.Condition() end
  for i, l in ipairs(prog.limiters) do prog.limiter_objects[i] = tether.CapacityLimiter(l.total) end
  local handles, drains = {}, {}
  for i, s in ipairs(prog.streams) do
    local send, receive = tether.create_memory_object_stream(s.size)
    handles["s" .. i], handles["r" .. i] = send, receive
    if s.drain then drains[i] = receive:clone() end
  end
  local task = { tid = 0, landing = { place = "run" } }
  local ok, e = pcall(exec_block, prog, rec, prog.root,
    { task = task, handles = handles, place = "run" })
  for _, h in pairs(handles) do h:close() end
  if not ok then arrive(rec, e, "run") end
  if not batched then -- every task of the program is gone (the run is still going)
    for _, t in ipairs(tether.get_running_tasks()) do
      if t.name:match("^task%d+$") then problem(rec, "%s is still running at the end", t.name) end
    end
  end
  for i, r in pairs(drains) do
    local order = rec.recv_order[i]
    while true do
      local got, v = pcall(r.receive_nowait, r)
      if not got then
        if not (tether.is(v, tether.WouldBlock) or tether.is(v, tether.EndOfStream)) then
          problem(rec, "draining stream %d: %s", i, describe_value(v))
        end
        break
      end
      rec.drained[v] = (rec.drained[v] or 0) + 1
      order[#order + 1] = v
      rec.recv_by[i][#order] = "drain"
    end
    r:close()
  end
  for i, lock in ipairs(prog.lock_objects) do
    if lock:locked() then problem(rec, "lock %d still locked at the end", i) end
  end
  for i, cond in ipairs(prog.cond_objects) do
    if cond:locked() then problem(rec, "condition %d still locked at the end", i) end
  end
  for i, lim in ipairs(prog.limiter_objects) do
    if lim.borrowed_tokens ~= 0 then
      problem(rec, "limiter %d: borrowed_tokens %s at the end", i,
        describe_value(lim.borrowed_tokens))
    end
  end
  for i, sem in ipairs(prog.sem_objects) do
    if sem.value ~= prog.sems[i].initial then
      problem(rec, "semaphore %d: value %s at the end, want %d", i, describe_value(sem.value),
        prog.sems[i].initial)
    end
  end
end

--- The main task of a run of several programs at once, each in its own task (their
--- records stay separate; they share only the loop, which mixes their timings).
function M.main_batch(progs, recs)
  tether.task_group(function(tg)
    for i, prog in ipairs(progs) do
      tg:start_soon("program " .. tostring(prog.seed), M.main, prog, recs[i], true)
    end
  end)
end

---------------------------------------------------------------------------------------
-- Invariants
---------------------------------------------------------------------------------------

--- Checks the record of a finished run; returns a list of problems (empty: all held).
function M.check(prog, rec)
  local out = {}
  for _, p in ipairs(rec.problems) do out[#out + 1] = p end
  local function bad(fmt, ...) out[#out + 1] = fmt:format(...) end

  -- Tasks.
  for tid = 1, prog.counts.task or 0 do
    local s, e, x = rec.spawned[tid] or 0, rec.entered[tid] or 0, rec.exited[tid] or 0
    if s > 1 then bad("task%d spawned %d times", tid, s) end
    if e ~= s then bad("task%d: spawned %d times, entered %d times", tid, s, e) end
    if x ~= e then bad("task%d: entered %d times, exited %d times", tid, e, x) end
  end
  -- `<close>` handlers.
  for cid = 1, prog.counts.closevar or 0 do
    local d, c = rec.declared[cid] or 0, rec.closed[cid] or 0
    if d > 1 then bad("closevar%d declared %d times", cid, d) end
    if c ~= d then bad("closevar%d: declared %d times, its handler ran %d times", cid, d, c) end
  end
  -- Errors.
  local keys = {}
  for key in pairs(rec.items) do keys[#keys + 1] = key end
  table.sort(keys, function(x, y) return key_name(rec, x) < key_name(rec, y) end)
  for _, key in ipairs(keys) do
    local item = rec.items[key]
    local want = resolve(rec, item.landing)
    local n = #item.arrived
    if n > 1 then
      bad("%s arrived %d times: %s (should land at %s)", key_name(rec, key), n,
        table.concat(item.arrived, ", "), want)
    elseif n == 1 and item.arrived[1] ~= want then
      bad("%s arrived at %s, should land at %s", key_name(rec, key), item.arrived[1], want)
    elseif n == 1 and item.superseded then
      bad("%s arrived at %s but was also superseded by a <close> handler", key_name(rec, key), want)
    elseif n == 0 and not item.superseded then
      bad("%s was lost: raised, never superseded, never arrived (should land at %s)",
        key_name(rec, key), want)
    end
  end
  -- Streams.
  for item = 1, prog.nitems do
    local r, d = rec.received[item] or 0, rec.drained[item] or 0
    if r + d > 1 then bad("item %d received %d times (drained %d)", item, r + d, d) end
    if r + d > 0 and not rec.sent_ok[item] then
      bad("item %d was received but its send %s", item,
        rec.send_failed[item] and "raised" or "never ran")
    end
    if rec.sent_ok[item] and rec.send_failed[item] then
      bad("item %d: send both returned and raised", item)
    end
  end
  for v in pairs(rec.received) do
    if math.type(v) ~= "integer" or v < 1 or v > prog.nitems then
      bad("received a value nobody sent: %s", describe_value(v))
    end
  end
  for k, st in ipairs(prog.streams) do
    -- Items of one sender reach one receiver in send order (item ids grow in each
    -- task's order).  Only per receiver: receive() takes its item, then yields, so
    -- the moment a task records an item is not the moment it took it.
    local last, last_by = {}, {}
    for j, v in ipairs(rec.recv_order[k]) do
      if prog.item_stream[v] ~= k then
        bad("stream %d delivered item %s of stream %s", k, describe_value(v),
          describe_value(prog.item_stream[v]))
      end
      local s, by = rec.sender_of[v], rec.recv_by[k][j]
      if s then
        local pair = tostring(s) .. ">" .. tostring(by)
        if last_by[pair] and last_by[pair] > v then
          bad("stream %d: task %s received item %d of task%s after its later item %d", k,
            tostring(by), v, tostring(s), last_by[pair])
        end
        last_by[pair] = math.max(last_by[pair] or 0, v)
        last[s] = math.max(last[s] or 0, v)
      end
    end
    local lost = {}
    for item = 1, prog.nitems do
      if prog.item_stream[item] == k and rec.sent_ok[item]
          and (rec.received[item] or 0) + (rec.drained[item] or 0) == 0 then
        lost[#lost + 1] = item
      end
    end
    if st.drain then
      if #lost > 0 then
        bad("stream %d (drained): sent but never received: %s", k, table.concat(lost, ","))
      end
    else
      if #lost > st.size then
        bad("stream %d: %d items sent and never received (buffer size %s): %s", k, #lost,
          tostring(st.size), table.concat(lost, ","))
      end
      for _, item in ipairs(lost) do
        local s = rec.sender_of[item]
        if last[s] and last[s] > item then
          bad("stream %d: item %d of task%d was lost but its later item %d was received",
            k, item, s, last[s])
        end
      end
    end
  end
  return out
end

return M
