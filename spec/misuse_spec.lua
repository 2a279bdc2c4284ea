-- Bad-input sweep (issue 7): every public function, method and property setter of
-- tether, called with wrong values for every argument (nil, booleans, NaN, negative,
-- huge and non-integer numbers, strings, tables, functions, coroutines, a userdata of
-- another tether class), a wrong self, closed or exited objects, and from the wrong
-- context: outside tether.run, a plain coroutine inside a task, and across a C-call
-- boundary (__gc, a table.sort comparator, a string.gsub callback, __tostring called by
-- tostring(), a module loader run by require, an xpcall message handler).
--
-- The rule for each call: either it is valid (the tables below say which, and why), or
-- it raises a string starting with the function's name and a colon ("tether.sleep: ",
-- "tg:start_soon: ", "scope.deadline: ", ...) or a tether error of a documented class
-- whose message starts the same way. Never a crash, never an error from inside the
-- implementation ("attempt to index a nil value", "bad argument #1 to '?'"), and
-- nothing left behind: after the error the object's observable state is the same, no
-- task was added, the task still works, and the run ends clean (helper.run checks
-- debug_stats). Each case runs in a run of its own, on fresh objects.
--
-- The cases run in a child lua5.4 (this file, with MISUSE_CHILD set): a crash becomes a
-- violation of the case that was running, and a new child goes on with the next case.
-- One assertion per function lists every violation of it.
-- Contract: API.md §2-§7, CONTRACT.md "Error conventions", SEMANTICS.md §1.8.
-- MISUSE_REPORT=1 prints how many calls were tried; MISUSE_TRACE=1 prints every call
-- and its outcome (on stderr).
local tether = require "tether"
local core = require "tether.core"
local helper = require "spec.helper"

local pack, unpack = table.pack, table.unpack

local SELF_PATH = debug.getinfo(1, "S").source:match("^@(.*)$")
local TIMEOUT = 0.001 -- a valid blocking call is cancelled after this long
local WATCHDOG = 5 -- seconds per case (times helper.time_scale)
local NO_PID = 2147483647 -- above any pid_max: kill() finds no such process
local TRACE = os.getenv("MISUSE_TRACE") -- the child also prints each case's outcome

-- {======================================================================
-- Values
-- =======================================================================

local ERROR_CLASSES = {
  "Cancelled", "Interrupted", "TimeoutError", "ErrorGroup", "WouldBlock", "EndOfStream",
  "ClosedResourceError", "BrokenResourceError", "BusyResourceError",
}

local function error_class(err)
  for _, name in ipairs(ERROR_CLASSES) do
    if tether.is(err, tether[name]) then return name end
  end
  return nil
end

local function describe_value(v)
  if type(v) == "string" then return ("string %q"):format(v) end
  local class = error_class(v)
  if class then return ("tether.%s %q"):format(class, tostring(v.message)) end
  local ok, s = pcall(tostring, v)
  return ok and s or ("<" .. type(v) .. ">")
end

-- The values every argument is tried with, each made afresh when its case runs; the
-- last one is a userdata of another tether class.
local VALUES = {
  { "nil", function() return nil end },
  { "true", function() return true end },
  { "42", function() return 42 end },
  { "1.5", function() return 1.5 end },
  { "-1", function() return -1 end },
  { "math.huge", function() return math.huge end },
  { "-math.huge", function() return -math.huge end },
  { "0/0", function() return 0 / 0 end },
  { "1e300", function() return 1e300 end },
  { "math.maxinteger", function() return math.maxinteger end },
  { "math.mininteger", function() return math.mininteger end },
  { '"str"', function() return "str" end },
  { "{}", function() return {} end },
  { "a function", function() return function() end end },
  { "a coroutine", function() return coroutine.create(function() end) end },
  { "FOREIGN" },
}

local function foreign_of(F)
  if F.foreign == "scope" then
    return "a tether.CancelScope", function() return tether.CancelScope() end
  end
  return "a tether.Event", function() return tether.Event() end
end

local function make_value(F, k)
  local make = VALUES[k][2] or select(2, foreign_of(F))
  return make()
end

local function value_label(F, k)
  return VALUES[k][2] and VALUES[k][1] or (foreign_of(F))
end

-- Classifiers: what a value in one argument position should do ("ok", "err" or
-- "either").
local function num(v) return type(v) == "number" and v == v end
local function int(v) return math.type(v) == "integer" end
local function yes(cond) return cond and "ok" or "err" end

local K = {
  any = function() return "ok" end,
  never = function() return "err" end,
  not_nil = function(v) return yes(v ~= nil) end,
  callable = function(v) return yes(type(v) == "function") end,
  delay = function(v) return yes(num(v) and v >= 0) end,
  opt_delay = function(v) return yes(v == nil or (num(v) and v >= 0)) end,
  time = function(v) return yes(num(v)) end,
  opt_time = function(v) return yes(v == nil or num(v)) end,
  opt_table = function(v) return yes(v == nil or type(v) == "table") end,
  bool = function(v) return yes(type(v) == "boolean") end,
  opt_bool = function(v) return yes(v == nil or type(v) == "boolean") end,
  opt_string = function(v) return yes(v == nil or type(v) == "string") end,
  string = function(v) return yes(type(v) == "string") end,
  count = function(v) return yes(int(v) and v >= 0) end,
  opt_count = function(v) return yes(v == nil or (int(v) and v >= 0)) end,
  tokens = function(v) return yes((int(v) and v >= 0) or v == math.huge) end,
  opt_tokens = function(v) return yes(v == nil or (int(v) and v >= 0) or v == math.huge) end,
  signal = function(v) return yes(int(v) and v >= 1 and v < 65) end, -- Linux: NSIG 65
  -- A pid outside C's int range: tether.kill's extra cases say what must happen.
  pid = function(v)
    if int(v) and (v < -2147483648 or v > 2147483647) then return "either" end
    return yes(int(v))
  end,
  -- tg:start_soon([name,] fn): a function in the name slot is the task function.
  name_or_fn = function(v) return yes(type(v) == "string" or type(v) == "function") end,
  opt_lock = function(v) return yes(v == nil) end, -- a Lock is tried by the baseline
}

-- }======================================================================

-- {======================================================================
-- Contexts
-- =======================================================================

local CONTEXTS = { "outside", "coroutine", "gc", "sort", "gsub", "tostring", "require",
                   "msgh" }

local CONTEXT_LABELS = {
  task = "inside a task",
  outside = "outside tether.run",
  coroutine = "from a plain coroutine inside a task",
  gc = "from a __gc metamethod inside a task",
  sort = "from a table.sort comparator inside a task",
  gsub = "from a string.gsub callback inside a task",
  tostring = "from a __tostring called by tostring() inside a task",
  require = "from a module loader run by require inside a task",
  msgh = "from an xpcall message handler inside a task",
}

-- What each kind of function should do in each context.
--   sync:     never blocks, needs no task: valid everywhere (SEMANTICS.md §1.8).
--   blocking: a blocking operation: raises outside run, in a plain coroutine and across a
--             C-call boundary (API.md §2, last paragraph but one).
--   task:     never blocks but acts for the current task (an owner, a borrower, a
--             holder): raises where there is no task (outside run, a plain coroutine),
--             valid across a C-call boundary, where the task is still the one running.
--   query:    reads the current task's state without blocking: as `task`, except that a
--             plain coroutine inside a task may either see that task or raise.
--   running:  needs a running loop but no task.
--   run:      tether.run itself: valid only outside a run.
--   enter:    scope:run enters a scope in the current task; entering does not block, so
--             across a C-call boundary it may work or raise (API.md is silent).
-- The C-call boundaries (__gc, table.sort, string.gsub, __tostring, require, a message
-- handler) all count alike (API.md §2).
local function kind(outside, coroutine, boundary, task)
  return { task = task or "ok", outside = outside, coroutine = coroutine, gc = boundary,
           sort = boundary, gsub = boundary, tostring = boundary, require = boundary,
           msgh = boundary }
end
local KINDS = {
  sync = kind("ok", "ok", "ok"),
  blocking = kind("err", "err", "err"),
  task = kind("err", "err", "ok"),
  query = kind("err", "either", "ok"),
  running = kind("either", "ok", "ok"),
  run = kind("ok", "err", "err", "err"),
  enter = kind("err", "err", "either"),
}

-- Made by a function of its own, so no register of the caller keeps the table alive.
local function plant_finalizer(thunk, rec)
  setmetatable({}, { __gc = function() rec.res = pack(pcall(thunk)) end })
end

-- Calls thunk() in context ctx (in the running task, except "outside"). Returns
-- { ok =, err =, res = packed results or nil, blocked =, note = }.
local function invoke(ctx, thunk, timeout)
  if ctx == "outside" then
    local r = pack(pcall(thunk))
    return { ok = r[1], err = r[2], res = r[1] and pack(unpack(r, 2, r.n)) or nil }
  elseif ctx == "task" then
    -- A valid blocking call is cancelled after TIMEOUT (the scope catches that).
    local scope = tether.move_on_after(timeout or TIMEOUT)
    local r = pack(pcall(scope.run, scope, thunk))
    return { ok = r[1], err = r[2], res = r[1] and pack(unpack(r, 2, r.n)) or nil,
             blocked = scope.cancelled_caught }
  elseif ctx == "coroutine" then
    local co = coroutine.create(thunk)
    local r = pack(coroutine.resume(co))
    if coroutine.status(co) == "suspended" then
      return { ok = true, note = "the call yielded out of the plain coroutine (it "
        .. "suspended a coroutine that is not a task), yielding " .. describe_value(r[2]) }
    end
    return { ok = r[1], err = r[2] }
  elseif ctx == "gc" then
    local rec = {}
    plant_finalizer(thunk, rec)
    collectgarbage()
    collectgarbage()
    if not rec.res then return { ok = true, note = "harness: the __gc did not run" } end
    return { ok = rec.res[1], err = rec.res[2] }
  elseif ctx == "sort" then
    local called = false
    local r = pack(pcall(table.sort, { 2, 1 }, function(a, b)
      if not called then
        called = true
        thunk()
      end
      return a < b
    end))
    return { ok = r[1], err = r[2] }
  elseif ctx == "gsub" then
    local r = pack(pcall(string.gsub, "x", "x", function() thunk() end))
    return { ok = r[1], err = r[2] }
  elseif ctx == "require" then
    local name = "tether_misuse_spec_loader"
    package.preload[name] = function()
      thunk()
      return true
    end
    local r = pack(pcall(require, name))
    package.preload[name], package.loaded[name] = nil, nil
    return { ok = r[1], err = r[2] }
  elseif ctx == "msgh" then
    local inner
    xpcall(error, function(e)
      inner = pack(pcall(thunk))
      return e
    end, "trigger")
    if not inner then return { ok = true, note = "harness: the handler did not run" } end
    return { ok = inner[1], err = inner[2] }
  elseif ctx == "tostring" then
    local obj = setmetatable({}, { __tostring = function()
      thunk()
      return "x"
    end })
    local r = pack(pcall(tostring, obj))
    return { ok = r[1], err = r[2] }
  end
  error("unknown context " .. tostring(ctx))
end

-- }======================================================================

-- {======================================================================
-- Fixtures: fixture(body) runs in a task and calls body(fx) once, fx.obj being the
-- object under test; outside() builds fx with no run active.
-- =======================================================================

local function strip_address(s) return (s:gsub(": 0x%x+$", "")) end

-- Runs body(tg) in a task group whose leftover children are cancelled at the end.
local function in_group(body)
  tether.task_group(function(tg)
    body(tg)
    tg.cancel_scope:cancel()
  end)
end

-- Runs body() while another task holds something (acquire() is called in that task).
local function held_elsewhere(acquire, body)
  in_group(function(tg)
    local ready = tether.Event()
    tg:start_soon(function()
      acquire()
      ready:set()
      tether.sleep_forever()
    end)
    ready:wait()
    body()
  end)
end

local function simple(make)
  return {
    fixture = function(body) body({ obj = make() }) end,
    outside = function() return { obj = make() } end,
  }
end

-- CancelScope
local function new_scope()
  return tether.CancelScope { deadline = tether.current_time() + 1000 }
end
local SCOPE = simple(new_scope)
SCOPE.snapshot = function(fx)
  local s = fx.obj
  return { deadline = s.deadline, shield = s.shield, cancel_called = s.cancel_called,
           cancelled_caught = s.cancelled_caught }
end
SCOPE.exited = { label = "an exited scope", fixture = function(body)
  local s = new_scope()
  s:run(function() end)
  body({ obj = s })
end }
SCOPE.active = { label = "the active scope, from inside its own run", fixture = function(body)
  local s = new_scope()
  s:run(function() body({ obj = s }) end)
end }
SCOPE.cancelled = { label = "a scope cancelled before it was entered", fixture = function(body)
  local s = new_scope()
  s:cancel("early")
  body({ obj = s })
end }

-- TaskGroup: after the body, a probe task checks that the group still starts tasks.
local function leaked_group()
  local leaked
  tether.task_group(function(tg) leaked = tg end)
  return leaked
end
local GROUP = {
  fixture = function(body)
    local fx = {}
    tether.task_group(function(tg)
      fx.obj = tg
      body(fx)
      local ok, err = pcall(tg.start_soon, tg, function() fx.probe_ran = true end)
      if not ok then fx.probe_error = err end
      tg.cancel_scope:cancel()
    end)
    fx.exited = true
  end,
  outside = function()
    local leaked
    helper.run(function() leaked = leaked_group() end)
    return { obj = leaked }
  end,
  snapshot = function(fx) return { group = strip_address(tostring(fx.obj)) } end,
  post = function(fx, out)
    if out.ok or not fx.exited then return nil end
    if fx.probe_error then
      return "after the error, tg:start_soon raised " .. describe_value(fx.probe_error)
    elseif not fx.probe_ran then
      return "after the error, a task started in the group never ran"
    end
  end,
  exited = { label = "an exited task group", fixture = function(body)
    body({ obj = leaked_group() })
  end },
  cancelled = { label = "a cancelled task group", fixture = function(body)
    in_group(function(tg)
      tg.cancel_scope:cancel()
      body({ obj = tg })
    end)
  end },
}

-- TaskStatus: the body runs in a tg:start child before it called started(); afterwards
-- started("final") must still work if the case raised.
local STATUS = {
  fixture = function(body)
    local fx = {}
    tether.task_group(function(tg)
      fx.value = tg:start(function(ts)
        fx.obj = ts
        body(fx)
        fx.final = pack(pcall(ts.started, ts, "final"))
      end)
    end)
  end,
  outside = function()
    local leaked
    helper.run(function()
      tether.task_group(function(tg)
        tg:start(function(ts)
          leaked = ts
          ts:started()
        end)
      end)
    end)
    return { obj = leaked }
  end,
  post = function(fx, out)
    if out.ok or not fx.final then return nil end
    if not fx.final[1] then
      return "after the error, task_status:started() raised " .. describe_value(fx.final[2])
    elseif fx.value ~= "final" then
      return "after the error, tg:start returned " .. describe_value(fx.value)
    end
  end,
  twice = { label = "a task status whose task already called started()",
    fixture = function(body)
      tether.task_group(function(tg)
        tg:start(function(ts)
          ts:started("first")
          body({ obj = ts })
        end)
      end)
    end },
  finished = { label = "the task status of a finished task", fixture = function(body)
    local leaked
    tether.task_group(function(tg)
      tg:start(function(ts)
        leaked = ts
        ts:started()
      end)
      tether.checkpoint()
      body({ obj = leaked })
    end)
  end },
  -- After a burst of tasks the scheduler gives free task records back over the next
  -- ticks, a slab of records at a time from the top (tether__trim_pools); a stale status
  -- must not read the freed record. The child starts after 2000 other tasks, so its
  -- record is in one of the top slabs, the first to go (about 1024 free records are
  -- kept, so the count falls to near half of the burst).
  trimmed = { label = "the task status of a task that finished in a burst of 2000 tasks "
      .. "whose records were given back", fixture = function(body)
    local leaked, burst
    tether.task_group(function(tg)
      for _ = 1, 2000 do tg:start_soon(tether.checkpoint) end
      tg:start(function(ts)
        leaked = ts
        ts:started()
      end)
      burst = core.debug_stats().records
    end)
    assert(burst > 2000, "the burst did not take a record per task")
    repeat tether.checkpoint() until core.debug_stats().records < burst / 2 + 200
    body({ obj = leaked })
  end },
}

-- SignalReceiver
local RECEIVER = {
  fixture = function(body)
    local r = tether.open_signal_receiver("SIGUSR1")
    body({ obj = r })
    r:close()
  end,
  outside = function()
    local leaked
    helper.run(function() leaked = tether.open_signal_receiver("SIGUSR1") end)
    return { obj = leaked }
  end,
  snapshot = function(fx) return { receiver = strip_address(tostring(fx.obj)) } end,
  closed = { label = "a closed receiver", fixture = function(body)
    local r = tether.open_signal_receiver("SIGUSR1")
    r:close()
    body({ obj = r })
  end },
  busy = { label = "a receiver another task is reading", fixture = function(body)
    local r = tether.open_signal_receiver("SIGUSR1")
    in_group(function(tg)
      tg:start_soon(function() r:receive() end)
      tether.wait_all_tasks_blocked()
      body({ obj = r })
    end)
    r:close()
  end },
}

-- Another task does something to fx.obj once this task blocks (in the call under test).
local function while_blocked(label, make, act)
  return { label = label, timeout = 1, dynamic = true, fixture = function(body)
    local fx = make()
    in_group(function(tg)
      tg:start_soon(function()
        tether.wait_all_tasks_blocked()
        act(fx)
      end)
      body(fx)
    end)
  end }
end
RECEIVER.closed_while_reading = while_blocked(
  "a receiver that another task closes while this task waits in receive()",
  function() return { obj = tether.open_signal_receiver("SIGUSR1") } end,
  function(fx) fx.obj:close() end)

-- Event
local EVENT = simple(tether.Event)
EVENT.snapshot = function(fx) return { is_set = fx.obj:is_set() } end
EVENT.set = { label = "a set event", fixture = function(body)
  local e = tether.Event()
  e:set()
  body({ obj = e })
end }

-- Lock and Condition share their three states: free, held by this task, held by another.
local function lockish(noun, make, acquire_nowait, acquire)
  local L = simple(make)
  L.snapshot = function(fx) return { locked = fx.obj:locked() } end
  local held = { label = noun .. " held by this task", fixture = function(body)
    local obj = make()
    acquire_nowait(obj)
    body({ obj = obj })
  end }
  L.free = { label = noun .. " held by nobody", fixture = L.fixture, outside = L.outside }
  L.mine = held
  L.other = { label = noun .. " held by another task", fixture = function(body)
    local obj = make()
    held_elsewhere(function() acquire(obj) end, function() body({ obj = obj }) end)
  end }
  -- Task ids start again at 1 in every run: the main task of this run is not the
  -- task of the earlier run that took the lock.
  L.earlier = { label = noun .. " still held by the main task of an earlier tether.run",
    prepare = function()
      local obj = make()
      helper.run(function() acquire_nowait(obj) end)
      return obj
    end,
    fixture = function(body, obj) body({ obj = obj }) end }
  return L
end
local LOCK = lockish("a lock", tether.Lock, function(l) l:acquire_nowait() end,
  function(l) l:acquire() end)
local CONDITION = lockish("a condition", tether.Condition, function(c) c:acquire_nowait() end,
  function(c) c:acquire() end)

-- Semaphore
local function semaphore(initial, max)
  local S = simple(function() return tether.Semaphore(initial, max) end)
  S.snapshot = function(fx) return { value = fx.obj.value, max_value = fx.obj.max_value } end
  return S
end
local SEM_FREE = semaphore(1, 1)
local SEM_EMPTY = semaphore(0, 1)
SEM_FREE.empty = { label = "a semaphore whose value is 0", fixture = SEM_EMPTY.fixture }
SEM_EMPTY.full = { label = "a semaphore at its max_value", fixture = SEM_FREE.fixture }
SEM_EMPTY.maxint = { label = "tether.Semaphore(math.maxinteger) (no max_value)",
  fixture = function(body) body({ obj = tether.Semaphore(math.maxinteger) }) end,
  check = function(fx)
    local v = fx.obj.value
    if math.type(v) ~= "integer" or v < 0 then
      return ("the value wrapped around to %s (an integer overflow)"):format(tostring(v))
    end
  end }

-- CapacityLimiter
local LIMITER = simple(function() return tether.CapacityLimiter(1) end)
LIMITER.snapshot = function(fx)
  local l = fx.obj
  return { total = l.total_tokens, borrowed = l.borrowed_tokens,
           available = l.available_tokens }
end
LIMITER.holding = { label = "a limiter this task holds a token of", fixture = function(body)
  local l = tether.CapacityLimiter(1)
  l:acquire_nowait()
  body({ obj = l })
end }
LIMITER.other = { label = "a limiter whose only token another task holds",
  fixture = function(body)
    local l = tether.CapacityLimiter(1)
    held_elsewhere(function() l:acquire() end, function() body({ obj = l }) end)
  end }
local LIMITER_HOLDING = {
  fixture = LIMITER.holding.fixture, outside = LIMITER.outside, snapshot = LIMITER.snapshot,
  free = { label = "a limiter this task holds no token of", fixture = LIMITER.fixture },
  earlier = { label = "a limiter whose token the main task of an earlier tether.run took",
    prepare = function()
      local l = tether.CapacityLimiter(1)
      helper.run(function() l:acquire_nowait() end)
      return l
    end,
    fixture = function(body, l) body({ obj = l }) end },
}

-- Memory object streams: fx.obj is the end under test, fx.other the other end.
local function stream_snapshot(fx)
  local snap = {}
  for _, key in ipairs { "obj", "other" } do
    local h = fx[key]
    local ok, st = pcall(h.statistics, h)
    snap[key] = ok and st or ("statistics() raised " .. describe_value(st))
  end
  return snap
end

local function stream(which, prepare)
  local function make()
    local s, r = tether.create_memory_object_stream(1)
    local fx = which == "send" and { obj = s, other = r } or { obj = r, other = s }
    if prepare then prepare(s, r) end
    return fx
  end
  return { fixture = function(body) body(make()) end, outside = make,
           snapshot = stream_snapshot, make = make }
end

local SEND = stream("send")
SEND.closed = { label = "a closed send handle", fixture = stream("send", function(s)
  s:close()
end).fixture }
SEND.broken = { label = "a stream whose receive end is closed",
  fixture = stream("send", function(_, r) r:close() end).fixture }
local SEND_FULL = stream("send", function(s) s:send_nowait("item") end)
SEND.full = { label = "a stream whose buffer is full", fixture = SEND_FULL.fixture }

local RECEIVE = stream("receive", function(s) s:send_nowait("item") end)
RECEIVE.closed = { label = "a closed receive handle",
  fixture = stream("receive", function(_, r) r:close() end).fixture }
local RECEIVE_EMPTY = stream("receive")
RECEIVE.empty = { label = "a stream with nothing buffered", fixture = RECEIVE_EMPTY.fixture }
RECEIVE.ended = { label = "a stream whose send end is closed and nothing is buffered",
  fixture = stream("receive", function(s) s:close() end).fixture }

SEND.closed_while_sending = while_blocked(
  "a send handle that another task closes while this task waits in send()",
  SEND_FULL.make, function(fx) fx.obj:close() end)
SEND.broken_while_sending = while_blocked(
  "a stream whose receive end another task closes while this task waits in send()",
  SEND_FULL.make, function(fx) fx.other:close() end)
RECEIVE.closed_while_receiving = while_blocked(
  "a receive handle that another task closes while this task waits in receive()",
  RECEIVE_EMPTY.make, function(fx) fx.obj:close() end)
RECEIVE.ended_while_receiving = while_blocked(
  "a stream whose send end another task closes while this task waits in receive()",
  RECEIVE_EMPTY.make, function(fx) fx.other:close() end)

local PLAIN = { fixture = function(body) body({}) end, outside = function() return {} end }

-- }======================================================================

-- {======================================================================
-- The table of functions
-- =======================================================================

local FUNCTIONS = {}

-- F = { name, sig, kind, fn(fx) -> function, args(fx) -> packed baseline arguments,
--       params = { {i, name, classify [, put]} }, method (self is argument 1),
--       fix (fixture set), variants = { {state, expect} }, ctx = overrides,
--       classes = documented error classes, extra = more cases }
local function def(F)
  F.fix = F.fix or PLAIN
  FUNCTIONS[#FUNCTIONS + 1] = F
  return F
end

local function mod(name) return function() return tether[name] end end
local function method(name) return function(fx) return fx.obj[name] end end
local function setter(prop) return function() return function(obj, v) obj[prop] = v end end end

local function args0(fx) return pack(fx.obj) end
local function const(...)
  local a = pack(...)
  return function() return pack(unpack(a, 1, a.n)) end
end

-- A valid call blocked on a deadline far in the future (1e300 s), with no other timer
-- in the loop, must sleep, not busy-wait: the run's watchdog ends it after SPIN_WINDOW
-- seconds, and the process must have used well under that much CPU time.
local SPIN_WINDOW = 0.03
local function spin_case(label, blocker)
  return { label = label .. " blocked on a deadline 1e300 s away", custom = function(case)
    local found = {}
    local cpu0, wall0 = os.clock(), tether.current_time()
    local ok, err = pcall(helper.run_within, SPIN_WINDOW, blocker)
    local cpu, wall = os.clock() - cpu0, tether.current_time() - wall0
    if ok then
      found[#found + 1] = case.label .. ": returned at once; expected it to stay blocked"
    elseif not (type(err) == "string" and err:find("^tether%.run: watchdog")) then
      found[#found + 1] = case.label .. ": raised " .. describe_value(err)
    end
    if cpu > 0.5 * wall then
      found[#found + 1] = ("%s: busy-waits: %.0f ms of CPU time in %.0f ms while blocked"
        .. " (is the timer armed with a timeout that overflows uint64_t milliseconds?)")
        :format(case.label, cpu * 1e3, wall * 1e3)
    end
    return found
  end }
end

-- Module functions ------------------------------------------------------------------

def { name = "tether.run", sig = "tether.run(fn)", kind = "run", fn = mod "run",
  args = const(function() end), sweep_ctx = "outside",
  params = { { i = 1, name = "fn", classify = K.callable } } }
def { name = "tether.current_time", sig = "tether.current_time()", kind = "sync",
  fn = mod "current_time", args = const() }
def { name = "tether.sleep", sig = "tether.sleep(delay)", kind = "blocking", fn = mod "sleep",
  args = const(0), params = { { i = 1, name = "delay", classify = K.delay } },
  extra = { spin_case("tether.sleep(1e300)", function() tether.sleep(1e300) end) } }
def { name = "tether.sleep_until", sig = "tether.sleep_until(deadline)", kind = "blocking",
  fn = mod "sleep_until", args = const(0),
  params = { { i = 1, name = "deadline", classify = K.time } },
  extra = { spin_case("tether.sleep_until(1e300)", function() tether.sleep_until(1e300) end) } }
for _, name in ipairs { "sleep_forever", "checkpoint", "checkpoint_if_cancelled",
                        "cancel_shielded_checkpoint", "wait_all_tasks_blocked" } do
  def { name = "tether." .. name, sig = "tether." .. name .. "()", kind = "blocking",
    fn = mod(name), args = const() }
end
def { name = "tether.current_task", sig = "tether.current_task()", kind = "query",
  fn = mod "current_task", args = const() }
def { name = "tether.get_running_tasks", sig = "tether.get_running_tasks()", kind = "running",
  fn = mod "get_running_tasks", args = const() }
def { name = "tether.current_effective_deadline", sig = "tether.current_effective_deadline()",
  kind = "query", fn = mod "current_effective_deadline", args = const() }
def { name = "tether.task_group", sig = "tether.task_group(fn)", kind = "blocking",
  fn = mod "task_group", args = const(function() end),
  params = { { i = 1, name = "fn", classify = K.callable },
             { i = 2, name = "extra argument", classify = K.any } } }

local function opts_field(i, field)
  return function(a, v) a[i] = { [field] = v } end
end
def { name = "tether.CancelScope", sig = "tether.CancelScope(opts)", kind = "sync",
  fn = mod "CancelScope", args = const(nil),
  params = { { i = 1, name = "opts", classify = K.opt_table },
             { name = "opts.deadline", classify = K.opt_time, put = opts_field(1, "deadline") },
             { name = "opts.shield", classify = K.opt_bool, put = opts_field(1, "shield") } },
  extra = { spin_case("tether.CancelScope{deadline = 1e300}:run(tether.sleep_forever)",
    function() tether.CancelScope({ deadline = 1e300 }):run(tether.sleep_forever) end) } }
for _, name in ipairs { "move_on_after", "move_on_at", "fail_after", "fail_at" } do
  local relative = name:match("after$") ~= nil
  local params = {
    { i = 1, name = relative and "delay" or "deadline",
      classify = relative and K.opt_delay or K.opt_time },
    { i = 2, name = "opts", classify = K.opt_table },
    { name = "opts.shield", classify = K.opt_bool, put = opts_field(2, "shield") },
  }
  if name:match("^fail") then
    params[#params + 1] = { name = "opts.reason", classify = K.opt_string,
                            put = opts_field(2, "reason") }
  end
  def { name = "tether." .. name, sig = ("tether.%s(%s, opts)"):format(name, params[1].name),
    kind = "sync", fn = mod(name), args = const(1, nil), params = params,
    extra = { spin_case(("tether.%s(1e300):run(tether.sleep_forever)"):format(name),
      function() tether[name](1e300):run(tether.sleep_forever) end) } }
end

-- Outside a run it raises (signal_spec.lua decided so: receivers belong to a loop).
-- Signal 42 is a real-time signal of the platform, so it is valid.
def { name = "tether.open_signal_receiver", sig = "tether.open_signal_receiver(sig, ...)",
  kind = "running", ctx = { outside = "err" }, fn = mod "open_signal_receiver",
  args = const("SIGUSR1"),
  params = { { i = 1, name = "sig", classify = K.signal },
             { name = "second sig", classify = K.signal,
               put = function(a, v) a[2], a.n = v, 2 end } },
  extra = { { label = "tether.open_signal_receiver() with no signal", args = const(),
              expect = "err" } } }
-- A number without a name (42) gives nil; one that is no signal at all raises.
def { name = "tether.signal_name", sig = "tether.signal_name(n)", kind = "sync",
  fn = mod "signal_name", args = const(15),
  params = { { i = 1, name = "n", classify = K.signal } } }

-- pid values are tried with signal 0 (existence check) and signals with a pid that
-- cannot exist: no process is ever signalled.
local function kill_huge_pid(what)
  return function(out)
    if out.ok and out.res and out.res[1] == true then
      return "returned true: the pid reached kill(2) as " .. what .. "; with a real signal "
        .. "this call signals processes it never named. Expected an error starting with "
        .. '"tether.kill: " (pid out of range) or nil, "ESRCH: ..."'
    end
    if not out.ok and not (type(out.err) == "string" and out.err:find("tether.kill: ", 1,
        true) == 1) then
      return "raised " .. describe_value(out.err)
    end
  end
end
def { name = "tether.kill", sig = "tether.kill(pid, sig)", kind = "sync", fn = mod "kill",
  args = const(NO_PID, 0),
  params = { { i = 1, name = "pid (with sig 0)", classify = K.pid },
             { i = 2, name = "sig", classify = K.signal } },
  extra = {
    { label = "tether.kill(math.maxinteger, 0)", args = const(math.maxinteger, 0),
      judge = kill_huge_pid("-1 (every process the user may signal)") },
    { label = "tether.kill(2^32, 0)", args = const(1 << 32, 0),
      judge = kill_huge_pid("0 (the caller's whole process group)") },
    { label = "tether.kill(2^32 + getpid(), 0)",
      args = function() return pack((1 << 32) + tether.getpid(), 0) end,
      judge = kill_huge_pid("the caller's own pid") },
  } }
def { name = "tether.getpid", sig = "tether.getpid()", kind = "sync", fn = mod "getpid",
  args = const() }
def { name = "tether.Event", sig = "tether.Event()", kind = "sync", fn = mod "Event",
  args = const() }
def { name = "tether.create_memory_object_stream",
  sig = "tether.create_memory_object_stream(max_buffer_size)", kind = "sync",
  fn = mod "create_memory_object_stream", args = const(nil),
  params = { { i = 1, name = "max_buffer_size", classify = K.opt_tokens } } }
def { name = "tether.Lock", sig = "tether.Lock()", kind = "sync", fn = mod "Lock",
  args = const() }
def { name = "tether.Semaphore", sig = "tether.Semaphore(initial, max_value)", kind = "sync",
  fn = mod "Semaphore", args = const(1, nil),
  params = { { i = 1, name = "initial", classify = K.count },
             { i = 2, name = "max_value", classify = K.opt_count } },
  extra = { { label = "tether.Semaphore(2, 1) (max_value below initial)", args = const(2, 1),
              expect = "err" } } }
def { name = "tether.Condition", sig = "tether.Condition(lock)", kind = "sync",
  fn = mod "Condition", args = function() return pack(tether.Lock()) end,
  params = { { i = 1, name = "lock", classify = K.opt_lock } } }
def { name = "tether.CapacityLimiter", sig = "tether.CapacityLimiter(total_tokens)",
  kind = "sync", fn = mod "CapacityLimiter", args = const(1),
  params = { { i = 1, name = "total_tokens", classify = K.tokens } } }
-- Like pcall: a value that cannot be called gives false and Lua's message, not a raise.
-- tether.is answers false for anything that is not an instance.
def { name = "tether.pcall", sig = "tether.pcall(f)", kind = "sync", fn = mod "pcall",
  args = const(function() end), params = { { i = 1, name = "f", classify = K.any } } }
def { name = "tether.is", sig = "tether.is(err, class)", kind = "sync", fn = mod "is",
  args = const("x", tether.Cancelled),
  params = { { i = 1, name = "err", classify = K.any }, { i = 2, name = "class",
               classify = K.any } } }

-- CancelScope -----------------------------------------------------------------------

def { name = "scope:run", sig = "scope:run(fn)", kind = "enter", method = true,
  foreign = "event", fix = SCOPE, fn = method "run",
  args = function(fx) return pack(fx.obj, function() end) end,
  params = { { i = 2, name = "fn", classify = K.callable },
             { i = 3, name = "extra argument", classify = K.any } },
  variants = { { SCOPE.exited, "err" }, { SCOPE.active, "err" }, { SCOPE.cancelled, "ok" } } }
-- cancel, deadline and shield work on any scope, entered or not, exited or not, from
-- anywhere (API.md §4, SEMANTICS.md §2.3); a past or infinite deadline is a valid time.
def { name = "scope:cancel", sig = "scope:cancel(reason)", kind = "sync", method = true,
  fix = SCOPE, fn = method "cancel", args = function(fx) return pack(fx.obj, "why") end,
  params = { { i = 2, name = "reason", classify = K.opt_string } },
  variants = { { SCOPE.exited, "ok" }, { SCOPE.active, "ok" }, { SCOPE.cancelled, "ok" } } }
def { name = "scope.deadline", sig = "scope.deadline = value", kind = "sync", fix = SCOPE,
  fn = setter "deadline",
  args = function(fx) return pack(fx.obj, tether.current_time() + 500) end,
  params = { { i = 2, name = "value", classify = K.time } },
  variants = { { SCOPE.exited, "ok" }, { SCOPE.active, "ok" }, { SCOPE.cancelled, "ok" } },
  extra = { spin_case("scope.deadline = 1e300 on an active scope, then tether.sleep_forever()",
    function()
      local scope = tether.CancelScope()
      scope:run(function()
        scope.deadline = 1e300
        tether.sleep_forever()
      end)
    end) } }
def { name = "scope.shield", sig = "scope.shield = value", kind = "sync", fix = SCOPE,
  fn = setter "shield", args = function(fx) return pack(fx.obj, true) end,
  params = { { i = 2, name = "value", classify = K.bool } },
  variants = { { SCOPE.exited, "ok" }, { SCOPE.active, "ok" }, { SCOPE.cancelled, "ok" } } }

-- TaskGroup -------------------------------------------------------------------------

-- start_soon is synchronous (SEMANTICS.md §1.8): valid from a plain coroutine and across a
-- C-call boundary; a cancelled group still takes tasks (API.md §3). Outside a run the
-- only group there is has exited, so it raises.
local GROUP_STATES = { { GROUP.exited, "err" }, { GROUP.cancelled, "ok" } }
def { name = "tg:start_soon", sig = "tg:start_soon(fn)", kind = "sync", method = true,
  ctx = { outside = "err" }, fix = GROUP, fn = method "start_soon",
  args = function(fx) return pack(fx.obj, function() end) end,
  params = { { i = 2, name = "fn", classify = K.callable },
             { name = "name (before a function)", classify = K.name_or_fn,
               put = function(a, v) a[2], a[3], a.n = v, function() end, 3 end },
             { i = 3, name = "argument of fn", classify = K.any } },
  variants = GROUP_STATES }
local function starter(ts) ts:started("v") end
def { name = "tg:start", sig = "tg:start(fn)", kind = "blocking", method = true, fix = GROUP,
  fn = method "start", args = function(fx) return pack(fx.obj, starter) end,
  -- A function that returns without calling started() makes tg:start raise (API.md §3).
  params = { { i = 2, name = "fn", classify = K.never },
             { name = "name (before a function)", classify = K.string,
               put = function(a, v) a[2], a[3], a.n = v, starter, 3 end },
             { i = 3, name = "argument of fn", classify = K.any } },
  variants = { { GROUP.exited, "err" } } }

-- TaskStatus ------------------------------------------------------------------------

-- Synchronous, any value; outside a run its task has finished, so it raises.
def { name = "task_status:started", sig = "task_status:started(value)", kind = "sync",
  method = true, ctx = { outside = "err" }, fix = STATUS, fn = method "started",
  args = function(fx) return pack(fx.obj, "v") end,
  params = { { i = 2, name = "value", classify = K.any } },
  variants = { { STATUS.twice, "err" }, { STATUS.finished, "err" }, { STATUS.trimmed, "err" } } }

-- SignalReceiver --------------------------------------------------------------------

def { name = "signals:receive", sig = "signals:receive()", kind = "blocking", method = true,
  fix = RECEIVER, fn = method "receive", args = args0,
  classes = { ClosedResourceError = true, BusyResourceError = true },
  variants = { { RECEIVER.closed, "err" }, { RECEIVER.busy, "err" },
               { RECEIVER.closed_while_reading, "err" } } }
def { name = "signals:close", sig = "signals:close()", kind = "sync", method = true,
  fix = RECEIVER, fn = method "close", args = args0,
  variants = { { RECEIVER.closed, "ok" } } }

-- Event -----------------------------------------------------------------------------

def { name = "event:set", sig = "event:set()", kind = "sync", method = true,
  foreign = "scope", fix = EVENT, fn = method "set", args = args0,
  variants = { { EVENT.set, "ok" } } }
def { name = "event:is_set", sig = "event:is_set()", kind = "sync", method = true,
  foreign = "scope", fix = EVENT, fn = method "is_set", args = args0 }
def { name = "event:wait", sig = "event:wait()", kind = "blocking", method = true,
  foreign = "scope", fix = EVENT, fn = method "wait", args = args0,
  variants = { { EVENT.set, "ok" } } }

-- Lock ------------------------------------------------------------------------------

local WB = { WouldBlock = true }
def { name = "lock:acquire", sig = "lock:acquire()", kind = "blocking", method = true,
  fix = LOCK, fn = method "acquire", args = args0,
  variants = { { LOCK.mine, "err" }, { LOCK.other, "ok" } } }
def { name = "lock:acquire_nowait", sig = "lock:acquire_nowait()", kind = "task",
  method = true, fix = LOCK, fn = method "acquire_nowait", args = args0, classes = WB,
  variants = { { LOCK.mine, "err" }, { LOCK.other, "err" } } }
def { name = "lock:release", sig = "lock:release()", kind = "task", method = true,
  fix = { fixture = LOCK.mine.fixture, outside = LOCK.outside, snapshot = LOCK.snapshot },
  fn = method "release", args = args0,
  variants = { { LOCK.free, "err" }, { LOCK.other, "err" }, { LOCK.earlier, "err" } } }
def { name = "lock:locked", sig = "lock:locked()", kind = "sync", method = true, fix = LOCK,
  fn = method "locked", args = args0 }

-- Semaphore -------------------------------------------------------------------------

def { name = "semaphore:acquire", sig = "semaphore:acquire()", kind = "blocking",
  method = true, fix = SEM_FREE, fn = method "acquire", args = args0,
  variants = { { SEM_FREE.empty, "ok" } } }
-- No owner: a semaphore may be taken and given back without a task (Trio's are sync too).
def { name = "semaphore:acquire_nowait", sig = "semaphore:acquire_nowait()", kind = "sync",
  method = true, fix = SEM_FREE, fn = method "acquire_nowait", args = args0, classes = WB,
  variants = { { SEM_FREE.empty, "err" } } }
def { name = "semaphore:release", sig = "semaphore:release()", kind = "sync", method = true,
  fix = SEM_EMPTY, fn = method "release", args = args0,
  variants = { { SEM_EMPTY.full, "err" }, { SEM_EMPTY.maxint, "either" } } }

-- Condition -------------------------------------------------------------------------

local COND_HELD = { fixture = CONDITION.mine.fixture, outside = CONDITION.outside,
                    snapshot = CONDITION.snapshot }
local COND_NOT_MINE = { { CONDITION.free, "err" }, { CONDITION.other, "err" },
                        { CONDITION.earlier, "err" } }
def { name = "condition:acquire", sig = "condition:acquire()", kind = "blocking",
  method = true, fix = CONDITION, fn = method "acquire", args = args0,
  variants = { { CONDITION.mine, "err" }, { CONDITION.other, "ok" } } }
def { name = "condition:acquire_nowait", sig = "condition:acquire_nowait()", kind = "task",
  method = true, fix = CONDITION, fn = method "acquire_nowait", args = args0, classes = WB,
  variants = { { CONDITION.mine, "err" }, { CONDITION.other, "err" } } }
def { name = "condition:release", sig = "condition:release()", kind = "task", method = true,
  fix = COND_HELD, fn = method "release", args = args0, variants = COND_NOT_MINE }
def { name = "condition:locked", sig = "condition:locked()", kind = "sync", method = true,
  fix = CONDITION, fn = method "locked", args = args0 }
def { name = "condition:wait", sig = "condition:wait()", kind = "blocking", method = true,
  fix = COND_HELD, fn = method "wait", args = args0, variants = COND_NOT_MINE }
local function never() return false end
def { name = "condition:wait_for", sig = "condition:wait_for(predicate)", kind = "blocking",
  method = true, fix = COND_HELD, fn = method "wait_for",
  args = function(fx) return pack(fx.obj, never) end,
  params = { { i = 2, name = "predicate", classify = K.callable } },
  variants = COND_NOT_MINE }
def { name = "condition:notify", sig = "condition:notify(n)", kind = "task", method = true,
  fix = COND_HELD, fn = method "notify", args = function(fx) return pack(fx.obj, 1) end,
  params = { { i = 2, name = "n", classify = K.opt_count } }, variants = COND_NOT_MINE }
def { name = "condition:notify_all", sig = "condition:notify_all()", kind = "task",
  method = true, fix = COND_HELD, fn = method "notify_all", args = args0,
  variants = COND_NOT_MINE }

-- CapacityLimiter -------------------------------------------------------------------

def { name = "limiter:acquire", sig = "limiter:acquire()", kind = "blocking", method = true,
  fix = LIMITER, fn = method "acquire", args = args0,
  variants = { { LIMITER.holding, "err" }, { LIMITER.other, "ok" } } }
def { name = "limiter:acquire_nowait", sig = "limiter:acquire_nowait()", kind = "task",
  method = true, fix = LIMITER, fn = method "acquire_nowait", args = args0, classes = WB,
  variants = { { LIMITER.holding, "err" }, { LIMITER.other, "err" } } }
def { name = "limiter:release", sig = "limiter:release()", kind = "task", method = true,
  fix = LIMITER_HOLDING, fn = method "release", args = args0,
  variants = { { LIMITER_HOLDING.free, "err" }, { LIMITER_HOLDING.earlier, "err" } } }
def { name = "limiter.total_tokens", sig = "limiter.total_tokens = value", kind = "sync",
  fix = LIMITER, fn = setter "total_tokens", args = function(fx) return pack(fx.obj, 2) end,
  params = { { i = 2, name = "value", classify = K.tokens } } }

-- Memory object streams -------------------------------------------------------------

local CLOSED = { ClosedResourceError = true }
def { name = "send:send", sig = "send:send(value)", kind = "blocking", method = true,
  fix = SEND, fn = method "send", args = function(fx) return pack(fx.obj, "v") end,
  params = { { i = 2, name = "value", classify = K.not_nil } },
  classes = { ClosedResourceError = true, BrokenResourceError = true },
  variants = { { SEND.closed, "err" }, { SEND.broken, "err" }, { SEND.full, "ok" },
               { SEND.closed_while_sending, "err" }, { SEND.broken_while_sending, "err" } } }
def { name = "send:send_nowait", sig = "send:send_nowait(value)", kind = "sync",
  method = true, fix = SEND, fn = method "send_nowait",
  args = function(fx) return pack(fx.obj, "v") end,
  params = { { i = 2, name = "value", classify = K.not_nil } },
  classes = { ClosedResourceError = true, BrokenResourceError = true, WouldBlock = true },
  variants = { { SEND.closed, "err" }, { SEND.broken, "err" }, { SEND.full, "err" } } }
def { name = "receive:receive", sig = "receive:receive()", kind = "blocking", method = true,
  fix = RECEIVE, fn = method "receive", args = args0,
  classes = { ClosedResourceError = true, EndOfStream = true },
  variants = { { RECEIVE.closed, "err" }, { RECEIVE.empty, "ok" }, { RECEIVE.ended, "err" },
               { RECEIVE.closed_while_receiving, "err" },
               { RECEIVE.ended_while_receiving, "err" } } }
def { name = "receive:receive_nowait", sig = "receive:receive_nowait()", kind = "sync",
  method = true, fix = RECEIVE, fn = method "receive_nowait", args = args0,
  classes = { ClosedResourceError = true, EndOfStream = true, WouldBlock = true },
  variants = { { RECEIVE.closed, "err" }, { RECEIVE.empty, "err" }, { RECEIVE.ended, "err" } } }
for _, side in ipairs { "send", "receive" } do
  local S = side == "send" and SEND or RECEIVE
  def { name = side .. ":clone", sig = side .. ":clone()", kind = "sync", method = true,
    fix = S, fn = method "clone", args = args0, classes = CLOSED,
    variants = { { S.closed, "err" } } }
  def { name = side .. ":close", sig = side .. ":close()", kind = "sync", method = true,
    fix = S, fn = method "close", args = args0, variants = { { S.closed, "ok" } } }
  -- Trio answers statistics() on a closed channel; raising ClosedResourceError is fine too.
  def { name = side .. ":statistics", sig = side .. ":statistics()", kind = "sync",
    method = true, fix = S, fn = method "statistics", args = args0, classes = CLOSED,
    variants = { { S.closed, "either" } } }
end

-- Read-only properties: assigning one is misuse ("<object>.<property>: ...") and must
-- change nothing.
for _, entry in ipairs {
  { "scope", "cancel_called", SCOPE }, { "scope", "cancelled_caught", SCOPE },
  { "tg", "cancel_scope", GROUP }, { "semaphore", "value", SEM_FREE },
  { "semaphore", "max_value", SEM_FREE }, { "limiter", "borrowed_tokens", LIMITER },
  { "limiter", "available_tokens", LIMITER },
} do
  local obj, prop, fix = entry[1], entry[2], entry[3]
  def { name = obj .. "." .. prop, sig = obj .. "." .. prop .. " = value", kind = "sync",
    readonly = true, fix = fix, fn = setter(prop),
    args = function(fx) return pack(fx.obj, 1) end,
    params = { { i = 2, name = "value", classify = K.never } } }
end

-- Metamethods called directly (getmetatable(obj).__gc(42), ...): never a crash and
-- never an internal error; returning is accepted.
local METAMETHODS = {
  { "CancelScope", SCOPE, { "__index", "__newindex", "__tostring", "__gc" }, "deadline" },
  { "TaskGroup", GROUP, { "__index", "__tostring", "__gc" } },
  { "SignalReceiver", RECEIVER, { "__call", "__close", "__gc", "__tostring" } },
  { "Event", EVENT, { "__tostring" } },
  { "MemoryObjectSendStream", SEND, { "__close", "__gc", "__tostring" } },
  { "MemoryObjectReceiveStream", RECEIVE, { "__call", "__close", "__gc", "__tostring" } },
  { "Lock", LOCK, { "__close" } },
  { "Semaphore", SEM_FREE, { "__close" } },
  { "Condition", CONDITION, { "__close" } },
  { "CapacityLimiter", LIMITER, { "__index", "__newindex", "__close" }, "total_tokens" },
}
for _, entry in ipairs(METAMETHODS) do
  def { name = entry[1] .. " metamethods", metamethods = entry[3], key = entry[4],
    fix = entry[2], foreign = entry[1] == "Event" and "scope" or "event" }
end

-- }======================================================================

-- {======================================================================
-- Cases
-- =======================================================================

-- Wrong selves: every value of VALUES, plus these.
local function extra_selves(F)
  local list = {
    { label = "the class table (getmetatable(obj))",
      make = function(fx) return getmetatable(fx.obj) end },
  }
  if F.name:match("^lock:") then
    list[#list + 1] = { label = "a tether.Semaphore", make = function()
      return tether.Semaphore(1) end }
  else
    list[#list + 1] = { label = "a tether.Lock", make = function() return tether.Lock() end }
  end
  if F.name:match("^send:") or F.name:match("^receive:") then
    list[#list + 1] = { label = "the other end of the stream",
                        make = function(fx) return fx.other end }
  end
  return list
end

local function with_value(F, param, k)
  return function(fx)
    local a = F.args(fx)
    local v = make_value(F, k)
    if param.put then
      param.put(a, v)
    else
      a[param.i] = v
      if param.i > a.n then a.n = param.i end
    end
    return a
  end
end

local function with_self(F, make)
  return function(fx)
    local a = F.args(fx)
    a[1] = make(fx)
    return a
  end
end

local function build_cases(F)
  local cases = {}
  local function add(case)
    case.fix = case.fix or F.fix
    cases[#cases + 1] = case
  end
  if F.metamethods then
    local selves = { "class" }
    for k, v in ipairs(VALUES) do
      local l = v[1]
      if l == "nil" or l == "42" or l == '"str"' or l == "{}" or l == "FOREIGN" then
        selves[#selves + 1] = k
      end
    end
    for _, mm in ipairs(F.metamethods) do
      for _, k in ipairs(selves) do
        local label = k == "class" and "the class table" or value_label(F, k)
        -- A finalizer that trusts its argument may scribble over memory and crash much
        -- later: each __gc case gets a child process of its own (see child_main).
        add { label = ("getmetatable(%s).%s(%s)"):format(F.name:match("^%S+"), mm, label),
              ctx = "task", expect = "either", mm = mm, isolate = mm == "__gc",
              args = function(fx)
                local self = k == "class" and getmetatable(fx.obj) or make_value(F, k)
                local key = mm == "__newindex" and (F.key or "x")
                  or mm == "__index" and "x" or nil
                return pack(self, key, key and 1 or nil)
              end }
      end
    end
    return cases
  end
  local sweep_ctx = F.sweep_ctx or "task"
  if not F.readonly then
    add { label = F.sig .. " (the valid baseline call)", ctx = sweep_ctx,
          expect = KINDS[F.kind][sweep_ctx], args = F.args }
  end
  for _, param in ipairs(F.params or {}) do
    for k = 1, #VALUES do
      local v = make_value(F, k)
      add { label = ("%s with %s = %s"):format(F.sig, param.name, value_label(F, k)),
            ctx = sweep_ctx, expect = param.classify(v), args = with_value(F, param, k) }
    end
  end
  if F.method then
    for k = 1, #VALUES do
      add { label = ("%s with self = %s"):format(F.sig, value_label(F, k)), ctx = "task",
            expect = "err", args = with_self(F, function() return make_value(F, k) end) }
    end
    for _, s in ipairs(extra_selves(F)) do
      add { label = ("%s with self = %s"):format(F.sig, s.label), ctx = "task",
            expect = "err", args = with_self(F, s.make) }
    end
  end
  for _, v in ipairs(F.variants or {}) do
    add { label = ("%s on %s"):format(F.sig, v[1].label), ctx = "task", expect = v[2],
          fix = { fixture = v[1].fixture, snapshot = F.fix.snapshot, post = F.fix.post },
          args = F.args, timeout = v[1].timeout, dynamic = v[1].dynamic,
          prepare = v[1].prepare, check = v[1].check }
  end
  if not F.readonly then
    local contexts = { unpack(CONTEXTS) }
    if sweep_ctx ~= "task" then contexts[#contexts + 1] = "task" end
    for _, ctx in ipairs(contexts) do
      if ctx ~= sweep_ctx then
        local expect = (F.ctx and F.ctx[ctx]) or KINDS[F.kind][ctx]
        add { label = ("%s %s"):format(F.sig, CONTEXT_LABELS[ctx]), ctx = ctx,
              expect = expect, args = F.args }
      end
    end
  end
  for _, e in ipairs(F.extra or {}) do
    add { label = e.label, ctx = "task", expect = e.expect, judge = e.judge, args = e.args,
          custom = e.custom }
  end
  return cases
end

-- }======================================================================

-- {======================================================================
-- Running and judging one case
-- =======================================================================

local function starts_with(s, prefix)
  return type(s) == "string" and s:sub(1, #prefix) == prefix
end

local function accepted(F, err)
  if F.metamethods then
    return type(err) == "string" and err:match("^[%w_]+[%.:][%w_]+: ") ~= nil
  end
  local prefix = F.name .. ": "
  if type(err) == "string" then return starts_with(err, prefix) end
  local class = error_class(err)
  return class ~= nil and F.classes ~= nil and F.classes[class] == true
    and starts_with(err.message, prefix)
end

local function expected_error(F)
  if F.metamethods then return 'nothing, or an error string like "name:method: ..."' end
  local s = ("an error string starting with %q"):format(F.name .. ": ")
  if F.classes then
    local names = {}
    for name in pairs(F.classes) do names[#names + 1] = "tether." .. name end
    table.sort(names)
    s = s .. (" or a %s whose message starts so"):format(table.concat(names, "/"))
  end
  return s
end

local function snapshot(fix, fx)
  if not fix.snapshot then return nil end
  local ok, snap = pcall(fix.snapshot, fx)
  return ok and snap or { snapshot_raised = describe_value(snap) }
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then
    return a == b or (a ~= a and b ~= b)
  end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function show(v)
  if type(v) ~= "table" then return describe_value(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. " = " .. show(v[k]) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function judge(F, case, rec, add)
  local out = rec.out
  if out.note then
    add(out.note)
    return
  end
  if case.judge then
    local problem = case.judge(out)
    if problem then add(problem) end
  elseif out.ok then
    if case.expect == "err" then
      add(("returned%s; expected %s"):format(out.blocked and " (after blocking)" or "",
        expected_error(F)))
    end
  elseif case.expect == "ok" then
    add("a valid call raised " .. describe_value(out.err))
  elseif not accepted(F, out.err) then
    add(("raised %s; expected %s"):format(describe_value(out.err), expected_error(F)))
  end
  if (not out.ok or case.expect == "err") and not case.dynamic then
    if rec.before ~= nil and not same(rec.before, rec.after) then
      add(("left state behind: %s before, %s after"):format(show(rec.before), show(rec.after)))
    end
    if rec.tasks_before ~= rec.tasks_after then
      add(("left state behind: #tether.get_running_tasks() went from %s to %s"):format(
        rec.tasks_before, rec.tasks_after))
    end
  end
  if rec.problem then add("left state behind: " .. rec.problem) end
  if rec.broken then
    add("the task no longer works afterwards: checkpoint/sleep(0) raised "
      .. describe_value(rec.broken))
  end
  if case.fix.post and rec.fx then
    local problem = case.fix.post(rec.fx, out)
    if problem then add("left state behind: " .. problem) end
  end
end

local function call_of(F, case, fx)
  local args = case.args(fx)
  local f
  if case.mm then
    f = getmetatable(fx.obj)[case.mm]
    if type(f) ~= "function" then
      error(("harness: %s is not a function of this class"):format(case.mm))
    end
  else
    f = F.fn(fx)
  end
  return function() return f(unpack(args, 1, args.n)) end
end

local function run_case(F, case)
  if case.custom then
    local found = case.custom(case)
    return found, { out = { ok = #found == 0 } }
  end
  local found = {}
  local function add(msg) found[#found + 1] = case.label .. ": " .. msg end
  local rec = {}
  if case.ctx == "outside" then
    local ok, fx = pcall(case.fix.outside)
    if not ok then
      add("harness: building the object outside tether.run raised " .. describe_value(fx))
      return found, rec
    end
    rec.fx = fx
    local thunk = call_of(F, case, fx)
    rec.before = snapshot(case.fix, fx)
    rec.out = invoke("outside", thunk)
    rec.after = snapshot(case.fix, fx)
    local stats = core.debug_stats()
    if stats.tasks ~= 0 or stats.loop_open or stats.running then
      add("left state behind: core.debug_stats() says " .. show(stats))
    end
  else
    local prepared = case.prepare and case.prepare()
    local ok, err = pcall(helper.run_within, WATCHDOG, function()
      case.fix.fixture(function(fx)
        rec.fx = fx
        local thunk = call_of(F, case, fx)
        rec.tasks_before = #tether.get_running_tasks()
        rec.before = snapshot(case.fix, fx)
        rec.out = invoke(case.ctx, thunk, case.timeout)
        rec.after = snapshot(case.fix, fx)
        rec.tasks_after = #tether.get_running_tasks()
        if case.check then rec.problem = case.check(fx, rec.out) end
      end, prepared)
      local ok2, err2 = pcall(function()
        tether.checkpoint()
        tether.sleep(0)
      end)
      if not ok2 then rec.broken = err2 end
    end)
    if not ok then add("tether.run raised " .. describe_value(err)) end
  end
  if rec.out then
    judge(F, case, rec, add)
  elseif #found == 0 then
    add("harness: the call was never made")
  end
  return found, rec
end

-- }======================================================================

-- {======================================================================
-- Child process and busted side
-- =======================================================================

local function escape(s) return (s:gsub("\\", "\\\\"):gsub("\n", "\\n")) end
local function unescape(s)
  return (s:gsub("\\(.)", function(c) return c == "n" and "\n" or c end))
end

-- After an isolated case: collect, and run a few tasks, so that memory the case
-- corrupted makes this process crash now, blamed on that case.
local function canary()
  collectgarbage()
  collectgarbage()
  helper.run(function()
    tether.task_group(function(tg)
      for i = 1, 64 do tg:start_soon(tether.sleep, 0, ("x"):rep(i)) end
    end)
  end)
  collectgarbage()
end

-- Child: runs the cases of every function from case opts.case of function opts.fn on.
-- Protocol, one line each: "F <i>" (function i starts), "N <count>", "C <j> <label>"
-- (case j starts), "V <violation>", "T <trace>" (MISUSE_TRACE), "R <i> <j>" (go on in
-- a new process at case j of function i), "DONE".
local function child_main(opts)
  local out = io.stdout
  local ran = 0
  for fi = opts.fn, #FUNCTIONS do
    local F = FUNCTIONS[fi]
    local cases = build_cases(F)
    out:write("F ", fi, "\nN ", #cases, "\n")
    for ci = (fi == opts.fn and opts.case or 1), #cases do
      local case = cases[ci]
      if case.isolate and ran > 0 then
        out:write("R ", fi, " ", ci, "\n")
        return
      end
      ran = ran + 1
      out:write("C ", ci, " ", escape(case.label), "\n")
      out:flush()
      local found, rec = run_case(F, case)
      for _, v in ipairs(found) do out:write("V ", escape(v), "\n") end
      if TRACE then
        local o = rec.out or {}
        out:write("T ", escape(("%s => %s%s%s"):format(case.label,
          o.ok and "returned" or ("raised " .. describe_value(o.err)),
          o.blocked and " (blocked)" or "", o.note and (" note: " .. o.note) or "")), "\n")
      end
      if case.isolate then
        out:flush()
        canary()
        out:write("R ", fi, " ", ci + 1, "\n")
        return
      end
    end
  end
  out:write("DONE\n")
  out:flush()
end

local CHILD = rawget(_G, "MISUSE_CHILD")
if CHILD then
  child_main(CHILD)
  return
end

-- Runs every case in child processes; a crash (or a hang past run_script's limit)
-- becomes a violation of the case that was running, and a new child goes on after it.
-- Returns { [name] = { violations = {...}, total = n } }.
local results
local function sweep_all()
  if results then return results end
  results = {}
  for _, F in ipairs(FUNCTIONS) do results[F.name] = { violations = {}, total = 0 } end
  local fn, case = 1, 1
  for _ = 1, 500 do
    local code = ("package.loaded.busted = false\nMISUSE_CHILD = { fn = %d, case = %d }\n"
      .. "dofile(%q)\n"):format(fn, case, SELF_PATH)
    local output, status, how = helper.run_script(code)
    local cur, last, last_label, done, stray, restart = nil, nil, nil, false, {}, nil
    for line in output:gmatch("[^\n]+") do
      local tag, rest = line:match("^(%u) (.*)$")
      if tag == "F" then
        cur, last, last_label = results[FUNCTIONS[tonumber(rest)].name], nil, nil
        fn = tonumber(rest)
      elseif tag == "N" and cur then
        cur.total = tonumber(rest)
      elseif tag == "C" and cur then
        local i, label = rest:match("^(%d+) (.*)$")
        last, last_label = tonumber(i), unescape(label)
      elseif tag == "V" and cur then
        cur.violations[#cur.violations + 1] = unescape(rest)
      elseif tag == "T" then
        io.stderr:write(unescape(rest), "\n")
      elseif tag == "R" then
        local i, j = rest:match("^(%d+) (%d+)$")
        restart = { tonumber(i), tonumber(j) }
      elseif line == "DONE" then
        done = true
      else
        stray[#stray + 1] = line
      end
    end
    if done and status == 0 then return results end
    if restart and status == 0 then
      fn, case = restart[1], restart[2]
      goto continue
    end
    -- The sanitizer's verdict and the first frames, or else the last lines.
    local lines = {}
    for _, line in ipairs(stray) do
      if line:find("Sanitizer:") or line:find("runtime error:") or line:find("^%s*#[0-2] ") then
        lines[#lines + 1] = (line:gsub("^%s+", ""))
      end
      if #lines >= 4 then break end
    end
    if #lines == 0 then
      table.move(stray, math.max(1, #stray - 3), #stray, 1, lines)
    end
    local tail = table.concat(lines, " | ")
    local target = cur or results[FUNCTIONS[fn].name]
    target.violations[#target.violations + 1] = ("%s: the process died (%s %s)%s"):format(
      last_label or "before its first case", tostring(how), tostring(status),
      tail ~= "" and (": " .. tail) or "")
    if not last then return results end -- died outside any case: nothing to skip
    case = last + 1
    ::continue::
  end
  return results
end

describe("bad-input sweep", function()
  for _, F in ipairs(FUNCTIONS) do
    it(F.name .. ": every misuse raises an error naming it and leaves nothing behind",
      function()
        local r = sweep_all()[F.name]
        assert.is_true(r.total > 0, "no case ran for " .. F.name)
        assert.same({}, r.violations)
      end)
  end

  teardown(function()
    if os.getenv("MISUSE_REPORT") and results then
      local total, failing = 0, 0
      for _, r in pairs(results) do
        total = total + r.total
        failing = failing + #r.violations
      end
      io.stderr:write(("misuse sweep: %d calls tried over %d functions, %d violations\n")
        :format(total, #FUNCTIONS, failing))
    end
  end)
end)
