-- oom_host program: tether.coroutine generators that block (nested, cancelled while
-- waiting inside the inner one, a refused yield inside a scope) and wait_callback.
local tether = require "tether"
local tc = tether.coroutine

local total = tether.run(function()
  local sum = 0
  local ev = tether.Event()
  tether.task_group(function(tg)
    tg:start_soon(function()
      tether.wait_all_tasks_blocked()
      ev:set()
    end)
    local inner = tc.wrap(function()
      ev:wait()
      for i = 1, 3 do
        tether.sleep(0)
        tc.yield(i)
      end
    end)
    local outer = tc.wrap(function()
      for value in inner do
        tether.checkpoint()
        tc.yield(value * 10)
      end
    end)
    for value in outer do sum = sum + value end
  end)
  -- cancelled while the inner coroutine waits; its <close> runs
  local closed = false
  tether.move_on_after(0.001):run(function()
    local co = tc.create(function()
      local _ <close> = setmetatable({}, { __close = function() closed = true end })
      local deeper = tc.wrap(function() tether.sleep_forever() end)
      deeper()
    end)
    local ok, err = tc.resume(co)
    assert(not ok)
    if not tether.is(err, tether.Cancelled) then error(err, 0) end -- out of memory
    tc.close(co)
  end)
  assert(closed)
  -- a yield inside a scope the coroutine opened is an error inside it
  local gen = tc.wrap(function()
    tether.CancelScope{}:run(function() tc.yield(1) end)
  end)
  local ok, err = pcall(gen)
  assert(not ok)
  if not tostring(err):find("cannot yield from inside", 1, true) then error(err, 0) end
  -- wait_callback: done from another task, and done inside fn
  local done
  tether.task_group(function(tg)
    tg:start_soon(function()
      tether.wait_all_tasks_blocked()
      done(5)
    end)
    sum = sum + tether.wait_callback(function(d) done = d end)
  end)
  return sum + tether.wait_callback(function(d) d(7) end)
end)
assert(total == 72, total)
