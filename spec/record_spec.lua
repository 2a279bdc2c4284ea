-- Where tasks live: a task's record and staged start-up values until its first run,
-- its thread from then on; threads of finished tasks run the next ones, and what a
-- burst needed is given back after it.
local tether = require "tether"
local core = require "tether.core"
local helper = require "spec.helper"

-- Runs `n` tasks that all wait on one Event at the same time (so each holds a thread
-- of its own), then lets them finish, and waits until the idle threads of the burst
-- were given back (the pools keep 1024).
local function burst_of_waiting_tasks(n)
  local ev = tether.Event()
  tether.task_group(function(tg)
    for _ = 1, n do tg:start_soon(ev.wait, ev) end
    tether.wait_all_tasks_blocked()
    ev:set()
  end)
  repeat tether.checkpoint() until core.debug_stats().idle_threads <= 1024
end

local function lua_heap_kb()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count")
end

describe("task threads", function()
  it("that were given back after a burst leave their places to the next burst", function()
    -- Each burst needs ~1000 threads more than the pools keep: if the places of
    -- the threads given back were not reused, the thread table would grow by as
    -- many entries (16 bytes each) every round.
    local before, after
    helper.run_within(60, function()
      for round = 1, 25 do
        burst_of_waiting_tasks(2000)
        if round == 5 then before = lua_heap_kb() end
      end
      after = lua_heap_kb()
    end)
    assert.is_true(after - before < 128,
      ("the Lua heap grew by %.0f kB over 20 bursts"):format(after - before))
  end)

  it("run tasks spawned while others still wait for their first run", function()
    -- Start-up values of tasks spawned at different times, some named and some
    -- not, with nils among the arguments, each reach their own task.
    local got = {}
    local function record(i, a, b, c) got[i] = { a, b, c } end
    helper.run(function()
      tether.task_group(function(tg)
        for i = 1, 200 do
          if i % 3 == 0 then
            tg:start_soon("named-" .. i, record, i, nil, i, nil)
          elseif i % 3 == 1 then
            tg:start_soon(record, i, i * 2)
          else
            tg:start_soon(function(...) record(i, ...) end, nil, nil, i)
          end
          if i % 50 == 0 then tether.checkpoint() end -- the first ones run meanwhile
        end
      end)
    end)
    for i = 1, 200 do
      local want
      if i % 3 == 0 then
        want = { nil, i, nil }
      elseif i % 3 == 1 then
        want = { i * 2, nil, nil }
      else
        want = { nil, nil, i }
      end
      assert.same(want, got[i], "task " .. i)
    end
  end)
end)
