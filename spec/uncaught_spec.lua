-- The main task's error when nothing catches it: `lua5.4 prog.lua` prints the task's
-- own traceback down to the raising line; under pcall tether.run re-raises the error
-- unchanged.

local helper = require "spec.helper"
local tether = require "tether"

-- Runs a program in a child lua5.4 and returns its output and exit status.
local function run_program(code)
  return helper.run_script(code)
end

-- Checks that `lines` occur in `output` in this order (plain substrings).
local function assert_in_order(output, lines)
  local pos = 1
  for _, line in ipairs(lines) do
    local s, e = output:find(line, pos, true)
    assert.is_truthy(s, ("missing %q (in this order) in:\n%s"):format(line, output))
    pos = e + 1
  end
end

describe("an uncaught error of the main task", function()
  it("prints the task's traceback down to the raising line, after a wait too", function()
    local output, status = run_program([[
local tether = require "tether"
local function inner() error("boom") end
local function middle() tether.sleep(0.001) inner() end
tether.run(function()
  middle()
end)
]])
    assert.equal(1, status, output)
    assert_in_order(output, {
      ":2: boom\n",
      "stack traceback of the main task (where the error was raised):\n",
      ":2: in upvalue 'inner'\n",
      ":3: in upvalue 'middle'\n",
      ":5: in function <",
      "stack traceback:\n",
      "[C]: in function 'tether.",
      ":4: in main chunk",
    })
  end)

  it("does so when run is called from a function the main chunk calls", function()
    local output, status = run_program([[
local tether = require "tether"
local function main()
  tether.run(function()
    tether.fail_after(0.001):run(tether.sleep_forever)
  end)
end
main()
]])
    assert.equal(1, status, output)
    assert_in_order(output, {
      "tether.TimeoutError: deadline exceeded\n",
      "stack traceback of the main task",
      ":4: in function <",
      "[C]: in function 'tether.",
      ":7: in main chunk",
    })
  end)

  it("keeps an ErrorGroup's own report, which shows each task's traceback", function()
    local output, status = run_program([[
local tether = require "tether"
tether.run(function()
  tether.task_group(function(tg)
    tg:start_soon("failing", function() error("child failed") end)
  end)
end)
]])
    assert.equal(1, status, output)
    assert_in_order(output, { "tether.ErrorGroup: 1 error(s)", "in task failing",
      ":4: child failed" })
    assert.is_falsy(output:find("stack traceback of the main task", 1, true), output)
  end)

  it("is re-raised unchanged under pcall and xpcall", function()
    local value = setmetatable({}, { __tostring = function() return "custom" end })
    local ok, err = pcall(tether.run, function() tether.sleep(0) error(value) end)
    assert.is_false(ok)
    assert.equal(value, err)
    ok, err = pcall(tether.run, function() error("plain") end)
    assert.is_false(ok)
    assert.matches("^spec/uncaught_spec.lua:%d+: plain$", err)
    ok, err = xpcall(tether.run, function(e) return e end, function() error("again", 0) end)
    assert.is_false(ok)
    assert.equal("again", err)
    local output = run_program([[
local tether = require "tether"
print(pcall(tether.run, function() error("caught", 0) end))
local ok, err = pcall(function() tether.run(function() error("deeper", 0) end) end)
print(ok, err)
]])
    assert.equal("false\tcaught\nfalse\tdeeper\n", output)
  end)
end)
