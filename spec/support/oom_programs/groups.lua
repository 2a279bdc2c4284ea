-- oom_host program: task groups, tg:start, cancel scopes (cancel, shields, deadlines,
-- move_on/fail_after), and nested groups where a child raises.  An error other than the
-- expected ones is raised again, so that the host sees it.
local tether = require "tether"

-- Whether an error value (an ErrorGroup's errors too, recursively) mentions `text`.
local function mentions(err, text)
  if type(err) == "string" then return err:find(text, 1, true) ~= nil end
  if type(err) ~= "table" then return false end
  if type(err.message) == "string" and mentions(err.message, text) then return true end
  for _, e in ipairs(type(err.errors) == "table" and err.errors or {}) do
    if mentions(e, text) then return true end
  end
  return false
end

-- Calls fn(), which must raise an error that mentions `text`; any other error goes on.
local function expect_error(text, fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  if not mentions(err, text) then error(err, 0) end
end

local total = tether.run(function()
  local sum = 0
  tether.task_group(function(tg)
    for i = 1, 3 do
      tg:start_soon(function() tether.checkpoint() sum = sum + i end)
    end
    tg:start_soon("named", function(a, b) tether.sleep(0) sum = sum + a + b end, 1, 2)
    local value = tg:start(function(status, x)
      tether.checkpoint()
      status:started(x)
      tether.sleep(0)
    end, "ready")
    assert(value == "ready")

    -- A child of a nested group raises: its siblings are cancelled, the ErrorGroup
    -- goes up through both groups.
    expect_error("child failed", tether.task_group, function(outer)
      outer:start_soon(tether.sleep_forever)
      outer:start_soon(function()
        tether.task_group(function(inner)
          inner:start_soon(tether.sleep_forever)
          inner:start_soon(function() tether.checkpoint() error("child failed") end)
        end)
      end)
    end)

    -- Cancel scopes: an explicit cancel, a shield, deadlines that passed, and one that
    -- the loop's timer must fire.
    local scope = tether.CancelScope()
    scope:run(function()
      tg:start_soon(function() scope:cancel("by a sibling") end)
      tether.sleep_forever()
    end)
    assert(scope.cancelled_caught)
    tether.CancelScope():run(function()
      local shielded = tether.CancelScope { shield = true }
      tether.current_task()
      shielded:run(tether.checkpoint)
    end)
    tether.move_on_at(tether.current_time()):run(tether.sleep_forever)
    expect_error("deadline exceeded", function()
      tether.fail_after(0):run(tether.sleep_forever)
    end)
    local timed = tether.move_on_after(0.0005)
    timed:run(tether.sleep_forever)
    assert(timed.cancelled_caught)
    sum = sum + #tether.get_running_tasks()
  end)
  return sum
end)
assert(total >= 9)
