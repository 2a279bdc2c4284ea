-- Specs for task groups: results, waiting, error collection (ErrorGroup), cancellation,
-- tg:start, and misuse.

local tether = require "tether"
local helper = require "spec.helper"
local assert_task_still_works = helper.assert_task_still_works

local SRC = debug.getinfo(1, "S").short_src

local function closer(fn)
  return setmetatable({}, { __close = fn })
end

local function default_name(fn)
  local info = debug.getinfo(fn, "S")
  return info.short_src .. ":" .. info.linedefined
end

-- How a protected call ended, as a short word for logs.
local function outcome(ok, err)
  if ok then return "returned" end
  if tether.is(err, tether.Cancelled) then return "Cancelled" end
  return "error " .. tostring(err)
end

-- Line number of the line after the caller's current line.
local function next_line()
  return debug.getinfo(2, "l").currentline + 1
end

describe("tether.task_group", function()
  it("returns the body's results and passes the extra arguments", function()
    local r, got_tg
    helper.run(function()
      r = table.pack(tether.task_group(function(tg, ...)
        got_tg = tg
        return select("#", ...), ...
      end, "x", nil, 3))
    end)
    assert.same({ n = 4, 3, "x", nil, 3 }, r)
    assert.is_not_nil(got_tg)
  end)

  it("waits for every child before returning", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          tether.sleep(0.01)
          log[#log + 1] = "slept"
        end)
        tg:start_soon(function()
          for _ = 1, 5 do tether.checkpoint() end
          log[#log + 1] = "checkpointed"
        end)
        tg:start_soon(function() log[#log + 1] = "immediate" end)
      end)
      log[#log + 1] = "exited"
    end)
    assert.equal(4, #log)
    assert.equal("exited", log[4])
    local firsts = { log[1], log[2], log[3] }
    table.sort(firsts)
    assert.same({ "checkpointed", "immediate", "slept" }, firsts)
  end)

  it("waits for every child when the body raises, including their shielded cleanup", function()
    local log = {}
    helper.run(function()
      local err = helper.error_of(tether.task_group, function(tg)
        tg:start_soon(function()
          local _ <close> = closer(function()
            tether.CancelScope{ shield = true }:run(function()
              tether.sleep(0.005)
              log[#log + 1] = "cleanup done"
            end)
          end)
          tether.sleep_forever()
        end)
        tether.wait_all_tasks_blocked()
        error("body failed", 0)
      end)
      assert.is_true(tether.is(err, tether.ErrorGroup))
      assert.same({ "body failed" }, err.errors)
      log[#log + 1] = "group raised"
    end)
    assert.same({ "cleanup done", "group raised" }, log)
  end)

  it("cancels blocked siblings and the host body when a child fails", function()
    local log = {}
    local err
    helper.run(function()
      err = helper.error_of(tether.task_group, function(tg)
        tg:start_soon(function()
          local ok, e = pcall(tether.sleep_forever)
          log[#log + 1] = "sibling " .. outcome(ok, e)
          error(e, 0)
        end)
        tg:start_soon(function()
          tether.wait_all_tasks_blocked()
          log[#log + 1] = "failing"
          error("boom", 0)
        end)
        local ok, e = pcall(tether.sleep_forever)
        log[#log + 1] = "host " .. outcome(ok, e)
        error(e, 0)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.same({ "boom" }, err.errors)
    assert.equal("failing", log[1])
    local rest = { log[2], log[3] }
    table.sort(rest)
    assert.same({ "host Cancelled", "sibling Cancelled" }, rest)
    assert.equal(3, #log)
  end)

  it("cancels a busy sibling at its next checkpoint when a child fails", function()
    local log = {}
    local err
    helper.run(function()
      err = helper.error_of(tether.task_group, function(tg)
        tg:start_soon(function()
          local steps = 0
          local ok, e = pcall(function()
            while true do
              steps = steps + 1
              tether.checkpoint()
            end
          end)
          log[#log + 1] = "busy " .. outcome(ok, e)
          log[#log + 1] = steps >= 4 -- the failing child took 3 checkpoints first
          error(e, 0)
        end)
        tg:start_soon(function()
          for _ = 1, 3 do tether.checkpoint() end
          error("boom", 0)
        end)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.same({ "boom" }, err.errors)
    assert.same({ "busy Cancelled", true }, log)
  end)

  it("raises an ErrorGroup even for a single error of a body without children", function()
    local err, host_name
    helper.run(function()
      host_name = tether.current_task().name
      err = helper.error_of(tether.task_group, function() error("solo", 0) end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.same({ "solo" }, err.errors)
    assert.same({ host_name }, err.tasks)
    assert.equal(1, #err.tracebacks)
    assert.equal("string", type(err.message))
  end)

  it("raises an ErrorGroup even for a single error of a child", function()
    local err
    helper.run(function()
      err = helper.error_of(tether.task_group, function(tg)
        tg:start_soon("only", function() error("lonely", 0) end)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.is_false(tether.is(err, tether.Cancelled))
    assert.same({ "lonely" }, err.errors)
    assert.same({ "only" }, err.tasks)
  end)

  it("orders errors as they happened: body error, then a child's", function()
    local err, host_name
    helper.run(function()
      host_name = tether.current_task().name
      err = helper.error_of(tether.task_group, function(tg)
        tg:start_soon("C", function()
          local ok = pcall(tether.sleep_forever)
          error(ok and "child: not cancelled" or "child", 0)
        end)
        tether.wait_all_tasks_blocked()
        error("body", 0)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.same({ "body", "child" }, err.errors)
    assert.same({ host_name, "C" }, err.tasks)
  end)

  it("orders errors as they happened: a child's error, then the body's", function()
    local err, host_name
    helper.run(function()
      host_name = tether.current_task().name
      err = helper.error_of(tether.task_group, function(tg)
        tg:start_soon("C", function() error("child", 0) end)
        local ok = pcall(tether.sleep_forever)
        error(ok and "body: not cancelled" or "body", 0)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.same({ "child", "body" }, err.errors)
    assert.same({ "C", host_name }, err.tasks)
  end)

  it("orders errors of several tasks as they happened, with their task names", function()
    local err, host_name
    local function unnamed()
      local ok = pcall(tether.sleep_forever)
      error(ok and "unnamed: not cancelled" or "unnamed", 0)
    end
    helper.run(function()
      host_name = tether.current_task().name
      err = helper.error_of(tether.task_group, function(tg)
        tg:start_soon(unnamed)
        tg:start_soon("named", function()
          tether.wait_all_tasks_blocked()
          error("named", 0)
        end)
        local ok = pcall(tether.sleep_forever)
        -- Let the unnamed child (woken by the same cancellation) raise first.
        for _ = 1, 3 do tether.cancel_shielded_checkpoint() end
        error(ok and "body: not cancelled" or "body", 0)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.same({ "named", "unnamed", "body" }, err.errors)
    assert.same({ "named", default_name(unnamed), host_name }, err.tasks)
    assert.equal(3, #err.tracebacks)
  end)

  it("keeps the original error values: strings stay strings, tables keep their identity", function()
    local function positioned() error("positioned failure") end
    local _, positioned_value = pcall(positioned)
    local plain_table = { reason = "tbl" }
    local object = setmetatable({}, { __tostring = function() return "custom object" end })
    local err
    helper.run(function()
      err = helper.error_of(tether.task_group, function(tg)
        -- None checkpoints before raising, so all four raise, in start order.
        tg:start_soon(positioned)
        tg:start_soon(function() error(plain_table) end)
        tg:start_soon(function() error(42) end)
        tg:start_soon(function() error(object) end)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.equal(4, #err.errors)
    assert.equal(positioned_value, err.errors[1])
    assert.is_true(rawequal(plain_table, err.errors[2]))
    assert.equal(42, err.errors[3])
    assert.equal("integer", math.type(err.errors[3]))
    assert.is_true(rawequal(object, err.errors[4]))
    assert.equal(4, #err.tracebacks)
    assert.equal(4, #err.tasks)
    for i = 1, 4 do assert.equal("string", type(err.tracebacks[i])) end
  end)

  it("captures each traceback where the error was raised, not in the group machinery", function()
    local raise_line, group_line, body_line
    local function deep_raiser()
      raise_line = next_line()
      error("traced", 0)
    end
    local function child()
      deep_raiser()
      return "not a tail call"
    end
    local err
    helper.run(function()
      err = helper.error_of(function()
        group_line = next_line()
        tether.task_group(function(tg)
          tg:start_soon(child)
          local ok = pcall(tether.sleep_forever)
          body_line = next_line()
          error(ok and "body: not cancelled" or "body", 0)
        end)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.same({ "traced", "body" }, err.errors)
    local child_tb, body_tb = err.tracebacks[1], err.tracebacks[2]
    assert.is_truthy(child_tb:find(SRC .. ":" .. raise_line .. ":", 1, true), child_tb)
    assert.is_truthy(child_tb:find("deep_raiser", 1, true), child_tb)
    assert.is_falsy(child_tb:find(SRC .. ":" .. group_line .. ":", 1, true), child_tb)
    assert.is_truthy(body_tb:find(SRC .. ":" .. body_line .. ":", 1, true), body_tb)
  end)

  it("never puts Cancelled inside an ErrorGroup", function()
    local inner_outcome
    local err
    helper.run(function()
      err = helper.error_of(tether.task_group, function(tg)
        tg:start_soon(function() tether.sleep_forever() end)
        tg:start_soon(function()
          local ok, e = pcall(tether.task_group, function(inner)
            inner:start_soon(function() tether.sleep_forever() end)
            tether.sleep_forever()
          end)
          inner_outcome = outcome(ok, e) .. " " .. tostring(tether.is(e, tether.ErrorGroup))
          error(e, 0)
        end)
        tg:start_soon(function()
          tether.wait_all_tasks_blocked()
          error("the only failure", 0)
        end)
        tether.sleep_forever()
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.same({ "the only failure" }, err.errors)
    assert.equal(1, #err.tasks)
    assert.equal(1, #err.tracebacks)
    assert.equal("Cancelled false", inner_outcome)
  end)

  it("lets a plain Cancelled propagate when only cancellation happened", function()
    local seen
    local outer
    helper.run(function()
      outer = tether.CancelScope{}
      outer:run(function()
        local ok, e = pcall(tether.task_group, function(tg)
          tg:start_soon(function() tether.sleep_forever() end)
          tg:start_soon(function() tether.sleep_forever() end)
          tether.wait_all_tasks_blocked()
          outer:cancel()
          tether.sleep_forever()
        end)
        seen = { outcome = outcome(ok, e), group = tether.is(e, tether.ErrorGroup) }
        error(e, 0)
      end)
    end)
    assert.same({ outcome = "Cancelled", group = false }, seen)
    assert.is_true(outer.cancelled_caught)
  end)

  it("exits quietly after tg.cancel_scope:cancel(), having cancelled body and children", function()
    local log = {}
    local r, group
    helper.run(function()
      r = table.pack(tether.task_group(function(tg)
        group = tg
        tg:start_soon(function()
          local ok, e = pcall(tether.sleep_forever)
          log[#log + 1] = "child " .. outcome(ok, e)
          error(e, 0)
        end)
        tether.wait_all_tasks_blocked()
        tg.cancel_scope:cancel()
        log[#log + 1] = "host continues until its next checkpoint"
        tether.checkpoint()
        log[#log + 1] = "unreachable"
        return "unreachable"
      end))
      log[#log + 1] = "group exited"
    end)
    assert.same({ "host continues until its next checkpoint", "child Cancelled", "group exited" },
                log)
    assert.same({ n = 0 }, r)
    assert.is_true(group.cancel_scope.cancel_called)
    assert.is_true(group.cancel_scope.cancelled_caught)
  end)

  it("refuses new tasks once it has exited", function()
    local ran = false
    helper.run(function()
      local saved
      tether.task_group(function(tg) saved = tg end)
      local function task() ran = true end
      assert.matches("^tg:start_soon: ", helper.error_of(saved.start_soon, saved, task))
      assert.matches("^tg:start_soon: ", helper.error_of(saved.start_soon, saved, "named", task))
      assert.matches("^tg:start: ", helper.error_of(saved.start, saved, function(ts)
        ran = true
        ts:started()
      end))
      -- Also a group that exited with an error.
      local failed
      helper.error_of(tether.task_group, function(tg)
        failed = tg
        error("x", 0)
      end)
      assert.matches("^tg:start_soon: ", helper.error_of(failed.start_soon, failed, task))
      -- Cancelling the scope of an exited group is allowed and does nothing.
      saved.cancel_scope:cancel()
      tether.checkpoint()
      tether.sleep(0.001)
      assert_task_still_works()
    end)
    assert.is_false(ran)
  end)

  it("runs a child started in a cancelled group until its first checkpoint", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg.cancel_scope:cancel()
        tg:start_soon(function()
          log[#log + 1] = "child runs"
          tether.checkpoint()
          log[#log + 1] = "unreachable"
        end)
        tg:start_soon(function() log[#log + 1] = "child without checkpoint finishes" end)
        log[#log + 1] = "body done"
      end)
      log[#log + 1] = "group exited"
    end)
    assert.same({ "body done", "child runs", "child without checkpoint finishes", "group exited" },
                log)
  end)

  it("nests ErrorGroups for nested groups", function()
    local err
    helper.run(function()
      err = helper.error_of(tether.task_group, function(tg)
        tg:start_soon("outer child", function()
          tether.task_group(function(inner)
            inner:start_soon("inner child", function() error("deep", 0) end)
          end)
        end)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.equal(1, #err.errors)
    assert.same({ "outer child" }, err.tasks)
    local inner = err.errors[1]
    assert.is_true(tether.is(inner, tether.ErrorGroup))
    assert.same({ "deep" }, inner.errors)
    assert.same({ "inner child" }, inner.tasks)
  end)

  it("lets a child spawn a sibling while the host waits in exit", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        tg:start_soon(function()
          tether.checkpoint() -- the host is now waiting in exit
          tg:start_soon(function()
            tether.checkpoint()
            log[#log + 1] = "late sibling"
          end)
          log[#log + 1] = "spawner done"
        end)
      end)
      log[#log + 1] = "group exited"
    end)
    assert.same({ "spawner done", "late sibling", "group exited" }, log)
  end)

  it("is a schedule point when leaving with no children", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(outer)
        outer:start_soon(function() log[#log + 1] = "other task" end)
        tether.task_group(function() log[#log + 1] = "empty body" end)
        log[#log + 1] = "after empty group"
      end)
    end)
    assert.same({ "empty body", "other task", "after empty group" }, log)
  end)

  it("is not a cancel point when entered or left with no children", function()
    local log = {}
    local scope
    helper.run(function()
      scope = tether.CancelScope{}
      scope:run(function()
        scope:cancel()
        local r = tether.task_group(function()
          log[#log + 1] = "body runs"
          return "result"
        end)
        log[#log + 1] = "no Cancelled from the group: " .. r
        tether.checkpoint()
        log[#log + 1] = "unreachable"
      end)
    end)
    assert.same({ "body runs", "no Cancelled from the group: result" }, log)
    assert.is_true(scope.cancelled_caught)
  end)

  it("has an ErrorGroup tostring that shows each error, its task and its traceback", function()
    local line_a, line_b
    local err
    helper.run(function()
      err = helper.error_of(tether.task_group, function(tg)
        tg:start_soon("beta-task", function()
          pcall(tether.sleep_forever)
          line_b = next_line()
          error("second-failure", 0)
        end)
        tg:start_soon("alpha-task", function()
          tether.wait_all_tasks_blocked()
          line_a = next_line()
          error("first-failure", 0)
        end)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.same({ "first-failure", "second-failure" }, err.errors)
    local text = tostring(err)
    for _, needle in ipairs({ "first-failure", "alpha-task", SRC .. ":" .. line_a .. ":",
                              "second-failure", "beta-task", SRC .. ":" .. line_b .. ":" }) do
      assert.is_truthy(text:find(needle, 1, true), "missing " .. needle .. " in:\n" .. text)
    end
    assert.is_true(text:find("first-failure", 1, true) < text:find("second-failure", 1, true))
  end)

  it("shows every error, task name and traceback when uncaught in a lua5.4 process", function()
    local script = table.concat({
      'local tether = require "tether"',
      "tether.run(function()",
      "  tether.task_group(function(tg)",
      '    tg:start_soon("worker-alpha", function()',
      "      tether.wait_all_tasks_blocked()",
      '      error("kaboom-alpha", 0)',
      "    end)",
      '    tg:start_soon("worker-beta", function()',
      "      pcall(tether.sleep_forever)",
      '      error("kaboom-beta", 0)',
      "    end)",
      "  end)",
      "end)",
      'print("unreachable")',
    }, "\n") .. "\n"
    local out, status = helper.run_script(script)
    assert.not_equal(0, status)
    for _, needle in ipairs({ "kaboom-alpha", "worker-alpha", ":6: in ",
                              "kaboom-beta", "worker-beta", ":10: in " }) do
      assert.is_truthy(out:find(needle, 1, true), "missing " .. needle .. " in:\n" .. out)
    end
    assert.is_falsy(out:find("unreachable", 1, true))
  end)
end)

describe("tg:start", function()
  it("returns the value passed to task_status:started and passes the extra arguments", function()
    local got = {}
    helper.run(function()
      tether.task_group(function(tg)
        got.value = tg:start(function(task_status, a, b)
          got.args = { a, b }
          task_status:started("ready:" .. a .. b)
        end, "x", "y")
      end)
    end)
    assert.same({ value = "ready:xy", args = { "x", "y" } }, got)
  end)

  it("returns nil when started is called without a value", function()
    local r
    helper.run(function()
      tether.task_group(function(tg)
        r = table.pack(tg:start(function(task_status) task_status:started() end))
      end)
    end)
    assert.is_nil(r[1])
    assert.is_true(r.n <= 1)
  end)

  it("blocks until the child calls started", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        local v = tg:start(function(task_status)
          log[#log + 1] = "child running"
          tether.checkpoint()
          tether.sleep(0.001)
          log[#log + 1] = "child calls started"
          task_status:started("v")
          tether.sleep_forever()
        end)
        log[#log + 1] = "start returned " .. v
        tg.cancel_scope:cancel()
      end)
    end)
    assert.same({ "child running", "child calls started", "start returned v" }, log)
  end)

  it("runs the child under the caller's scopes until started, then under the group's", function()
    local d = {}
    helper.run(function()
      tether.task_group(function(tg)
        d.group = tether.current_effective_deadline()
        tether.move_on_after(5):run(function()
          d.caller = tether.current_effective_deadline()
          tg:start(function(task_status)
            d.child_before = tether.current_effective_deadline()
            task_status:started()
            tether.checkpoint()
            d.child_after = tether.current_effective_deadline()
          end)
        end)
      end)
    end)
    assert.is_true(d.caller < d.group)
    assert.equal(d.caller, d.child_before)
    assert.equal(d.group, d.child_after)
  end)

  it("cancels the child with the caller's scope before started, waits for it, raises Cancelled",
     function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        local scope = tether.CancelScope{}
        local bystander = tether.CancelScope{}
        tg:start_soon(function()
          tether.wait_all_tasks_blocked()
          log[#log + 1] = "cancelling the caller's scope"
          scope:cancel()
        end)
        tg:start_soon(function()
          bystander:run(tether.sleep_forever)
          log[#log + 1] = "bystander caught its own cancel: "
                          .. tostring(bystander.cancelled_caught)
        end)
        scope:run(function()
          local ok, e = pcall(tg.start, tg, function(task_status)
            log[#log + 1] = "child blocking"
            local ok2, e2 = pcall(tether.sleep_forever)
            log[#log + 1] = "child " .. outcome(ok2, e2)
            tether.CancelScope{ shield = true }:run(tether.sleep, 0.005)
            log[#log + 1] = "child cleanup done"
            if ok2 then task_status:started() end
            error(e2, 0)
          end)
          log[#log + 1] = "start " .. outcome(ok, e)
          error(e, 0)
        end)
        log[#log + 1] = "scope caught: " .. tostring(scope.cancelled_caught)
        log[#log + 1] = "group cancel_called: " .. tostring(tg.cancel_scope.cancel_called)
        bystander:cancel()
      end)
    end)
    assert.same({
      "child blocking",
      "cancelling the caller's scope",
      "child Cancelled",
      "child cleanup done",
      "start Cancelled",
      "scope caught: true",
      "group cancel_called: false",
      "bystander caught its own cancel: true",
    }, log)
  end)

  it("is no longer affected by the caller's scope once started", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        local scope = tether.CancelScope{}
        local cancelled_now = false
        scope:run(function()
          tg:start(function(task_status)
            task_status:started()
            while not cancelled_now do tether.checkpoint() end
            for _ = 1, 3 do tether.checkpoint() end
            tether.sleep(0.001)
            log[#log + 1] = "child finished normally"
          end)
          scope:cancel()
          cancelled_now = true
          tether.checkpoint()
          log[#log + 1] = "unreachable"
        end)
        log[#log + 1] = "scope caught: " .. tostring(scope.cancelled_caught)
      end)
    end)
    assert.same({ "scope caught: true", "child finished normally" }, log)
  end)

  it("raises an error from before started unwrapped, leaving the group alone", function()
    local log = {}
    local e = { "pre-start failure" }
    helper.run(function()
      tether.task_group(function(tg)
        local bystander = tether.CancelScope{}
        tg:start_soon(function()
          bystander:run(tether.sleep_forever)
          log[#log + 1] = "bystander caught its own cancel: "
                          .. tostring(bystander.cancelled_caught)
        end)
        local ok, err = pcall(tg.start, tg, function()
          tether.checkpoint()
          error(e)
        end)
        log[#log + 1] = "start: " .. tostring(ok) .. " same table: " .. tostring(rawequal(err, e))
        ok, err = pcall(tg.start, tg, function() error("plain string", 0) end)
        log[#log + 1] = "start: " .. tostring(ok) .. " " .. tostring(err)
        log[#log + 1] = "group cancel_called: " .. tostring(tg.cancel_scope.cancel_called)
        tether.checkpoint()
        log[#log + 1] = "host not cancelled"
        bystander:cancel()
      end)
      log[#log + 1] = "group exited normally"
    end)
    assert.same({
      "start: false same table: true",
      "start: false plain string",
      "group cancel_called: false",
      "host not cancelled",
      "bystander caught its own cancel: true",
      "group exited normally",
    }, log)
  end)

  it("sends an error from after started to the group", function()
    local log = {}
    local err
    helper.run(function()
      err = helper.error_of(tether.task_group, function(tg)
        local v = tg:start("late", function(task_status)
          task_status:started("up")
          tether.checkpoint()
          error("after started", 0)
        end)
        log[#log + 1] = "start returned " .. v
        local ok, e = pcall(tether.sleep_forever)
        log[#log + 1] = "host " .. outcome(ok, e)
        error(e, 0)
      end)
    end)
    assert.same({ "start returned up", "host Cancelled" }, log)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.same({ "after started" }, err.errors)
    assert.same({ "late" }, err.tasks)
  end)

  it("raises from start when the child returns without calling started", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(tg)
        local ok, err = pcall(tg.start, tg, function() tether.checkpoint() end)
        assert.is_false(ok)
        assert.matches("^tg:start: ", err)
        log[#log + 1] = "group cancel_called: " .. tostring(tg.cancel_scope.cancel_called)
        tether.checkpoint()
        log[#log + 1] = "host not cancelled"
      end)
      log[#log + 1] = "group exited normally"
    end)
    assert.same({ "group cancel_called: false", "host not cancelled", "group exited normally" },
                log)
  end)

  it("raises from a second task_status:started call", function()
    local v, second
    helper.run(function()
      tether.task_group(function(tg)
        v = tg:start(function(task_status)
          task_status:started(1)
          local ok, err = pcall(task_status.started, task_status, 2)
          second = ok and "second call returned" or err
        end)
      end)
    end)
    assert.equal(1, v)
    assert.matches("^task_status:started: ", second)
  end)

  it("sends an uncaught second started error to the group", function()
    local err
    helper.run(function()
      err = helper.error_of(tether.task_group, function(tg)
        tg:start("twice", function(task_status)
          task_status:started()
          task_status:started()
        end)
      end)
    end)
    assert.is_true(tether.is(err, tether.ErrorGroup))
    assert.equal(1, #err.errors)
    assert.matches("^task_status:started: ", err.errors[1])
    assert.same({ "twice" }, err.tasks)
  end)

  it("keeps the target group open while a start into it is pending", function()
    local log = {}
    helper.run(function()
      tether.task_group(function(outer)
        tether.task_group(function(target)
          outer:start_soon(function()
            local v = target:start(function(task_status)
              log[#log + 1] = "child running"
              for _ = 1, 3 do tether.checkpoint() end
              task_status:started("v")
              for _ = 1, 3 do tether.checkpoint() end
              log[#log + 1] = "child done"
            end)
            log[#log + 1] = "start returned " .. v
          end)
          tether.checkpoint() -- lets the starter call target:start
          log[#log + 1] = "target body done"
        end)
        log[#log + 1] = "target group exited"
      end)
    end)
    assert.same({ "target body done", "child running", "start returned v", "child done",
                  "target group exited" }, log)
  end)

  it("into a cancelled group: child cancelled, start raises Cancelled, the group swallows it",
     function()
    local log = {}
    local group
    helper.run(function()
      tether.task_group(function(tg)
        group = tg
        tg.cancel_scope:cancel()
        local ok, e = pcall(tg.start, tg, function(task_status)
          log[#log + 1] = "child runs"
          tether.checkpoint()
          task_status:started()
          log[#log + 1] = "unreachable"
        end)
        log[#log + 1] = "start " .. outcome(ok, e)
        error(e, 0)
      end)
      log[#log + 1] = "group exited quietly"
    end)
    assert.same({ "child runs", "start Cancelled", "group exited quietly" }, log)
    assert.is_true(group.cancel_scope.cancelled_caught)
  end)

  it("takes a leading name, like start_soon", function()
    local got = {}
    helper.run(function()
      tether.task_group(function(tg)
        got.start = tg:start("srv", function(task_status, arg)
          task_status:started(tether.current_task().name .. "/" .. arg)
        end, "arg")
        tg:start_soon("bg", function(arg)
          got.start_soon = tether.current_task().name .. "/" .. arg
        end, "arg2")
      end)
    end)
    assert.same({ start = "srv/arg", start_soon = "bg/arg2" }, got)
  end)

  it("gives the started child the group host's id as parent_id", function()
    local rec = {}
    helper.run(function()
      rec.host = tether.current_task().id
      tether.task_group(function(tg)
        tg:start_soon(function()
          rec.starter = tether.current_task().id
          tg:start(function(task_status)
            task_status:started()
            tether.checkpoint()
            rec.after = tether.current_task().parent_id
          end)
        end)
      end)
    end)
    assert.not_equal(rec.host, rec.starter)
    assert.equal(rec.host, rec.after)
  end)
end)

describe("task group misuse", function()
  it("tg:start_soon rejects non-callable task functions and registers nothing", function()
    local ran = false
    helper.run(function()
      tether.task_group(function(tg)
        local before = #tether.get_running_tasks()
        local cases = {
          { n = 1, 42 }, { n = 1, nil }, { n = 0 }, { n = 1, {} }, { n = 1, true },
          { n = 1, "a name only" }, { n = 2, "name", 42 }, { n = 2, "name", {} },
          { n = 2, "name", nil },
        }
        for _, args in ipairs(cases) do
          local err = helper.error_of(tg.start_soon, tg, table.unpack(args, 1, args.n))
          assert.matches("^tg:start_soon: ", err)
        end
        tether.checkpoint()
        assert.equal(before, #tether.get_running_tasks())
        tg:start_soon(function() ran = true end)
      end)
    end)
    assert.is_true(ran)
  end)

  it("tg:start rejects non-callable task functions and registers nothing", function()
    local ran = false
    helper.run(function()
      tether.task_group(function(tg)
        local before = #tether.get_running_tasks()
        for _, args in ipairs({ { n = 1, 42 }, { n = 0 }, { n = 1, {} }, { n = 2, "name", 42 } }) do
          local err = helper.error_of(tg.start, tg, table.unpack(args, 1, args.n))
          assert.matches("^tg:start: ", err)
        end
        tether.checkpoint()
        assert.equal(before, #tether.get_running_tasks())
        tg:start(function(task_status)
          ran = true
          task_status:started()
        end)
      end)
    end)
    assert.is_true(ran)
  end)

  it("tether.task_group rejects a non-function body and leaves the task intact", function()
    helper.run(function()
      for _, bad in ipairs({ 42, "body", {}, true }) do
        assert.matches("^tether%.task_group: ", helper.error_of(tether.task_group, bad))
      end
      assert.matches("^tether%.task_group: ", helper.error_of(tether.task_group))
      assert.matches("^tether%.task_group: ", helper.error_of(tether.task_group, nil, 1))
      assert_task_still_works()
    end)
  end)

  it("tg methods reject a self that is not a task group", function()
    local ran = false
    helper.run(function()
      tether.task_group(function(tg)
        local function task() ran = true end
        local function starter(task_status)
          ran = true
          task_status:started()
        end
        local bad_selves = { {}, 42, "tg", task, tg.cancel_scope, tether.CancelScope{} }
        for _, bad in ipairs(bad_selves) do
          assert.matches("^tg:start_soon: ", helper.error_of(tg.start_soon, bad, task))
          assert.matches("^tg:start: ", helper.error_of(tg.start, bad, starter))
        end
        assert.matches("^tg:start_soon: ", helper.error_of(tg.start_soon, nil, task))
        assert.matches("^tg:start: ", helper.error_of(tg.start, nil, starter))
        -- The classic slip: a dot instead of a colon.
        assert.matches("^tg:start_soon: ", helper.error_of(tg.start_soon, task))
        assert.matches("^tg:start: ", helper.error_of(tg.start, starter))
        tether.checkpoint()
      end)
      assert_task_still_works()
    end)
    assert.is_false(ran)
  end)

  it("task_status:started rejects a self that is not a task status", function()
    local v, errs
    helper.run(function()
      tether.task_group(function(tg)
        v = tg:start(function(task_status)
          errs = {
            helper.error_of(task_status.started, {}, 1),
            helper.error_of(task_status.started, nil, 1),
          }
          task_status:started(2)
        end)
      end)
    end)
    assert.equal(2, v)
    for _, err in ipairs(errs) do assert.matches("^task_status:started: ", err) end
  end)
end)
