-- Error classes: made by the core, the same tables through tether.core and the
-- facade, printing as "tether.Name: message", and raised correctly by a program that
-- loads tether.core alone.

local helper = require "spec.helper"
local tether = require "tether"
local core = require "tether.core"

local NAMES = {
  "Cancelled", "Interrupted", "TimeoutError", "ErrorGroup", "WouldBlock", "EndOfStream",
  "ClosedResourceError", "BrokenResourceError", "BusyResourceError", "LimitExceeded",
  "IncompleteRead", "OSError", "ProcessError", "WorkerError",
}

describe("error classes", function()
  it("are the core's tables, exported unchanged by the facade", function()
    for _, name in ipairs(NAMES) do
      assert.is_table(core[name], name)
      assert.equal(core[name], tether[name], name)
      assert.equal("tether." .. name, core[name].__name)
    end
  end)

  it("make instances with Class.new that print as tether.Name: message and test with "
    .. "tether.is", function()
    for _, name in ipairs(NAMES) do
      if name ~= "ErrorGroup" and name ~= "OSError" then
        local err = tether[name].new("something happened")
        assert.equal("something happened", err.message)
        assert.equal("tether." .. name .. ": something happened", tostring(err))
        assert.is_true(tether.is(err, tether[name]))
        assert.is_false(tether.is(err, name == "Cancelled" and tether.WouldBlock
          or tether.Cancelled))
      end
    end
    assert.equal("tether.WouldBlock: nil", tostring(tether.WouldBlock.new()))
    assert.is_false(tether.is("tether.Cancelled: x", tether.Cancelled))
  end)

  it("print an OSError with its operation, target, code and message", function()
    local err = setmetatable({ op = "connect", target = "127.0.0.1:80",
      code = "ECONNREFUSED", errno = 111, message = "connection refused" }, tether.OSError)
    assert.equal("tether.OSError: connect 127.0.0.1:80: ECONNREFUSED: connection refused",
      tostring(err))
    err.target = nil
    assert.equal("tether.OSError: connect: ECONNREFUSED: connection refused", tostring(err))
  end)

  it("stay the same tables when tether.core is opened again in the same state", function()
    local again = package.loadlib(package.searchpath("tether.core", package.cpath),
      "luaopen_tether_core")()
    for _, name in ipairs(NAMES) do assert.equal(core[name], again[name], name) end
  end)

  it("are raised by a program that loads tether.core without the facade", function()
    local out, status = helper.run_script([[
local core = require "tether.core"
assert(package.loaded["tether"] == nil and package.loaded["tether.errors"] == nil)
local function class_of(err)
  for _, name in ipairs { "Cancelled", "TimeoutError", "WouldBlock", "ClosedResourceError" } do
    if getmetatable(err) == core[name] then return name end
  end
  return "unknown: " .. tostring(err)
end
local seen = {}
core.run(function()
  local scope = core.fail_after(0)
  local ok, err = pcall(scope.run, scope, function() core.sleep(1) end)
  seen[#seen + 1] = ok and "returned" or class_of(err)
  local send, receive = core.create_memory_object_stream(0)
  ok, err = pcall(receive.receive_nowait, receive)
  seen[#seen + 1] = class_of(err)
  send:close() receive:close()
  ok, err = pcall(send.send_nowait, send, 1)
  seen[#seen + 1] = class_of(err)
  local outer = core.CancelScope()
  outer:run(function()
    outer:cancel()
    ok, err = pcall(core.checkpoint)
    seen[#seen + 1] = class_of(err)
    print(tostring(err))
  end)
end)
print(table.concat(seen, " "))
]])
    assert.equal(0, status, out)
    assert.matches("tether%.Cancelled: ", out)
    assert.matches("TimeoutError WouldBlock ClosedResourceError Cancelled\n", out, 1, true)
  end)
end)

describe("error instances' where", function()
  -- "errors_spec.lua:N" for the line after the caller's.
  local function next_line()
    local info = debug.getinfo(2, "Sl")
    return ("%s:%d"):format(info.short_src, info.currentline + 1)
  end

  it("is the program's line that raised, for errors of the core and of the facade",
    function()
      local wheres, expected = {}, {}
      helper.run(function()
        local send, receive = tether.create_memory_object_stream()
        send:close()
        local ok, err = pcall(function()
          expected.timeout = next_line()
          tether.fail_after(0.001):run(tether.sleep_forever)
        end)
        assert.is_false(ok)
        wheres.timeout = err.where
        ok, err = pcall(function()
          expected.end_of_stream = next_line()
          receive:receive()
        end)
        assert.is_false(ok)
        wheres.end_of_stream = err.where
        local lock = tether.Lock()
        lock:acquire_nowait()
        tether.task_group(function(tg)
          tg:start_soon(function()
            local ok2, err2 = pcall(function()
              expected.would_block = next_line()
              lock:acquire_nowait() -- raised inside tether's Lua facade
            end)
            assert.is_false(ok2)
            wheres.would_block = err2.where
          end)
        end)
        lock:release()
      end)
      for name, line in pairs(expected) do assert.equal(line, wheres[name], name) end
    end)

  it("is where Class.new was called, and tostring stays tether.Name: message", function()
    local line = next_line()
    local err = tether.TimeoutError.new("late")
    assert.equal(line, err.where)
    assert.equal("tether.TimeoutError: late", tostring(err))
  end)
end)
