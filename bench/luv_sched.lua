--- A small coroutine scheduler on luv: the one a Lua user writes when they pick
-- luv instead of a concurrency library. It is the "luv" peer of the benchmark.
--
-- - Tasks are coroutines. A FIFO run queue (parallel arrays, no allocation per
--   entry) is drained by a uv_idle_t callback, one batch per loop iteration:
--   the tasks queued when the callback starts; tasks queued meanwhile run in
--   the next iteration, after libuv has polled for I/O. The idle handle is
--   active only while the queue is non-empty, so an idle program blocks in
--   poll.
-- - sleep(s) arms a uv_timer_t per call (sleep(0) just re-queues the task).
-- - Group (join a set of tasks), Event (one-shot), Channel (unbuffered,
--   rendezvous), SignalReceiver (a uv_signal_t whose callback wakes a task).
-- No cancellation, no error propagation beyond "print and exit": that is the
-- gap tether fills, and the reason this scheduler is cheap.

local uv = require "luv"

local create, resume, yield, running =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.running
local ceil = math.ceil

local sched = {}

-- {======================================================================
-- The run queue
-- =======================================================================

local q_co, q_a, q_b, q_c = {}, {}, {}, {}
local head, tail = 1, 0
local idle = uv.new_idle()
local idle_on = false

local function fail(co, err)
  io.stderr:write("luv_sched: task failed: ", debug.traceback(co, tostring(err)), "\n")
  os.exit(1)
end

--- Resumes the batch of tasks that were queued when the callback started.
local function drain()
  local last = tail
  for i = head, last do
    local co, a, b, c = q_co[i], q_a[i], q_b[i], q_c[i]
    q_co[i], q_a[i], q_b[i], q_c[i] = nil, nil, nil, nil
    head = i + 1
    local ok, err = resume(co, a, b, c)
    if not ok then fail(co, err) end
  end
  if head > tail then
    head, tail = 1, 0
    idle:stop()
    idle_on = false
  end
end

--- Queues `co` to be resumed with (a, b, c).
local function ready(co, a, b, c)
  local t = tail + 1
  tail = t
  q_co[t], q_a[t], q_b[t], q_c[t] = co, a, b, c
  if not idle_on then
    idle_on = true
    idle:start(drain)
  end
end
sched.ready = ready

-- }======================================================================

-- {======================================================================
-- Tasks and groups
-- =======================================================================

-- Every task's coroutine runs this; `group` is false for a task outside one.
local function task_main(group, fn, arg)
  fn(arg)
  if group then group:_done() end
end

--- Starts fn(arg) as a task; it first runs in the next batch.
function sched.spawn(fn, arg)
  ready(create(task_main), false, fn, arg)
end

local Group = {}
Group.__index = Group

--- A set of tasks that another task can wait for.
function sched.group()
  return setmetatable({ n = 0, waiter = false }, Group)
end

function Group:spawn(fn, arg)
  self.n = self.n + 1
  ready(create(task_main), self, fn, arg)
end

function Group:_done()
  local n = self.n - 1
  self.n = n
  if n == 0 and self.waiter then
    local w = self.waiter
    self.waiter = false
    ready(w)
  end
end

--- Blocks until every task of the group has finished.
function Group:wait()
  if self.n > 0 then
    self.waiter = running()
    yield()
  end
end

--- Lets the other ready tasks run (a checkpoint).
function sched.yield()
  ready((running()))
  yield()
end

--- Blocks for `s` seconds (a uv timer per call, millisecond resolution).
function sched.sleep(s)
  if s <= 0 then return sched.yield() end
  local co = running()
  local timer = uv.new_timer()
  timer:start(ceil(s * 1000), 0, function()
    timer:close()
    ready(co)
  end)
  yield()
end

--- Runs fn(arg) as the first task and returns when the loop has nothing left.
function sched.run(fn, arg)
  sched.spawn(fn, arg)
  uv.run("default")
end

-- }======================================================================

-- {======================================================================
-- Event, Channel, SignalReceiver
-- =======================================================================

local Event = {}
Event.__index = Event

--- A one-shot event.
function sched.Event()
  return setmetatable({ is_set = false, waiters = {} }, Event)
end

function Event:set()
  if self.is_set then return end
  self.is_set = true
  local w = self.waiters
  for i = 1, #w do ready(w[i]) end
  self.waiters = nil
end

function Event:wait()
  if self.is_set then return end
  local w = self.waiters
  w[#w + 1] = running()
  yield()
end

local Channel = {}
Channel.__index = Channel

--- An unbuffered channel: send waits for a receiver, receive for a sender.
function sched.Channel()
  return setmetatable({
    rq = {}, rh = 1, rt = 0,          -- waiting receivers
    sq = {}, sv = {}, sh = 1, st = 0, -- waiting senders and their values
  }, Channel)
end

function Channel:send(v)
  local h = self.rh
  if h <= self.rt then -- hand v to the longest-waiting receiver
    local r = self.rq[h]
    self.rq[h] = nil
    if h == self.rt then self.rh, self.rt = 1, 0 else self.rh = h + 1 end
    ready(r, v)
    return
  end
  local t = self.st + 1
  self.st = t
  self.sq[t], self.sv[t] = running(), v
  yield()
end

function Channel:receive()
  local h = self.sh
  if h <= self.st then -- take the value of the longest-waiting sender
    local s, v = self.sq[h], self.sv[h]
    self.sq[h], self.sv[h] = nil, nil
    if h == self.st then self.sh, self.st = 1, 0 else self.sh = h + 1 end
    ready(s)
    return v
  end
  local t = self.rt + 1
  self.rt = t
  self.rq[t] = running()
  return (yield())
end

local SignalReceiver = {}
SignalReceiver.__index = SignalReceiver

--- Starts watching signal `name` ("sigusr1"); deliveries are counted until a
-- task receives them.
function sched.signal_receiver(name)
  local self = setmetatable({ pending = 0, waiter = false, handle = uv.new_signal() },
    SignalReceiver)
  self.handle:start(name, function()
    local w = self.waiter
    if w then
      self.waiter = false
      ready(w)
    else
      self.pending = self.pending + 1
    end
  end)
  return self
end

--- Blocks until a delivery (returns at once if one is pending).
function SignalReceiver:receive()
  if self.pending > 0 then
    self.pending = self.pending - 1
    return
  end
  self.waiter = running()
  yield()
end

function SignalReceiver:close()
  self.handle:stop()
  self.handle:close()
end

-- }======================================================================

return sched
