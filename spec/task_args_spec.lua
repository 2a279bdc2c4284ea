-- How tg:start_soon and tg:start read their arguments, "[name,] fn, ...": an optional
-- task name, then the function. A call that lacks the function says which argument is
-- missing and how to call it.
local tether = require "tether"
local helper = require "spec.helper"

-- The misuse error of tg[method](tg, ...), raised inside a running group.
local function error_of_start(method, ...)
  local args = table.pack(...)
  local err
  helper.run(function()
    tether.task_group(function(tg)
      err = helper.error_of(tg[method], tg, table.unpack(args, 1, args.n))
    end)
  end)
  assert.is_string(err)
  return err
end

for _, method in ipairs { "start_soon", "start" } do
  local fname = "tg:" .. method

  describe(fname, function()
    it("with a name and no function says the function is missing after the name", function()
      assert.equal(fname .. ': expected a function (or callable) after the task name '
        .. '"worker", got no value; call it as ' .. fname .. '("worker", fn, ...)',
        error_of_start(method, "worker"))
      assert.equal(fname .. ': expected a function (or callable) after the task name '
        .. '"worker", got nil; call it as ' .. fname .. '("worker", fn, ...)',
        error_of_start(method, "worker", nil, 1))
      assert.equal(fname .. ': expected a function (or callable) after the task name '
        .. '"worker", got number; call it as ' .. fname .. '("worker", fn, ...)',
        error_of_start(method, "worker", 42))
    end)

    it("without a name or function says what it expects", function()
      for _, bad in ipairs { 42, {}, true } do
        assert.equal(fname .. ": expected a function (or callable) to run, or a task name "
          .. "and then one, got " .. type(bad) .. "; call it as " .. fname
          .. "([name,] fn, ...)", error_of_start(method, bad))
      end
      assert.matches("got no value;", error_of_start(method), 1, true)
    end)

    it("takes a callable table as the function, with or without a name", function()
      helper.run(function()
        local calls = 0
        local callable = setmetatable({}, { __call = function(_, ...)
          calls = calls + 1
          local task_status = ...
          if method == "start" then task_status:started() end
        end })
        tether.task_group(function(tg)
          tg[method](tg, callable)
          tg[method](tg, "named", callable)
        end)
        assert.equal(2, calls)
      end)
    end)
  end)
end
