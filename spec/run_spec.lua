-- Specs for tether.run, the clock, sleeping, checkpoints, task records and the errors
-- raised when a blocking operation is called where it cannot block.

local tether = require "tether"
local helper = require "spec.helper"
local assert_task_still_works = helper.assert_task_still_works
local core = require "tether.core"

-- Slow runners (valgrind, ASan) stretch every time limit by this factor.
local SCALE = helper.time_scale or 1

local function assert_clean()
  local stats = core.debug_stats()
  assert.equal(0, stats.tasks)
  assert.is_false(stats.loop_open)
  assert.is_false(stats.running)
end

-- tether.run called directly (for what helper.run would hide: the exact values that
-- come out of run). Returns table.pack(pcall(tether.run, fn, ...)).
local function run_raw(fn, ...)
  core.set_watchdog(10 * SCALE)
  local r = table.pack(pcall(tether.run, fn, ...))
  core.set_watchdog(nil)
  assert_clean()
  return r
end

local function prefix(name)
  return "^" .. (name:gsub("%.", "%%.")) .. ": "
end

-- The message after "<name>: ".
local function cause_of(err)
  return (tostring(err):gsub("^[^ ]*: ", ""))
end

local function closer(fn)
  return setmetatable({}, { __close = fn })
end

-- Every blocking operation, called so that it would return at once if it could block.
local BLOCKING = {
  { "tether.sleep", function() return tether.sleep(0) end },
  { "tether.sleep_until", function() return tether.sleep_until(tether.current_time() - 1) end },
  { "tether.sleep_forever", function() return tether.sleep_forever() end },
  { "tether.checkpoint", function() return tether.checkpoint() end },
  { "tether.cancel_shielded_checkpoint",
    function() return tether.cancel_shielded_checkpoint() end },
  { "tether.wait_all_tasks_blocked", function() return tether.wait_all_tasks_blocked() end },
  { "tether.task_group", function() return tether.task_group(function() end) end },
}

describe("tether.run", function()
  it("returns the main task's results unchanged, nils included", function()
    local r = run_raw(function() return 1, nil, "three" end)
    assert.same({ n = 4, true, 1, nil, "three" }, r)
  end)

  it("passes its extra arguments to the main function, nils included", function()
    local r = run_raw(function(...) return select("#", ...), ... end, "a", nil, 3)
    assert.same({ n = 5, true, 3, "a", nil, 3 }, r)
  end)

  it("returns nothing when the main function returns nothing", function()
    local r = run_raw(function() end)
    assert.same({ n = 1, true }, r)
  end)

  it("re-raises a string error unchanged", function()
    local r = run_raw(function() error("plain failure", 0) end)
    assert.same({ n = 2, false, "plain failure" }, r)
  end)

  it("re-raises a positioned string error unchanged (no extra position, no traceback)", function()
    local function fail() error("with position") end
    local _, expected = pcall(fail)
    local r = run_raw(fail)
    assert.is_false(r[1])
    assert.equal(expected, r[2])
  end)

  it("re-raises a table error as the same table, not wrapped in an ErrorGroup", function()
    local e = setmetatable({ code = 7 }, { __tostring = function() return "custom error" end })
    local r = run_raw(function()
      tether.sleep(0)
      error(e)
    end)
    assert.is_false(r[1])
    assert.is_true(rawequal(e, r[2]))
    assert.is_false(tether.is(r[2], tether.ErrorGroup))
  end)

  it("re-raises a non-string, non-table error value unchanged", function()
    local r = run_raw(function() error(42) end)
    assert.same({ n = 2, false, 42 }, r)
    assert.equal("number", type(r[2]))
  end)

  it("raises an ErrorGroup only when the error came out of a task group", function()
    local r = run_raw(function()
      tether.task_group(function(tg)
        tg:start_soon(function() error("from child", 0) end)
      end)
    end)
    assert.is_false(r[1])
    assert.is_true(tether.is(r[2], tether.ErrorGroup))
    assert.same({ "from child" }, r[2].errors)
  end)

  it("is seen as running by the debug hook while it runs, and closed afterwards", function()
    local inside
    local r = run_raw(function()
      local s = core.debug_stats()
      inside = { tasks_positive = s.tasks >= 1, loop_open = s.loop_open, running = s.running }
    end)
    assert.is_true(r[1])
    assert.same({ tasks_positive = true, loop_open = true, running = true }, inside)
  end)

  it("closes the loop after an error, after children and timers, and can run again", function()
    local r1 = run_raw(function()
      tether.task_group(function(tg)
        tg:start_soon(function() tether.sleep(0.001) end)
        tg:start_soon(function() tether.move_on_after(0.001):run(tether.sleep_forever) end)
      end)
      error("after children", 0)
    end)
    assert.same({ n = 2, false, "after children" }, r1)
    local r2 = run_raw(function() tether.sleep(0.001); return "second run" end)
    assert.same({ n = 2, true, "second run" }, r2)
  end)

  it("raises when called inside a running loop, without running the function", function()
    helper.run(function()
      local ran = false
      local err = helper.error_of(tether.run, function() ran = true end)
      assert.matches("^tether%.run: ", err)
      assert.is_false(ran)
      -- Also from a child task.
      local child_err
      tether.task_group(function(tg)
        tg:start_soon(function()
          child_err = helper.error_of(tether.run, function() ran = true end)
        end)
      end)
      assert.matches("^tether%.run: ", child_err)
      assert.is_false(ran)
      assert_task_still_works()
    end)
  end)

  it("raises for a non-callable main function and leaves nothing behind", function()
    for _, bad in ipairs({ 42, "not a function", {}, true }) do
      local ok, err = pcall(tether.run, bad)
      assert.is_false(ok)
      assert.matches("^tether%.run: ", err)
      assert_clean()
    end
    local ok, err = pcall(tether.run)
    assert.is_false(ok)
    assert.matches("^tether%.run: ", err)
    ok, err = pcall(tether.run, nil, 1)
    assert.is_false(ok)
    assert.matches("^tether%.run: ", err)
    assert_clean()
    -- A later run still works.
    assert.same({ n = 2, true, "fine" }, run_raw(function() return "fine" end))
  end)

  it("accepts a callable table as the main function", function()
    local callable = setmetatable({}, {
      __call = function(self, x)
        tether.sleep(0)
        return self, x * 2
      end,
    })
    local r = run_raw(callable, 21)
    assert.is_true(r[1])
    assert.is_true(rawequal(callable, r[2]))
    assert.equal(42, r[3])
  end)
end)

describe("tether.current_time", function()
  it("is a float, also outside tether.run", function()
    assert.equal("float", math.type(tether.current_time()))
    helper.run(function()
      assert.equal("float", math.type(tether.current_time()))
    end)
  end)

  it("never goes backwards", function()
    local function check()
      local last = tether.current_time()
      for _ = 1, 10000 do
        local now = tether.current_time()
        assert.is_true(now >= last)
        last = now
      end
    end
    check()
    helper.run(check)
  end)

  it("is read afresh at each call (advances while a task runs without yielding)", function()
    helper.run(function()
      local t0 = tether.current_time()
      local c0 = os.clock()
      while os.clock() - c0 < 0.01 do end -- 10 ms of CPU time, so >= 10 ms of wall time
      assert.is_true(tether.current_time() - t0 >= 0.009)
    end)
  end)
end)

describe("tether.sleep", function()
  it("sleep(0) yields to other tasks", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function() log[#log + 1] = "child" end)
        log[#log + 1] = "before sleep(0)"
        tether.sleep(0)
        log[#log + 1] = "after sleep(0)"
      end)
    end)
    assert.same({ "before sleep(0)", "child", "after sleep(0)" }, log)
  end)

  it("sleep(0) raises Cancelled in a cancelled scope", function()
    local log = {}
    helper.run(function()
      local scope = tether.CancelScope{}
      scope:cancel()
      scope:run(function()
        log[#log + 1] = "before"
        tether.sleep(0)
        log[#log + 1] = "after"
      end)
      assert.is_true(scope.cancelled_caught)
    end)
    assert.same({ "before" }, log)
  end)

  it("blocks for at least the given time", function()
    helper.run(function()
      local t0 = tether.current_time()
      tether.sleep(0.02)
      local elapsed = tether.current_time() - t0
      assert.is_true(elapsed >= 0.02, "woke after " .. elapsed)
      assert.is_true(elapsed < 2 * SCALE, "woke after " .. elapsed)
    end)
  end)

  it("is cancellable while blocked", function()
    helper.run(function()
      local t0 = tether.current_time()
      local scope = tether.move_on_after(0.01)
      scope:run(tether.sleep, 30)
      assert.is_true(scope.cancelled_caught)
      assert.is_true(tether.current_time() - t0 < 5 * SCALE)
    end)
  end)

  it("treats math.huge as forever (until cancelled)", function()
    helper.run(function()
      local scope = tether.move_on_after(0.01)
      scope:run(tether.sleep, math.huge)
      assert.is_true(scope.cancelled_caught)
    end)
  end)

  it("rejects negative, NaN and non-number delays", function()
    helper.run(function()
      for _, bad in ipairs({ -1, -0.001, -math.huge, 0 / 0, {}, "soon", true }) do
        assert.matches("^tether%.sleep: ", helper.error_of(tether.sleep, bad))
      end
      assert.matches("^tether%.sleep: ", helper.error_of(tether.sleep))
      assert_task_still_works()
    end)
  end)
end)

describe("tether.sleep_until", function()
  it("blocks until current_time() >= deadline", function()
    helper.run(function()
      local deadline = tether.current_time() + 0.02
      tether.sleep_until(deadline)
      local now = tether.current_time()
      assert.is_true(now >= deadline)
      assert.is_true(now - deadline < 2 * SCALE)
    end)
  end)

  it("with a past deadline is a checkpoint: it yields", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function() log[#log + 1] = "child" end)
        tether.sleep_until(tether.current_time() - 10)
        log[#log + 1] = "past deadline returned"
        tg:start_soon(function() log[#log + 1] = "child 2" end)
        tether.sleep_until(-math.huge)
        log[#log + 1] = "-inf deadline returned"
      end)
    end)
    assert.same({ "child", "past deadline returned", "child 2", "-inf deadline returned" }, log)
  end)

  it("with a past deadline is a checkpoint: it raises Cancelled when cancelled", function()
    local log = {}
    helper.run(function()
      local scope = tether.CancelScope{}
      scope:run(function()
        scope:cancel()
        log[#log + 1] = "before"
        tether.sleep_until(tether.current_time() - 10)
        log[#log + 1] = "after"
      end)
      assert.is_true(scope.cancelled_caught)
    end)
    assert.same({ "before" }, log)
  end)

  it("rejects NaN and non-number deadlines", function()
    helper.run(function()
      for _, bad in ipairs({ 0 / 0, {}, "later" }) do
        assert.matches("^tether%.sleep_until: ", helper.error_of(tether.sleep_until, bad))
      end
      assert.matches("^tether%.sleep_until: ", helper.error_of(tether.sleep_until))
      assert_task_still_works()
    end)
  end)
end)

describe("tether.sleep_forever", function()
  it("blocks until its task is cancelled", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          local _ <close> = closer(function() log[#log + 1] = "sleeper closed" end)
          local ok, err = pcall(tether.sleep_forever)
          log[#log + 1] = ok and "returned" or (tether.is(err, tether.Cancelled) and "cancelled")
          error(err, 0)
        end)
        for _ = 1, 5 do tether.checkpoint() end
        tether.wait_all_tasks_blocked()
        log[#log + 1] = "sleeper still blocked"
        tg.cancel_scope:cancel()
      end)
    end)
    assert.same({ "sleeper still blocked", "cancelled", "sleeper closed" }, log)
  end)

  it("returns control through a deadline", function()
    helper.run(function()
      local t0 = tether.current_time()
      local scope = tether.move_on_after(0.02)
      local r = table.pack(scope:run(tether.sleep_forever))
      assert.same({ n = 0 }, r)
      assert.is_true(scope.cancelled_caught)
      assert.is_true(tether.current_time() - t0 >= 0.02)
    end)
  end)
end)

describe("checkpoints", function()
  it("tether.checkpoint lets two tasks alternate", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        for _, who in ipairs({ "a", "b" }) do
          tg:start_soon(function()
            for i = 1, 3 do
              log[#log + 1] = who .. i
              tether.checkpoint()
            end
          end)
        end
      end)
    end)
    assert.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, log)
  end)

  it("tether.checkpoint interleaves the host with its children", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        for _, who in ipairs({ "a", "b" }) do
          tg:start_soon(function()
            for i = 1, 2 do
              log[#log + 1] = who .. i
              tether.checkpoint()
            end
          end)
        end
        for i = 1, 2 do
          log[#log + 1] = "h" .. i
          tether.checkpoint()
        end
      end)
    end)
    assert.same({ "h1", "a1", "b1", "h2", "a2", "b2" }, log)
  end)

  it("tether.checkpoint raises Cancelled at every call in a cancelled scope", function()
    local results = {}
    helper.run(function()
      local scope = tether.CancelScope{}
      scope:run(function()
        scope:cancel()
        for i = 1, 3 do
          local ok, err = pcall(tether.checkpoint)
          results[i] = not ok and tether.is(err, tether.Cancelled)
        end
      end)
      -- Every Cancelled was swallowed by pcall, so the scope caught nothing.
      assert.is_false(scope.cancelled_caught)
      assert.is_true(scope.cancel_called)
    end)
    assert.same({ true, true, true }, results)
  end)

  it("tether.checkpoint_if_cancelled does not yield when not cancelled", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function() log[#log + 1] = "child" end)
        for _ = 1, 10 do tether.checkpoint_if_cancelled() end
        log[#log + 1] = "host did not yield"
        tether.checkpoint()
        log[#log + 1] = "host yielded"
      end)
    end)
    assert.same({ "host did not yield", "child", "host yielded" }, log)
  end)

  it("tether.checkpoint_if_cancelled raises Cancelled when cancelled", function()
    local log = {}
    helper.run(function()
      local scope = tether.CancelScope{}
      scope:run(function()
        scope:cancel()
        log[#log + 1] = "before"
        tether.checkpoint_if_cancelled()
        log[#log + 1] = "after"
      end)
      assert.is_true(scope.cancelled_caught)
    end)
    assert.same({ "before" }, log)
  end)

  it("tether.cancel_shielded_checkpoint yields and never raises Cancelled", function()
    local log = {}
    helper.run(function()
      local scope = tether.CancelScope{}
      scope:run(function()
        tether.task_group(function(tg)
          scope:cancel()
          tg:start_soon(function() log[#log + 1] = "child" end)
          tether.cancel_shielded_checkpoint()
          log[#log + 1] = "shielded checkpoint returned"
          tether.cancel_shielded_checkpoint()
          log[#log + 1] = "again"
          tether.checkpoint()
          log[#log + 1] = "unreachable"
        end)
      end)
      assert.is_true(scope.cancelled_caught)
    end)
    assert.same({ "child", "shielded checkpoint returned", "again" }, log)
  end)
end)

describe("tether.wait_all_tasks_blocked", function()
  it("returns only once every other task is blocked", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        for _, n in ipairs({ 3, 7 }) do
          tg:start_soon(function()
            for _ = 1, n do tether.checkpoint() end
            log[#log + 1] = "done " .. n
            tether.sleep_forever()
          end)
        end
        tether.wait_all_tasks_blocked()
        log[#log + 1] = "all blocked"
        tg.cancel_scope:cancel()
      end)
    end)
    assert.same({ "done 3", "done 7", "all blocked" }, log)
  end)

  it("counts a task sleeping on a timer as blocked", function()
    helper.run(function()
      local t0 = tether.current_time()
      tether.task_group(function(tg)
        tg:start_soon(function() tether.sleep(30) end)
        tether.wait_all_tasks_blocked()
        tg.cancel_scope:cancel()
      end)
      assert.is_true(tether.current_time() - t0 < 5 * SCALE)
    end)
  end)

  it("returns when there is no other task", function()
    helper.run(function()
      tether.wait_all_tasks_blocked()
      tether.wait_all_tasks_blocked()
    end)
  end)

  it("is a checkpoint: raises Cancelled in a cancelled scope", function()
    local log = {}
    helper.run(function()
      local scope = tether.CancelScope{}
      scope:run(function()
        scope:cancel()
        tether.wait_all_tasks_blocked()
        log[#log + 1] = "unreachable"
      end)
      assert.is_true(scope.cancelled_caught)
    end)
    assert.same({}, log)
  end)
end)

describe("task records", function()
  it("the main task has an integer id, a string name and no parent", function()
    local rec
    helper.run(function() rec = tether.current_task() end)
    assert.equal("integer", math.type(rec.id))
    assert.equal("string", type(rec.name))
    assert.is_nil(rec.parent_id)
  end)

  it("the main task is named <short_src>:<linedefined> after run's function", function()
    local rec
    local function main() rec = tether.current_task() end
    local info = debug.getinfo(main, "S")
    assert.is_true(run_raw(main)[1])
    assert.equal(info.short_src .. ":" .. info.linedefined, rec.name)
  end)

  it("current_task is stable within a task and differs between tasks", function()
    local main_a, main_b, child
    helper.run(function()
      main_a = tether.current_task()
      tether.task_group(function(tg)
        tg:start_soon(function() child = tether.current_task() end)
      end)
      main_b = tether.current_task()
    end)
    assert.same(main_a, main_b)
    assert.not_equal(main_a.id, child.id)
    assert.equal(main_a.id, child.parent_id)
  end)

  it("get_running_tasks lists live tasks and drops finished ones", function()
    helper.run(function()
      local main = tether.current_task()
      local children = {}
      local function by_id(list)
        local map = {}
        for _, rec in ipairs(list) do map[rec.id] = rec end
        return map
      end
      tether.task_group(function(tg)
        for i = 1, 3 do
          tg:start_soon("child " .. i, function()
            children[i] = tether.current_task()
            tether.sleep_forever()
          end)
        end
        tether.wait_all_tasks_blocked()
        local live = by_id(tether.get_running_tasks())
        assert.same(main, live[main.id])
        for i = 1, 3 do
          assert.same(children[i], live[children[i].id])
          assert.equal("child " .. i, live[children[i].id].name)
        end
        tg.cancel_scope:cancel()
      end)
      local live = by_id(tether.get_running_tasks())
      assert.same(main, live[main.id])
      for i = 1, 3 do assert.is_nil(live[children[i].id]) end
    end)
  end)
end)

describe("blocking operations in the wrong context", function()
  it("raise an error naming the operation outside tether.run", function()
    for _, entry in ipairs(BLOCKING) do
      local ok, err = pcall(entry[2])
      assert.is_false(ok, entry[1])
      assert.matches(prefix(entry[1]), err)
    end
    assert_clean()
  end)

  it("tether.checkpoint_if_cancelled also raises outside tether.run", function()
    local ok, err = pcall(tether.checkpoint_if_cancelled)
    assert.is_false(ok)
    assert.matches("^tether%.checkpoint_if_cancelled: ", err)
    assert_clean()
  end)

  it("raise from a plain coroutine inside a task, naming the operation and the cause", function()
    helper.run(function()
      for _, entry in ipairs(BLOCKING) do
        local ok, err = coroutine.wrap(function() return pcall(entry[2]) end)()
        assert.is_false(ok, entry[1])
        assert.matches(prefix(entry[1]), err)
        local cause = cause_of(err)
        assert.is_truthy(cause:find("coroutine") or cause:find("task"), err)
      end
      assert_task_still_works()
    end)
  end)

  it("raise across a table.sort comparator", function()
    helper.run(function()
      for _, entry in ipairs(BLOCKING) do
        local errs = {}
        table.sort({ 3, 1, 2 }, function(a, b)
          local ok, err = pcall(entry[2])
          if not ok then errs[#errs + 1] = err end
          return a < b
        end)
        assert.is_true(#errs > 0, entry[1])
        for _, err in ipairs(errs) do assert.matches(prefix(entry[1]), err) end
      end
      assert_task_still_works()
    end)
  end)

  it("raise across a string.gsub callback", function()
    helper.run(function()
      local errs = {}
      local out = ("ab"):gsub(".", function(c)
        local ok, err = pcall(tether.checkpoint)
        errs[#errs + 1] = ok and "returned" or err
        return c:upper()
      end)
      assert.equal("AB", out)
      assert.equal(2, #errs)
      for _, err in ipairs(errs) do assert.matches("^tether%.checkpoint: ", err) end
      assert_task_still_works()
    end)
  end)

  it("raise inside a __tostring metamethod", function()
    helper.run(function()
      local obj = setmetatable({}, {
        __tostring = function()
          local ok, err = pcall(tether.sleep, 0)
          return ok and "returned" or err
        end,
      })
      assert.matches("^tether%.sleep: ", tostring(obj))
      -- Uncaught, the error comes out of tostring with its prefix.
      local bad = setmetatable({}, { __tostring = function() tether.sleep(0); return "x" end })
      assert.matches("^tether%.sleep: ", helper.error_of(tostring, bad))
      assert_task_still_works()
    end)
  end)

  it("raise inside an __index metamethod called from C", function()
    helper.run(function()
      local proxy = setmetatable({}, {
        __index = function()
          local ok, err = pcall(tether.sleep, 0)
          return ok and "returned" or err
        end,
      })
      local v = table.unpack(proxy, 1, 1) -- lua_geti from C: not yieldable
      assert.matches("^tether%.sleep: ", v)
      assert_task_still_works()
    end)
  end)

  it("work inside an __index metamethod called from Lua code (no C boundary there)", function()
    local log = {}
    helper.run(function()
      local proxy = setmetatable({}, {
        __index = function(_, k)
          tether.sleep(0)
          return k .. "!"
        end,
      })
      tether.task_group(function(tg)
        tg:start_soon(function() log[#log + 1] = "child" end)
        local v = proxy.key -- yields inside __index
        log[#log + 1] = v
      end)
    end)
    assert.same({ "child", "key!" }, log)
  end)

  it("raise inside a __gc metamethod", function()
    helper.run(function()
      local seen
      local function make_garbage()
        setmetatable({}, {
          __gc = function()
            local ok, err = pcall(tether.sleep, 0)
            seen = ok and "returned" or err
          end,
        })
      end
      make_garbage()
      collectgarbage("collect")
      collectgarbage("collect")
      assert.is_not_nil(seen)
      assert.matches("^tether%.sleep: ", seen)
      assert_task_still_works()
    end)
  end)

  it("raise inside a module loader run by require", function()
    helper.run(function()
      local name = "tether_run_spec_blocking_loader"
      package.preload[name] = function()
        local ok, err = pcall(tether.checkpoint)
        return { ok = ok, err = err }
      end
      local result = require(name)
      package.preload[name] = nil
      package.loaded[name] = nil
      assert.is_false(result.ok)
      assert.matches("^tether%.checkpoint: ", result.err)
      assert_task_still_works()
    end)
  end)

  it("leave plain coroutines (generators) inside a task working", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          for i = 1, 2 do
            log[#log + 1] = "other " .. i
            tether.checkpoint()
          end
        end)
        for v in coroutine.wrap(function()
          for i = 1, 2 do coroutine.yield(i) end
        end) do
          log[#log + 1] = "gen " .. v
          tether.checkpoint()
        end
      end)
    end)
    assert.same({ "gen 1", "other 1", "gen 2", "other 2" }, log)
  end)
end)

describe("a stray coroutine.yield in a task", function()
  it("in the main task comes out of run as an error, and <close> variables run", function()
    local closed = {}
    local err = helper.error_of(helper.run, function()
      local _ <close> = closer(function() closed[#closed + 1] = "main" end)
      tether.sleep(0)
      coroutine.yield()
    end)
    assert.is_not_nil(err)
    assert.is_nil(tostring(err):find("watchdog", 1, true))
    assert.matches("yield", tostring(err))
    assert.same({ "main" }, closed)
  end)

  it("in a child comes out inside an ErrorGroup, cancels siblings and runs <close>", function()
    local log = {}
    local child_name
    local err = helper.error_of(helper.run, function()
      tether.task_group(function(tg)
        tg:start_soon("sibling", function()
          local _ <close> = closer(function() log[#log + 1] = "sibling closed" end)
          tether.sleep_forever()
        end)
        tg:start_soon("yielder", function()
          child_name = tether.current_task().name
          local _ <close> = closer(function() log[#log + 1] = "yielder closed" end)
          tether.wait_all_tasks_blocked()
          coroutine.yield("stray", 42)
          log[#log + 1] = "unreachable"
        end)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.equal(1, #err.errors)
    assert.matches("yield", tostring(err.errors[1]))
    assert.same({ "yielder" }, err.tasks)
    assert.equal("yielder", child_name)
    table.sort(log)
    assert.same({ "sibling closed", "yielder closed" }, log)
  end)
end)
