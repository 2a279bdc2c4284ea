--- Finalizer chaos for spec/stress_spec.lua: garbage whose __gc calls tether.
--
--   local chaos = require("spec.support.stress_finalizers").new(progs)
--   tg:start_soon(chaos.run)          -- workers that block on chaos's own objects
--   ...                               -- the stress programs run meanwhile
--   chaos.stop()                      -- ends the workers
--   local problems = chaos.check()    -- list of strings, empty when all held
--
-- Run with the collector at its most aggressive setting, every allocation anywhere in
-- the process (in the stress programs, in the core) may run a few of these finalizers.
-- Each one makes one random non-blocking call: on chaos's own stream, Event, parking
-- lot, Lock, Semaphore and CapacityLimiter it may change state (send_nowait,
-- receive_nowait, clone and close, set, unpark, acquire_nowait, release), while workers
-- are parked on those very objects; on the programs' own objects it only reads (so
-- their invariants stay theirs to check).  Workers record every outcome; the invariants:
-- no count is ever negative, every blocking call ends exactly once with a result or one
-- of the errors its object can raise, and items are never duplicated.
local tether = require "tether"
local core = require "tether.core"

local M = {}

local SENDERS = 4   -- workers of each kind
local BURST = 8     -- garbage objects a worker leaves per round

function M.new(progs)
  local chaos = { problems = {}, rounds = 0, pokes = 0 }
  local stopping = false
  local stop_event = tether.Event()
  local send, receive = tether.create_memory_object_stream(2)
  -- Workers send and receive through clones that finalizers close (waking every task
  -- parked through them) or drop (their own __gc closes them, at some later
  -- allocation: maybe inside another close's walk of the same queue).
  local sclone, rclone = send:clone(), receive:clone()
  local event = tether.Event()
  local lot = core.ParkingLot()
  local lock = tether.Lock()
  local sem = tether.Semaphore(1)
  local limiter = tether.CapacityLimiter(1)
  local next_item, seen = 0, {}

  local function problem(fmt, ...)
    if #chaos.problems < 20 then chaos.problems[#chaos.problems + 1] = fmt:format(...) end
  end

  local function check_stats(handle)
    local ok, st = pcall(handle.statistics, handle)
    if not ok then return end
    for field, v in pairs(st) do
      if type(v) == "number" and v < 0 then problem("stream statistics: %s = %d", field, v) end
    end
  end

  local function got_item(v)
    if type(v) ~= "number" then return end
    if seen[v] then problem("item %d received twice", v) end
    seen[v] = true
  end

  -- The non-blocking calls a finalizer may make, one chosen at random each time.
  local function reclone_send()
    local old, ok, new = sclone, pcall(send.clone, send)
    if ok then sclone = new old:close() end
  end
  local function reclone_receive()
    local old, ok, new = rclone, pcall(receive.clone, receive)
    if ok then rclone = new old:close() end
  end

  local pokes = {
    function() next_item = next_item + 1 pcall(send.send_nowait, send, next_item) end,
    function() local ok, v = pcall(receive.receive_nowait, receive) if ok then got_item(v) end end,
    function() check_stats(send) check_stats(receive) end,
    function() local ok, c = pcall(send.clone, send) if ok then c:close() end end,
    reclone_send,
    reclone_receive,
    function() local ok, new = pcall(send.clone, send) if ok then sclone = new end end,
    function() local ok, new = pcall(receive.clone, receive) if ok then rclone = new end end,
    function() event:set() end,
    function() event = tether.Event() end, -- the next waiters use a fresh one
    function() lot:unpark("from a finalizer") end,
    function() lot:unpark_all() end,
    function() if #lot < 0 then problem("#lot = %d", #lot) end end,
    function() if pcall(lock.acquire_nowait, lock) then lock:release() end end,
    function() if pcall(sem.acquire_nowait, sem) then sem:release() end end,
    function() if pcall(limiter.acquire_nowait, limiter) then limiter:release() end end,
    function()
      for _, prog in ipairs(progs) do
        for _, l in ipairs(prog.lock_objects or {}) do l:locked() end
        for _, s in ipairs(prog.sem_objects or {}) do local _ = s.value end
        for _, e in ipairs(prog.event_objects or {}) do e:is_set() end
        for _, l in ipairs(prog.limiter_objects or {}) do local _ = l.borrowed_tokens end
        for _, c in ipairs(prog.cond_objects or {}) do c:locked() end
      end
    end,
    function() tostring(send) tostring(event) tostring(lock) end,
  }

  local state = 0
  local function poke()
    state = (state * 1103515245 + 12345) % 2147483648
    chaos.pokes = chaos.pokes + 1
    local ok, err = pcall(pokes[state % #pokes + 1])
    if not ok then problem("a finalizer's call raised: %s", tostring(err)) end
  end
  local garbage_mt = { __gc = poke }

  local function litter()
    for _ = 1, BURST do setmetatable({}, garbage_mt) end
  end

  local EXPECTED = {
    Cancelled = true, WouldBlock = true, EndOfStream = true, ClosedResourceError = true,
    BrokenResourceError = true,
  }
  local function outcome(ok, err)
    if ok then return end
    for name in pairs(EXPECTED) do
      if tether.is(err, tether[name]) then return end
    end
    problem("a worker's wait raised: %s", tostring(err))
  end

  -- One blocking call per kind, each bounded by a short timeout; and closes of the
  -- clones other workers are parked on, made from a task (the walk over the parked
  -- tasks then runs where finalizers can run).
  local waits = {
    function() next_item = next_item + 1 sclone:send(next_item) end,
    function() got_item(rclone:receive()) end,
    function() event:wait() end,
    function() lot:park("chaos") end,
    function() local _ <close> = lock:acquire() tether.checkpoint() end,
    function() local _ <close> = sem:acquire() tether.checkpoint() end,
    function() local _ <close> = limiter:acquire() tether.checkpoint() end,
    function() litter() reclone_send() end,
    function() litter() reclone_receive() end,
  }

  local function worker(k)
    while not stopping do
      chaos.rounds = chaos.rounds + 1
      litter()
      tether.move_on_after(0.0005 * (k % 3 + 1)):run(function()
        outcome(pcall(waits[(chaos.rounds + k) % #waits + 1]))
      end)
    end
  end

  function chaos.run()
    tether.task_group(function(tg)
      for k = 1, SENDERS * #waits do tg:start_soon(worker, k) end
      stop_event:wait()
    end)
    for _, h in ipairs { sclone, rclone, send, receive } do h:close() end
  end

  function chaos.stop()
    stopping = true
    stop_event:set()
  end

  function chaos.check()
    collectgarbage("collect") -- the last finalizers run now, outside any task
    if lock:locked() then problem("chaos lock still locked") end
    if sem.value ~= 1 then problem("chaos semaphore value %s", tostring(sem.value)) end
    if limiter.borrowed_tokens ~= 0 then
      problem("chaos limiter borrowed %d", limiter.borrowed_tokens)
    end
    if #lot ~= 0 then problem("%d tasks still parked in the chaos lot", #lot) end
    return chaos.problems
  end

  return chaos
end

return M
