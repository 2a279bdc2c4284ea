-- Cancel scopes: tether.CancelScope, scope:run, scope:cancel, shields, level-triggered
-- cancellation, the exit rule, cancel_called / cancelled_caught, reasons and misuse.
-- Contract: API.md §4 and SEMANTICS.md §1-§2 (CONTRACT lines). Timeouts: timeout_spec.lua.
local tether = require "tether"
local helper = require "spec.helper"
local recorder, kind, outcome, misuse =
  helper.recorder, helper.kind, helper.outcome, helper.misuse

-- A to-be-closed value that calls fn(err) when it is closed.
local function closer(fn)
  return setmetatable({}, { __close = function(_, err) fn(err) end })
end

-- Calls fn(...), records its outcome, and re-raises its error so that scopes still see it.
local function observe(record, fn, ...)
  local ok, err = pcall(fn, ...)
  record(ok and "returned" or kind(err))
  if not ok then error(err, 0) end
end

local function busy_wait_until(t)
  while tether.current_time() <= t do end
end

describe("tether.CancelScope", function()
  it("creates an unentered scope with no deadline and no shield by default", function()
    helper.run(function()
      local s = tether.CancelScope{}
      assert.equal(math.huge, s.deadline)
      assert.is_false(s.shield)
      assert.is_false(s.cancel_called)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("keeps the deadline and shield it was given", function()
    helper.run(function()
      local t = tether.current_time() + 100
      local s = tether.CancelScope{ deadline = t, shield = true }
      assert.equal(t, s.deadline)
      assert.is_true(s.shield)
      assert.is_false(s.cancel_called)
    end)
  end)

  it("rejects a NaN or non-number deadline", function()
    helper.run(function()
      misuse("^tether%.CancelScope: ", tether.CancelScope, { deadline = 0 / 0 })
      misuse("^tether%.CancelScope: ", tether.CancelScope, { deadline = "soon" })
      misuse("^tether%.CancelScope: ", tether.CancelScope, { deadline = {} })
    end)
  end)

  it("rejects a non-boolean shield", function()
    helper.run(function()
      misuse("^tether%.CancelScope: ", tether.CancelScope, { shield = 1 })
      misuse("^tether%.CancelScope: ", tether.CancelScope, { shield = "yes" })
      misuse("^tether%.CancelScope: ", tether.CancelScope, { shield = {} })
    end)
  end)

  it("rejects options that are not a table", function()
    helper.run(function()
      misuse("^tether%.CancelScope: ", tether.CancelScope, "soon")
      misuse("^tether%.CancelScope: ", tether.CancelScope, 5)
      misuse("^tether%.CancelScope: ", tether.CancelScope, true)
    end)
  end)

  it("does not let cancel_called or cancelled_caught be set by assignment", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      pcall(function() s.cancel_called = true end)
      pcall(function() s.cancelled_caught = true end)
      assert.is_false(s.cancel_called)
      assert.is_false(s.cancelled_caught)
      s:run(function()
        tether.checkpoint()
        record("checkpoint passed")
      end)
      assert.same({ "checkpoint passed" }, events)
      assert.is_false(s.cancelled_caught)
    end)
  end)
end)

describe("scope:run", function()
  it("returns the function's results, nils included", function()
    helper.run(function()
      local r = table.pack(tether.CancelScope{}:run(function() return 1, nil, "three", nil end))
      assert.same({ n = 4, 1, nil, "three", nil }, r)
    end)
  end)

  it("passes its extra arguments to the function", function()
    helper.run(function()
      local r = table.pack(tether.CancelScope{}:run(function(...)
        return select("#", ...), ...
      end, "a", nil, 3, nil))
      assert.same({ n = 5, 4, "a", nil, 3, nil }, r)
    end)
  end)

  it("returns nothing when the scope caught its cancellation", function()
    helper.run(function()
      local s = tether.CancelScope{}
      local n = select("#", s:run(function()
        s:cancel()
        tether.checkpoint()
        return "not returned"
      end))
      assert.equal(0, n)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("accepts a callable table as the function", function()
    helper.run(function()
      local callable = setmetatable({}, { __call = function(_, a, b) return a + b end })
      assert.equal(5, tether.CancelScope{}:run(callable, 2, 3))
    end)
  end)

  it("does not yield when entering the scope", function()
    helper.run(function()
      local events, record = recorder()
      tether.task_group(function(tg)
        tg:start_soon(function() record("sibling") end)
        tether.CancelScope{}:run(function() record("inside scope") end)
      end)
      assert.same({ "inside scope", "sibling" }, events)
    end)
  end)

  it("enters without raising inside an already cancelled scope", function()
    helper.run(function()
      local events, record = recorder()
      local outer, inner = tether.CancelScope{}, tether.CancelScope{}
      outer:run(function()
        outer:cancel()
        inner:run(function() record("inside inner") end)
        record("after inner")
        tether.checkpoint()
        record("not reached")
      end)
      assert.same({ "inside inner", "after inner" }, events)
      assert.is_true(outer.cancelled_caught)
      assert.is_false(inner.cancelled_caught)
    end)
  end)

  it("propagates a table error unchanged (the same table)", function()
    helper.run(function()
      local s = tether.CancelScope{}
      local e = { code = 42 }
      local err = helper.error_of(s.run, s, function() error(e) end)
      assert.is_true(rawequal(e, err))
      assert.is_false(s.cancel_called)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("propagates a string error unchanged", function()
    helper.run(function()
      local s = tether.CancelScope{}
      local err = helper.error_of(s.run, s, function() error("plain failure", 0) end)
      assert.equal("plain failure", err)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("propagates an ordinary error raised in a cancelled scope and does not count it as caught",
    function()
      helper.run(function()
        local s = tether.CancelScope{}
        local e = {}
        local err = helper.error_of(s.run, s, function()
          s:cancel()
          assert.equal("Cancelled", outcome(tether.checkpoint))
          error(e)
        end)
        assert.is_true(rawequal(e, err))
        assert.is_true(s.cancel_called)
        assert.is_false(s.cancelled_caught)
      end)
    end)

  it("lets a Cancelled pass unchanged through a scope that is not cancelled", function()
    helper.run(function()
      local events, record = recorder()
      local outer, inner = tether.CancelScope{}, tether.CancelScope{}
      outer:run(function()
        outer:cancel()
        local raised
        local ok, err = pcall(inner.run, inner, function()
          local _, e = pcall(tether.checkpoint)
          raised = e
          error(e, 0)
        end)
        record(ok and "returned" or kind(err))
        record(rawequal(raised, err) and "same error object" or "different error object")
        error(err, 0)
      end)
      assert.same({ "Cancelled", "same error object" }, events)
      assert.is_false(inner.cancelled_caught)
      assert.is_true(outer.cancelled_caught)
    end)
  end)

  it("rejects a function that is not callable", function()
    helper.run(function()
      for _, bad in ipairs({ false, 42, {}, "print" }) do
        local s = tether.CancelScope{}
        misuse("^scope:run: ", s.run, s, bad)
      end
      local s = tether.CancelScope{}
      misuse("^scope:run: ", s.run, s) -- no function at all
    end)
  end)

  it("rejects a wrong self", function()
    helper.run(function()
      local s = tether.CancelScope{}
      local fn = function() end
      misuse("^scope:run: ", s.run, nil, fn)
      misuse("^scope:run: ", s.run, {}, fn)
      misuse("^scope:run: ", s.run, 42, fn)
      misuse("^scope:run: ", s.run, fn) -- scope.run(fn): the dot instead of the colon
    end)
  end)

  it("leaves nothing entered after a rejected call", function()
    helper.run(function()
      local expired = tether.CancelScope{ deadline = tether.current_time() }
      local cancelled = tether.CancelScope{}
      cancelled:cancel()
      misuse("^scope:run: ", expired.run, expired, 42)
      misuse("^scope:run: ", cancelled.run, cancelled, nil)
      misuse("^scope:run: ", expired.run, {}, function() end)
      -- Had either scope stayed entered, the task would now be effectively cancelled.
      assert.equal(math.huge, tether.current_effective_deadline())
      tether.checkpoint()
      tether.sleep(0)
    end)
  end)

  it("runs a scope only once: running it again after exit raises", function()
    helper.run(function()
      local calls = 0
      local s = tether.CancelScope{}
      s:run(function() calls = calls + 1 end)
      misuse("^scope:run: ", s.run, s, function() calls = calls + 1 end)
      assert.equal(1, calls)
      local c = tether.CancelScope{}
      c:run(function()
        c:cancel()
        tether.checkpoint()
      end)
      assert.is_true(c.cancelled_caught)
      misuse("^scope:run: ", c.run, c, function() calls = calls + 1 end)
      assert.equal(1, calls)
    end)
  end)

  it("runs a scope only once: running it again while it is active raises and it keeps working",
    function()
      helper.run(function()
        local events, record = recorder()
        local s = tether.CancelScope{}
        s:run(function()
          misuse("^scope:run: ", s.run, s, function() record("nested body ran") end)
          record("still inside")
          s:cancel()
          tether.checkpoint()
          record("not reached")
        end)
        assert.same({ "still inside" }, events)
        assert.is_true(s.cancelled_caught)
      end)
    end)

  it("runs a scope only once: entering it from another task while it is active raises",
    function()
      helper.run(function()
        local err
        local s = tether.CancelScope{}
        tether.task_group(function(tg)
          s:run(function()
            tg:start_soon(function() err = helper.error_of(s.run, s, function() end) end)
            tether.wait_all_tasks_blocked()
          end)
        end)
        assert.is_string(err)
        assert.matches("^scope:run: ", err)
        assert.is_false(s.cancel_called)
      end)
    end)
end)

describe("scope:cancel", function()
  it("is not a cancel point: the Cancelled comes at the next checkpoint", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      s:run(function()
        s:cancel()
        record("after cancel")
        assert.is_true(s.cancel_called)
        tether.checkpoint()
        record("not reached")
      end)
      assert.same({ "after cancel" }, events)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("before entry makes the first cancel point inside raise", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      s:cancel()
      assert.is_true(s.cancel_called)
      local n = select("#", s:run(function()
        record("entered")
        tether.checkpoint()
        record("not reached")
      end))
      record("after run")
      assert.same({ "entered", "after run" }, events)
      assert.equal(0, n)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("leaves cancelled_caught false when no cancel point is reached after it", function()
    helper.run(function()
      local s = tether.CancelScope{}
      local r = s:run(function()
        s:cancel()
        return "finished"
      end)
      assert.equal("finished", r)
      assert.is_true(s.cancel_called)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("is idempotent", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      s:cancel()
      s:cancel()
      s:run(function()
        s:cancel()
        s:cancel()
        record(outcome(tether.checkpoint))
        s:cancel()
        tether.checkpoint()
        record("not reached")
      end)
      s:cancel()
      assert.same({ "Cancelled" }, events)
      assert.is_true(s.cancel_called)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("after exit only sets cancel_called", function()
    helper.run(function()
      local s = tether.CancelScope{}
      assert.equal("done", s:run(function() return "done" end))
      s:cancel("too late")
      assert.is_true(s.cancel_called)
      assert.is_false(s.cancelled_caught)
      tether.checkpoint() -- the task itself is not cancelled
      tether.sleep(0)
    end)
  end)

  it("from another task wakes a task blocked inside the scope at once", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      local t0, t1, message
      tether.task_group(function(tg)
        tg:start_soon(function()
          s:run(function()
            local ok, err = pcall(tether.sleep_forever)
            t1 = tether.current_time()
            record(ok and "returned" or kind(err))
            if not ok then
              message = err.message
              error(err, 0)
            end
          end)
          record("child done")
        end)
        tether.wait_all_tasks_blocked()
        t0 = tether.current_time()
        s:cancel("stop now")
        record("cancelled")
      end)
      assert.same({ "cancelled", "Cancelled", "child done" }, events)
      assert.is_true(s.cancelled_caught)
      assert.is_truthy(message:find("stop now", 1, true))
      assert.is_true(t1 - t0 < 1)
    end)
  end)

  it("wakes the blocked host and children of a task group inside the scope", function()
    helper.run(function()
      local cancelled = 0
      local function block()
        local ok, err = pcall(tether.sleep_forever)
        if not ok and tether.is(err, tether.Cancelled) then cancelled = cancelled + 1 end
        if not ok then error(err, 0) end
      end
      local s = tether.CancelScope{}
      local n = select("#", s:run(function()
        tether.task_group(function(tg)
          tg:start_soon(block)
          tg:start_soon(block)
          tg:start_soon(function()
            tether.wait_all_tasks_blocked()
            s:cancel()
          end)
          block()
        end)
        return "not returned"
      end))
      assert.equal(0, n)
      assert.equal(3, cancelled)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("rejects a wrong self", function()
    helper.run(function()
      local s = tether.CancelScope{}
      misuse("^scope:cancel: ", s.cancel, nil)
      misuse("^scope:cancel: ", s.cancel, {})
      misuse("^scope:cancel: ", s.cancel, 42)
      assert.is_false(s.cancel_called)
    end)
  end)
end)

describe("cancel reasons", function()
  it("puts the reason into the Cancelled message", function()
    helper.run(function()
      local s = tether.CancelScope{}
      local err
      s:run(function()
        s:cancel("shutting down")
        local _, e = pcall(tether.checkpoint)
        err = e
      end)
      assert.is_true(tether.is(err, tether.Cancelled))
      assert.is_string(err.message)
      assert.is_truthy(err.message:find("shutting down", 1, true))
      assert.is_truthy(tostring(err):find("shutting down", 1, true))
    end)
  end)

  it("keeps the first reason", function()
    helper.run(function()
      local s = tether.CancelScope{}
      local messages = {}
      s:cancel("first reason")
      s:run(function()
        s:cancel("second reason")
        for _ = 1, 2 do
          local _, e = pcall(tether.checkpoint)
          messages[#messages + 1] = e.message
        end
      end)
      s:cancel("third reason")
      for _, m in ipairs(messages) do
        assert.is_truthy(m:find("first reason", 1, true))
        assert.is_falsy(m:find("second reason", 1, true))
      end
      assert.equal(2, #messages)
    end)
  end)

  it("keeps the first cause when the first cancel() had no reason", function()
    helper.run(function()
      local s = tether.CancelScope{}
      local err
      s:run(function()
        s:cancel()
        s:cancel("later reason")
        local _, e = pcall(tether.checkpoint)
        err = e
      end)
      assert.is_true(tether.is(err, tether.Cancelled))
      assert.is_falsy(err.message:find("later reason", 1, true))
    end)
  end)
end)

describe("level-triggered cancellation", function()
  it("makes every blocking call in a cancelled scope raise at once", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      local elapsed
      local r = s:run(function()
        s:cancel()
        local t0 = tether.current_time()
        record(outcome(tether.checkpoint))
        record(outcome(tether.sleep, 0))
        record(outcome(tether.sleep, 10))
        record(outcome(tether.sleep_until, tether.current_time() + 10))
        record(outcome(tether.sleep_forever))
        record(outcome(tether.checkpoint_if_cancelled))
        record(outcome(tether.checkpoint))
        elapsed = tether.current_time() - t0
        return "swallowed all"
      end)
      assert.same({ "Cancelled", "Cancelled", "Cancelled", "Cancelled", "Cancelled",
        "Cancelled", "Cancelled" }, events)
      assert.is_true(elapsed < 1)
      -- user code swallowed every Cancelled: nothing was caught, fn's result comes back
      assert.equal("swallowed all", r)
      assert.is_true(s.cancel_called)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("raises again at the next checkpoint after a pcall swallowed a Cancelled", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      s:run(function()
        s:cancel()
        record(outcome(tether.checkpoint))
        record("swallowed")
        tether.checkpoint()
        record("not reached")
      end)
      assert.same({ "Cancelled", "swallowed" }, events)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("raises inside an inner scope that is not cancelled itself", function()
    helper.run(function()
      local events, record = recorder()
      local outer, inner = tether.CancelScope{}, tether.CancelScope{}
      outer:run(function()
        outer:cancel()
        inner:run(function()
          record(outcome(tether.checkpoint))
          record(outcome(tether.checkpoint))
        end)
        record("after inner")
        tether.checkpoint()
        record("not reached")
      end)
      assert.same({ "Cancelled", "Cancelled", "after inner" }, events)
      assert.is_false(inner.cancel_called)
      assert.is_false(inner.cancelled_caught)
      assert.is_true(outer.cancelled_caught)
    end)
  end)

  it("lets a task started in an already cancelled group run until its first checkpoint",
    function()
      helper.run(function()
        local events, record = recorder()
        tether.task_group(function(tg)
          tg:start_soon(function()
            record("child started")
            observe(record, tether.checkpoint)
            record("not reached")
          end)
          tg.cancel_scope:cancel()
        end)
        assert.same({ "child started", "Cancelled" }, events)
      end)
    end)
end)

describe("checkpoints", function()
  it("checkpoint yields to other tasks when not cancelled", function()
    helper.run(function()
      local events, record = recorder()
      tether.task_group(function(tg)
        tg:start_soon(function() record("sibling") end)
        tether.checkpoint()
        record("main")
      end)
      assert.same({ "sibling", "main" }, events)
    end)
  end)

  it("checkpoint yields first and then checks for cancellation", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      tether.task_group(function(tg)
        s:run(function()
          tg:start_soon(function()
            s:cancel()
            record("sibling cancelled the scope")
          end)
          observe(record, tether.checkpoint)
        end)
      end)
      assert.same({ "sibling cancelled the scope", "Cancelled" }, events)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("checkpoint_if_cancelled returns without yielding when not cancelled", function()
    helper.run(function()
      local events, record = recorder()
      tether.task_group(function(tg)
        tg:start_soon(function() record("sibling") end)
        tether.checkpoint_if_cancelled()
        tether.checkpoint_if_cancelled()
        record("main")
      end)
      assert.same({ "main", "sibling" }, events)
    end)
  end)

  it("checkpoint_if_cancelled raises when the task is cancelled", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      s:run(function()
        s:cancel()
        record("before")
        observe(record, tether.checkpoint_if_cancelled)
        record("not reached")
      end)
      assert.same({ "before", "Cancelled" }, events)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("cancel_shielded_checkpoint yields but never raises in a cancelled scope", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      tether.task_group(function(tg)
        s:run(function()
          s:cancel()
          tg:start_soon(function() record("sibling") end)
          tether.cancel_shielded_checkpoint()
          record("after first")
          tether.cancel_shielded_checkpoint()
          record("after second")
          tether.checkpoint()
          record("not reached")
        end)
      end)
      assert.same({ "sibling", "after first", "after second" }, events)
      assert.is_true(s.cancelled_caught)
    end)
  end)
end)

describe("scope.shield", function()
  it("protects the inside from a cancelled outer scope, which fires after the shield", function()
    helper.run(function()
      local events, record = recorder()
      local outer = tether.CancelScope{}
      local shielded = tether.CancelScope{ shield = true }
      outer:run(function()
        outer:cancel()
        shielded:run(function()
          tether.checkpoint()
          tether.sleep(0.001)
          record("shielded work done")
        end)
        record("after shield")
        tether.checkpoint()
        record("not reached")
      end)
      assert.same({ "shielded work done", "after shield" }, events)
      assert.is_false(shielded.cancel_called)
      assert.is_false(shielded.cancelled_caught)
      assert.is_true(outer.cancelled_caught)
    end)
  end)

  it("is honoured when set on the unentered scope by assignment", function()
    helper.run(function()
      local events, record = recorder()
      local outer, inner = tether.CancelScope{}, tether.CancelScope{}
      inner.shield = true
      assert.is_true(inner.shield)
      outer:run(function()
        outer:cancel()
        inner:run(function()
          tether.checkpoint()
          record("inside shield")
        end)
        tether.checkpoint()
      end)
      assert.same({ "inside shield" }, events)
      assert.is_true(outer.cancelled_caught)
    end)
  end)

  it("does not protect against the shielded scope's own cancel()", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{ shield = true }
      s:run(function()
        s:cancel()
        observe(record, tether.checkpoint)
      end)
      assert.same({ "Cancelled" }, events)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("rejects a non-boolean value and keeps the old one", function()
    helper.run(function()
      local s = tether.CancelScope{}
      misuse("^scope%.shield: ", function() s.shield = 1 end)
      misuse("^scope%.shield: ", function() s.shield = "yes" end)
      assert.is_false(s.shield)
      local t = tether.CancelScope{ shield = true }
      misuse("^scope%.shield: ", function() t.shield = 0 end)
      assert.is_true(t.shield)
    end)
  end)

  it("when cleared while an outer scope is cancelled, wakes the blocked task with Cancelled",
    function()
      helper.run(function()
        local events, record = recorder()
        local outer, inner = tether.CancelScope{}, tether.CancelScope{ shield = true }
        tether.task_group(function(tg)
          tg:start_soon(function()
            outer:run(function()
              inner:run(function() observe(record, tether.sleep_forever) end)
              record("not reached")
            end)
            record("child done")
          end)
          tether.wait_all_tasks_blocked()
          outer:cancel()
          tether.wait_all_tasks_blocked()
          record("still blocked")
          inner.shield = false
          record("shield cleared")
        end)
        assert.same({ "still blocked", "shield cleared", "Cancelled", "child done" }, events)
        assert.is_false(inner.cancelled_caught)
        assert.is_true(outer.cancelled_caught)
      end)
    end)

  it("when set while the task is blocked, protects it from a later outer cancel", function()
    helper.run(function()
      local events, record = recorder()
      local outer, inner = tether.CancelScope{}, tether.CancelScope{}
      tether.task_group(function(tg)
        tg:start_soon(function()
          outer:run(function()
            inner:run(function() observe(record, tether.sleep_forever) end)
            record("after inner")
            observe(record, tether.checkpoint)
          end)
          record("child done")
        end)
        tether.wait_all_tasks_blocked()
        inner.shield = true
        outer:cancel()
        tether.wait_all_tasks_blocked()
        record("still blocked")
        inner:cancel() -- its own cancellation goes through its shield
      end)
      assert.same({ "still blocked", "Cancelled", "after inner", "Cancelled", "child done" },
        events)
      assert.is_true(inner.cancelled_caught)
      assert.is_true(outer.cancelled_caught)
    end)
  end)

  it("set on a scope that is not cancelled while an outer Cancelled propagates, does not catch",
    function()
      helper.run(function()
        local events, record = recorder()
        local outer, inner = tether.CancelScope{}, tether.CancelScope{}
        outer:run(function()
          inner:run(function()
            outer:cancel()
            local _, err = pcall(tether.checkpoint)
            inner.shield = true
            error(err, 0)
          end)
          record("not reached")
        end)
        assert.same({}, events)
        assert.is_false(inner.cancelled_caught)
        assert.is_true(outer.cancelled_caught)
      end)
    end)
end)

describe("exit rule", function()
  it("a cancelled scope catches its own Cancelled and the code after it continues", function()
    helper.run(function()
      local events, record = recorder()
      local outer, inner = tether.CancelScope{}, tether.CancelScope{}
      outer:run(function()
        inner:run(function()
          inner:cancel()
          tether.checkpoint()
          record("not reached")
        end)
        record("after inner")
        tether.checkpoint()
        record("outer still running")
      end)
      assert.same({ "after inner", "outer still running" }, events)
      assert.is_true(inner.cancelled_caught)
      assert.is_false(outer.cancel_called)
      assert.is_false(outer.cancelled_caught)
    end)
  end)

  it("the outermost of nested cancelled scopes catches", function()
    helper.run(function()
      local events, record = recorder()
      local outer, inner = tether.CancelScope{}, tether.CancelScope{}
      local n = select("#", outer:run(function()
        inner:run(function()
          inner:cancel()
          outer:cancel()
          tether.checkpoint()
          record("not reached 1")
        end)
        record("not reached 2")
      end))
      record("after outer")
      assert.same({ "after outer" }, events)
      assert.equal(0, n)
      assert.is_true(inner.cancel_called)
      assert.is_false(inner.cancelled_caught)
      assert.is_true(outer.cancelled_caught)
    end)
  end)

  it("the outermost cancelled scope below the nearest shield catches", function()
    helper.run(function()
      local events, record = recorder()
      local outer = tether.CancelScope{}
      local middle = tether.CancelScope{ shield = true }
      local inner = tether.CancelScope{}
      outer:run(function()
        middle:run(function()
          inner:run(function()
            inner:cancel()
            middle:cancel()
            outer:cancel()
            tether.checkpoint()
            record("not reached 1")
          end)
          record("not reached 2")
        end)
        record("after middle")
        tether.checkpoint()
        record("not reached 3")
      end)
      record("after outer")
      assert.same({ "after middle", "after outer" }, events)
      assert.is_false(inner.cancelled_caught)
      assert.is_true(middle.cancelled_caught)
      assert.is_true(outer.cancelled_caught)
    end)
  end)

  it("an outer scope cancelled while the inner Cancelled propagates takes over", function()
    helper.run(function()
      local events, record = recorder()
      local outer, inner = tether.CancelScope{}, tether.CancelScope{}
      outer:run(function()
        inner:run(function()
          inner:cancel()
          local _, err = pcall(tether.checkpoint)
          outer:cancel()
          error(err, 0)
        end)
        record("not reached")
      end)
      assert.same({}, events)
      assert.is_false(inner.cancelled_caught)
      assert.is_true(outer.cancelled_caught)
    end)
  end)

  it("an outer scope cancelled by a <close> handler during unwinding takes over", function()
    helper.run(function()
      local events, record = recorder()
      local outer, inner = tether.CancelScope{}, tether.CancelScope{}
      outer:run(function()
        inner:run(function()
          local _ <close> = closer(function(err)
            record("closing with " .. kind(err))
            outer:cancel()
          end)
          inner:cancel()
          tether.checkpoint()
        end)
        record("not reached")
      end)
      assert.same({ "closing with Cancelled" }, events)
      assert.is_false(inner.cancelled_caught)
      assert.is_true(outer.cancelled_caught)
    end)
  end)

  it("a shielded scope that cancelled itself catches its own even if the outer got cancelled",
    function()
      helper.run(function()
        local events, record = recorder()
        local outer = tether.CancelScope{}
        local inner = tether.CancelScope{ shield = true }
        outer:run(function()
          inner:run(function()
            inner:cancel()
            local _, err = pcall(tether.checkpoint)
            outer:cancel() -- meanwhile, while the inner Cancelled is in flight
            error(err, 0)
          end)
          record("after inner")
          tether.checkpoint()
          record("not reached")
        end)
        assert.same({ "after inner" }, events)
        assert.is_true(inner.cancelled_caught)
        assert.is_true(outer.cancelled_caught)
      end)
    end)
end)

describe("cancel_called and cancelled_caught", function()
  it("cancel_called is true right after entry when the deadline has already passed", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{ deadline = tether.current_time() }
      s:run(function()
        record(s.cancel_called and "cancel_called at entry" or "not cancelled at entry")
        tether.checkpoint()
        record("not reached")
      end)
      assert.same({ "cancel_called at entry" }, events)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("cancel_called notices a passed deadline before any checkpoint", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{ deadline = tether.current_time() + 0.05 }
      s:run(function()
        record(s.cancel_called and "cancelled" or "not cancelled yet")
        busy_wait_until(s.deadline) -- no yield: no timer can have run
        record(s.cancel_called and "cancelled" or "not cancelled yet")
      end)
      assert.same({ "not cancelled yet", "cancelled" }, events)
      -- no cancel point was reached after the deadline: nothing was caught
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("cancel_called is true for an unentered scope whose deadline has passed", function()
    helper.run(function()
      local s = tether.CancelScope{ deadline = tether.current_time() }
      assert.is_true(s.cancel_called)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("both stay true after the scope exits", function()
    helper.run(function()
      local s = tether.CancelScope{}
      s:run(function()
        s:cancel()
        tether.checkpoint()
      end)
      tether.checkpoint()
      assert.is_true(s.cancel_called)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("cancelled_caught is false while the scope is still running", function()
    helper.run(function()
      local s = tether.CancelScope{}
      local inside
      s:run(function()
        s:cancel()
        pcall(tether.checkpoint)
        inside = s.cancelled_caught
        tether.checkpoint()
      end)
      assert.is_false(inside)
      assert.is_true(s.cancelled_caught)
    end)
  end)
end)

describe("<close> variables in a cancelled scope", function()
  it("are closed while the Cancelled unwinds", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      s:run(function()
        local _a <close> = closer(function(err) record("a closed with " .. kind(err)) end)
        local _b <close> = closer(function(err) record("b closed with " .. kind(err)) end)
        s:cancel()
        tether.checkpoint()
        record("not reached")
      end)
      assert.same({ "b closed with Cancelled", "a closed with Cancelled" }, events)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("may yield during cleanup inside a shielded scope", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      tether.task_group(function(tg)
        s:run(function()
          local _ <close> = closer(function()
            tg:start_soon(function() record("sibling ran") end)
            tether.CancelScope{ shield = true }:run(function()
              tether.checkpoint()
              record("shielded checkpoint returned")
              tether.sleep(0.001)
              record("shielded sleep returned")
            end)
            record("cleanup done")
          end)
          s:cancel()
          tether.checkpoint()
          record("not reached")
        end)
      end)
      assert.same({ "sibling ran", "shielded checkpoint returned", "shielded sleep returned",
        "cleanup done" }, events)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("see Cancelled again at an unshielded checkpoint during cleanup", function()
    helper.run(function()
      local events, record = recorder()
      local s = tether.CancelScope{}
      s:run(function()
        local _ <close> = closer(function()
          record("cleanup checkpoint: " .. outcome(tether.checkpoint))
        end)
        s:cancel()
        tether.checkpoint()
      end)
      assert.same({ "cleanup checkpoint: Cancelled" }, events)
      assert.is_true(s.cancelled_caught)
    end)
  end)
end)

-- Deep nesting and Lua's C-stack limit.
--
-- scope:run has to call fn through lua_callk/lua_pcallk with a continuation (so fn may yield).
-- While the C stack is live, each such call goes luaD_call -> ccall, which adds 1 to
-- L->nCcalls and recurses into a fresh luaV_execute; a Lua->C call (the call of scope:run
-- itself) adds nothing. When getCcalls(L) reaches LUAI_MAXCCALLS (200) Lua raises
-- "C stack overflow", and a coroutine starts counting from its resumer's count
-- (lua_resume: L->nCcalls = getCcalls(from), then +1). So 5000 nested scope:run calls without
-- a yield in between are impossible: the ceiling is ~190 (measured with plain pcall: 197
-- levels from a main chunk, 193 inside a busted `it`), less if scope:run spends 2 C levels.
--
-- A yield lifts the limit: lua_yieldk throws LUA_YIELD, unwinding the whole C stack back to
-- lua_resume. The next lua_resume resets nCcalls to the resumer's count and runs `unroll`,
-- which finishes every pending C frame through its continuation (finishCcall, and
-- finishpcallk for pcallk) and every Lua frame in one flat loop. Errors are recovered the same
-- way (inside a coroutine lua_pcallk with a continuation sets no setjmp; lua_resume's
-- `precover` finds the CIST_YPCALL frame and unrolls from there). So the depth already built
-- costs no C stack, and with a checkpoint between levels 5000 nested scopes are legitimate
-- (checked with pcall + coroutine.yield on this machine's lua5.4, the same mechanism).
-- The unyielding variants use 80 levels (room for a scope:run that costs 2 C levels), and
-- going past the limit must give Lua's error, not a crash.
describe("deep nesting", function()
  it("cancels 5000 nested scopes from the outermost while the innermost is blocked", function()
    local DEPTH = 5000
    helper.run(function()
      local events, record = recorder()
      local scopes = {}
      local continued = 0
      local function nest(level)
        tether.checkpoint() -- unwinds the C stack (see above)
        if level > DEPTH then
          record("innermost blocked")
          observe(record, tether.sleep_forever)
          return
        end
        local s = tether.CancelScope{}
        scopes[level] = s
        s:run(nest, level + 1)
        continued = continued + 1
      end
      local t0
      tether.task_group(function(tg)
        tg:start_soon(function()
          local outermost = tether.CancelScope{}
          scopes[1] = outermost
          local n = select("#", outermost:run(nest, 2))
          record("outermost returned " .. n .. " values")
        end)
        tether.wait_all_tasks_blocked()
        t0 = tether.current_time()
        scopes[1]:cancel("from the outermost")
      end)
      assert.is_true(tether.current_time() - t0 < 5)
      assert.same({ "innermost blocked", "Cancelled", "outermost returned 0 values" }, events)
      assert.equal(DEPTH, #scopes)
      assert.equal(0, continued)
      assert.is_true(scopes[1].cancelled_caught)
      local wrong = 0
      for i = 2, DEPTH do
        if scopes[i].cancel_called or scopes[i].cancelled_caught then wrong = wrong + 1 end
      end
      assert.equal(0, wrong)
      assert.equal(math.huge, tether.current_effective_deadline())
    end)
  end)

  it("cancels 80 nested scopes entered without any yield in between", function()
    local DEPTH = 80
    helper.run(function()
      local scopes = {}
      local continued = 0
      local function nest(level)
        if level > DEPTH then
          scopes[1]:cancel("from the outermost")
          tether.checkpoint()
          return
        end
        local s = tether.CancelScope{}
        scopes[level] = s
        s:run(nest, level + 1)
        continued = continued + 1
      end
      scopes[1] = tether.CancelScope{}
      local n = select("#", scopes[1]:run(nest, 2))
      assert.equal(0, n)
      assert.equal(DEPTH, #scopes)
      assert.equal(0, continued)
      assert.is_true(scopes[1].cancelled_caught)
      for i = 2, DEPTH do
        assert.is_false(scopes[i].cancelled_caught)
      end
      tether.checkpoint()
    end)
  end)

  it("nesting past the C-stack limit without yielding raises Lua's error, not a crash", function()
    local DEPTH = 5000
    local deepest = 0
    local err = helper.error_of(helper.run, function()
      local function nest(level)
        deepest = level
        if level > DEPTH then return end
        tether.CancelScope{}:run(nest, level + 1)
      end
      nest(1)
    end)
    assert.is_true(deepest < DEPTH)
    assert.is_truthy(tostring(err):find("stack overflow", 1, true))
  end)
end)
