-- The run queue's batches: every task ready when a batch starts runs once in it, tasks
-- made ready meanwhile wait for the next one, and a batch that outlasts the tick's time
-- slice (a burst of new tasks) is cut so that expired deadlines are processed on time.
local tether = require "tether"
local helper = require "spec.helper"

-- Spins without yielding for `seconds` of wall time.
local function burn(seconds)
  local t = tether.current_time() + seconds
  while tether.current_time() <= t do end
end

local BURN = 0.0001 -- seconds each task of a burst spins: a burst of 1000 lasts 0.1 s or more

describe("a long batch", function()
  it("lets a sleeper wake while it is still running, not after its last task", function()
    local ran, ran_when_woken = 0, nil
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          tether.sleep(0.002)
          ran_when_woken = ran
        end)
        for _ = 1, 1000 do
          tg:start_soon(function()
            burn(BURN)
            ran = ran + 1
          end)
        end
      end)
    end)
    assert.is_number(ran_when_woken)
    assert.is_true(ran_when_woken < 1000,
      ("the sleeper woke after %d of 1000 tasks of the burst"):format(ran_when_woken))
  end)

  it("runs its tasks in order, each once, before any task made ready meanwhile", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        for i = 1, 300 do
          tg:start_soon(function()
            burn(BURN)
            log[#log + 1] = i
            tether.checkpoint()
            log[#log + 1] = 1000 + i
          end)
        end
      end)
    end)
    local want = {}
    for i = 1, 300 do
      want[i], want[300 + i] = i, 1000 + i
    end
    assert.same(want, log)
  end)

  it("runs at least one more of its tasks after the sleepers woken in each tick", function()
    -- Each tick, the sleepers wake (their deadlines have passed) and spin longer than
    -- the time slice; were the batch cut right after them, the burst would starve.
    -- A sleeper wakes at most once per batch, and every batch that holds the rest of
    -- the burst runs at least one task of it: the burst of 200 lasts at most ~200
    -- batches, so at most ~200 wake-ups of each sleeper.
    local SLEEPERS, BURST = 20, 200
    local done, bursting, wakeups = false, false, 0
    helper.run_within(60, function()
      tether.task_group(function(tg)
        for _ = 1, SLEEPERS do
          tg:start_soon(function()
            while not done do
              tether.sleep(1e-6)
              burn(0.0002)
              if bursting then wakeups = wakeups + 1 end
            end
          end)
        end
        tether.sleep(0.001) -- the sleepers are looping now
        bursting = true
        tether.task_group(function(burst)
          for _ = 1, BURST do burst:start_soon(burn, BURN) end
        end)
        bursting, done = false, true
      end)
    end)
    assert.is_true(wakeups <= SLEEPERS * (BURST + 10),
      ("%d wake-ups of %d sleepers during a burst of %d"):format(wakeups, SLEEPERS, BURST))
  end)
end)
