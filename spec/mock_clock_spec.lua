-- tether.MockClock and tether.run_with: virtual time for tests (Trio's MockClock).
local tether = require "tether"
local helper = require "spec.helper"

local HOUR = 3600

-- Runs fn under a MockClock made from opts; returns the clock and fn's results.
local function with_clock(opts, fn)
  local clock = tether.MockClock(opts)
  return clock, helper.run_with({ clock = clock }, fn, clock)
end

describe("tether.MockClock", function()
  it("starts at 0, stands still at rate 0, and current_time() reads it", function()
    local _, first, second = with_clock({}, function()
      local t = tether.current_time()
      for _ = 1, 1000 do tether.checkpoint() end
      return t, tether.current_time()
    end)
    assert.equal(0, first)
    assert.equal(0, second)
  end)

  it("runs an hour-long sleep at once with autojump, landing on the deadline exactly",
    function()
      local _, slept = with_clock({ autojump_threshold = 0 }, function()
        local start = tether.current_time()
        tether.sleep(HOUR)
        return tether.current_time() - start
      end)
      assert.equal(HOUR, slept)
    end)

  it("expires fail_after at its virtual deadline", function()
    local _, err, at = with_clock({ autojump_threshold = 0 }, function()
      local ok, e = pcall(function()
        tether.fail_after(HOUR):run(tether.sleep, 2 * HOUR)
      end)
      assert.is_false(ok)
      return e, tether.current_time()
    end)
    assert.is_true(tether.is(err, tether.TimeoutError))
    assert.equal(HOUR, at)
  end)

  it("wakes a sleeper only when jumped to its deadline, without autojump", function()
    local _, log = with_clock({}, function(clock)
      local events = {}
      tether.task_group(function(tg)
        tg:start_soon(function()
          tether.sleep(10)
          events[#events + 1] = "woke at " .. tether.current_time()
        end)
        tether.wait_all_tasks_blocked()
        clock:jump(5)
        tether.wait_all_tasks_blocked()
        events[#events + 1] = "still asleep at " .. tether.current_time()
        clock:jump(5)
      end)
      return events
    end)
    assert.same({ "still asleep at 5.0", "woke at 10.0" }, log)
  end)

  it("wakes a sleeper the clock was jumped past in a batch the tick cut short", function()
    local started = os.time()
    local _, woke = with_clock({}, function(clock)
      local at
      tether.task_group(function(tg)
        tg:start_soon(function()
          tether.sleep(10)
          at = tether.current_time()
        end)
        tether.wait_all_tasks_blocked()
        clock:jump(10)
        -- Computing for longer than the tick's 0.5 ms slice ends the tick with the
        -- deadline due and no task ready: the timer must fire at once for it.
        local spin = os.clock()
        while os.clock() - spin < 0.002 do end
      end)
      return at
    end)
    assert.equal(10, woke)
    -- at once, not when the 10 s watchdog's timer happened to run the tick
    assert.is_true(os.time() - started < 5 * helper.time_scale)
  end)

  it("follows a deadline moved while the scope waits, earlier and later", function()
    local _, log = with_clock({}, function(clock)
      local events = {}
      local earlier = tether.CancelScope{ deadline = 100 }
      local later = tether.CancelScope{ deadline = 100 }
      tether.task_group(function(tg)
        tg:start_soon(function()
          earlier:run(tether.sleep_forever)
          events[#events + 1] = "earlier caught at " .. tether.current_time()
        end)
        tg:start_soon(function()
          later:run(tether.sleep_forever)
          events[#events + 1] = "later caught at " .. tether.current_time()
        end)
        tether.wait_all_tasks_blocked()
        earlier.deadline = 10
        later.deadline = 1000
        clock:jump(10)
        tether.wait_all_tasks_blocked()
        clock:jump(890) -- 900: past the old deadline, before the new one
        tether.wait_all_tasks_blocked()
        events[#events + 1] = "later cancelled at 900: " .. tostring(later.cancel_called)
        clock:jump(100)
      end)
      return events
    end)
    assert.same({
      "earlier caught at 10.0",
      "later cancelled at 900: false",
      "later caught at 1000.0",
    }, log)
  end)

  it("never autojumps while a task is runnable, then jumps once all are blocked",
    function()
      local _, spun_at, woke_at = with_clock({ autojump_threshold = 0 }, function()
        local times, woke = {}, nil
        tether.task_group(function(tg)
          tg:start_soon(function()
            tether.sleep(10)
            woke = { tether.current_time(), #times }
          end)
          tg:start_soon(function()
            for i = 1, 2000 do
              tether.checkpoint()
              times[i] = tether.current_time()
            end
          end)
        end)
        return times, woke
      end)
      assert.equal(2000, #spun_at)
      for i = 1, #spun_at do
        assert.equal(0, spun_at[i], "the clock jumped while a task was runnable")
      end
      assert.same({ 10, 2000 }, woke_at)
    end)

  it("lets wait_all_tasks_blocked callers run before it autojumps", function()
    local _, seen = with_clock({ autojump_threshold = 0 }, function()
      local at
      tether.task_group(function(tg)
        tg:start_soon(tether.sleep, 10)
        tether.wait_all_tasks_blocked()
        at = tether.current_time()
      end)
      return at
    end)
    assert.equal(0, seen)
  end)

  it("autojumps once the threshold is lowered while every task waits", function()
    local _, slept = with_clock({}, function(clock)
      local result
      tether.task_group(function(tg)
        tg:start_soon(function()
          tether.sleep(HOUR)
          result = tether.current_time()
        end)
        tether.wait_all_tasks_blocked()
        assert.equal(math.huge, clock.autojump_threshold)
        clock.autojump_threshold = 0
        assert.equal(0, clock.autojump_threshold)
      end)
      return result
    end)
    assert.equal(HOUR, slept)
  end)

  it("advances rate virtual seconds per real second, and stops at rate 0", function()
    local _, slept, frozen = with_clock({ rate = 1000 }, function(clock)
      assert.equal(1000, clock.rate)
      local start = tether.current_time()
      tether.sleep(5) -- about 5 ms of real time, no autojump
      local s = tether.current_time() - start
      clock.rate = 0
      local t = tether.current_time()
      for _ = 1, 100 do tether.checkpoint() end
      return s, tether.current_time() - t
    end)
    assert.is_true(slept >= 5, "slept " .. slept)
    assert.equal(0, frozen)
  end)

  it("keeps its time after the run; the real clock is back for the next run", function()
    local clock = with_clock({ autojump_threshold = 0 }, function()
      tether.sleep(HOUR)
    end)
    assert.equal(HOUR, clock:current_time())
    local real = helper.run(tether.current_time)
    assert.is_true(real ~= HOUR)
    clock:jump(1)
    assert.equal(HOUR + 1, clock:current_time())
  end)

  it("refuses bad arguments with messages that say what to do", function()
    local clock = tether.MockClock()
    helper.misuse("^clock:jump: seconds must be >= 0", clock.jump, clock, -1)
    helper.misuse("^clock:jump: seconds must be >= 0", clock.jump, clock, 0 / 0)
    helper.misuse("^clock:jump: seconds must be a number", clock.jump, clock, "1")
    helper.misuse("^clock.rate: rate must be a number >= 0", function() clock.rate = -1 end)
    helper.misuse("^clock.rate: rate must be finite", function() clock.rate = math.huge end)
    helper.misuse("^clock.autojump_threshold: autojump_threshold must be a number >= 0",
      function() clock.autojump_threshold = 0 / 0 end)
    helper.misuse("^clock.now: not a field of MockClock", function() clock.now = 1 end)
    helper.misuse("^tether.MockClock: unknown option 'speed'", tether.MockClock, { speed = 2 })
    helper.misuse("^tether.MockClock: expected an options table", tether.MockClock, 5)
    helper.misuse("^clock:jump: expected a tether.MockClock as self", clock.jump, {}, 1)
  end)
end)

describe("tether.run_with", function()
  it("runs like tether.run without a clock", function()
    assert.same({ 1, 2 }, { helper.run_with({}, function(a, b) return a, b end, 1, 2) })
  end)

  it("raises a misuse error for unknown options and a clock that is not a MockClock",
    function()
      helper.misuse("^tether.run_with: unknown option 'clok' %(the only option is clock%)",
        tether.run_with, { clok = true }, function() end)
      helper.misuse("^tether.run_with: clock must be a tether.MockClock, got table",
        tether.run_with, { clock = {} }, function() end)
      helper.misuse("^tether.run_with: expected an options table", tether.run_with,
        function() end)
    end)

  it("re-raises the main task's error unchanged", function()
    local value = setmetatable({}, { __name = "custom" })
    local err = helper.error_of(helper.run_with, { clock = tether.MockClock() },
      function() error(value) end)
    assert.equal(value, err)
  end)

  it("refuses to nest inside a run and leaves the running loop's clock alone", function()
    local _, err, now = with_clock({}, function()
      local e = helper.error_of(tether.run_with, { clock = tether.MockClock{ rate = 1 } },
        function() end)
      return e, tether.current_time()
    end)
    assert.matches("^tether.run: a loop is already running", err)
    assert.equal(0, now)
  end)
end)
