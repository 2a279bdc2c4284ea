-- tether.wait_callback(fn): calls fn(done) and blocks until done(...) is called,
-- returning its arguments; cancellable; a second or late done is ignored.
local tether = require "tether"
local helper = require "spec.helper"

describe("tether.wait_callback", function()
  it("returns the arguments of done, called later from another task", function()
    helper.run(function()
      local done
      tether.task_group(function(tg)
        tg:start_soon(function()
          tether.wait_all_tasks_blocked()
          done("a", nil, 3, nil)
        end)
        local results = table.pack(tether.wait_callback(function(d) done = d end))
        assert.same({ n = 4, "a", nil, 3, nil }, results)
      end)
    end)
  end)

  it("ignores a second call of done", function()
    helper.run(function()
      local done
      tether.task_group(function(tg)
        tg:start_soon(function()
          tether.wait_all_tasks_blocked()
          done(1)
          done(2)
        end)
        assert.same({ 1 }, { tether.wait_callback(function(d) done = d end) })
      end)
      assert.same({ "next" }, { tether.wait_callback(function(d) d("next") end) })
    end)
  end)

  it("returns at once when fn calls done itself", function()
    helper.run(function()
      assert.same({ true, "now" }, { tether.wait_callback(function(done)
        done(true, "now")
        done(false)
      end) })
    end)
  end)

  it("returns at once when cancelled, and ignores a later done", function()
    helper.run(function()
      local done
      local scope = tether.CancelScope{}
      local outcome
      tether.task_group(function(tg)
        tg:start_soon(function()
          scope:run(function()
            outcome = helper.outcome(tether.wait_callback, function(d) done = d end)
          end)
        end)
        tether.wait_all_tasks_blocked()
        scope:cancel()
      end)
      assert.equal("Cancelled", outcome)
      done("late") -- nobody waits: ignored
      assert.same({ "after" }, { tether.wait_callback(function(d) d("after") end) })
    end)
  end)

  it("raises Cancelled without calling fn in a cancelled scope", function()
    helper.run(function()
      local called = false
      assert.equal("Cancelled", helper.outcome_when_cancelled(function()
        tether.wait_callback(function() called = true end)
      end))
      assert.is_false(called)
    end)
  end)

  it("passes on an error fn raises", function()
    helper.run(function()
      local err = helper.error_of(tether.wait_callback, function() error("no callback", 0) end)
      assert.equal("no callback", err)
      helper.assert_task_still_works()
    end)
  end)

  it("can wait inside a tether.coroutine generator", function()
    helper.run(function()
      local gen = tether.coroutine.wrap(function()
        for i = 1, 2 do
          tether.coroutine.yield(tether.wait_callback(function(done) done(i * 10) end))
        end
      end)
      assert.same({ 10, 20 }, { gen(), gen() })
    end)
  end)

  it("raises clear errors for bad input and outside a task", function()
    helper.misuse("^tether.wait_callback: argument 1 must be a function", tether.wait_callback,
      "f")
    helper.misuse("^tether.wait_callback: called outside tether.run", tether.wait_callback,
      function() end)
    helper.run(function()
      helper.misuse("^tether.wait_callback: argument 1 must be a function",
        tether.wait_callback)
    end)
  end)
end)
