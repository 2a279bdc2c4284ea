-- tether.worker.call and tether.worker.expose: a worker runs a function of the
-- main program, in its loop, as part of the to_thread caller's task.

local tether = require "tether"
local helper = require "spec.helper"

describe("tether.worker.call", function()
  it("runs an exposed function in the loop and returns its results", function()
    helper.run(function()
      tether.worker.expose("add", function(a, b)
        tether.sleep(0) -- it may block: it runs as a task
        return a + b, math.type(a + b)
      end)
      assert.same({ 5, "integer" }, { tether.to_thread(function()
        return require("tether").worker.call("add", 2, 3)
      end) })
    end)
  end)

  it("raises WorkerError in the worker when the exposed function fails", function()
    helper.run(function()
      tether.worker.expose("fail", function() error("exposed failure") end)
      local is_worker_error, message = tether.to_thread(function()
        local tw = require "tether"
        local ok, err = pcall(tw.worker.call, "fail")
        return not ok and getmetatable(err) == tw.WorkerError, err.message
      end)
      assert.is_true(is_worker_error)
      assert.matches("exposed failure", message)
    end)
  end)

  it("refuses a name nothing was exposed as", function()
    helper.run(function()
      local err = helper.error_of(tether.to_thread, function()
        return require("tether").worker.call("nothing here")
      end)
      assert.matches('tether.worker.call: no function is exposed as "nothing here"',
        err.message)
    end)
  end)

  it("stops the worker with Cancelled when the caller is cancelled meanwhile", function()
    helper.run_within(30, function()
      tether.worker.expose("forever", tether.sleep_forever)
      local scope = tether.move_on_after(0.05)
      scope:run(tether.to_thread, { cancel = "wait" }, function()
        require("tether").worker.call("forever")
        return "not reached"
      end)
      assert.is_true(scope.cancelled_caught)
    end)
  end)

  it("forgets exposed functions when the run ends", function()
    helper.run(function()
      tether.worker.expose("once", function() return 1 end)
    end)
    helper.run(function()
      local err = helper.error_of(tether.to_thread, function()
        return require("tether").worker.call("once")
      end)
      assert.matches("no function is exposed", err.message)
    end)
  end)

  it("rejects bad input and use outside a worker", function()
    helper.run(function()
      assert.matches("^tether.worker.expose: expected a name",
        helper.error_of(tether.worker.expose, 1, string.format))
      assert.matches("^tether.worker.expose: expected a function",
        helper.error_of(tether.worker.expose, "x", 1))
      assert.matches("^tether.worker.call: call it inside a worker",
        helper.error_of(tether.worker.call, "x"))
      assert.matches("^tether.worker.check_cancelled: call it inside a worker",
        helper.error_of(tether.worker.check_cancelled))
      local err = helper.error_of(tether.to_thread, function()
        return require("tether").worker.call("x", string.format)
      end)
      assert.matches("tether.worker.call: argument 2 is a function", err.message)
    end)
  end)
end)
